"""The real-mode runner: replay a scenario's workload through the real gateway, Redis and SSE clients.

``run_real(scenario, seed, backend=...)`` builds the same :class:`~sse_sim.workload.Workload` the
simulator uses and plays it in real time:

* **publishers** publish each event at ``t0 + published_at * time_scale`` (events due at the
  same instant go out in one pipeline); with ``backend="redis"`` they run in their own process,
  with ``fakeredis`` in a thread of the gateway's process (a ``FakeServer`` lives in one
  process);
* **the gateway**: one real gateway (uvicorn, one shared subscription) per scenario gateway
  node, in this process, recording every event's fate per connection;
* **clients** (:mod:`sse_sim.real.clients`) in their own process: raw-socket SSE readers that
  follow the workload's sessions and pace their reads to the scenario's drain times.

The result is a :class:`~sse_sim.results.SimulationResult` whose records come from
:func:`~sse_sim.records.records_frame`, the same assembly the simulator uses, so both backends
share one schema. Instants are replay time (seconds since t0, divided by ``time_scale``);
``published_at`` is the instant each event was actually published, so ``latency_s`` is what a
client saw.

Delivery designs: each event is published the way a gateway under the scenario's ``delivery``
section expects it (``PUBLISH``; ``XADD`` + ``XTRIM`` + ``PUBLISH`` of the entry id and envelope;
``SET`` of the latest-value key + ``PUBLISH``), the gateways get the same section, and the
clients resume with ``Last-Event-ID``. Over HTTP/1.1 a tab past the sixth never opens a stream,
and under ``tab_sharing: leader`` only the first tab does, as in a browser.

The outcome of each (event, client) row comes from the gateway's event log and the clients'
receipts and connections: see :mod:`sse_sim.real.classify` (anything it cannot explain is counted
in ``metadata["unexplained_n"]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SseSimError
from ..events.publisher import encode_stream_message, latest_key
from ..records import records_frame, row_layout
from ..results import SimulationResult
from ..scenario import BurstPublisher, Scenario, TracePublisher, as_scenario, scenario_from_dict
from ..workload import Workload, build_workload, sample_row_times, slow_client_retry_s
from .classify import (
    LATEST,
    PUBSUB,
    STREAM,
    active_clients,
    classify,
    delivery_modes,
    jitter,
    log_event_ids,
    socket_held,
)
from .clients import ClientPlan, client_process_main
from .payloads import build_payload

__all__ = ["run_real", "prepare_scenario", "BACKENDS"]

BACKENDS = ("fakeredis", "redis")


# ----------------------------------------------------------------------------------------------
# Slicing and scaling


def prepare_scenario(
    scenario: Scenario | str | Path | dict,
    *,
    duration_s: float | None = None,
    max_players: int | None = None,
    start_s: float = 0.0,
) -> tuple[Scenario, dict[str, Any]]:
    """A short slice and a smaller population of a scenario, and a note of what was changed.

    ``start_s`` moves time 0 to that instant: scripted windows and mass drops shift with it
    (those over before it are dropped) and so does a diurnal peak. The population keeps the
    first ``max_players`` players (whole brands first: ``players_per_brand`` shrinks, then
    brands are dropped). The simulator and the real run both take the returned scenario.
    """
    sc = as_scenario(scenario)
    changes: dict[str, Any] = {}
    data = sc.to_dict()
    if start_s < 0:
        raise SseSimError(f"start_s must be >= 0, got {start_s}")
    if start_s > 0:
        if start_s >= sc.duration_s:
            raise SseSimError(f"start_s ({start_s:g}) must be before the end ({sc.duration_s:g} s)")
        for pub in sc.publishers:
            if isinstance(pub, TracePublisher):
                raise SseSimError("start_s cannot shift a trace publisher; slice the trace file instead")
            if isinstance(pub, BurstPublisher) and pub.aligned:
                raise SseSimError("start_s cannot shift aligned bursts (they are anchored at time 0)")
        data["duration_s"] = sc.duration_s - start_s
        windows = []
        for w in data["disconnects"]["windows"]:
            if w["end_s"] > start_s:
                w["start_s"] = max(w["start_s"] - start_s, 0.0)
                w["end_s"] = w["end_s"] - start_s
                windows.append(w)
        data["disconnects"]["windows"] = windows
        drops = []
        for d in data["disconnects"]["mass_drops"]:
            if d["at_s"] >= start_s:
                d["at_s"] = d["at_s"] - start_s
                drops.append(d)
        data["disconnects"]["mass_drops"] = drops
        for pub in data["publishers"]:
            if pub.get("diurnal"):
                pub["diurnal"]["peak_at_s"] = pub["diurnal"]["peak_at_s"] - start_s
        changes["start_s"] = float(start_s)
    if duration_s is not None:
        if not duration_s > 0:
            raise SseSimError(f"duration_s must be positive, got {duration_s}")
        if duration_s < data["duration_s"]:
            data["duration_s"] = float(duration_s)
            changes["duration_s"] = float(duration_s)
    pop = data["population"]
    n_players = len(pop["brand_ids"]) * pop["players_per_brand"]
    if max_players is not None:
        if max_players < 1:
            raise SseSimError(f"max_players must be at least 1, got {max_players}")
        if max_players < n_players:
            n_brands = len(pop["brand_ids"])
            if max_players >= n_brands:
                pop["players_per_brand"] = max_players // n_brands
            else:
                pop["brand_ids"] = pop["brand_ids"][:max_players]
                pop["players_per_brand"] = 1
            n_clients = len(pop["brand_ids"]) * pop["players_per_brand"] * pop["clients_per_player"]
            windows = []
            for w in data["disconnects"]["windows"]:
                if w["clients"] != "all":
                    w["clients"] = [c for c in w["clients"] if c < n_clients]
                    if not w["clients"]:
                        continue
                windows.append(w)
            data["disconnects"]["windows"] = windows
            changes["players"] = {"from": n_players, "to": len(pop["brand_ids"]) * pop["players_per_brand"]}
    if not changes:
        return sc, {}
    sliced = scenario_from_dict(data, source=sc.source, base_dir=sc.base_dir)
    return sliced, {"sliced_from": sc.name, "slice": changes}


# ----------------------------------------------------------------------------------------------
# Publishing


def _publish_batches(published_at: np.ndarray) -> list[np.ndarray]:
    """Event ids grouped by identical publish instant, in time order (one pipeline per group)."""
    order = np.argsort(published_at, kind="stable")
    times = published_at[order]
    cuts = np.flatnonzero(np.diff(times) > 0) + 1
    return np.split(order, cuts)


@dataclasses.dataclass(frozen=True)
class DeliveryPlan:
    """How each event is published under the scenario's ``delivery`` section (None of it: plain PUBLISH)."""

    modes: np.ndarray  # per event: PUBSUB, STREAM or LATEST
    latest_keys: Sequence[str | None]  # per event under LATEST: its latest-value key
    history_size: int
    history_ttl_ms: int | None  # wall milliseconds (scaled with the replay)


