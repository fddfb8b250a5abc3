"""The scenario: a validated, typed description of traffic, gateway, clients and disconnects.

A scenario is written in YAML (see ``data/scenarios/``) and validated into :class:`Scenario`.
Unknown keys are errors, so a typo never falls back silently to a default. Every problem is
reported at once, each with the file, the key path and what is allowed.

Units are in the key names: ``_s`` seconds, ``_bytes`` bytes, ``_per_s`` per second.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .distributions import Constant, DistSpec, Empirical
from .errors import ScenarioError
from .events.models import ANNOUNCED_EVENT_TYPES, DOCUMENTED_EVENT_TYPES
from .validation_errors import describe_errors, format_path

if TYPE_CHECKING:
    from .datafiles import DataFileError, TraceRows

OverflowPolicy = Literal["drop_newest", "drop_oldest", "disconnect"]
OVERFLOW_POLICIES: tuple[str, ...] = typing.get_args(OverflowPolicy)


def _const(value: float) -> Constant:
    return Constant(value=value)


class _Strict(BaseModel):
    """Base model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class Diurnal(_Strict):
    """Daily rate modulation: rate(t) = rate * (1 + amplitude * cos(2 pi (t - peak_at_s) / period_s))."""

    amplitude: float = Field(ge=0, le=1, description="Relative swing of the rate, 0..1.")
    period_s: float = Field(default=86400.0, gt=0)
    peak_at_s: float = Field(default=0.0, description="Instant of the daily peak, seconds from start.")


class PoissonPublisher(_Strict):
    """Independent events at a constant (or diurnally modulated) rate per player."""

    kind: Literal["poisson"]
    event_type: str = "notification"
    rate_per_player_per_s: float = Field(gt=0)
    activity_sigma: float = Field(
        default=0.0,
        ge=0,
        le=5,
        description="Spread of activity across players: each player's rate is the mean rate times a lognormal "
        "factor of mean 1 and this sigma (0: every player at the same rate). Real traffic is heavy-tailed.",
    )
    diurnal: Diurnal | None = None
    payload_bytes: DistSpec = Field(default_factory=lambda: _const(300))


class BurstPublisher(_Strict):
    """Periodic bursts of ``size`` events per player, as ``InsertNewNotifications`` publishes a batch in a loop."""

    kind: Literal["burst"]
    event_type: str = "notification"
    size: int = Field(ge=1, description="Events in one burst.")
    every_s: float = Field(gt=0, description="Period between a player's bursts.")
    spacing_s: float = Field(default=0.0, ge=0, description="Gap between consecutive events of a burst.")
    aligned: bool = Field(
        default=False,
        description="True: every player's bursts fall at the same instants (a batch job); "
        "False: each player gets its own random phase.",
    )
    payload_bytes: DistSpec = Field(default_factory=lambda: _const(600))


class TracePublisher(_Strict):
    """Replays publish times from a CSV trace, read and checked when the scenario is loaded.

    Columns: ``published_at`` (seconds from start, required); ``player`` (0-based index into
    the population, optional: without it every event goes to player 0); ``event_type``
    (optional: a documented or announced event type, or one a publisher of the scenario names;
    empty or absent: this publisher's ``event_type``); ``payload_bytes`` (optional: empty or
    absent, drawn from this publisher's ``payload_bytes``). Rows from ``duration_s`` on are
    not replayed.
    """

    kind: Literal["trace"]
    file: Path
    event_type: str = "notification"
    payload_bytes: DistSpec = Field(default_factory=lambda: _const(300))

    _rows: TraceRows | None = PrivateAttr(default=None)

    @property
    def rows(self) -> TraceRows:
        """The checked rows of the trace file, as read when the scenario was loaded."""
        if self._rows is None:
            raise ScenarioError(
                f"the trace {self.file} was never read: load the scenario with load_scenario or "
                "scenario_from_dict, or call Scenario.bind(base_dir)"
            )
        return self._rows

    def load_rows(self, rows: TraceRows) -> TracePublisher:
        """Attach the rows read from ``file``."""
        self._rows = rows
        return self


Publisher = Annotated[PoissonPublisher | BurstPublisher | TracePublisher, Field(discriminator="kind")]


