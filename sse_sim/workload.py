"""The workload: a scenario turned into arrays of publishes and client sessions, for one seed.

Both the simulation engine and the real-mode runner consume a :class:`Workload`, so they see
the same publishes, to the same players, at the same instants, and the same disconnects.

Randomness: one :class:`numpy.random.SeedSequence` per run, spawned into one named child per
random stream (each publisher, payload sizes, hop latency, subscribe latency, drain, network,
each disconnect source). Changing one stream, say the flaps, never reshuffles another, say the
publish times.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from .distributions import Constant
from .errors import ScenarioError
from .scenario import (
    BROWSER_RETRY_S,
    DEFAULT_RETRY_S,
    BurstPublisher,
    PoissonPublisher,
    Scenario,
    TracePublisher,
    as_scenario,
)
from .ziggurat import Float32Draws

# Names of the random streams; a stream's seed depends on its name only, not on the order in
# which streams are drawn, so adding a stream never perturbs the others.
STREAMS = (
    "hop",
    "subscribe",
    "drain",
    "network",
    "windows",
    "flaps",
    "mass_drops",
    "reconnect",
    "reconnect_delay",
)


def stream_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one named random stream of a run: independent of every other stream."""
    key = zlib.crc32(name.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, key]))


#: Players per chunk of random numbers. Every per-player, per-client, per-event and per-row draw
#: comes from a stream keyed by its chunk, so a run walked in blocks of whole chunks draws what
#: the run built at once draws. Chunk 0 keys the plain streams.
PLAYER_CHUNK = 1024


def chunk_rng(seed: int, name: str, chunk: int) -> np.random.Generator:
    """The generator of one named random stream for one chunk of players (chunk 0: :func:`stream_rng`)."""
    if chunk == 0:
        return stream_rng(seed, name)
    key = zlib.crc32(name.encode())
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, key, int(chunk)]))


def stream_key(seed: int, name: str) -> np.uint64:
    """A 64-bit key for the engine's counter-based random numbers of one stream."""
    return np.uint64(stream_rng(seed, name).integers(0, 2**63 - 1))


# The UUID version and variant bits sit above bit 61, so the low 62 bits carry the event id.
_EVENT_ID_BITS = (1 << 62) - 1


def message_id(seed: int, event_id: int) -> str:
    """The notification ``message_id`` of one event: a version-4 UUID made of the seed and the event id.

    The seed fills the high 64 bits (less the version bits), the event id the low 62, so a
    received notification tells which workload event it is (:func:`event_id_of_message_id`).
    """
    return str(uuid.UUID(int=((int(seed) & (2**64 - 1)) << 64) | int(event_id), version=4))


def event_id_of_message_id(message_id: str) -> int:
    """The workload event id a :func:`message_id` carries; raises ValueError if it is not a UUID."""
    return uuid.UUID(message_id).int & _EVENT_ID_BITS


