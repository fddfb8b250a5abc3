"""The gateway's stream and latest delivery against a real redis-server: replay after Last-Event-ID, the recovery event, dedupe, conflation, cached values.

The replay cases are the simulator's hand-checked one (tests/test_delivery.py): one client, 100
events, away for events 21-70. Here "away" is a closed stream: the client reads 1-20, leaves,
21-70 are published, it comes back with the id of event 20 and 71-100 are published live.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from sse_helpers import RawSSE, wait_for

from sse_sim.errors import SseSimError
from sse_sim.events.publisher import encode_stream_message, latest_key, publish_delivery
from sse_sim.real.auth import mint_token
from sse_sim.real.gateway import create_gateway, make_backend, start_gateway
from sse_sim.real.gateway.replay import (
    HistoryEntry,
    event_type_of,
    frame_of,
    last_event_id,
    parse_stream_id,
    select_replay,
    split_stream_message,
)

SECRET = b"r" * 32
BRAND = 1001
PATH = f"/gateway/sse/{BRAND}/stream"
KIND = "game_result"  # an announced type with a free-form payload
BALANCE = "gamification_balance_update"

# Each test reads its own player's channel, stream and keys on the session's redis-server.
_players = itertools.count(7000)


@pytest.fixture
def redis_client(redis_url):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def _gateway(redis_url: str, **options: Any) -> Any:
    return start_gateway(backend="redis", redis_url=redis_url, secret=SECRET, **options)


def _headers(player: int, **extra: str) -> dict[str, str]:
    return {"x-auth-token": mint_token(SECRET, BRAND, player, 3600), **extra}


def _seqs(client: RawSSE) -> list[int]:
    return [p["event_data"]["seq"] for p in client.app_events()]


def _system(client: RawSSE, kind: str) -> list[dict[str, Any]]:
    return [p for p in client.payloads() if p.get("type") == kind]


class _Publisher:
    """Publishes ``{"seq": i}`` events to one player the way a gateway under ``delivery`` expects."""

    def __init__(self, client: Any, player: int, delivery: str = "stream", **options: Any) -> None:
        self.client, self.player, self.delivery, self.options = client, player, delivery, options
        self.ids: dict[int, str] = {}
        client.delete(f"SSE::{BRAND}::{player}")

    def __call__(self, *seqs: int, kind: str = KIND) -> None:
        for i in seqs:
            done = publish_delivery(
                self.client, BRAND, self.player, kind, {"seq": i}, delivery=self.delivery, **self.options
            )
            if done.entry_id is not None:
                self.ids[i] = done.entry_id


def _away_and_back(redis_url: str, redis_client: Any, *, resume: str = "header", **options: Any) -> tuple[RawSSE, Any, _Publisher]:
    """Read 1-20, leave, 21-70 published, come back resuming after 20, 71-100 published live; the returned client has read it all."""
    player = next(_players)
    history = {k: options[k] for k in ("history_size", "history_ttl_s") if k in options}
    publish = _Publisher(redis_client, player, **history)
    gw = _gateway(redis_url, delivery="stream", **options)
    with gw:
        with RawSSE(gw.port, PATH, headers=_headers(player)) as first:
            assert first.connected()
            publish(*range(1, 21))
            assert first.read_until(lambda c: len(c.app_events()) == 20)
            assert [m.id for m in first.messages[-20:]] == [publish.ids[i] for i in range(1, 21)]
            last = first.messages[-1].id
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        publish(*range(21, 71))
        if resume == "header":
            again = RawSSE(gw.port, PATH, headers=_headers(player, **{"last-event-id": last}))
        elif resume == "query":
            again = RawSSE(gw.port, f"{PATH}?lastEventId={last}", headers=_headers(player))
        else:
            again = RawSSE(gw.port, PATH, headers=_headers(player))
        with again:
            assert again.connected()
            # the replay comes right behind `connected` (or nothing does): wait for it, then go live
            if resume != "none":
                assert again.read_until(lambda c: _system(c, "recovery"))
            publish(*range(71, 101))
            assert again.read_until(lambda c: _seqs(c)[-1:] == [100])
        return again, gw.gateway, publish


# ------------------------------------------------------------------ the hand-checked case


@pytest.mark.redis
@pytest.mark.parametrize(
    ("options", "replayed", "recovered"),
    [
        pytest.param({"history_size": 100}, range(21, 71), True, id="history-100"),
        pytest.param({"history_size": 50}, range(21, 71), True, id="history-50-exactly-the-gap"),
        pytest.param({"history_size": 10}, range(61, 71), False, id="history-10"),
        pytest.param({"history_size": 100, "max_replay": 5}, range(66, 71), False, id="max-replay-5"),
    ],
)
def test_replay_after_last_event_id_matches_the_simulator(redis_url, redis_client, options, replayed, recovered) -> None:  # type: ignore[no-untyped-def]
    client, gateway, publish = _away_and_back(redis_url, redis_client, **options)
    assert _seqs(client) == [*replayed, *range(71, 101)]  # each once, in order
    assert _system(client, "recovery") == [
        {"type": "recovery", "recovered": recovered, "replayed": len(replayed)}
    ]
    # the recovery event comes after `connected` and right before the replayed frames
    kinds = [p.get("type", "event") for p in client.payloads()]
    assert kinds[:2] == ["connected", "recovery"]
    assert all(k == "event" for k in kinds[2 : 2 + len(replayed)])
    # every stream event carries its entry id, replayed or live
    ids = [m.id for m in client.messages if '"event_type"' in m.data]
    assert ids == [publish.ids[i] for i in [*replayed, *range(71, 101)]]
    m = gateway.metrics()
    assert m["replayed_entries"] == len(replayed) and m["xrange_calls"] == 1
    assert (m["recoveries_true"], m["recoveries_false"]) == ((1, 0) if recovered else (0, 1))
    assert m["delivery"] == "stream" and m["history_size"] == options["history_size"]


@pytest.mark.redis
def test_the_query_parameter_resumes_like_the_header(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = _away_and_back(redis_url, redis_client, resume="query", history_size=100)
    assert _seqs(client) == list(range(21, 101))
    assert _system(client, "recovery") == [{"type": "recovery", "recovered": True, "replayed": 50}]


@pytest.mark.redis
def test_without_last_event_id_nothing_is_replayed(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    client, gateway, _ = _away_and_back(redis_url, redis_client, resume="none", history_size=100)
    assert _seqs(client) == list(range(71, 101))
    assert _system(client, "recovery") == []
    assert gateway.metrics()["xrange_calls"] == 0


@pytest.mark.redis
def test_entries_older_than_the_ttl_are_not_replayed(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    # The simulator's case (TTL 0.3 s at the reconnect: 41-70 replayed, 21-40 lost) with the
    # entries' ages set by their ids instead of waiting: 21-40 are 5 s old, 41-70 1 s, TTL 3 s.
    player = next(_players)
    channel = f"SSE::{BRAND}::{player}"
    redis_client.delete(channel)
    now_ms = int(time.time() * 1000)
    ids: dict[int, str] = {}

    def add(i: int, ms: int, publish: bool) -> None:
        envelope = json.dumps(
            {"brand_id": BRAND, "player_id": player, "event_type": KIND, "event_data": {"seq": i}},
            separators=(",", ":"),
        )
        ids[i] = f"{ms}-{i}"
        redis_client.xadd(channel, {"envelope": envelope}, id=ids[i])
        if publish:
            redis_client.publish(channel, encode_stream_message(ids[i], envelope))

    with _gateway(redis_url, delivery="stream", history_size=100, history_ttl_s=3.0) as gw:
        with RawSSE(gw.port, PATH, headers=_headers(player)) as first:
            assert first.connected()
            for i in range(1, 21):
                add(i, now_ms - 10_000, publish=True)
            assert first.read_until(lambda c: len(c.app_events()) == 20)
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        for i in range(21, 41):
            add(i, now_ms - 5_000, publish=False)
        for i in range(41, 71):
            add(i, now_ms - 1_000, publish=False)
        with RawSSE(gw.port, PATH, headers=_headers(player, **{"last-event-id": ids[20]})) as again:
            assert again.connected()
            assert again.read_until(lambda c: _system(c, "recovery"))
            publish_delivery(redis_client, BRAND, player, KIND, {"seq": 71}, delivery="stream")
            assert again.read_until(lambda c: _seqs(c)[-1:] == [71])
        assert _seqs(again) == list(range(41, 72))
        assert _system(again, "recovery") == [{"type": "recovery", "recovered": False, "replayed": 30}]


@pytest.mark.redis
def test_a_last_event_id_that_is_not_a_stream_id_is_handled_as_before(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    player = next(_players)
    publish = _Publisher(redis_client, player)
    with _gateway(redis_url, delivery="stream") as gw:
        publish(1, 2)
        with RawSSE(gw.port, PATH, headers=_headers(player, **{"last-event-id": "refused"})) as c:
            assert c.connected()
            publish(3)
            assert c.read_until(lambda c: _seqs(c) == [3])
            assert _system(c, "recovery") == []
        assert gw.gateway.metrics()["xrange_calls"] == 0


@pytest.mark.redis
def test_events_published_during_the_replay_read_are_neither_lost_nor_doubled(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    player = next(_players)
    channel = f"SSE::{BRAND}::{player}"
    publish = _Publisher(redis_client, player)
    with _gateway(redis_url, delivery="stream", history_size=100) as gw:
        with RawSSE(gw.port, PATH, headers=_headers(player)) as first:
            assert first.connected()
            publish(*range(1, 11))
            assert first.read_until(lambda c: len(c.app_events()) == 10)
            last = first.messages[-1].id
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        publish(*range(11, 21))  # away

        # Hold the history read where the test says, to publish into each window on purpose.
        replayer = gw.gateway._replayer
        real_history = replayer._history
        started, go_read, read_done, go_send = (threading.Event() for _ in range(4))

        async def held_history(key: str) -> Any:
            started.set()
            await asyncio.to_thread(go_read.wait, 30)
            entries = await real_history(key)
            read_done.set()
            await asyncio.to_thread(go_send.wait, 30)
            return entries

        replayer._history = held_history
        replayer.read_timeout_s = 120.0
        with RawSSE(gw.port, PATH, headers=_headers(player, **{"last-event-id": last})) as again:
            assert started.wait(30)
            # subscribed, history not read yet: live and in the history both
            seen = gw.gateway.metrics()["events_in"]
            publish(*range(21, 31))
            # in the history, its PUBLISH only after the replay went out
            envelope = json.dumps(
                {"brand_id": BRAND, "player_id": player, "event_type": KIND, "event_data": {"seq": 31}},
                separators=(",", ":"),
            )
            late_id = redis_client.xadd(channel, {"envelope": envelope}).decode()
            assert wait_for(lambda: gw.gateway.metrics()["events_in"] == seen + 10)
            go_read.set()
            assert read_done.wait(30)
            publish(*range(32, 36))  # read already: live only
            assert wait_for(lambda: gw.gateway.metrics()["events_in"] == seen + 14)
            go_send.set()
            assert again.connected()
            assert again.read_until(lambda c: _seqs(c)[-1:] == [35])
            redis_client.publish(channel, encode_stream_message(late_id, envelope))
            publish(*range(36, 41))
            assert again.read_until(lambda c: _seqs(c)[-1:] == [40])
        assert _seqs(again) == list(range(11, 41))
        assert _system(again, "recovery") == [{"type": "recovery", "recovered": True, "replayed": 21}]
        # 21-30 queued live during the read, 31 published after the replay
        assert gw.gateway.metrics()["replay_duplicates_dropped"] == 11


# ------------------------------------------------------------------ latest


def _balance(seq: int) -> dict[str, Any]:
    return {"balance": seq, "total_received": seq, "total_redeemed": 0, "seq": seq}


def _balances(client: RawSSE) -> list[int]:
    return [p["event_data"]["seq"] for p in client.app_events() if p["event_type"] == BALANCE]


@pytest.mark.redis
def test_a_newer_latest_value_replaces_the_pending_one_for_a_stalled_client(redis_url, redis_client) -> None:  # type: ignore[no-untyped-def]
    player = next(_players)
    channel = f"SSE::{BRAND}::{player}"
    options = {"delivery_types": {BALANCE: "latest"}, "record_events": True, "send_buffer_bytes": 4096}
    with _gateway(redis_url, **options) as gw:
        with RawSSE(gw.port, PATH, headers=_headers(player), rcvbuf=4096) as c:
            assert c.connected()
            big = {"brand_id": BRAND, "player_id": player, "event_type": "notification"}
            # the writer blocks on the first big event (the client reads nothing yet); the rest wait
            for i in range(3):
                redis_client.publish(channel, json.dumps({**big, "event_data": {"seq": 100 + i, "pad": "x" * 100_000}}))
            for v in range(1, 11):
                publish_delivery(redis_client, BRAND, player, BALANCE, _balance(v), delivery="latest")
            redis_client.publish(channel, json.dumps({**big, "event_data": {"seq": 200}}))
            assert wait_for(lambda: gw.gateway.metrics()["events_in"] == 14)
            assert c.read_until(lambda c: any(p["event_data"]["seq"] == 200 for p in c.app_events()), 30)
        order = [p["event_data"]["seq"] for p in c.app_events()]
        # v10 took v1's place in the queue: after the big events, before the marker
        assert order == [100, 101, 102, 10, 200]
        assert gw.gateway.metrics()["superseded"] == 9
        fates = [json.loads(e.raw_message)["event_data"]["seq"] for e in gw.gateway.event_log() if e.fate == "superseded"]
        assert fates == list(range(1, 10))


@pytest.mark.redis
@pytest.mark.parametrize("default_latest", [False, True], ids=["types-listed", "latest-by-default"])
def test_the_cached_latest_values_are_sent_at_every_subscription(redis_url, redis_client, default_latest) -> None:  # type: ignore[no-untyped-def]
    player = next(_players)
    channel = f"SSE::{BRAND}::{player}"
    wallet = "wallet_balance_update"
    for kind in (BALANCE, wallet):
        redis_client.delete(latest_key(channel, kind))
    if default_latest:  # latest for every type not overridden: the keys are found by SCAN
        options: dict[str, Any] = {"delivery": "latest", "delivery_types": {KIND: "pubsub"}}
    else:
        options = {"delivery_types": {BALANCE: "latest", wallet: "latest"}}

    def balance(v: int, kind: str = BALANCE) -> None:
        publish_delivery(redis_client, BRAND, player, kind, _balance(v), delivery="latest")

    with _gateway(redis_url, **options) as gw:
        with RawSSE(gw.port, PATH, headers=_headers(player)) as first:
            assert first.connected()
            assert _system(first, "recovery") == []  # nothing cached yet
            balance(1)
            assert first.read_until(lambda c: _balances(c) == [1])
        assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)
        for v in (2, 3, 4):
            balance(v)
        balance(7, wallet)
        publish_delivery(redis_client, BRAND, player, KIND, {"seq": 99})  # pub/sub: lost while away
        with RawSSE(gw.port, PATH, headers=_headers(player)) as again:
            assert again.connected()
            assert again.read_until(lambda c: len(c.app_events()) == 2)
            balance(5)
            assert again.read_until(lambda c: _balances(c) == [4, 5])
        payloads = again.payloads()
        assert payloads[1] == {"type": "recovery", "recovered": None, "replayed": 2}
        # the cached values, by type, before any live event
        assert [(p["event_type"], p["event_data"]["seq"]) for p in again.app_events()] == [
            (BALANCE, 4),
            (wallet, 7),
            (BALANCE, 5),
        ]
        m = gw.gateway.metrics()
        assert m["replayed_latest"] == 2 and m["recoveries_true"] == m["recoveries_false"] == 0


# ------------------------------------------------------------------ the pieces, without Redis


def _entries(ids: list[int], ms: dict[int, int] | None = None) -> list[HistoryEntry]:
    """Entries for events ``ids`` (id = (ms, event)), newest first as XREVRANGE gives them."""
    ms = ms or {}
    return [
        HistoryEntry((ms.get(i, 1000), i), f"{ms.get(i, 1000)}-{i}".encode(), b"{}")
        for i in sorted(ids, reverse=True)
    ]


@pytest.mark.parametrize(
    ("stored", "history_size", "max_replay", "ttl", "replayed", "recovered"),
    [
        (range(1, 71), 100, 300, None, range(21, 71), True),
        (range(1, 71), 50, 300, None, range(21, 71), True),  # the 51st read is event 20
        (range(21, 71), 50, 300, None, range(21, 71), False),  # 20 trimmed: cannot tell
        (range(1, 71), 10, 300, None, range(61, 71), False),
        (range(1, 71), 100, 5, None, range(66, 71), False),
        (range(1, 71), 100, 300, 0.3, range(41, 71), False),
        (range(1, 21), 100, 300, None, [], True),  # nothing missed
        ([], 100, 300, None, [], False),  # no history at all
    ],
)
def test_select_replay(stored, history_size, max_replay, ttl, replayed, recovered) -> None:  # type: ignore[no-untyped-def]
    # event i published at (i - 1) * 10 ms; the reconnect at 695 ms, as in the simulator's case
    ms = {i: (i - 1) * 10 for i in range(1, 101)}
    read = _entries(list(stored), ms)[: history_size + 1]
    chosen, ok = select_replay(
        read, (ms[20], 20), history_size=history_size, history_ttl_s=ttl, max_replay=max_replay, now_ms=695
    )
    assert [e.id[1] for e in chosen] == list(replayed)
    assert ok is recovered


def test_stream_messages_and_ids_are_read_exactly() -> None:
    envelope = b'{"brand_id":1,"player_id":2,"event_type":"gamification_balance_update","event_data":{"balance":1500.00}}'
    message = encode_stream_message("1700000000000-3", envelope.decode()).encode()
    assert split_stream_message(message) == ((1700000000000, 3), b"1700000000000-3", envelope)
    spaced = b'{"id": "1-2", "envelope": {"balance": 1500.00}}'
    assert split_stream_message(spaced) == ((1, 2), b"1-2", b'{"balance":1500.00}')
    assert split_stream_message(envelope) is None
    assert split_stream_message(b'{"id":"refused","envelope":{}}') is None
    assert event_type_of(envelope) == b"gamification_balance_update"
    assert frame_of(envelope, b"1-2") == b"id: 1-2\ndata: " + envelope + b"\n\n"
    assert frame_of('{"a":"é"}'.encode()) == 'data: {"a":"é"}\n\n'.encode()
    assert [parse_stream_id(v) for v in ("1-0", b"17-5", "refused", "1", "-1-0", "")] == [
        (1, 0), (17, 5), None, None, None, None
    ]
    scope = {"headers": [(b"last-event-id", b"5-1")], "query_string": b"lastEventId=9-9"}
    assert last_event_id(scope) == (5, 1)  # the header (a browser's latest) wins
    assert last_event_id({"headers": [], "query_string": b"token=x&lastEventId=9-9"}) == (9, 9)
    assert last_event_id({"headers": [(b"last-event-id", b"refused")], "query_string": b""}) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delivery": "kafka"}, "delivery must be one of"),
        ({"delivery_types": {"x": "sometimes"}}, "delivery_types"),
        ({"history_size": 0}, "history_size"),
        ({"history_ttl_s": -1}, "history_ttl_s"),
        ({"max_replay": 0}, "max_replay"),
    ],
)
def test_bad_delivery_options_are_refused(options: dict[str, Any], message: str) -> None:
    backend = make_backend("fakeredis")
    with pytest.raises(SseSimError, match=message):
        create_gateway(redis_client_factory=backend.factory, secret=SECRET, **options)


def test_the_cli_takes_the_delivery_options_and_refuses_bad_ones() -> None:
    run = [sys.executable, "-m", "sse_sim.cli", "gateway", "--port", "0"]
    bad = subprocess.run([*run, "--delivery-type", "x=often"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--delivery-type 'x=often'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    env = {**os.environ, "COLUMNS": "200"}
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=120, env=env)
    for option in ("--delivery", "--history-size", "--history-ttl", "--max-replay", "--retry-ms", "--delivery-type"):
        assert option in helped.stdout


def test_the_demo_page_is_served_with_a_strict_policy() -> None:
    import http.client

    origin = "https://casino.example"
    with start_gateway(secret=SECRET, cors_origins=[origin, "*"]) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/gateway/demo?brand=1001&player=7&token=abc")
        response = conn.getresponse()
        page = response.read().decode()
        assert response.status == 200 and response.getheader("content-type").startswith("text/html")
        csp = response.getheader("content-security-policy")
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert csp.endswith(f"frame-ancestors 'self' {origin}")  # not "*"
        assert response.getheader("referrer-policy") == "no-referrer"
        assert response.getheader("cache-control") == "no-store"
        assert "new EventSource(url)" in page and f'["{origin}"]' in page
        conn.request("POST", "/gateway/demo")
        response = conn.getresponse()
        response.read()
        assert response.status == 405
        conn.close()