class Population(_Strict):
    """Who is subscribed: brands, players per brand and clients (tabs or devices) per player."""

    brand_ids: list[Annotated[int, Field(gt=0, lt=2**31)]] = Field(default_factory=lambda: [1001], min_length=1)
    players_per_brand: int = Field(default=100, ge=1)
    first_player_id: int = Field(default=1, gt=0)
    clients_per_player: int = Field(default=1, ge=1, description="Each client gets its own copy of every event.")

    @field_validator("brand_ids")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("brand_ids must be unique")
        return v

    @property
    def n_players(self) -> int:
        return len(self.brand_ids) * self.players_per_brand

    @property
    def n_clients(self) -> int:
        return self.n_players * self.clients_per_player


class OutputBufferLimit(_Strict):
    """Redis's ``client-output-buffer-limit pubsub`` applied to each gateway node's shared subscriber.

    The node reads ``reader_rate_per_s`` messages per second; the backlog waits in Redis's
    output buffer for that subscriber. Past ``hard_limit_bytes``, or above ``soft_limit_bytes``
    for ``soft_seconds``, Redis closes the subscriber: the backlog is lost, and so is everything
    published until it has resubscribed ``resubscribe_s`` later.

    ``kernel_buffer_bytes``: the oldest bytes of the backlog that have left Redis already, in
    the sockets between Redis and the node (Redis's send buffer, the node's receive buffer):
    Redis's limit counts only the rest, and when Redis closes the subscriber the node still
    reads them, so its outage starts once it has. ``sse-sim compare`` measures it.
    """

    reader_rate_per_s: float = Field(gt=0)
    hard_limit_bytes: int = Field(default=32 * 2**20, gt=0)
    soft_limit_bytes: int = Field(default=8 * 2**20, ge=0)
    soft_seconds: float = Field(default=60.0, ge=0)
    resubscribe_s: float = Field(default=0.05, ge=0)
    overhead_bytes: int = Field(default=40, ge=0, description="RESP framing and channel name per message.")
    kernel_buffer_bytes: int = Field(
        default=0,
        ge=0,
        description="Backlog bytes held by the sockets between Redis and the node: not counted by the limit, still read after a close.",
    )


class RedisConfig(_Strict):
    """The Redis hop: publish to gateway latency, subscription set-up, output-buffer limits."""

    hop_latency: DistSpec = Field(default_factory=lambda: _const(0.0002))
    subscribe_latency: DistSpec = Field(
        default_factory=lambda: _const(0.002),
        description="Gap between the HTTP connect and an active subscription; events in it are lost.",
    )
    output_buffer: OutputBufferLimit | None = None


class GatewayConfig(_Strict):
    """The SSE gateway: per-connection buffer, overflow policy, keepalive, nodes."""

    nodes: int = Field(default=1, ge=1)
    buffer_size: int = Field(
        default=50,
        ge=1,
        description="Events waiting per connection; one more may be in flight, so K = buffer_size + 1.",
    )
    buffer_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Framed bytes (payload + 8 of SSE framing) a connection's queue holds, besides buffer_size "
        "events: an event that would pass either meets the overflow policy, but an empty queue takes any one "
        "event (the real gateway's --max-queue-bytes; Centrifugo's 1 MiB). null: no byte cap.",
    )
    overflow_policy: OverflowPolicy = "drop_newest"
    keepalive_interval_s: float = Field(default=15.0, gt=0)
    reader_yield_every: int = Field(
        default=1,
        ge=0,
        description="The shared reader yields to the writers after this many messages that arrived "
        "together; 0 = never while messages are pending (a burst larger than the buffer is then "
        "dropped even for a fast client).",
    )


Browser = Literal["chromium", "firefox", "safari"]
#: Each browser's EventSource reconnect delay when the server sends no ``retry:`` field.
BROWSER_RETRY_S: dict[str, float] = {"chromium": 3.0, "firefox": 5.0, "safari": 3.0}
#: Connections a browser opens to one origin over HTTP/1.1, across all its tabs.
HTTP1_CONNECTIONS_PER_ORIGIN = 6
#: Reconnect delay when neither the scenario, the gateway's ``retry:`` nor a browser mix says.
DEFAULT_RETRY_S = 3.0


