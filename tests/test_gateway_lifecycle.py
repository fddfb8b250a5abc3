"""Gateway lifecycle: no leaks over 1,000 connect/disconnect cycles, bounded graceful shutdown, Redis output-buffer kills."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
import redis
from sse_helpers import BACKENDS, RawSSE, event, gateway_kwargs, wait_for

from sse_sim.real.gateway import start_gateway
from sse_sim.real.redis_server import RedisServer

SECRET = b"l" * 32
PATH = "/gateway/sse/1001/stream"
BACKEND_PARAMS = [
    pytest.param(b, marks=[pytest.mark.redis] if b == "redis" else [], id=b) for b in BACKENDS
]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _gateway_tasks(gw) -> int:  # type: ignore[no-untyped-def]
    return int(gw.call(lambda: len(asyncio.all_tasks())))


def _cycle(gw, i: int) -> None:  # type: ignore[no-untyped-def]
    player = 1 + i % 40
    headers = {"x-auth-token": gw.token(player)}
    if i % 10 == 9:
        # Leave before the subscription is confirmed: the connecting path must clean up too.
        sock = socket.create_connection(("127.0.0.1", gw.port))
        sock.sendall(
            f"GET {PATH} HTTP/1.1\r\nHost: x\r\nx-auth-token: {headers['x-auth-token']}\r\n\r\n".encode()
        )
        sock.close()
        return
    with RawSSE(gw.port, PATH, headers=headers) as client:
        assert client.connected(), i


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_thousand_connect_disconnect_cycles_leak_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    with start_gateway(
        secret=SECRET, keepalive_interval_s=0.05, **gateway_kwargs(backend, request)
    ) as gw:
        for i in range(20):  # warm up: the subscriber connection, pools, lazy imports
            _cycle(gw, i)
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        assert wait_for(lambda: gw.gateway.subscribed_channels() == [])
        tasks0, fds0 = _gateway_tasks(gw), _fds()
        for i in range(1000):
            _cycle(gw, i)
        # the last cycle may be one that leaves at once: its request can still be in flight
        assert wait_for(lambda: gw.gateway.metrics()["connections_total"] == 1020)
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        assert wait_for(lambda: gw.gateway.subscribed_channels() == [])
        # at most what the warmed-up gateway had: a task or socket of the warm-up may still have
        # been finishing when the baseline was taken, but 1,000 cycles must not add any
        assert wait_for(lambda: _gateway_tasks(gw) <= tasks0), (_gateway_tasks(gw), tasks0)
        assert wait_for(lambda: _fds() <= fds0), (_fds(), fds0)
        pub = gw.publisher()
        try:
            assert wait_for(lambda: pub.pubsub_channels() == [])
            assert pub.pubsub_numpat() == 0
            assert pub.pubsub_numsub(*[f"SSE::1001::{p}" for p in range(1, 41)]) == [
                (f"SSE::1001::{p}".encode(), 0) for p in range(1, 41)
            ]
        finally:
            pub.close()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_graceful_shutdown_ends_streams(backend: str, request: pytest.FixtureRequest) -> None:
    gw = start_gateway(
        secret=SECRET, timeout_graceful_shutdown=1.0, **gateway_kwargs(backend, request)
    )
    clients = [
        RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(100 + i)}) for i in range(20)
    ]
    try:
        assert all(c.connected() for c in clients)
        took = gw.stop()
        assert not gw.running
        # Every stream was ended by the gateway (a clean chunked end), not left hanging.
        assert all(c.read_until(lambda c: c.eof, 5) for c in clients)
        # Generous sanity bound: the server's own timeout plus slack for a loaded machine.
        assert took < gw.timeout_graceful_shutdown + 5
    finally:
        for c in clients:
            c.close()
        gw.stop()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_graceful_shutdown_with_a_stalled_client_is_bounded(
    backend: str, request: pytest.FixtureRequest
) -> None:
    gw = start_gateway(
        secret=SECRET,
        timeout_graceful_shutdown=1.0,
        send_buffer_bytes=4096,
        **gateway_kwargs(backend, request),
    )
    stalled = RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(7)}, rcvbuf=4096)
    try:
        assert stalled.connected()
        pub = gw.publisher()
        try:
            for i in range(200):
                pub.publish("SSE::1001::7", event(i, player=7, pad=1000))
        finally:
            pub.close()
        assert wait_for(lambda: gw.gateway.metrics()["events_in"] == 200)
        took = gw.stop()
        assert not gw.running
        assert took < gw.timeout_graceful_shutdown + 5
    finally:
        stalled.close()
        gw.stop()


@pytest.mark.redis
def test_redis_output_buffer_kill_is_detected_and_recovered() -> None:
    """Redis drops a lagging subscriber past its pubsub output-buffer limit; the gateway notices and resubscribes.

    The open stream is told (the ``error`` event, then the end of the response) and a stream
    opened afterwards receives. fakeredis has no output-buffer limit, so this runs on real Redis
    only.
    """
    with (
        RedisServer(config={"client-output-buffer-limit": "pubsub 256kb 64kb 1"}) as server,
        start_gateway(backend="redis", redis_url=server.url, secret=SECRET) as gw,
    ):
        client = RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(7)})
        pub = redis.Redis.from_url(server.url)
        try:
            assert client.connected()
            gw.gateway.stall_subscriber(1.5)
            published = 0
            for _ in range(100):  # bounded: at most 100 x 2,000 x 1 KB
                pipe = pub.pipeline(transaction=False)
                for i in range(2000):
                    pipe.publish("SSE::1001::7", event(published + i, player=7, pad=1000))
                pipe.execute()
                published += 2000
                if "output buffer limits" in server.log_text():
                    break
            assert "output buffer limits" in server.log_text()
            assert wait_for(lambda: gw.gateway.metrics()["subscriber_reconnects"] >= 1, 15)
            m = gw.gateway.metrics()
            assert m["events_in"] < published  # the killed backlog never reached the gateway
            assert any(what == "reconnected" for _, what in gw.gateway.subscriber_log())
            # The open stream was told events may be lost, and ended so that it reconnects.
            assert client.read_until(lambda c: c.eof, 15)
            assert client.payloads()[-1]["type"] == "error"
            # Resubscribed: a new event reaches a stream opened again for the player.
            with RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(7)}) as again:
                assert again.connected()
                assert wait_for(lambda: pub.pubsub_numsub("SSE::1001::7")[0][1] == 1, 10)
                pub.publish("SSE::1001::7", event(10**6, player=7))
                assert again.read_until(
                    lambda c: any(e["event_data"]["seq"] == 10**6 for e in c.app_events()), 10
                )
        finally:
            client.close()
            pub.close()
