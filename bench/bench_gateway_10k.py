"""Load benchmark of the real SSE gateway holding 10,000 open SSE connections over a throwaway Redis.

The 1,000-connection benchmark (``bench_gateway.py``) at ten times the connections: its load
generator, publishers and reference are reused from there, and the gateway has its settings
with the connection caps opened. In one run on loopback:

1. reference: the receive rate of a bare redis-py asyncio subscriber on the same 10,000
   channels with the same messages and the same closed-loop publisher;
2. memory: the gateway process's RSS before the connections open and once all of them got
   their ``connected`` frame, the difference divided by the number of connections (the load
   generators start one after another, so connections open at about 1,000/s, not in a storm);
3. gateway throughput: events/s delivered to the SSE clients, at most ``--window`` events in
   flight, for at most ``--events`` events and ``--time-limit`` seconds;
4. latency at a fixed rate (default: half the measured gateway rate) for ``--latency-seconds``:
   p50/p99 of receive time minus the publish time stamped in the payload;
5. drops: the gateway's own counters, and events it took from Redis that no client received.

Every process it starts (redis-server, gateway, load generators, reference) is stopped before
it exits; ``--deadline`` bounds the whole run.

    .venv/bin/python bench/bench_gateway_10k.py                  # 10,000 connections
    .venv/bin/python bench/bench_gateway_10k.py --clients 4 --events 100000
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_gateway as base  # noqa: E402

from sse_sim.real.redis_server import RedisServer, free_port  # noqa: E402

# Descriptors a process needs besides its connections: the Redis connections, the listening
# socket, pipes to the parent, imported modules' files.
FD_SLACK = 512


def _need_fds(need: int) -> None:
    """Raise RLIMIT_NOFILE to ``need`` (at most the hard limit); exit clearly if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"need {need} open files, the hard limit is {hard} (ulimit -Hn)")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# The load generator and the reference are bench_gateway's; each process first raises its own
# descriptor limit, since bench_gateway's own raise (to 8,192) is too small for 10,000.


def gateway_process(port: int, redis_url: str, connections: int) -> None:
    """bench_gateway's gateway (same settings), its connection caps opened for ``connections``.

    Every load generator connects from 127.0.0.1, so the per-address cap (1,024 by default) is
    lifted; the overall cap, by default three quarters of the descriptor limit, is set to
    ``connections`` plus room for the metrics requests.
    """
    from sse_sim.real.gateway import create_gateway, redis_factory, run_gateway

    _need_fds(connections + FD_SLACK)
    gateway = create_gateway(
        redis_client_factory=redis_factory(redis_url),
        secret=base.SECRET,
        reader_yield_every=1,
        subscription_mode="channel",
        keepalive_interval_s=15.0,
        max_connections=connections + 64,
        max_connections_per_ip=0,
    )
    run_gateway("127.0.0.1", port, gateway=gateway, timeout_graceful_shutdown=2.0)


def client_process(port: int, players: list[int], received, phase, ready, results) -> None:  # type: ignore[no-untyped-def]
    """bench_gateway's load generator: one SSE connection per player of ``players``."""
    _need_fds(len(players) + FD_SLACK)
    base.client_process(port, players, received, phase, ready, results)


def reference_process(redis_url: str, players: list[int], received, ready) -> None:  # type: ignore[no-untyped-def]
    """bench_gateway's bare redis-py asyncio subscriber on the players' channels."""
    _need_fds(FD_SLACK)
    base.reference_process(redis_url, players, received, ready)


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stop(proc: mp.process.BaseProcess, wait_s: float) -> None:
    """SIGTERM ``proc`` if it still runs, then SIGKILL after ``wait_s``; always reaped."""
    if proc.pid is None:
        return
    proc.join(0)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(wait_s)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)


def _refused(port: int) -> str | None:
    """The gateway's refusals of connections or streams so far, or None if there were none.

    A refused client just sees its stream end; without this the run would wait the whole
    opening timeout to say only that connections are missing.
    """
    metrics = base._try_metrics(port) or {}
    refused = {
        k: v
        for k, v in metrics.items()
        if (k.startswith("refused_") or k == "subscribe_failures") and isinstance(v, int) and v
    }
    return ", ".join(f"{k} {v}" for k, v in refused.items()) or None