class ClientsConfig(_Strict):
    """How clients read (drain time, network latency, socket buffering) and which browsers they run in."""

    drain_time: DistSpec = Field(default_factory=lambda: _const(0.001))
    network_latency: DistSpec = Field(default_factory=lambda: _const(0.02))
    socket_buffer_events: int = Field(
        default=0,
        ge=0,
        description="Events the kernel socket buffers hold beyond the gateway's queue and in-flight slot.",
    )
    socket_buffer_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Framed bytes the kernel socket buffers hold beyond the gateway's queue and the event being "
        "read: the writer takes the next event while it fits, so small events take less room than big ones. "
        "With socket_buffer_events > 0 both apply, whichever is reached first; with socket_buffer_events 0 the "
        "bytes alone decide. null: socket_buffer_events alone.",
    )
    bandwidth_bytes_per_s: DistSpec | None = Field(
        default=None,
        description="Each client's download bandwidth (a distribution, one draw per client): an event's drain is "
        "drain_time plus its framed bytes over it, so big events drain slower. null: drain_time alone.",
    )
    browsers: dict[Browser, Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        description="Share of players per browser, e.g. {chromium: 0.7, firefox: 0.2, safari: 0.1}; sets each "
        "client's default reconnect delay (Chromium and Safari 3 s, Firefox 5 s). A player's clients are "
        "tabs of one browser.",
    )
    http_version: Literal["1.1", "2"] = Field(
        default="1.1",
        description="1.1: a browser opens at most 6 connections to the origin, across its tabs; 2: no such cap.",
    )
    tab_sharing: Literal["none", "leader"] = Field(
        default="none",
        description="leader: a player's tabs share one connection (a leader tab fans events out by "
        "BroadcastChannel); none: each tab opens its own.",
    )

    @model_validator(mode="after")
    def _shares(self) -> ClientsConfig:
        if self.browsers is not None and abs(sum(self.browsers.values()) - 1.0) > 1e-6:
            total = sum(self.browsers.values())
            raise ValueError(f"browsers: shares must add up to 1 (they add up to {total:g})")
        return self

    @field_validator("socket_buffer_bytes")
    @classmethod
    def _socket_buffers(cls, v: int | None, info: ValidationInfo) -> int | None:
        events = info.data.get("socket_buffer_events")
        if v == 0 and isinstance(events, int) and events > 0:
            # the two contradict each other: no room beyond the event being read, yet some events
            raise ValueError(
                f"0 leaves no room for the {events} events of clients.socket_buffer_events (allowed: more "
                "than 0 to cap those events in bytes as well, or null to count in events alone)"
            )
        return v


class DisconnectWindow(_Strict):
    """A scripted outage: the chosen clients are disconnected from ``start_s`` to ``end_s``."""

    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    clients: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    fraction: float | None = Field(
        default=None, gt=0, le=1, description="Pick this fraction of clients at random instead of `clients`."
    )

    @model_validator(mode="after")
    def _order(self) -> DisconnectWindow:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        return self


class Flaps(_Strict):
    """Random connection flaps: a Poisson process per client, each taking the client offline a while."""

    rate_per_client_per_s: float = Field(gt=0)
    offline: DistSpec = Field(default_factory=lambda: _const(3.0), description="Time until reconnected.")


class MassDrop(_Strict):
    """A gateway node dies (or is redeployed): all its clients drop and reconnect after the retry delay."""

    at_s: float = Field(ge=0)
    node: int | Literal["all"] = 0
    retry_delay_s: float | None = Field(
        default=None,
        ge=0,
        description="Reconnect delay; null: the gateway's `retry:` (delivery.retry_ms) if set, else each "
        "client's browser default (3 s without clients.browsers).",
    )
    jitter_s: float = Field(default=0.0, ge=0, description="Uniform extra delay in [0, jitter_s].")


class DisconnectsConfig(_Strict):
    """All the ways connections go away."""

    windows: list[DisconnectWindow] = Field(default_factory=list)
    flaps: Flaps | None = None
    mass_drops: list[MassDrop] = Field(default_factory=list)
    retry_delay_s: float | None = Field(
        default=None,
        ge=0,
        description="Reconnect delay after the gateway closes a slow client (policy `disconnect`); null: as for "
        "mass drops, delivery.retry_ms or the browser's default.",
    )
    retry_jitter_s: float = Field(default=0.0, ge=0)


DeliveryMode = Literal["pubsub", "stream", "latest"]
DELIVERY_MODES: tuple[str, ...] = typing.get_args(DeliveryMode)