@dataclass(frozen=True)
class Workload:
    """What happens in one run, as arrays: who publishes what when, and when each client is connected.

    Events are grouped by player (player-major) and time-ordered within a player; the events of
    player ``p`` are ``player_offsets[p]:player_offsets[p + 1]``. An event's id is its index.
    Clients are laid out player-major too: client ``c`` belongs to player ``c // clients_per_player``
    and is served by gateway node ``client_node[c]``. Each client has sessions
    ``session_offsets[c]:session_offsets[c + 1]``: a connection opened at ``connect_at``,
    subscribed from ``subscribed_at``, closed at ``disconnect_at`` (``inf``: still open at the end).
    """

    seed: int
    duration_s: float
    event_types: tuple[str, ...]
    # events
    published_at: np.ndarray
    player: np.ndarray
    event_type_code: np.ndarray
    payload_bytes: np.ndarray
    hop_latency_s: np.ndarray
    player_offsets: np.ndarray
    # population
    brand_ids: np.ndarray
    player_ids: np.ndarray
    clients_per_player: int
    client_node: np.ndarray
    n_nodes: int
    # sessions
    session_offsets: np.ndarray
    connect_at: np.ndarray
    subscribed_at: np.ndarray
    disconnect_at: np.ndarray
    scenario_name: str = ""
    extra: dict = field(default_factory=dict)
    # per client: its browser (an index into BROWSERS, -1 when the scenario names no browser
    # mix) and the delay it reconnects after when no scenario key sets one
    client_browser: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    client_retry_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    # a block of a larger run: global index of its first player (its players, clients and
    # events are numbered from 0 within the block)
    player_base: int = 0
    players_per_brand: int = 0  # 0: all the workload's players split evenly over brand_ids

    @property
    def client_base(self) -> int:
        """Global index of the workload's first client (0 unless it is a block of a larger run)."""
        return self.player_base * self.clients_per_player

    @property
    def n_events(self) -> int:
        return int(self.published_at.size)

    @property
    def n_players(self) -> int:
        return int(self.player_ids.size)

    @property
    def n_clients(self) -> int:
        return int(self.client_node.size)

    @property
    def n_sessions(self) -> int:
        return int(self.connect_at.size)

    def message_id(self, event_id: int) -> str:
        """The notification ``message_id`` (a UUID) of one event; stable for a seed and event id."""
        return message_id(self.seed, event_id)

    def events_frame(self) -> pd.DataFrame:
        """The publish schedule as a DataFrame, one row per event, sorted by event id."""
        return pd.DataFrame(
            {
                "event_id": np.arange(self.n_events, dtype=np.int64),
                "published_at": self.published_at,
                "brand_id": self.brand_ids[self.player_index_brand()][self.player],
                "player_id": self.player_ids[self.player],
                "event_type": pd.Categorical.from_codes(self.event_type_code, self.event_types),
                "payload_bytes": self.payload_bytes,
            }
        )

    def player_index_brand(self) -> np.ndarray:
        """Index into ``brand_ids`` for each player (players are laid out brand-major)."""
        per_brand = self.players_per_brand or self.n_players // self.brand_ids.size
        return (self.player_base + np.arange(self.n_players)) // per_brand

    def player_brand_ids(self) -> np.ndarray:
        """Brand id of each player."""
        return self.brand_ids[self.player_index_brand()]

    def sessions_frame(self) -> pd.DataFrame:
        """Client sessions as a DataFrame: one row per connection."""
        counts = np.diff(self.session_offsets)
        client = np.repeat(np.arange(self.n_clients, dtype=np.int32), counts)
        player = client // self.clients_per_player
        return pd.DataFrame(
            {
                "client_id": client,
                "brand_id": self.player_brand_ids()[player],
                "player_id": self.player_ids[player],
                "node": self.client_node[client],
                "connect_at": self.connect_at,
                "subscribed_at": self.subscribed_at,
                "disconnect_at": self.disconnect_at,
            }
        )


# ----------------------------------------------------------------------------------------------
# Publishers


@numba.njit(cache=True)
def _uniform_order_stats(counts, spacings, duration):  # pragma: no cover - jitted
    """Sorted uniform times per segment from exponential spacings (no sort needed).

    For a segment of n events, n + 1 exponential spacings E give sorted uniforms on [0, T) as
    T * cumsum(E)[:n] / sum(E).
    """
    total = 0
    for c in counts:
        total += c
    out = np.empty(total, np.float64)
    src = 0
    dst = 0
    for p in range(counts.size):
        n = counts[p]
        s = 0.0
        for k in range(n + 1):
            s += spacings[src + k]
        acc = 0.0
        for k in range(n):
            acc += spacings[src + k]
            out[dst + k] = duration * acc / s
        src += n + 1
        dst += n
    return out


def _poisson(pub: PoissonPublisher, n_players: int, duration: float, rng: np.random.Generator, activity_rng: np.random.Generator):
    amp = pub.diurnal.amplitude if pub.diurnal else 0.0
    peak_rate = pub.rate_per_player_per_s * (1.0 + amp)
    if pub.activity_sigma > 0:
        # each player's own rate: a lognormal factor of mean 1, from its own stream so that
        # giving a spread leaves every other random draw of the run as it was
        sigma = pub.activity_sigma
        factor = np.exp(sigma * activity_rng.standard_normal(n_players) - sigma * sigma / 2)
        counts = rng.poisson(peak_rate * duration * factor).astype(np.int64)
    else:
        counts = rng.poisson(peak_rate * duration, n_players).astype(np.int64)
    spacings = rng.standard_exponential(int(counts.sum()) + n_players)
    times = _uniform_order_stats(counts, spacings, duration)
    player = np.repeat(np.arange(n_players, dtype=np.int32), counts)
    if pub.diurnal is not None and amp > 0:
        # Thinning keeps the order: accept with probability rate(t) / peak_rate.
        d = pub.diurnal
        rate = 1.0 + amp * np.cos(2 * np.pi * (times - d.peak_at_s) / d.period_s)
        keep = rng.random(times.size) * (1.0 + amp) < rate
        times, player = times[keep], player[keep]
    return times, player


