"""Gateway under Redis faults: an outage with client churn, CLIENT KILL, the pubsub output-buffer limit, the byte cap.

Each fault is first made real (Redis stopped and answering no PING, a CLIENT KILL that killed,
the server's log naming the output-buffer kill, a queue that grows past the cap without it), then
the behaviour that must hold is checked on what the clients receive: a stream whose subscription
was lost is told (the documented ``error`` event, then the end of the response, so that
EventSource reconnects), and a stream opened once Redis is back receives.

Every redis-server here is the test's own, on a free loopback port, restarted on the same port
and stopped by its PID (:meth:`RedisServer.stop`) in teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from sse_helpers import BACKENDS, RawSSE, event, gateway_kwargs, wait_for

from sse_sim.real.gateway import fakeredis_factory, start_gateway
from sse_sim.real.gateway.fanout import LOSS_MESSAGE, Connection, Fanout
from sse_sim.real.gateway.subscriber import SharedSubscriber
from sse_sim.real.redis_server import RedisServer

SECRET = b"f" * 32
PATH = "/gateway/sse/1001/stream"
BACKEND_PARAMS = [
    pytest.param(b, marks=[pytest.mark.redis] if b == "redis" else [], id=b) for b in BACKENDS
]
LOSS = {"type": "error", "message": LOSS_MESSAGE}


class Restartable:
    """A redis-server of the test's own that can be stopped and started again on the same port."""

    def __init__(self, config: dict[str, str] | None = None) -> None:
        self.config = config
        self.server: RedisServer | None = RedisServer(config=config)
        self.port = self.server.port
        self.url = self.server.url

    def stop(self) -> None:
        """Stop the server (by its PID); safe to call twice."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def start(self) -> None:
        """Start a fresh server on the same port (returns once it answers PING)."""
        assert self.server is None
        self.server = RedisServer(self.port, config=self.config)

    def log_text(self) -> str:
        return self.server.log_text() if self.server is not None else ""


@contextlib.contextmanager
def restartable(config: dict[str, str] | None = None) -> Iterator[Restartable]:
    """A redis-server this test alone uses, stopped in teardown whatever happened."""
    import os

    from sse_sim.errors import SseSimError

    try:
        server = Restartable(config)
    except SseSimError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"real-Redis tests must run in CI: {exc}")
        pytest.skip(f"no redis-server here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[Restartable]:
    """A redis-server of the test's own, on a free loopback port."""
    with restartable() as server:
        yield server


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _open(gw, player: int) -> RawSSE:  # type: ignore[no-untyped-def]
    return RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(player)})


def _told(client: RawSSE) -> bool:
    """The stream got the loss notice as its last message and then ended."""
    return client.eof and bool(client.payloads()) and client.payloads()[-1] == LOSS


def _receives(client: RawSSE, pub, player: int, seq: int) -> bool:  # type: ignore[no-untyped-def]
    pub.publish(f"SSE::1001::{player}", event(seq, player=player))
    return client.read_until(
        lambda c: any(e["event_data"]["seq"] == seq for e in c.app_events()), 10
    )


def _subscribed_in_redis(pub, players: list[int]) -> dict[int, int]:  # type: ignore[no-untyped-def]
    counts = pub.pubsub_numsub(*[f"SSE::1001::{p}" for p in players])
    return {p: n for p, (_, n) in zip(players, counts, strict=True)}


# ---------------------------------------------------------------------- a Redis outage


