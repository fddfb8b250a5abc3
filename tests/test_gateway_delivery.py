"""Gateway delivery over real sockets: system events, order, overflow policies, the shared reader's yield."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from sse_helpers import BACKENDS, RawSSE, event, gateway_kwargs, wait_for

from sse_sim.real.gateway import start_gateway
from sse_sim.real.redis_server import free_port

SECRET = b"d" * 32
PATH = "/gateway/sse/1001/stream"
CHANNEL = "SSE::1001::12345"
BACKEND_PARAMS = [
    pytest.param(b, marks=[pytest.mark.redis] if b == "redis" else [], id=b) for b in BACKENDS
]


def _token(gw, player: int = 12345) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"x-auth-token": gw.token(player)}


def _stall_reader(gw, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Hold the gateway's shared reader for ``seconds``, and return once the hold is in force.

    ``stall_subscriber`` schedules the hold on the gateway's event loop. The loop runs what is
    scheduled on it in order, so once a later call has run there the hold is in place, and a
    burst published after this returns waits in the reader's socket.
    """
    gw.gateway.stall_subscriber(seconds)
    gw.call(lambda: None)


def _publish(gw, messages: list[str], channel: str = CHANNEL) -> None:  # type: ignore[no-untyped-def]
    pub = gw.publisher()
    try:
        pipe = pub.pipeline(transaction=False)
        for m in messages:
            pipe.publish(channel, m)
        pipe.execute()
    finally:
        pub.close()


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_system_events_and_order(backend: str, request: pytest.FixtureRequest) -> None:
    with start_gateway(
        secret=SECRET, keepalive_interval_s=0.3, retry_ms=3000, **gateway_kwargs(backend, request)
    ) as gw:
        with RawSSE(gw.port, PATH, headers=_token(gw)) as client:
            assert client.connected()
            first = client.messages[0]
            assert first.retry == 3000
            connected = json.loads(first.data)
            assert set(connected) == {"type", "timestamp"}
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", connected["timestamp"])
            _publish(gw, [event(i) for i in range(100)])
            assert client.read_until(lambda c: len(c.app_events()) == 100)
            assert [e["event_data"]["seq"] for e in client.app_events()] == list(range(100))
            # Each event is exactly one data: line.
            assert client.body.count(b'data: {"brand_id"') == 100
            assert client.read_until(
                lambda c: any(p.get("type") == "keepalive" for p in c.payloads()), 3
            )
            match = re.search(
                rb': keepalive (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\ndata: \{"type":"keepalive","timestamp":"(\1)"\}\n\n',
                client.body,
            )
            assert match, client.body[-300:]
        # The reader counts an event before its frame is written, so the client holding all 100
        # proves events_in is final. The writer counts a keepalive only after the write returns,
        # on the gateway's thread, which the client's thread can outrun: wait for that count.
        assert gw.gateway.metrics()["events_in"] == 100
        assert wait_for(lambda: gw.gateway.metrics()["keepalives_out"] >= 1)
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_connected_means_subscribed(backend: str, request: pytest.FixtureRequest) -> None:
    """An event published the moment `connected` arrives is delivered: the subscription was already live."""
    with start_gateway(secret=SECRET, **gateway_kwargs(backend, request)) as gw:
        pub = gw.publisher()
        try:
            for i in range(25):
                player = 500 + i  # a fresh channel each time, so each one is a new SUBSCRIBE
                with RawSSE(gw.port, PATH, headers=_token(gw, player)) as client:
                    assert client.connected()
                    pub.publish(f"SSE::1001::{player}", event(i, player=player))
                    assert client.read_until(lambda c: len(c.app_events()) == 1), i
        finally:
            pub.close()
        assert gw.gateway.metrics()["events_unrouted"] == 0


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_error_event_when_subscribing_fails(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        kwargs = {
            "backend": "redis",
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        }  # nobody listens
    else:
        kwargs = {"backend": "fakeredis"}
    with start_gateway(secret=SECRET, subscribe_timeout_s=3, **kwargs) as gw:
        if gw.fake_server is not None:
            gw.fake_server.connected = False  # fakeredis's way to emulate a Redis that is down
        with RawSSE(gw.port, PATH, headers=_token(gw)) as client:
            assert client.response() == 200
            assert client.read_until(lambda c: c.eof, 10)
            payloads = client.payloads()
            assert payloads == [{"type": "error", "message": "Failed to subscribe to events"}]
        m = gw.gateway.metrics()
        assert m["subscribe_failures"] == 1 and m["connections_connected"] == 0
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        assert gw.gateway.subscribed_channels() == []


N_BURST = 300
BUFFER = 5


def _stalled_run(backend: str, request: pytest.FixtureRequest, policy: str):  # type: ignore[no-untyped-def]
    """A client that stops reading while N_BURST events arrive, then reads what is left."""
    gw = start_gateway(
        secret=SECRET,
        buffer_size=BUFFER,
        overflow_policy=policy,
        record_events=True,
        send_buffer_bytes=4096,
        keepalive_interval_s=60,
        **gateway_kwargs(backend, request),
    )
    try:
        client = RawSSE(gw.port, PATH, headers=_token(gw), rcvbuf=4096)
        assert client.connected()
        # Hold the shared reader while the burst is published so that it lands at once: a
        # burst trickling in (fakeredis under load) would let TCP window updates free room
        # mid-burst, and which events overflow would depend on timing.
        _stall_reader(gw, 0.5)
        _publish(gw, [event(i, pad=400) for i in range(N_BURST)])
        # The fan-out decides an event's overflow fate the moment the reader hands it over, so
        # once the whole burst is in (or, under "disconnect", the slow stream is cut: later
        # events no longer reach it) every overflow happened while the client did not read.
        assert wait_for(
            lambda: (
                gw.gateway.metrics()["events_in"] == N_BURST
                or gw.gateway.metrics()["connections_disconnected_slow"] == 1
            )
        )
        # Now read what the gateway still sends: under "disconnect" until the stream ends;
        # under the drop policies the stream stays open and every event not dropped or evicted
        # arrives as the client drains it.
        assert client.read_until(
            lambda c: (
                c.eof
                or len(c.app_events()) == N_BURST - gw.gateway.metrics()["dropped_overflow"]
            )
        ), (len(client.app_events()), gw.gateway.metrics())
        client.close()
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        return gw, client
    finally:
        gw.stop()


def _fates(gw) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(f.fate for f in gw.gateway.event_log())


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_drop_newest_keeps_the_head(backend: str, request: pytest.FixtureRequest) -> None:
    gw, client = _stalled_run(backend, request, "drop_newest")
    seqs = [e["event_data"]["seq"] for e in client.app_events()]
    m, fates = gw.gateway.metrics(), _fates(gw)
    dropped = {
        json.loads(f.raw_message)["event_data"]["seq"]
        for f in gw.gateway.event_log()
        if f.fate == "dropped_overflow"
    }
    sent = {
        json.loads(f.raw_message)["event_data"]["seq"]
        for f in gw.gateway.event_log()
        if f.fate == "sent"
    }
    assert 0 < len(seqs) < N_BURST
    assert seqs == sorted(seqs) and set(seqs) == sent and not dropped & sent
    assert N_BURST - 1 in dropped  # the queue was full when the newest arrived: it was dropped
    assert m["dropped_overflow"] == fates["dropped_overflow"] > 0
    assert fates["sent"] + fates["dropped_overflow"] + fates["lost_in_buffer"] == N_BURST
    assert m["events_out"] == fates["sent"] >= len(seqs)
    assert "evicted" not in fates


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_drop_oldest_keeps_the_tail(backend: str, request: pytest.FixtureRequest) -> None:
    gw, client = _stalled_run(backend, request, "drop_oldest")
    seqs = [e["event_data"]["seq"] for e in client.app_events()]
    m, fates = gw.gateway.metrics(), _fates(gw)
    assert 0 < len(seqs) < N_BURST
    assert seqs == sorted(seqs)
    assert seqs[-BUFFER:] == list(range(N_BURST - BUFFER, N_BURST))  # the newest survived
    evicted = {
        json.loads(f.raw_message)["event_data"]["seq"]
        for f in gw.gateway.event_log()
        if f.fate == "evicted"
    }
    assert not evicted & set(seqs)
    assert m["dropped_overflow"] == fates["evicted"] > 0
    assert fates["sent"] + fates["evicted"] + fates["lost_in_buffer"] == N_BURST


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_disconnect_closes_the_slow_stream(backend: str, request: pytest.FixtureRequest) -> None:
    gw, client = _stalled_run(backend, request, "disconnect")
    seqs = [e["event_data"]["seq"] for e in client.app_events()]
    m, fates = gw.gateway.metrics(), _fates(gw)
    assert client.eof  # the gateway ended the stream; an EventSource would reconnect
    assert len(seqs) < N_BURST and seqs == sorted(seqs)
    assert m["connections_disconnected_slow"] == 1
    assert m["disconnected_slow"] == fates["disconnected_slow"] >= BUFFER
    assert m["dropped_overflow"] == 0
    assert fates["sent"] + fates["disconnected_slow"] + fates["lost_in_buffer"] <= N_BURST


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("yield_every", [0, 1])
def test_reader_yield_every_with_a_burst(
    backend: str, yield_every: int, request: pytest.FixtureRequest
) -> None:
    """A burst of 200 to a fast client: a reader that never yields overflows the 50-event queue."""
    with start_gateway(
        secret=SECRET, reader_yield_every=yield_every, **gateway_kwargs(backend, request)
    ) as gw:
        with RawSSE(gw.port, PATH, headers=_token(gw)) as client:
            assert client.connected()
            # Hold the shared reader while the burst lands, so all 200 wait in its socket at
            # once (as after any hiccup of a loaded gateway), then let it go.
            _stall_reader(gw, 0.3)
            _publish(gw, [event(i) for i in range(200)])
            assert wait_for(lambda: gw.gateway.metrics()["events_in"] == 200)
            m = gw.gateway.metrics()
            client.read_until(lambda c: len(c.app_events()) == 200 - m["dropped_overflow"])
            got = len(client.app_events())
        if yield_every == 1:
            assert m["dropped_overflow"] == 0 and got == 200
        else:
            assert m["dropped_overflow"] > 0 and got == 200 - m["dropped_overflow"]