def _burst(pub: BurstPublisher, n_players: int, duration: float, rng: np.random.Generator):
    if pub.aligned:
        phase = np.zeros(n_players)
    else:
        phase = rng.random(n_players) * pub.every_s
    n_bursts = np.maximum(np.ceil((duration - phase) / pub.every_s), 0).astype(np.int64)
    player_b = np.repeat(np.arange(n_players, dtype=np.int32), n_bursts)
    first = np.repeat(np.cumsum(n_bursts) - n_bursts, n_bursts)
    k = np.arange(player_b.size) - first
    starts = phase[player_b] + k * pub.every_s
    times = (starts[:, None] + np.arange(pub.size) * pub.spacing_s).ravel()
    player = np.repeat(player_b, pub.size)
    keep = times < duration
    return times[keep], player[keep]


def _event_types(scenario: Scenario) -> tuple[list[str], list[np.ndarray | None]]:
    """The run's event types, in order of first appearance, and each trace publisher's code table.

    A publisher's own type comes first, then the types its trace names in the trace's order. A
    code table maps a trace's type codes to the run's (its last entry, for -1, is the
    publisher's own type). Worked out once for the whole run, so every block numbers alike.
    """
    event_types: list[str] = []
    tables: list[np.ndarray | None] = []
    for pub in scenario.publishers:
        if pub.event_type not in event_types:
            event_types.append(pub.event_type)
        if not isinstance(pub, TracePublisher):
            tables.append(None)
            continue
        rows = pub.rows
        codes = np.empty(len(rows.event_types) + 1, np.int16)
        for k, name in enumerate(rows.event_types):
            if name not in event_types:
                event_types.append(name)
            codes[k] = event_types.index(name)
        codes[-1] = event_types.index(pub.event_type)
        tables.append(codes)
    return event_types, tables


@dataclass(frozen=True)
class _TraceOrder:
    """A trace's rows before ``duration_s``, player-major and time-sorted, with each player's range."""

    published_at: np.ndarray
    player: np.ndarray
    type_code: np.ndarray | None  # the run's codes; None: the publisher's own type throughout
    payload_bytes: np.ndarray | None  # None: drawn from the publisher's distribution
    player_offsets: np.ndarray


def _trace_order(pub: TracePublisher, codes: np.ndarray, n_players: int, duration: float) -> _TraceOrder:
    """Sort a trace's rows once per run, so each block takes its players' rows by slicing."""
    rows = pub.rows
    if rows.player.size and int(rows.player.max()) >= n_players:
        # only a scenario changed after loading (model_copy) can get here: loading checks it
        raise ScenarioError(
            f"{rows.path}: the trace names player {int(rows.player.max())}, but the population has {n_players}"
        )
    keep = rows.published_at < duration
    t, player = rows.published_at[keep], rows.player[keep]
    order = np.lexsort((t, player))
    player = player[order]
    offsets = np.zeros(n_players + 1, np.int64)
    np.cumsum(np.bincount(player, minlength=n_players), out=offsets[1:])
    return _TraceOrder(
        published_at=t[order],
        player=player,
        type_code=codes[rows.event_type_code[keep][order]] if rows.event_types else None,
        payload_bytes=rows.payload_bytes[keep][order] if rows.payload_bytes.any() else None,
        player_offsets=offsets,
    )


def _trace(tr: _TraceOrder, a: int, b: int):
    """The trace rows of players ``a:b``, players numbered from ``a``."""
    lo, hi = tr.player_offsets[a], tr.player_offsets[b]
    types = None if tr.type_code is None else tr.type_code[lo:hi]
    sizes = None if tr.payload_bytes is None else tr.payload_bytes[lo:hi]
    return tr.published_at[lo:hi], tr.player[lo:hi] - a, types, sizes