class DeliveryConfig(_Strict):
    """How events reach a client that was away: at most once, replayed from history, or conflated to the latest."""

    mode: DeliveryMode = Field(
        default="pubsub",
        description="pubsub: at most once (the documented gateway); stream: a per-player history replayed "
        "after Last-Event-ID on reconnect; latest: only the newest pending value per event type.",
    )
    history_size: int = Field(default=100, ge=1, description="stream: entries kept per player channel (XADD MAXLEN ~).")
    history_ttl_s: float | None = Field(
        default=None, gt=0, description="stream: entries older than this are trimmed (MINID); null = no TTL."
    )
    max_replay: int = Field(default=300, ge=1, description="stream: most entries replayed on one reconnect.")
    retry_ms: int | None = Field(
        default=None,
        ge=0,
        description="The `retry:` field the gateway sends: the reconnect delay of every browser; null = each "
        "browser's default.",
    )
    event_types: dict[str, DeliveryMode] = Field(
        default_factory=dict, description="Per event type override of mode, e.g. {gamification_balance_update: latest}."
    )

    def mode_of(self, event_type: str) -> str:
        """The delivery mode of one event type."""
        return self.event_types.get(event_type, self.mode)

    @property
    def keeps_anything(self) -> bool:
        """Whether some event type is kept for a client that is away (stream or latest)."""
        return self.mode != "pubsub" or any(m != "pubsub" for m in self.event_types.values())