def _send_batch(client: Any, batch: np.ndarray, messages: list[tuple[str, str]], dp: DeliveryPlan | None) -> None:
    """Send one batch of events, in order: the commands :func:`~sse_sim.events.publisher.publish_delivery` sends, pipelined."""
    if dp is None:
        if batch.size == 1:
            channel, text = messages[batch[0]]
            client.publish(channel, text)
            return
        pipe = client.pipeline(transaction=False)
        for e in batch:
            channel, text = messages[e]
            pipe.publish(channel, text)
        pipe.execute()
        return
    modes = dp.modes[batch]
    entry_ids: dict[int, str] = {}
    if (modes == STREAM).any():
        # the PUBLISH carries the entry id XADD returns: one round trip for the XADDs first
        pipe = client.pipeline(transaction=False)
        kept = [int(e) for e in batch[modes == STREAM]]
        for e in kept:
            channel, text = messages[e]
            pipe.xadd(channel, {"envelope": text}, maxlen=dp.history_size, approximate=True)
        for e, raw_id in zip(kept, pipe.execute(), strict=True):
            entry_ids[e] = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
    pipe = client.pipeline(transaction=False)
    for e, mode in zip(batch, modes, strict=True):
        channel, text = messages[e]
        if mode == STREAM:
            entry_id = entry_ids[int(e)]
            if dp.history_ttl_ms is not None:
                oldest_ms = int(entry_id.split("-")[0]) - dp.history_ttl_ms
                pipe.xtrim(channel, minid=f"{max(oldest_ms, 0)}-0", approximate=True)
            pipe.publish(channel, encode_stream_message(entry_id, text))
        elif mode == LATEST:
            pipe.set(dp.latest_keys[e], text)
            pipe.publish(channel, text)
        else:
            pipe.publish(channel, text)
    pipe.execute()