@numba.njit(cache=True)
def _merge_by_player(n_players, starts, player_all, time_all, type_all, size_all):  # pragma: no cover
    """Stable k-way merge of k player-major, time-sorted streams into one (ties: earlier stream first)."""
    k = starts.size - 1
    total = starts[k]
    t_out = np.empty(total, np.float64)
    p_out = np.empty(total, np.int32)
    c_out = np.empty(total, np.int16)
    s_out = np.empty(total, np.int32)
    heads = starts[:-1].copy()
    out = 0
    for p in range(n_players):
        while True:
            best = -1
            best_t = np.inf
            for j in range(k):
                h = heads[j]
                if h < starts[j + 1] and player_all[h] == p:
                    if best < 0 or time_all[h] < best_t:
                        best = j
                        best_t = time_all[h]
            if best < 0:
                break
            h = heads[best]
            t_out[out] = time_all[h]
            p_out[out] = p
            c_out[out] = type_all[h]
            s_out[out] = size_all[h]
            heads[best] += 1
            out += 1
    return t_out, p_out, c_out, s_out


def _publishes(scenario: Scenario, seed: int, chunk: int, a: int, b: int, event_types: list[str], traces: list):
    """The events of players ``a:b`` (chunk ``chunk``), player-major and time-sorted, players numbered from ``a``."""
    n_players = b - a
    duration = scenario.duration_s
    parts_t, parts_p, parts_c, parts_s = [], [], [], []
    for i, pub in enumerate(scenario.publishers):
        rng = chunk_rng(seed, f"publisher[{i}]", chunk)
        size_rng = chunk_rng(seed, f"payload[{i}]", chunk)
        code = event_types.index(pub.event_type)
        types = sizes = None
        if isinstance(pub, PoissonPublisher):
            t, p = _poisson(pub, n_players, duration, rng, chunk_rng(seed, f"activity[{i}]", chunk))
        elif isinstance(pub, BurstPublisher):
            t, p = _burst(pub, n_players, duration, rng)
        else:
            t, p, types, sizes = _trace(traces[i], a, b)
        if types is None:
            types = np.full(t.size, code, np.int16)
        if isinstance(pub.payload_bytes, Constant):
            drawn = np.full(t.size, max(round(pub.payload_bytes.value), 1), np.int32)
        else:
            drawn = np.maximum(np.rint(pub.payload_bytes.sample(size_rng, t.size)), 1).astype(np.int32)
        if sizes is not None:
            drawn = np.where(sizes > 0, sizes, drawn).astype(np.int32)
        parts_t.append(t)
        parts_p.append(p.astype(np.int32))
        parts_c.append(types)
        parts_s.append(drawn)
    if len(parts_t) == 1:
        return parts_t[0], parts_p[0], parts_c[0], parts_s[0]
    starts = np.concatenate([[0], np.cumsum([x.size for x in parts_t])]).astype(np.int64)
    return _merge_by_player(
        n_players,
        starts,
        np.concatenate(parts_p),
        np.concatenate(parts_t),
        np.concatenate(parts_c),
        np.concatenate(parts_s),
    )


# ----------------------------------------------------------------------------------------------
# Sessions


@numba.njit(cache=True)
def _sessions_from_downtime(n_clients, duration, d_client, d_start, d_end):  # pragma: no cover
    """Per client, the complement in [0, inf) of the union of its downtime intervals.

    Downtime must be sorted by (client, start). Returns CSR offsets and connect/disconnect times;
    the first session of each client starts at 0 (connected before the run starts).
    """
    n = d_client.size
    cap = n_clients + n
    off = np.zeros(n_clients + 1, np.int64)
    con = np.empty(cap, np.float64)
    dis = np.empty(cap, np.float64)
    first = np.zeros(cap, np.bool_)
    out = 0
    i = 0
    for c in range(n_clients):
        off[c] = out
        cur = 0.0
        con[out] = 0.0
        first[out] = True
        while i < n and d_client[i] == c:
            s = d_start[i]
            e = d_end[i]
            i += 1
            if e <= cur:
                continue
            if s <= cur:
                # overlapping outage: extend the current one (the session starting at cur is moved)
                cur = e
                con[out] = cur
                first[out] = False
                continue
            dis[out] = s
            out += 1
            con[out] = e
            first[out] = False
            cur = e
        dis[out] = np.inf
        out += 1
    off[n_clients] = out
    return off, con[:out], dis[:out], first[:out]