@pytest.mark.redis
def test_outage_with_client_churn_tells_every_open_stream_and_streams_again(
    own_redis: Restartable,
) -> None:
    """Redis stopped and restarted on its port while streams open and close: nobody is left hanging."""
    clients: list[RawSSE] = []
    with start_gateway(
        backend="redis", redis_url=own_redis.url, secret=SECRET, subscribe_timeout_s=60
    ) as gw:
        pub = redis.Redis.from_url(own_redis.url)
        try:
            # 20 open streams: players 1..15, and players 1..5 in a second tab.
            before = [_open(gw, p) for p in list(range(1, 16)) + list(range(1, 6))]
            clients += before
            assert all(c.connected() for c in before)

            own_redis.stop()
            assert not _redis_answers(own_redis.url)  # the fault is real: Redis is gone
            assert wait_for(lambda: gw.gateway.metrics()["subscriber_outages"] == 1, 10)
            seen_at = time.time()
            errors_at_loss = gw.gateway.metrics()["subscriber_errors"]

            # Churn while Redis is away: 10 streams open (players 101..110), 5 of them leave.
            during = {p: _open(gw, p) for p in range(101, 111)}
            clients += during.values()
            assert all(c.response() == 200 for c in during.values())
            assert wait_for(lambda: gw.gateway.metrics()["connections_total"] == 30, 10)
            for p in range(101, 106):
                during.pop(p).close()
            assert wait_for(lambda: gw.gateway.metrics()["connections_open"] <= 5, 10)
            # The gateway keeps trying while Redis is down (each failed attempt is an error).
            assert wait_for(
                lambda: gw.gateway.metrics()["subscriber_errors"] >= errors_at_loss + 5, 30
            )
            assert not gw.gateway.metrics()["subscriber_up"]

            own_redis.start()
            back_at = time.time()
            back = time.monotonic()

            # Every stream that was open when the subscription went was told, then ended.
            for c in before:
                assert c.read_until(_told, 10), c.payloads()[-3:]
            # The streams opened during the outage were waiting for their subscription: it is
            # made once Redis is back (within 5 s), and they receive.
            for p, c in during.items():
                assert c.read_until(
                    lambda c: c.eof or any(x.get("type") == "connected" for x in c.payloads()),
                    max(0.1, back + 5 - time.monotonic()),
                ), (p, c.payloads())
                assert not c.eof, (p, c.payloads())
                assert _receives(c, pub, p, 1000 + p)
            # A new tab for a player whose stream was told receives too.
            with _open(gw, 1) as tab:
                assert tab.connected()
                assert _receives(tab, pub, 1, 5000)

                # The subscriptions Redis holds are exactly what open streams read: those left
                # during the outage were not resubscribed.
                subscribed = _subscribed_in_redis(pub, list(range(1, 16)) + list(range(101, 111)))
                assert {p for p, n in subscribed.items() if n} == {1, *range(106, 111)}
                assert all(n == 1 for n in subscribed.values() if n)

            m = gw.gateway.metrics()
            assert m["subscriber_outages"] == 1 and m["subscriber_up"]
            assert m["streams_told_of_loss"] == 20
            assert wait_for(lambda: gw.gateway.metrics()["loss_notices_sent"] == 20)
            (outage,) = m["outages"]
            assert outage["streams_told"] == 20
            assert outage["started_at"] <= seen_at and outage["ended_at"] >= back_at
            assert m["outage_s_total"] >= back_at - seen_at
        finally:
            pub.close()
            for c in clients:
                c.close()


@pytest.mark.redis
def test_outage_in_pattern_mode_tells_every_stream(own_redis: Restartable) -> None:
    """With one PSUBSCRIBE for every channel, a lost subscription concerns every stream."""
    clients: list[RawSSE] = []
    with start_gateway(
        backend="redis", redis_url=own_redis.url, secret=SECRET, subscription_mode="pattern"
    ) as gw:
        pub = redis.Redis.from_url(own_redis.url)
        try:
            clients += [_open(gw, p) for p in (1, 2, 3, 3)]
            assert all(c.connected() for c in clients)
            own_redis.stop()
            assert not _redis_answers(own_redis.url)
            for c in clients:
                assert c.read_until(_told, 10), c.payloads()[-3:]
            own_redis.start()
            with _open(gw, 3) as tab:
                assert tab.connected()
                assert _receives(tab, pub, 3, 7)
            m = gw.gateway.metrics()
            assert m["subscriber_outages"] == 1 and m["streams_told_of_loss"] == 4
        finally:
            pub.close()
            for c in clients:
                c.close()