def publish_schedule(client: Any, batches: list[np.ndarray], messages: list[tuple[str, str]], t0: float, time_scale: float, planned: np.ndarray, delivery: DeliveryPlan | None = None) -> np.ndarray:
    """Publish every batch at its instant; the wall time each event was actually handed to Redis."""
    actual = np.full(len(messages), np.nan)
    for batch in batches:
        due = t0 + float(planned[batch[0]]) * time_scale
        delay = due - time.time()
        if delay > 0.002:
            time.sleep(delay - 0.001)
        while time.time() < due:  # the last millisecond spins: sleep overshoots by ~0.1 ms
            pass
        now = time.time()
        _send_batch(client, batch, messages, delivery)
        actual[batch] = now
    return actual


def delivery_plan(sc: Scenario, w: Workload, messages: list[tuple[str, str]], time_scale: float) -> DeliveryPlan | None:
    """The publishing side of the scenario's ``delivery`` section; None when every type is plain pub/sub."""
    d = sc.delivery
    modes = delivery_modes(sc, w)
    if not (modes != PUBSUB).any():
        return None
    keys = [latest_key(messages[e][0], w.event_types[w.event_type_code[e]]) if modes[e] == LATEST else None for e in range(w.n_events)]
    ttl = None if d.history_ttl_s is None else int(round(d.history_ttl_s * time_scale * 1000))
    return DeliveryPlan(modes, keys, int(d.history_size), ttl)


def _delivery_keys(messages: list[tuple[str, str]], dp: DeliveryPlan | None) -> list[str]:
    """The Redis keys a run's delivery writes (streams and latest values): cleared before and after a run."""
    if dp is None:
        return []
    keys = {messages[e][0] for e in np.flatnonzero(dp.modes == STREAM)}
    keys.update(k for k in dp.latest_keys if k is not None)
    return sorted(keys)


def publisher_process_main(redis_url: str, messages: list[tuple[str, str]], planned: np.ndarray, time_scale: float, delivery: DeliveryPlan | None, control: Any) -> None:
    """Entry point of the publisher process (real Redis): wait for t0, publish, send the times back."""
    import redis

    try:
        client = redis.Redis.from_url(redis_url)
        client.ping()
        batches = _publish_batches(planned)
        control.send(("ready",))
        t0 = control.recv()
        if t0 is None:
            return
        actual = publish_schedule(client, batches, messages, float(t0), time_scale, planned, delivery)
        control.send(("done", actual))
        client.close()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            control.send(("failed", repr(exc)))
        raise
    finally:
        control.close()


# ----------------------------------------------------------------------------------------------
# The run


def _spawn(target: Any, args: tuple[Any, ...]) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    child.close()
    return proc, parent


def _recv(conn: Any, timeout_s: float, what: str) -> Any:
    if not conn.poll(timeout_s):
        raise SseSimError(f"real run: no answer from the {what} within {timeout_s:g} s")
    try:
        message = conn.recv()
    except EOFError:
        raise SseSimError(f"real run: the {what} process ended without an answer") from None
    if message[0] == "failed":
        raise SseSimError(f"real run: the {what} failed: {message[1]}")
    return message


def _stop_process(proc: Any) -> None:
    proc.join(5)
    if proc.is_alive():
        proc.terminate()  # by its own handle (its pid), never by name
        proc.join(5)


class _ConnectionRegistry:
    """Which gateway connection id is which client socket: the gateway knows ids, clients know ports."""

    def __init__(self) -> None:
        self.by_node: list[dict[int, tuple[int, float]]] = []

    def new_node(self) -> Any:
        """A table for the next gateway node, and the ``on_connection`` hook that fills it."""
        table: dict[int, tuple[int, float]] = {}
        self.by_node.append(table)

        def record(info: Any) -> None:  # a gateway ConnectionInfo
            if info.peer is not None:
                table[info.connection_id] = (int(info.peer[1]), info.opened_at)

        return record