def _downtime(scenario: Scenario, seed: int, chunk: int, ca: int, client_node: np.ndarray, client_retry_s: np.ndarray):
    """Outage intervals of the clients ``ca:ca + client_node.size`` (chunk ``chunk``), clients numbered from ``ca``."""
    n_clients = client_node.size
    duration = scenario.duration_s
    dc = scenario.disconnects
    cs, ss, es = [], [], []
    rng_w = chunk_rng(seed, "windows", chunk)
    for w in dc.windows:
        if w.fraction is not None:
            chosen = np.flatnonzero(rng_w.random(n_clients) < w.fraction)
        elif w.clients == "all":
            chosen = np.arange(n_clients)
        else:
            listed = np.unique(np.asarray(w.clients, dtype=np.int64)) - ca
            chosen = listed[(listed >= 0) & (listed < n_clients)]
        cs.append(chosen)
        ss.append(np.full(chosen.size, w.start_s))
        es.append(np.full(chosen.size, w.end_s))
    if dc.flaps is not None:
        rng_f = chunk_rng(seed, "flaps", chunk)
        counts = rng_f.poisson(dc.flaps.rate_per_client_per_s * duration, n_clients)
        clients = np.repeat(np.arange(n_clients), counts)
        starts = rng_f.random(clients.size) * duration
        offline = dc.flaps.offline.sample(rng_f, clients.size)
        cs.append(clients)
        ss.append(starts)
        es.append(starts + offline)
    rng_m = chunk_rng(seed, "mass_drops", chunk)
    for drop in dc.mass_drops:
        chosen = np.arange(n_clients) if drop.node == "all" else np.flatnonzero(client_node == drop.node)
        retry = client_retry_s[chosen] if drop.retry_delay_s is None else drop.retry_delay_s
        delay = retry + rng_m.random(chosen.size) * drop.jitter_s
        cs.append(chosen)
        ss.append(np.full(chosen.size, drop.at_s))
        es.append(drop.at_s + delay)
    if not cs:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    c = np.concatenate(cs).astype(np.int64)
    s = np.concatenate(ss).astype(np.float64)
    e = np.concatenate(es).astype(np.float64)
    order = np.lexsort((s, c))
    return c[order], s[order], e[order]


BROWSERS: tuple[str, ...] = tuple(BROWSER_RETRY_S)


def _browsers(scenario: Scenario, seed: int, chunk: int, n_players: int) -> tuple[np.ndarray, np.ndarray]:
    """Each client's browser (a player's tabs share one) and the delay it reconnects after, for one chunk.

    The gateway's ``retry:`` field (``delivery.retry_ms``) sets every browser's delay; without
    it each browser keeps its own default, and without a browser mix every client waits 3 s.
    """
    cpp = scenario.population.clients_per_player
    n_clients = n_players * cpp
    mix = scenario.clients.browsers
    if mix is None:
        browser = np.full(n_clients, -1, np.int8)
        default = np.full(n_clients, DEFAULT_RETRY_S)
    else:
        shares = np.array([mix.get(b, 0.0) for b in BROWSERS])
        per_player = chunk_rng(seed, "browsers", chunk).choice(len(BROWSERS), n_players, p=shares / shares.sum())
        browser = np.repeat(per_player, cpp).astype(np.int8)
        default = np.array([BROWSER_RETRY_S[b] for b in BROWSERS])[browser]
    retry_ms = scenario.delivery.retry_ms
    retry = np.full(n_clients, retry_ms / 1000.0) if retry_ms is not None else default
    return browser, retry.astype(np.float64)


def slow_client_retry_s(scenario: Scenario, w: Workload) -> np.ndarray:
    """Per client, the delay it reconnects after once the gateway closed it for being slow."""
    given = scenario.disconnects.retry_delay_s
    return np.full(w.n_clients, float(given)) if given is not None else w.client_retry_s


@dataclass(frozen=True)
class _Chunk:
    """What one chunk of players contributes to a workload, numbered from its first player and client."""

    published_at: np.ndarray
    player: np.ndarray
    type_code: np.ndarray
    payload_bytes: np.ndarray
    hop: np.ndarray
    session_offsets: np.ndarray
    connect_at: np.ndarray
    subscribed_at: np.ndarray
    disconnect_at: np.ndarray
    browser: np.ndarray
    retry_s: np.ndarray


@dataclass(frozen=True)
class RunTables:
    """What every chunk of a run shares: the event types and each trace publisher's sorted rows."""

    event_types: list[str]
    traces: list