# ---------------------------------------------------------------------- resets by Redis


@pytest.mark.redis
def test_client_kill_tells_clients_and_they_stream_again(own_redis: Restartable) -> None:
    """``CLIENT KILL TYPE pubsub`` resets the shared subscription: streams are told, then stream again."""
    clients: list[RawSSE] = []
    with start_gateway(backend="redis", redis_url=own_redis.url, secret=SECRET) as gw:
        pub = redis.Redis.from_url(own_redis.url)
        try:
            players = [1, 1, 2, 3]
            clients += [_open(gw, p) for p in players]
            assert all(c.connected() for c in clients)
            assert pub.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1  # it killed
            for c in clients:
                assert c.read_until(_told, 10), c.payloads()[-3:]
            # What a browser does next: reconnect; each new stream receives.
            for p in players:
                with _open(gw, p) as again:
                    assert again.connected()
                    assert _receives(again, pub, p, 100 + p)
            m = gw.gateway.metrics()
            assert m["subscriber_outages"] == 1 and m["streams_told_of_loss"] == 4
            assert m["subscriber_up"] and m["outages"][0]["ended_at"] is not None
            assert any(what == "reconnected" for _, what in gw.gateway.subscriber_log())
        finally:
            pub.close()
            for c in clients:
                c.close()


@pytest.mark.redis
def test_output_buffer_limit_reset_tells_clients_and_they_stream_again() -> None:
    """Redis closes a lagging subscriber past ``client-output-buffer-limit pubsub``: streams are told."""
    clients: list[RawSSE] = []
    with (
        restartable({"client-output-buffer-limit": "pubsub 256kb 64kb 1"}) as server,
        start_gateway(
            backend="redis", redis_url=server.url, secret=SECRET, send_buffer_bytes=4096
        ) as gw,
    ):
        pub = redis.Redis.from_url(server.url)
        try:
            players = [7, 7, 8]
            clients += [_open(gw, p) for p in players]
            # The flood goes to player 9, whose client does not read: the gateway keeps at most
            # its queue for it, and the other streams are not made to parse thousands of events.
            flooded = RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(9)}, rcvbuf=4096)
            clients.append(flooded)
            assert all(c.connected() for c in clients)
            # A lagging node: the reader stops, Redis's output buffer for it grows past the limit.
            gw.gateway.stall_subscriber(1.5)
            gw.call(lambda: None)  # the stall is in force once a later call has run in the loop
            published = 0
            for _ in range(100):  # bounded: at most 100 x 2,000 x 1 KB
                pipe = pub.pipeline(transaction=False)
                for i in range(2000):
                    pipe.publish("SSE::1001::9", event(published + i, player=9, pad=1000))
                pipe.execute()
                published += 2000
                if "output buffer limits" in server.log_text():
                    break
            assert "output buffer limits" in server.log_text()  # the fault is real
            for c in clients:
                assert c.read_until(_told, 15), c.payloads()[-3:]
            for p in [*players, 9]:
                with _open(gw, p) as again:
                    assert again.connected()
                    assert _receives(again, pub, p, 10**6 + p)
            m = gw.gateway.metrics()
            assert m["events_in"] < published + 4  # the killed backlog never reached the gateway
            assert m["subscriber_outages"] == 1 and m["streams_told_of_loss"] == 4
            assert m["subscriber_up"]
        finally:
            pub.close()
            for c in clients:
                c.close()


def test_a_channel_wanted_again_before_its_unsubscribe_went_out_is_confirmed() -> None:
    """The last stream of a channel leaves and a new one comes in the same loop turn: no new
    SUBSCRIBE goes out (the subscription never stopped), so the new stream must not wait for one."""

    async def scenario() -> None:
        sub = SharedSubscriber(
            client_factory=fakeredis_factory(fakeredis.FakeServer()), deliver=lambda c, d: None
        )
        sub.start(asyncio.get_running_loop())
        try:
            await asyncio.wait_for(sub.subscribe(b"SSE::1001::1"), 5)
            sub.unsubscribe(b"SSE::1001::1")
            again = sub.subscribe(b"SSE::1001::1")
            await asyncio.wait_for(again, 5)
        finally:
            await sub.aclose()

    asyncio.run(scenario())