def run_real(
    scenario: Scenario | str | Path | dict,
    seed: int = 0,
    *,
    backend: str = "fakeredis",
    redis_url: str | None = None,
    time_scale: float = 1.0,
    duration_s: float | None = None,
    max_players: int | None = None,
    start_s: float = 0.0,
    send_buffer_bytes: int | None = 1,
    recv_buffer_bytes: int | None = 8192,
    quiet_s: float = 0.4,
    max_tail_s: float = 60.0,
    max_events: int = 200_000,
) -> SimulationResult:
    """Replay a scenario through the real gateway, Redis (or fakeredis) and SSE clients.

    ``duration_s`` / ``start_s`` take a slice of the scenario and ``max_players`` a smaller
    population (see :func:`prepare_scenario`); ``time_scale`` stretches the replay (2.0: every
    scenario second takes two wall seconds; records are in scenario seconds again).
    ``send_buffer_bytes`` (gateway ``SO_SNDBUF`` and transport high-water mark) and
    ``recv_buffer_bytes`` (client ``SO_RCVBUF``) bound kernel buffering; 1 asks for the kernel's
    minimum, None keeps the defaults (megabytes on loopback). ``backend="redis"`` uses
    ``redis_url`` or starts a throwaway redis-server. Returns a result with ``backend`` set and
    the slice, buffers, timing and any unexplained rows in ``metadata``.
    """
    if backend not in BACKENDS:
        raise SseSimError(f"unknown backend {backend!r} (allowed: {', '.join(BACKENDS)})")
    if not time_scale > 0:
        raise SseSimError(f"time_scale must be positive, got {time_scale}")
    sc, slice_meta = prepare_scenario(scenario, duration_s=duration_s, max_players=max_players, start_s=start_s)
    w = build_workload(sc, seed)
    if w.n_events > max_events:
        raise SseSimError(
            f"the replay would publish {w.n_events} events (more than max_events={max_events}); "
            "use duration_s or max_players to take a smaller slice"
        )
    row_off, event_id, client_id = row_layout(w.player_offsets, w.clients_per_player)
    drain, net = sample_row_times(sc, w, row_off, event_id, client_id)
    brand_of_player = w.player_brand_ids()
    messages = [
        build_payload(
            int(brand_of_player[w.player[e]]),
            int(w.player_ids[w.player[e]]),
            w.event_types[w.event_type_code[e]],
            e,
            w.seed,
            int(w.payload_bytes[e]),
        )
        for e in range(w.n_events)
    ]
    dp = delivery_plan(sc, w, messages, time_scale)
    with _Backend(backend, redis_url, sc, _delivery_keys(messages, dp)) as be:
        run = _Replay(sc, w, be, messages, row_off, drain, net, time_scale, send_buffer_bytes, recv_buffer_bytes, quiet_s, max_tail_s, dp)
        raw = run.execute()
    ids = log_event_ids(raw)
    out, published_at, unexplained = classify(sc, w, raw, row_off, event_id, client_id, time_scale, ids)
    w_real = dataclasses.replace(w, published_at=published_at)
    records = records_frame(w_real, out)
    lateness, slip_by_row = jitter(w, raw, out, published_at, row_off, drain.astype(np.float64), time_scale)
    metadata = {
        **slice_meta,
        "time_scale": float(time_scale),
        "send_buffer_bytes": send_buffer_bytes,
        "recv_buffer_bytes": recv_buffer_bytes,
        "unexplained_n": int(unexplained),
        "publish_lag_max_s": float(np.nanmax(published_at - w.published_at)) if w.n_events else 0.0,
        "connections_n": int(raw["connections"].shape[0]),
        "recoveries_n": int((raw["connections"][:, 8] >= 0).sum()),
        "subscriber_log": raw["subscriber_log"],
        "gateway_metrics": raw["metrics"],
        "client_errors": raw["errors"][:20],
        "jitter": lateness,
        "drain_slip_by_row": slip_by_row,
        "socket_held": socket_held(w, raw, time_scale, ids),
        "workload_published_at": w.published_at,
    }
    return SimulationResult(records, sc, int(seed), backend, w_real, metadata)