def run_tables(scenario: Scenario) -> RunTables:
    """Work out once per run what each chunk's generation reads: event type codes, sorted traces."""
    event_types, tables = _event_types(scenario)
    traces = [
        None if codes is None else _trace_order(pub, codes, scenario.population.n_players, scenario.duration_s)
        for pub, codes in zip(scenario.publishers, tables, strict=True)
    ]
    return RunTables(event_types, traces)


def chunk_events(scenario: Scenario, seed: int, chunk: int, tables: RunTables):
    """One chunk's events only: publish times, players (from the chunk's first), types, sizes, hop latencies."""
    pop = scenario.population
    a = chunk * PLAYER_CHUNK
    b = min(a + PLAYER_CHUNK, pop.n_players)
    times, player, types, sizes = _publishes(scenario, seed, chunk, a, b, tables.event_types, tables.traces)
    hop = scenario.redis.hop_latency.sample(chunk_rng(seed, "hop", chunk), times.size, np.float32)
    return times, player, types, sizes, hop


def _chunk(scenario: Scenario, seed: int, chunk: int, tables: RunTables) -> _Chunk:
    """Generate one chunk of players: its events, their hop latencies and its clients' sessions."""
    pop = scenario.population
    a = chunk * PLAYER_CHUNK
    b = min(a + PLAYER_CHUNK, pop.n_players)
    cpp = pop.clients_per_player
    ca, cb = a * cpp, b * cpp
    times, player, types, sizes, hop = chunk_events(scenario, seed, chunk, tables)
    client_node = (np.arange(ca, cb) % scenario.gateway.nodes).astype(np.int16)
    browser, retry_s = _browsers(scenario, seed, chunk, b - a)
    dc, ds, de = _downtime(scenario, seed, chunk, ca, client_node, retry_s)
    off, con, dis, first = _sessions_from_downtime(cb - ca, scenario.duration_s, dc, ds, de)
    sub_lat = scenario.redis.subscribe_latency.sample(chunk_rng(seed, "subscribe", chunk), con.size)
    return _Chunk(
        published_at=times,
        player=player,
        type_code=types,
        payload_bytes=sizes,
        hop=hop,
        session_offsets=off,
        connect_at=con,
        subscribed_at=np.where(first, con, con + sub_lat),
        disconnect_at=dis,
        browser=browser,
        retry_s=retry_s,
    )


def n_chunks(scenario: Scenario) -> int:
    """How many chunks of :data:`PLAYER_CHUNK` players a scenario's population makes."""
    return -(-scenario.population.n_players // PLAYER_CHUNK)


def build_workload(scenario: Scenario | str | Path | dict, seed: int = 0, *, chunks: tuple[int, int] | None = None) -> Workload:
    """Turn a scenario into the arrays of one run; the same seed always gives the same arrays.

    ``chunks=(lo, hi)`` builds only the players of chunks ``lo:hi`` (``PLAYER_CHUNK`` players
    each), a block of the run: its players, clients, events and sessions are numbered from 0,
    and ``player_base`` says where it starts. Every random draw is keyed by its chunk, so the
    blocks of a run, put end to end, are the arrays of the whole run.
    """
    scenario = as_scenario(scenario)
    seed = int(seed)
    pop = scenario.population
    total = n_chunks(scenario)
    lo, hi = (0, total) if chunks is None else (int(chunks[0]), int(chunks[1]))
    if not 0 <= lo < hi <= total:
        raise ValueError(f"chunks {lo}:{hi} outside the run's {total} chunks")
    tables = run_tables(scenario)
    parts = [_chunk(scenario, seed, k, tables) for k in range(lo, hi)]
    a = lo * PLAYER_CHUNK
    b = min(hi * PLAYER_CHUNK, pop.n_players)
    n_players = b - a
    cpp = pop.clients_per_player
    if len(parts) == 1:
        one = parts[0]
        player, session_offsets = one.player, one.session_offsets
    else:
        # players and clients numbered from the block's first one, not each chunk's
        player = np.concatenate([c.player + k * PLAYER_CHUNK for k, c in enumerate(parts)]).astype(np.int32)
        sess_base = np.cumsum([0] + [c.connect_at.size for c in parts[:-1]])
        session_offsets = np.concatenate(
            [c.session_offsets[:-1] + base for c, base in zip(parts, sess_base, strict=True)] + [[int(sum(c.connect_at.size for c in parts))]]
        ).astype(np.int64)

    def cat(name: str, dtype) -> np.ndarray:
        arrays = [getattr(c, name) for c in parts]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)

    player_offsets = np.zeros(n_players + 1, np.int64)
    np.cumsum(np.bincount(player, minlength=n_players), out=player_offsets[1:])
    brand_ids = np.asarray(pop.brand_ids, dtype=np.int64)
    player_ids = (np.arange(a, b, dtype=np.int64) % pop.players_per_brand) + pop.first_player_id
    return Workload(
        seed=seed,
        duration_s=float(scenario.duration_s),
        event_types=tuple(tables.event_types),
        published_at=cat("published_at", np.float64),
        player=player,
        event_type_code=cat("type_code", np.int16),
        payload_bytes=cat("payload_bytes", np.int32),
        hop_latency_s=cat("hop", np.float32),
        player_offsets=player_offsets,
        brand_ids=brand_ids,
        player_ids=player_ids,
        clients_per_player=cpp,
        client_node=(np.arange(a * cpp, b * cpp) % scenario.gateway.nodes).astype(np.int16),
        n_nodes=scenario.gateway.nodes,
        session_offsets=session_offsets,
        connect_at=cat("connect_at", np.float64),
        subscribed_at=cat("subscribed_at", np.float64),
        disconnect_at=cat("disconnect_at", np.float64),
        scenario_name=scenario.name,
        client_browser=cat("browser", np.int8),
        client_retry_s=cat("retry_s", np.float64),
        player_base=a,
        players_per_brand=pop.players_per_brand,
    )