# ---------------------------------------------------------------------- the byte cap


def _fanout(policy: str, max_queue_bytes: int | None) -> tuple[Fanout, Connection]:
    fanout = Fanout(
        buffer_size=50,
        overflow_policy=policy,
        keepalive_interval_s=15,
        record_events=True,
        max_write_batch=1,
        max_queue_bytes=max_queue_bytes,
    )
    conn = Connection(1, 1001, 7, "SSE::1001::7", transport=None)
    fanout.add(conn, b"SSE::1001::7")
    return fanout, conn


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "disconnect"])
def test_byte_cap_applies_the_overflow_policy(policy: str) -> None:
    fanout, conn = _fanout(policy, 10_000)
    frames = [event(i, player=7, pad=2_000).encode() for i in range(20)]
    for data in frames:
        fanout.deliver(b"SSE::1001::7", data)
    size = len(b"data: %b\n\n" % frames[0])
    assert conn.queued_bytes == sum(len(item.frame) for item in conn.queue) <= 10_000
    assert fanout.queue_bytes_peak <= 10_000
    fates = [f.fate for f in fanout.log]
    if policy == "drop_newest":
        assert (
            len(conn.queue) == 10_000 // size
            and fates.count("dropped_overflow") == 20 - 10_000 // size
        )
    elif policy == "drop_oldest":
        assert [int(e.raw.split('"seq": ')[1].split(",")[0]) for e in conn.queue][-1] == 19
        assert fates.count("evicted") == 20 - len(conn.queue)
    else:
        assert conn.slow and fates == ["disconnected_slow"]


def test_an_event_bigger_than_the_cap_fits_an_empty_queue() -> None:
    fanout, conn = _fanout("drop_newest", 1_000)
    fanout.deliver(b"SSE::1001::7", event(1, player=7, pad=5_000).encode())
    fanout.deliver(b"SSE::1001::7", event(2, player=7).encode())
    assert len(conn.queue) == 1 and fanout.dropped_overflow == 1
    fanout.discard_queue(conn)
    assert conn.queued_bytes == 0


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_a_stalled_client_holds_at_most_the_byte_cap(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Big events for a client that stopped reading: its queue stays under the byte cap, not 50 events."""
    cap = 256 * 1024
    n, pad = 120, 60_000

    def peak(max_queue_bytes: int | None) -> tuple[int, int, dict]:
        with start_gateway(
            secret=SECRET,
            max_queue_bytes=max_queue_bytes,
            send_buffer_bytes=4096,
            keepalive_interval_s=60,
            **gateway_kwargs(backend, request),
        ) as gw:
            with RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(7)}, rcvbuf=4096) as c:
                assert c.connected()  # and never reads again
                pub = gw.publisher()
                try:
                    for i in range(n):
                        pub.publish("SSE::1001::7", event(i, player=7, pad=pad))
                finally:
                    pub.close()
                assert wait_for(lambda: gw.gateway.metrics()["events_in"] == n, 30)
                queued = gw.call(
                    lambda: max(
                        conn.queued_bytes for conn in gw.gateway._fanout.routes[b"SSE::1001::7"]
                    )
                )
                return queued, gw.gateway.metrics()["queue_bytes_peak"], gw.gateway.metrics()

    # Reproduced: without a byte cap the stalled client's queue holds 50 big events.
    queued, top, m = peak(None)
    assert top > 10 * cap and queued > 10 * cap, m
    # Held: with it, never more than the cap, and the overflow policy dropped the rest.
    queued, top, m = peak(cap)
    assert 0 < queued <= cap and top <= cap, m
    assert m["max_queue_bytes"] == cap and m["dropped_overflow"] > 0