def _all_or_refused(ready, n: int, port: int):  # type: ignore[no-untyped-def]
    """A predicate for ``_wait``: ``n`` streams connected, or the gateway refused some.

    The metrics are asked at most once a second: each ask is a connection of its own.
    """
    last = [0.0]

    def predicate() -> bool:
        if ready.value == n:
            return True
        if time.monotonic() - last[0] < 1.0:
            return False
        last[0] = time.monotonic()
        return _refused(port) is not None

    return predicate


class _Deadline(Exception):
    """The whole run took longer than ``--deadline``."""


class _Alarm:
    """The ``--deadline`` of the whole run: SIGALRM raises :class:`_Deadline`, except in cleanup.

    An alarm rather than only per-wait timeouts: it also ends a wait nobody thought of. Held
    off while processes are being stopped, so it never cuts a cleanup short; it is raised
    once the cleanup is done.
    """

    def __init__(self, seconds: float):
        self.holding = 0
        self.fired = False
        signal.signal(signal.SIGALRM, self._ring)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def _ring(self, signum: int, frame: object) -> None:
        if self.holding:
            self.fired = True
        else:
            raise _Deadline

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """No :class:`_Deadline` inside this block; a deadline passed in it is raised at its end."""
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if self.fired and not self.holding:
            raise _Deadline

    def cancel(self) -> None:
        """Disarm the alarm."""
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=2, help="load generator processes")
    ap.add_argument("--events", type=int, default=300_000, help="events per throughput phase")
    ap.add_argument("--window", type=int, default=20_000, help="most unreceived events in flight")
    ap.add_argument(
        "--latency-rate", type=float, default=None, help="events/s (default: half the gateway's)"
    )
    ap.add_argument("--latency-seconds", type=float, default=8.0)
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase, at most")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole run")
    args = ap.parse_args(argv)

    gateway_fds = args.connections + FD_SLACK
    _need_fds(FD_SLACK)
    # Checked here, before anything starts, so a low hard limit is a clear message.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < gateway_fds:
        raise SystemExit(f"the gateway needs {gateway_fds} open files, the hard limit is {hard}")
    alarm = _Alarm(args.deadline)

    ctx = mp.get_context("spawn")
    players = list(range(1, args.connections + 1))
    try:
        server = RedisServer()
        try:
            # ---- reference: bare redis-py asyncio subscriber on the same channels
            received = ctx.Value("q", 0)
            ready = ctx.Value("i", 0)
            ref = ctx.Process(
                target=reference_process, args=(server.url, players, received, ready), daemon=True
            )
            ref.start()
            try:
                if not base._wait(lambda: ready.value == 1, 60):
                    raise SystemExit("reference subscriber did not subscribe")
                n_ref, t_ref = base.closed_loop_publish(
                    server.url, players, args.events, received, args.window, args.time_limit
                )
            finally:
                with alarm.held():
                    _stop(ref, 5)
            ref_rate = n_ref / t_ref

            # ---- gateway
            port = free_port()
            gw = ctx.Process(
                target=gateway_process, args=(port, server.url, args.connections), daemon=True
            )
            gw.start()
            clients: list[mp.process.BaseProcess] = []
            try:
                if not base._wait(lambda: base._try_metrics(port) is not None, 30):
                    raise SystemExit("gateway did not start")
                time.sleep(1.0)  # let start-up allocations settle before the baseline
                rss_before = rss_bytes(gw.pid)  # type: ignore[arg-type]
                received = ctx.Value("q", 0)
                ready = ctx.Value("q", 0)
                phase = ctx.Value("i", 1)
                results = ctx.Queue()
                # One load generator opens its connections (one a millisecond) before the next
                # starts: a storm of several thousand a second makes the gateway's subscription
                # confirmations queue past its 5 s timeout, and a storm is not what this measures.
                t_open = time.monotonic()
                opened = 0
                for part in (players[i :: args.clients] for i in range(args.clients)):
                    p = ctx.Process(
                        target=client_process,
                        args=(port, part, received, phase, ready, results),
                        daemon=True,
                    )
                    p.start()
                    clients.append(p)
                    opened += len(part)
                    left = 120 - (time.monotonic() - t_open)
                    if not base._wait(_all_or_refused(ready, opened, port), left):
                        raise SystemExit(
                            f"only {ready.value} of {opened} SSE connections got `connected`"
                        )
                    refused = _refused(port)
                    if refused is not None:
                        raise SystemExit(
                            f"the gateway refused connections ({refused}) with"
                            f" {ready.value} of {opened} connected"
                        )
                open_s = time.monotonic() - t_open
                time.sleep(1.0)  # the last connections' first writes
                rss_open = rss_bytes(gw.pid)  # type: ignore[arg-type]
                m0 = base._metrics(port)
                got0 = received.value

                n_gw, t_gw = base.closed_loop_publish(
                    server.url, players, args.events, received, args.window, args.time_limit
                )
                gw_rate = n_gw / t_gw
                m1 = base._metrics(port)

                phase.value = 2
                rate = args.latency_rate or gw_rate / 2
                published = base.paced_publish(server.url, players, rate, args.latency_seconds)
                base._wait(
                    lambda: base._metrics(port)["events_in"] - m1["events_in"] >= published, 5
                )
                time.sleep(1.0)  # the last events' way to the clients
                m2 = base._metrics(port)
                got = received.value - got0
                rss_load = rss_bytes(gw.pid)  # type: ignore[arg-type]
                phase.value = 9
                latencies: list[float] = []
                for _ in clients:
                    latencies.extend(results.get(timeout=60))
            finally:
                with alarm.held():
                    if clients:
                        phase.value = 9  # on an error too: the load generators then leave
                    for p in clients:
                        p.join(10)  # they leave on their own once phase is 9
                        _stop(p, 5)
                    _stop(gw, 10)
        finally:
            with alarm.held():
                server.stop()
    except _Deadline:
        raise SystemExit(
            f"stopped: the run took longer than --deadline {args.deadline:g} s"
        ) from None
    finally:
        alarm.cancel()

    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 100 else [float("nan")] * 99
    drops = {k: m2[k] - m0[k] for k in ("dropped_overflow", "lost_in_buffer", "disconnected_slow")}
    events_in = m2["events_in"] - m0["events_in"]
    per_conn = (rss_open - rss_before) / args.connections
    mib = 1 << 20
    rows = [
        ("machine", f"{os.cpu_count()} cores, loopback, Python {sys.version.split()[0]}"),
        (
            "SSE connections",
            f"{args.connections:,} open (gateway: 1 process; load: {args.clients} processes),"
            f" all connected in {open_s:.1f} s ({args.connections / open_s:,.0f}/s)",
        ),
        ("subscription", "channel, reader_yield_every=1, buffer 50 drop_newest"),
        (
            "reference: redis-py asyncio subscriber",
            f"{ref_rate:,.0f} msgs/s ({n_ref:,} in {t_ref:.2f} s)",
        ),
        (
            "gateway: events/s delivered to clients",
            f"{gw_rate:,.0f} events/s ({n_gw:,} in {t_gw:.2f} s)",
        ),
        ("gateway / reference", f"{gw_rate / ref_rate:.2f}"),
        (
            f"latency at {rate:,.0f} events/s",
            f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms"
            f" ({len(latencies):,} samples of {published:,})",
        ),
        (
            "gateway RSS: before / connections open / after the load",
            f"{rss_before / mib:.1f} / {rss_open / mib:.1f} / {rss_load / mib:.1f} MiB",
        ),
        (
            "memory per connection",
            f"{per_conn / 1024:.1f} KiB ((open - before) / {args.connections:,})",
        ),
        ("drops (gateway counters)", ", ".join(f"{k} {v}" for k, v in drops.items())),
        (
            "events from Redis / received by clients",
            f"{events_in:,} / {got:,} (missing {events_in - got:,});"
            f" events_out in throughput phase {m1['events_out'] - m0['events_out']:,}",
        ),
        (
            "connections open at the end, subscriber reconnects",
            f"{m2['connections_open']:,}, {m2['subscriber_reconnects']}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