class _Backend:
    """The Redis side of a run: a FakeServer, the given Redis, or a throwaway redis-server."""

    def __init__(self, backend: str, redis_url: str | None, sc: Scenario, keys: Sequence[str] = ()) -> None:
        self.backend = backend
        self.redis_url = redis_url
        # a given Redis may hold a previous run's streams and latest values under the same
        # names: a stale cached value would be sent to this run's clients as if it were theirs
        self.keys = list(keys)
        self.fake_server: Any = None
        self.server: Any = None
        self.restore: list[str] | None = None
        ob = sc.redis.output_buffer
        self.limit = None
        if ob is not None:
            self.limit = f"pubsub {ob.hard_limit_bytes} {ob.soft_limit_bytes} {int(math.ceil(ob.soft_seconds))}"

    def __enter__(self) -> _Backend:
        if self.backend == "fakeredis":
            if self.redis_url is not None:
                raise SseSimError("redis_url needs backend='redis'")
            import fakeredis

            self.fake_server = fakeredis.FakeServer()
            return self
        if self.redis_url is None:
            from .redis_server import RedisServer

            config = {"client-output-buffer-limit": self.limit} if self.limit else None
            self.server = RedisServer(config=config)
            self.redis_url = self.server.url
        else:
            import redis

            with redis.Redis.from_url(self.redis_url) as r:
                if self.limit is not None:
                    self.restore = [str(v) for v in r.config_get("client-output-buffer-limit").values()]
                    r.config_set("client-output-buffer-limit", self.limit)
                _delete(r, self.keys)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is None and self.redis_url is not None and (self.restore or self.keys):
            import redis

            with contextlib.suppress(Exception), redis.Redis.from_url(self.redis_url) as r:
                if self.restore:
                    r.config_set("client-output-buffer-limit", self.restore[0])
                _delete(r, self.keys)
        if self.server is not None:
            self.server.stop()


def _delete(client: Any, keys: Sequence[str], chunk: int = 1000) -> None:
    """Delete ``keys`` in batches (one ``DEL`` with a million arguments would stall Redis)."""
    for start in range(0, len(keys), chunk):
        client.delete(*keys[start : start + chunk])