#: Bytes an event costs on the wire beyond its JSON: the SSE framing ``data: `` and the blank line.
SSE_FRAME_BYTES = 8


def sample_row_times(scenario: Scenario, w: Workload, row_off: np.ndarray, event_id: np.ndarray, client_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drain time and network latency of every (event, client) row of a workload, from their own streams.

    Rows are laid out by :func:`~sse_sim.records.row_layout` (``row_off`` per client). The
    drain is ``clients.drain_time`` (a per-event cost) plus, when
    ``clients.bandwidth_bytes_per_s`` is set, the event's framed bytes over its client's
    bandwidth (one draw per client). Drawn per chunk of players, so a block of a run draws
    what the whole run draws for its rows; as float32: at ten million rows generating them is
    a third of the run, and seven significant digits of a latency are plenty.
    """
    cl = scenario.clients
    n_rows = int(event_id.size)
    bandwidth = cl.bandwidth_bytes_per_s
    cpp = w.clients_per_player
    first_chunk = w.player_base // PLAYER_CHUNK
    n_chunks = -(-w.n_players // PLAYER_CHUNK)
    # one chunk (up to PLAYER_CHUNK players): its draws are the arrays, not copied
    drain = net = np.empty(0, np.float32)
    if n_chunks > 1:
        drain = np.empty(n_rows, np.float32)
        net = np.empty(n_rows, np.float32)
    for j in range(n_chunks):
        ca = j * PLAYER_CHUNK * cpp
        cb = min((j + 1) * PLAYER_CHUNK, w.n_players) * cpp
        r0, r1 = int(row_off[ca]), int(row_off[cb])
        k = first_chunk + j
        # Float32Draws: NumPy's own numbers, from a compiled ziggurat (see sse_sim.ziggurat)
        d = cl.drain_time.sample(Float32Draws(chunk_rng(w.seed, "drain", k)), r1 - r0, np.float32)
        if bandwidth is not None:
            per_client = bandwidth.sample(chunk_rng(w.seed, "bandwidth", k), cb - ca, np.float64)
            framed = w.payload_bytes[event_id[r0:r1]].astype(np.float64) + SSE_FRAME_BYTES
            d = (d + framed / per_client[client_id[r0:r1] - ca]).astype(np.float32)
        n = cl.network_latency.sample(Float32Draws(chunk_rng(w.seed, "network", k)), r1 - r0, np.float32)
        if n_chunks == 1:
            drain, net = d, n
        else:
            drain[r0:r1] = d
            net[r0:r1] = n
    return drain, net


__all__ = [
    "Workload",
    "build_workload",
    "sample_row_times",
    "SSE_FRAME_BYTES",
    "message_id",
    "event_id_of_message_id",
    "stream_rng",
    "stream_key",
    "chunk_rng",
    "n_chunks",
    "PLAYER_CHUNK",
    "STREAMS",
]
