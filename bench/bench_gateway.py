"""Load benchmark of the real SSE gateway: 1,000 concurrent SSE connections over a throwaway Redis.

Measures, in one run on loopback:

1. reference: the receive rate of a bare redis-py asyncio subscriber (same channels, same
   messages, same closed-loop publisher) -- the ceiling any Python gateway process shares;
2. gateway throughput: events/s delivered to the SSE clients, with the publisher keeping at
   most ``--window`` events in flight (so Redis never drops the subscriber for its output
   buffer and the gateway is kept saturated);
3. latency at half the measured gateway rate: p50/p99 of receive time minus publish time.

The gateway, each load generator and the reference subscriber run in their own processes so
client parsing does not starve the gateway's event loop (they still share the machine's cores).

    .venv/bin/python bench/bench_gateway.py                # 1,000 connections
    .venv/bin/python bench/bench_gateway.py --connections 200 --events 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import statistics
import sys
import time
import urllib.request

from sse_sim.real.auth import mint_token
from sse_sim.real.redis_server import RedisServer, free_port

SECRET = b"bench-secret-bench-secret-bench!"
BRAND = 1001
PAYLOAD_PAD = "x" * 120  # ~300-byte envelopes, like the documented notifications


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def _message(player: int, seq: int, now: float) -> bytes:
    return (
        f'{{"brand_id":{BRAND},"player_id":{player},"event_type":"notification",'
        f'"event_data":{{"t":{now:.6f},"seq":{seq},"pad":"{PAYLOAD_PAD}"}}}}'
    ).encode()


# ------------------------------------------------------------------------------------ processes


def gateway_process(port: int, redis_url: str, yield_every: int, mode: str) -> None:
    """Serve the gateway until SIGTERM."""
    from sse_sim.real.gateway import create_gateway, redis_factory, run_gateway

    _raise_fd_limit(8192)
    gateway = create_gateway(
        redis_client_factory=redis_factory(redis_url),
        secret=SECRET,
        reader_yield_every=yield_every,
        subscription_mode=mode,
        keepalive_interval_s=15.0,
    )
    run_gateway("127.0.0.1", port, gateway=gateway, timeout_graceful_shutdown=2.0)


def client_process(port: int, players: list[int], received, phase, ready, results) -> None:  # type: ignore[no-untyped-def]
    """Hold one SSE connection per player; count events; record latencies while phase == 2."""
    _raise_fd_limit(8192)
    latencies: list[float] = []
    counted = [0]  # flushed to the shared counter every 5 ms: a lock per read would load the box

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.005)
            if counted[0]:
                n, counted[0] = counted[0], 0
                with received.get_lock():
                    received.value += n

    async def one(player: int) -> None:
        token = mint_token(SECRET, BRAND, player, 3600)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(
            f"GET /gateway/sse/{BRAND}/stream HTTP/1.1\r\nHost: b\r\nx-auth-token: {token}\r\n\r\n".encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        pending = b""
        connected = False
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            pending += chunk
            # The body is chunked; frames are found by their "data: " lines, the chunk-size
            # lines in between never start with "data:".
            n = 0
            start = 0
            while True:
                i = pending.find(b"data: {", start)
                if i < 0:
                    break
                j = pending.find(b"\n", i)
                if j < 0:
                    break
                line = pending[i + 6 : j]
                start = j + 1
                if line.startswith(b'{"brand_id"'):
                    n += 1
                    if phase.value == 2:
                        k = line.find(b'"t":')
                        latencies.append(time.time() - float(line[k + 4 : line.find(b",", k)]))
                elif not connected and b'"connected"' in line:
                    connected = True
                    with ready.get_lock():
                        ready.value += 1
            pending = pending[start:]
            counted[0] += n

    async def main() -> None:
        tasks = [asyncio.create_task(flush())]
        for p in players:
            tasks.append(asyncio.create_task(one(p)))
            await asyncio.sleep(0.001)  # a connection storm is not what this measures
        while phase.value != 9:
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    results.put(latencies[-300_000:])


def reference_process(redis_url: str, players: list[int], received, ready) -> None:  # type: ignore[no-untyped-def]
    """A bare redis-py asyncio subscriber on the same channels: count what arrives."""
    import redis.asyncio as aredis

    async def main() -> None:
        client = aredis.Redis.from_url(redis_url)
        pubsub = client.pubsub()
        for k in range(0, len(players), 500):
            await pubsub.subscribe(*[f"SSE::{BRAND}::{p}" for p in players[k : k + 500]])
        seen = 0
        while seen < len(players):
            m = await pubsub.get_message(timeout=1.0)
            if m and m["type"] == "subscribe":
                seen += 1
        ready.value = 1
        n = 0
        while True:
            m = await pubsub.get_message(timeout=0.05)
            if m is not None and m["type"] == "message":
                n += 1
            if n and (n >= 200 or m is None):
                with received.get_lock():
                    received.value += n
                n = 0

    asyncio.run(main())


# ------------------------------------------------------------------------------------ publisher


def closed_loop_publish(
    url: str, players: list[int], total: int, received, window: int, time_limit_s: float
) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """Publish ``total`` events round-robin, keeping at most ``window`` unreceived; returns (received, seconds)."""
    import redis

    pub = redis.Redis.from_url(url)
    base = received.value
    start = time.monotonic()
    deadline = start + time_limit_s
    sent = 0
    batch = 500
    while sent < total and time.monotonic() < deadline:
        while sent - (received.value - base) > window and time.monotonic() < deadline:
            time.sleep(0.0005)
        pipe = pub.pipeline(transaction=False)
        now = time.time()
        for k in range(batch):
            p = players[(sent + k) % len(players)]
            pipe.publish(f"SSE::{BRAND}::{p}", _message(p, sent + k, now))
        pipe.execute()
        sent += batch
    # Wait for the tail (bounded).
    while received.value - base < sent and time.monotonic() < deadline + 5:
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    pub.close()
    return received.value - base, elapsed


def paced_publish(url: str, players: list[int], rate: float, seconds: float) -> int:
    """Publish at ``rate`` events/s for ``seconds`` in 5 ms ticks; returns how many were published."""
    import redis

    pub = redis.Redis.from_url(url)
    tick = 0.005
    start = time.monotonic()
    sent = 0
    n_ticks = int(seconds / tick)
    for t in range(n_ticks):
        target = int(rate * tick * (t + 1))
        pipe = pub.pipeline(transaction=False)
        now = time.time()
        for k in range(sent, target):
            p = players[k % len(players)]
            pipe.publish(f"SSE::{BRAND}::{p}", _message(p, k, now))
        pipe.execute()
        sent = target
        delay = start + tick * (t + 1) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    pub.close()
    return sent


def _metrics(port: int) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/gateway/metrics", timeout=5) as r:
        return json.loads(r.read())


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument(
        "--events", type=int, default=300_000, help="events per throughput phase (bounded)"
    )
    ap.add_argument("--window", type=int, default=20_000, help="most unreceived events in flight")
    ap.add_argument("--latency-seconds", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=2, help="load generator processes")
    ap.add_argument("--reader-yield-every", type=int, default=1)
    ap.add_argument("--subscription", choices=["channel", "pattern"], default="channel")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds per phase, at most")
    args = ap.parse_args(argv)

    _raise_fd_limit(args.connections * 2 + 512)
    ctx = mp.get_context("spawn")
    players = list(range(1, args.connections + 1))
    rows: list[tuple[str, str]] = []
    with RedisServer() as server:
        # ---- reference: bare redis-py asyncio subscriber
        received = ctx.Value("q", 0)
        ready = ctx.Value("i", 0)
        ref = ctx.Process(
            target=reference_process, args=(server.url, players, received, ready), daemon=True
        )
        ref.start()
        try:
            if not _wait(lambda: ready.value == 1, 30):
                raise SystemExit("reference subscriber did not subscribe")
            n_ref, t_ref = closed_loop_publish(
                server.url, players, args.events, received, args.window, args.time_limit
            )
        finally:
            os.kill(ref.pid, signal.SIGTERM)
            ref.join(5)
        ref_rate = n_ref / t_ref

        # ---- gateway
        port = free_port()
        gw = ctx.Process(
            target=gateway_process,
            args=(port, server.url, args.reader_yield_every, args.subscription),
            daemon=True,
        )
        gw.start()
        clients = []
        try:
            if not _wait(lambda: _try_metrics(port) is not None, 30):
                raise SystemExit("gateway did not start")
            received = ctx.Value("q", 0)
            ready = ctx.Value("q", 0)
            phase = ctx.Value("i", 1)
            results = ctx.Queue()
            share = [players[i :: args.clients] for i in range(args.clients)]
            for part in share:
                p = ctx.Process(
                    target=client_process,
                    args=(port, part, received, phase, ready, results),
                    daemon=True,
                )
                p.start()
                clients.append(p)
            if not _wait(lambda: ready.value == args.connections, 60):
                raise SystemExit(
                    f"only {ready.value} of {args.connections} SSE connections got `connected`"
                )
            m0 = _metrics(port)
            n_gw, t_gw = closed_loop_publish(
                server.url, players, args.events, received, args.window, args.time_limit
            )
            gw_rate = n_gw / t_gw
            m1 = _metrics(port)

            # ---- latency at half the gateway's rate
            phase.value = 2
            half = gw_rate / 2
            published = paced_publish(server.url, players, half, args.latency_seconds)
            time.sleep(1.0)
            phase.value = 9
            latencies: list[float] = []
            for _ in clients:
                latencies.extend(results.get(timeout=60))
            m2 = _metrics(port)
        finally:
            for p in clients:
                p.join(10)
                if p.is_alive():
                    os.kill(p.pid, signal.SIGTERM)
                    p.join(5)
            if gw.pid is not None and gw.is_alive():
                os.kill(gw.pid, signal.SIGTERM)
                gw.join(10)

    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 100 else [float("nan")] * 99
    drops = {k: m2[k] - m0[k] for k in ("dropped_overflow", "lost_in_buffer", "disconnected_slow")}
    rows = [
        ("machine", f"{os.cpu_count()} cores, loopback, Python {sys.version.split()[0]}"),
        (
            "SSE connections",
            f"{args.connections:,} (gateway: 1 process; load: {args.clients} processes)",
        ),
        (
            "subscription",
            f"{args.subscription}, reader_yield_every={args.reader_yield_every}, buffer 50 drop_newest",
        ),
        (
            "reference: redis-py asyncio subscriber",
            f"{ref_rate:,.0f} msgs/s ({n_ref:,} in {t_ref:.2f} s)",
        ),
        (
            "gateway: events/s delivered to clients",
            f"{gw_rate:,.0f} events/s ({n_gw:,} in {t_gw:.2f} s)",
        ),
        ("gateway / reference", f"{gw_rate / ref_rate:.2f}"),
        ("gateway events_out in throughput phase", f"{m1['events_out'] - m0['events_out']:,}"),
        (
            f"latency at {half:,.0f} events/s (half)",
            f"p50 {q[49] * 1000:.2f} ms, p99 {q[98] * 1000:.2f} ms ({len(latencies):,} samples of {published:,})",
        ),
        ("drops during the run", ", ".join(f"{k} {v}" for k, v in drops.items())),
        ("subscriber reconnects", str(m2["subscriber_reconnects"])),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 40}")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


def _try_metrics(port: int) -> dict | None:  # type: ignore[type-arg]
    try:
        return _metrics(port)
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