class _Replay:
    """One replay: gateways up, clients connected, publishing, then everything collected."""

    def __init__(self, sc: Scenario, w: Workload, be: _Backend, messages: list[tuple[str, str]], row_off: np.ndarray, drain: np.ndarray, net: np.ndarray, time_scale: float, send_buffer_bytes: int | None, recv_buffer_bytes: int | None, quiet_s: float, max_tail_s: float, delivery: DeliveryPlan | None = None) -> None:
        self.sc, self.w, self.be, self.messages = sc, w, be, messages
        self.delivery = delivery
        self.row_off, self.drain, self.net = row_off, drain, net
        self.time_scale = time_scale
        self.send_buffer_bytes = send_buffer_bytes
        self.recv_buffer_bytes = recv_buffer_bytes
        self.quiet_s, self.max_tail_s = quiet_s, max_tail_s

    def _start_gateways(self, secret: bytes, registry: _ConnectionRegistry) -> list[Any]:
        from .gateway import start_gateway

        g = self.sc.gateway
        gateways = []
        try:
            for _node in range(self.w.n_nodes):
                gt = start_gateway(
                    backend=self.be.backend,
                    redis_url=self.be.redis_url if self.be.backend == "redis" else None,
                    fake_server=self.be.fake_server,
                    secret=secret,
                    buffer_size=g.buffer_size,
                    overflow_policy=g.overflow_policy,
                    keepalive_interval_s=g.keepalive_interval_s * self.time_scale,
                    reader_yield_every=g.reader_yield_every,
                    record_events=True,
                    send_buffer_bytes=self.send_buffer_bytes,
                    timeout_graceful_shutdown=1.0,
                    on_connection=registry.new_node(),
                    reader_rate_per_s=self._reader_rate(),
                    **self._delivery_options(),
                )
                gateways.append(gt)
        except BaseException:
            for gt in gateways:
                gt.stop()
            raise
        return gateways

    def _reader_rate(self) -> float | None:
        """The subscriber's read rate under ``redis.output_buffer`` (slowed with the replay), so Redis holds the simulator's backlog."""
        ob = self.sc.redis.output_buffer
        if ob is None or self.be.backend != "redis":
            return None
        return float(ob.reader_rate_per_s) / self.time_scale

    def _delivery_options(self) -> dict[str, Any]:
        """The gateway's side of the scenario's ``delivery`` section, its durations scaled with the replay."""
        d = self.sc.delivery
        scale = self.time_scale
        options: dict[str, Any] = {}
        if d.retry_ms is not None:
            options["retry_ms"] = int(round(d.retry_ms * scale))
        if self.delivery is not None:
            options.update(
                delivery=d.mode,
                history_size=int(d.history_size),
                history_ttl_s=None if d.history_ttl_s is None else d.history_ttl_s * scale,
                max_replay=int(d.max_replay),
                delivery_types={t: d.mode_of(t) for t in self.w.event_types},
            )
        return options

    def _plan(self, gateways: list[Any], secret: bytes) -> ClientPlan:
        from .auth import mint_token

        w = self.w
        cpp = w.clients_per_player
        player = np.arange(w.n_clients) // cpp
        brands = w.player_brand_ids()[player]
        ttl = 3600 + self.sc.duration_s * self.time_scale + self.max_tail_s
        tokens = [mint_token(secret, int(brands[c]), int(w.player_ids[player[c]]), ttl) for c in range(w.n_clients)]
        return ClientPlan(
            host="127.0.0.1",
            node_ports=[gt.port for gt in gateways],
            brand_path=[int(b) for b in brands],
            tokens=tokens,
            client_node=w.client_node,
            session_offsets=w.session_offsets,
            connect_at=w.connect_at,
            disconnect_at=w.disconnect_at,
            row_off=self.row_off,
            player_first_event=w.player_offsets[player],
            player_n_events=np.diff(w.player_offsets)[player],
            drain_s=self.drain.astype(np.float64),
            net_s=self.net.astype(np.float64),
            time_scale=self.time_scale,
            rcvbuf_bytes=self.recv_buffer_bytes,
            retry_delay_s=slow_client_retry_s(self.sc, w),
            retry_jitter_s=self.sc.disconnects.retry_jitter_s,
            quiet_s=self.quiet_s,
            max_tail_s=self.max_tail_s,
            seed=w.seed,
            active=active_clients(self.sc, w),
        )

    def execute(self) -> dict[str, Any]:
        secret = secrets.token_bytes(32)
        registry = _ConnectionRegistry()
        gateways = self._start_gateways(secret, registry)
        procs: list[Any] = []
        pipes: list[Any] = []
        try:
            plan = self._plan(gateways, secret)
            client_proc, client_pipe = _spawn(client_process_main, (plan,))
            procs.append(client_proc)
            pipes.append(client_pipe)
            planned = self.w.published_at
            pub_pipe = None
            if self.be.backend == "redis":
                pub_proc, pub_pipe = _spawn(publisher_process_main, (self.be.redis_url, self.messages, planned, self.time_scale, self.delivery))
                procs.append(pub_proc)
                pipes.append(pub_pipe)
                _recv(pub_pipe, 60, "publisher")
            ready = _recv(client_pipe, 60 + 0.05 * self.w.n_clients, "client")
            if ready[2]:
                raise SseSimError("real run: clients could not connect: " + "; ".join(ready[2][:5]))
            # A short lead so every process is waiting on its clock, not still waking up.
            t0 = time.time() + 0.3
            client_pipe.send(t0)
            if pub_pipe is not None:
                pub_pipe.send(t0)
                actual = _recv(pub_pipe, self.sc.duration_s * self.time_scale + 120, "publisher")[1]
            else:
                actual = self._publish_in_thread(gateways[0], t0, planned)
            client_pipe.send(max(time.time(), t0 + self.sc.duration_s * self.time_scale))
            done = _recv(client_pipe, self.max_tail_s + 120, "client")
        except BaseException:
            for pipe in pipes:
                with contextlib.suppress(Exception):
                    pipe.send(None)
            raise
        finally:
            for proc in procs:
                _stop_process(proc)
            for pipe in pipes:
                pipe.close()
            # Stopping the gateways after the clients closed their streams: every fate is logged.
            logs, sublogs, metrics = [], [], []
            for gt in gateways:
                gt.stop()
                logs.append(gt.gateway.event_log())
                sublogs.append(gt.gateway.subscriber_log())
                metrics.append(gt.gateway.metrics())
        return {
            "t0": t0,
            "published_wall": actual,
            "receipts": done[1],
            "connections": done[2],
            "errors": done[3],
            "event_logs": logs,
            "peers": registry.by_node,
            "subscriber_log": [[(t - t0, what) for t, what in log] for log in sublogs],
            "metrics": metrics,
        }

    def _publish_in_thread(self, gt: Any, t0: float, planned: np.ndarray) -> np.ndarray:
        client = gt.publisher()
        batches = _publish_batches(planned)
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["actual"] = publish_schedule(client, batches, self.messages, t0, self.time_scale, planned, self.delivery)
            except BaseException as exc:  # re-raised below, in the caller's thread
                result["error"] = exc

        thread = threading.Thread(target=work, name="sse_sim-publisher", daemon=True)
        thread.start()
        thread.join(self.sc.duration_s * self.time_scale + 120)
        if "error" in result:
            raise SseSimError(f"real run: publishing failed: {result['error']!r}")
        if "actual" not in result:
            raise SseSimError("real run: the publisher did not finish")
        return result["actual"]