class Scenario(_Strict):
    """A whole experiment: who publishes what to whom, through which gateway, and what goes wrong."""

    name: str = "scenario"
    description: str = ""
    duration_s: float = Field(gt=0)
    population: Population = Field(default_factory=Population)
    publishers: list[Publisher] = Field(min_length=1)
    redis: RedisConfig = Field(default_factory=RedisConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    clients: ClientsConfig = Field(default_factory=ClientsConfig)
    disconnects: DisconnectsConfig = Field(default_factory=DisconnectsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        for i, drop in enumerate(self.disconnects.mass_drops):
            if drop.node != "all" and drop.node >= self.gateway.nodes:
                raise ValueError(
                    f"disconnects.mass_drops[{i}].node is {drop.node}, but gateway.nodes is "
                    f"{self.gateway.nodes} (allowed: 0..{self.gateway.nodes - 1} or 'all')"
                )
        for i, w in enumerate(self.disconnects.windows):
            if w.clients != "all":
                bad = [c for c in w.clients if c >= self.population.n_clients]
                if bad:
                    raise ValueError(
                        f"disconnects.windows[{i}].clients has {bad[:5]}, but there are only "
                        f"{self.population.n_clients} clients (allowed: 0..{self.population.n_clients - 1})"
                    )
        unknown = sorted(set(self.delivery.event_types) - set(self.event_types))
        if unknown:
            raise ValueError(
                f"delivery.event_types names {unknown}, which no publisher publishes "
                f"(allowed: {', '.join(self.event_types)})"
            )
        return self

    @property
    def base_dir(self) -> Path:
        """Folder that relative file paths in this scenario (traces, empirical data) are read from."""
        return self._base_dir

    @property
    def source(self) -> str | None:
        """The file this scenario was loaded from, if any."""
        return self._source

    @property
    def event_types(self) -> tuple[str, ...]:
        """Event types a trace may name: the documented and announced ones, and every publisher's."""
        named = [pub.event_type for pub in self.publishers]
        return tuple(dict.fromkeys([*DOCUMENTED_EVENT_TYPES, *ANNOUNCED_EVENT_TYPES, *named]))

    def resolve(self, path: Path) -> Path:
        """A path the scenario names, resolved against :attr:`base_dir` when relative."""
        return path if path.is_absolute() else self._base_dir / path

    def bind(self, base_dir: Path, source: str | None = None) -> Scenario:
        """Attach the folder relative paths resolve against, and read every data file the scenario names.

        Raises :class:`ScenarioError` naming each bad file with its key path, e.g.
        ``publishers[2].file``, and the line of its first bad row.
        """
        # imported here: reading data files needs pandas, the scenario model alone does not
        from .datafiles import DataFileError, read_samples, read_trace

        self._base_dir = Path(base_dir)
        self._source = source
        problems = []
        for i, pub in enumerate(self.publishers):
            if isinstance(pub, TracePublisher):
                path = self.resolve(pub.file)
                try:
                    pub.load_rows(read_trace(path, self.population.n_players, self.event_types))
                except DataFileError as exc:
                    problems.append(_file_problem(("publishers", i, "file"), "trace", exc))
        for loc, dist in _iter_empirical(self, ()):
            try:
                dist.load_values(read_samples(self.resolve(dist.file), dist.column))
            except DataFileError as exc:
                problems.append(_file_problem((*loc, "file"), "empirical data", exc))
        if problems:
            raise _error(source, problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible form, suitable to record with a result or to write back as YAML."""
        return json.loads(self.model_dump_json(by_alias=True))

    def with_overrides(self, overrides: dict[str, Any]) -> Scenario:
        """A copy with dotted-path keys replaced, e.g. ``{"gateway.buffer_size": 100}``; validated again."""
        data = self.to_dict()
        for dotted, value in overrides.items():
            node: Any = data
            parts = dotted.split(".")
            for part in parts[:-1]:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            last = parts[-1]
            if isinstance(node, list):
                node[int(last)] = value
            else:
                node[last] = value
        return scenario_from_dict(data, source=self._source, base_dir=self._base_dir)


def _iter_empirical(model: BaseModel, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Empirical]]:
    """Every Empirical distribution below ``model``, with its key path."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            at = (*loc, name) if index is None else (*loc, name, index)
            if isinstance(item, Empirical):
                yield at, item
            elif isinstance(item, BaseModel):
                yield from _iter_empirical(item, at)


# ----------------------------------------------------------------------------------------------
# Loading and error reporting


def _file_problem(loc: tuple[str | int, ...], what: str, exc: DataFileError) -> str:
    key = format_path(loc, root="")
    if exc.missing:
        return f"{key}: {what} file not found: {exc.path}"
    return f"{key}: {what} {exc}"


def _error(source: str | None, problems: list[str]) -> ScenarioError:
    """One ScenarioError for every problem found: one line for one problem, a list for several."""
    where = source or "<scenario>"
    if len(problems) == 1:
        return ScenarioError(f"{where}: {problems[0]}", problems=problems, source=source)
    lines = "\n".join(f"  {p}" for p in problems)
    return ScenarioError(f"{where}: invalid scenario\n{lines}", problems=problems, source=source)


def scenario_from_dict(
    data: Any, *, source: str | None = None, base_dir: Path | str | None = None
) -> Scenario:
    """Validate a plain mapping into a Scenario and read the data files it names.

    Relative paths resolve against ``base_dir``, by default the folder of ``source``. Raises
    :class:`ScenarioError` with every problem, each naming its key path and what is allowed.
    """
    where = source or "<scenario>"
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{where}: a scenario must be a mapping of keys (duration_s, publishers, ...), "
            f"got {type(data).__name__}",
            source=source,
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        # a failed cross-field check (empty path) names its own keys in its message
        problems = [f"{p.path('')}: {p.message}" if p.loc else p.message for p in describe_errors(exc, Scenario)]
        raise _error(source, problems) from None
    base = Path(base_dir) if base_dir is not None else (Path(source).parent if source else Path.cwd())
    return scenario.bind(base, source)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; errors name the file, key path and what is allowed."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"{p}: no such scenario file", source=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc}", source=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{p}: not valid YAML{where}: {problem}", source=str(p)) from None
    return scenario_from_dict(data, source=str(p), base_dir=p.parent)


def as_scenario(scenario: Scenario | str | Path | dict[str, Any]) -> Scenario:
    """Accept a Scenario, a path to a YAML file, or a mapping."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return scenario_from_dict(scenario)
    return load_scenario(scenario)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (what ``sse-sim schema scenario`` prints)."""
    return Scenario.model_json_schema(by_alias=True)


__all__ = [
    "Scenario",
    "Population",
    "PoissonPublisher",
    "BurstPublisher",
    "TracePublisher",
    "Diurnal",
    "RedisConfig",
    "OutputBufferLimit",
    "GatewayConfig",
    "ClientsConfig",
    "DisconnectsConfig",
    "DisconnectWindow",
    "DeliveryConfig",
    "DELIVERY_MODES",
    "BROWSER_RETRY_S",
    "HTTP1_CONNECTIONS_PER_ORIGIN",
    "Flaps",
    "MassDrop",
    "OVERFLOW_POLICIES",
    "load_scenario",
    "scenario_from_dict",
    "as_scenario",
    "scenario_json_schema",
]
