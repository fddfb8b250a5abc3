"""The publisher against fakeredis, sync and asyncio: channel, exact payload, receiver counts."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import fakeredis
import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from sse_sim.errors import EventValidationError
from sse_sim.events import (
    GamificationBalanceUpdate,
    InvalidChannelError,
    MemoryNotificationStore,
    NotificationRecord,
    apublish,
    apublish_notifications,
    apublish_pipelined,
    encode_envelope,
    parse_channel,
    parse_event,
    publish,
    publish_notifications,
    publish_pipelined,
)

BALANCE = {
    "balance": Decimal("1500.10"),
    "total_received": Decimal("5000"),
    "total_redeemed": Decimal("3499.90"),
}


def drain(pubsub: Any) -> list[tuple[str, str]]:
    out = []
    while (msg := pubsub.get_message(timeout=0.05)) is not None:
        if msg["type"] in ("message", "pmessage"):
            out.append((msg["channel"].decode(), msg["data"].decode()))
    return out


@pytest.fixture
def sync_redis() -> Any:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()


def test_envelope_bytes_are_compact_and_exact() -> None:
    channel, payload = encode_envelope(1001, 12345, "gamification_balance_update", BALANCE)
    assert channel == "SSE::1001::12345"
    assert payload == (
        '{"brand_id":1001,"player_id":12345,"event_type":"gamification_balance_update",'
        '"event_data":{"balance":1500.10,"total_received":5000,"total_redeemed":3499.90}}'
    )
    assert encode_envelope(
        1, 2, "gamification_balance_update", GamificationBalanceUpdate(**BALANCE)
    )[1] == (payload.replace("1001", "1", 1).replace("12345", "2", 1))


def test_publish_sync_counts_receivers_and_delivers_exact_json(sync_redis: Any) -> None:
    assert (
        publish(sync_redis, 1001, 12345, "gamification_balance_update", BALANCE) == 0
    )  # nobody listens
    direct = sync_redis.pubsub()
    direct.subscribe("SSE::1001::12345")
    pattern = sync_redis.pubsub()
    pattern.psubscribe("SSE::*")
    drain(direct), drain(pattern)
    count = publish(sync_redis, 1001, 12345, "gamification_balance_update", BALANCE)
    assert isinstance(count, int) and count == 2
    ((channel, data),) = drain(direct)
    assert drain(pattern) == [(channel, data)]
    assert parse_channel(channel) == (1001, 12345)
    event = parse_event(data, strict=True)
    assert event.event_data.balance == Decimal("1500.10")
    assert '"balance":1500.10' in data
    direct.close(), pattern.close()


def test_publish_checks_before_sending(sync_redis: Any) -> None:
    pubsub = sync_redis.pubsub()
    pubsub.psubscribe("*")
    drain(pubsub)
    with pytest.raises(InvalidChannelError):
        publish(sync_redis, 1001, "*", "notification", {})  # type: ignore[arg-type]
    with pytest.raises(EventValidationError, match=r"\$.event_data.message_id"):
        publish(
            sync_redis,
            1,
            2,
            "notification",
            {
                "message_id": "x",
                "event": "a",
                "event_details": {},
                "is_read": False,
                "time": "2025-10-22 14:30:45",
            },
        )
    with pytest.raises(EventValidationError, match=r"\$.event_data: not serializable"):
        publish(sync_redis, 1, 2, "custom", {"x": object()}, validate=False)
    with pytest.raises(EventValidationError, match=r"\$.event_type"):
        publish(sync_redis, 1, 2, "", {}, validate=False)
    assert drain(pubsub) == []
    pubsub.close()


def test_publish_pipelined_sync(sync_redis: Any) -> None:
    pubsub = sync_redis.pubsub()
    pubsub.subscribe("SSE::1::2")
    drain(pubsub)
    messages = [(1, 2 if i % 2 == 0 else 3, "game_result", {"round": i}) for i in range(7)]
    assert publish_pipelined(sync_redis, messages, batch_size=3) == [1, 0, 1, 0, 1, 0, 1]
    assert [json.loads(d)["event_data"]["round"] for _, d in drain(pubsub)] == [0, 2, 4, 6]
    assert publish_pipelined(sync_redis, []) == []
    with pytest.raises(EventValidationError, match=r"\$\[1\]\.event_data"):
        publish_pipelined(sync_redis, [(1, 2, "game_result", {}), (1, 2, "notification", {})])
    with pytest.raises(EventValidationError, match=r"\$\[0\]: expected a \(brand_id"):
        publish_pipelined(sync_redis, [(1, 2)])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        publish_pipelined(sync_redis, messages, batch_size=0)
    assert drain(pubsub) == []  # a bad message sends none
    pubsub.close()


def test_publish_notifications_stores_then_publishes(sync_redis: Any) -> None:
    store = MemoryNotificationStore()
    pubsub = sync_redis.pubsub()
    pubsub.subscribe("SSE::1001::12345")
    drain(pubsub)
    when = datetime(2025, 10, 22, 14, 30, 45)
    records = [
        NotificationRecord.create(
            1001, 12345, "bonus_granted", {"bonus_amount": 100, "currency": "USD"}, time=when
        ),
        NotificationRecord.create(1001, 999, "kyc_approved", time=when),
    ]
    assert publish_notifications(sync_redis, store, records) == [1, 0]
    assert store.for_player(1001, 12345) == records[:1]
    ((_, data),) = drain(pubsub)
    assert list(json.loads(data)) == ["brand_id", "player_id", "event_type", "event_data"]
    assert json.loads(data)["event_data"] == {
        "message_id": str(records[0].message_id),
        "event": "bonus_granted",
        "event_details": {"bonus_amount": 100, "currency": "USD"},
        "is_read": False,
        "time": "2025-10-22 14:30:45",
    }
    # Storing fails (duplicate ids): nothing is published.
    with pytest.raises(ValueError, match="already stored"):
        publish_notifications(sync_redis, store, records[:1])
    assert drain(pubsub) == []
    pubsub.close()


def test_publish_errors_are_logged_like_the_go_service(caplog: pytest.LogCaptureFixture) -> None:
    # no retries: the first refused connection is the error the publisher must log
    broken = redis_lib.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = MemoryNotificationStore()
    record = NotificationRecord.create(1, 2, "deposit_success")
    assert publish_notifications(broken, store, [record]) == [None]
    assert store.records == [record] and "publishing notification" in caplog.text
    with pytest.raises(redis_lib.ConnectionError):
        publish_notifications(
            broken, MemoryNotificationStore(), [record], raise_on_publish_error=True
        )
    broken.close()


def test_sync_notifications_refuse_an_async_client() -> None:
    client = fakeredis.FakeAsyncRedis()
    with pytest.raises(TypeError, match="apublish_notifications"):
        publish_notifications(
            client, MemoryNotificationStore(), [NotificationRecord.create(1, 2, "kyc_approved")]
        )


def test_async_client_everything() -> None:
    async def scenario() -> None:
        server = fakeredis.FakeServer()
        client = fakeredis.FakeAsyncRedis(server=server)
        pubsub = client.pubsub()
        await pubsub.psubscribe("SSE::*")
        await pubsub.get_message(timeout=0.1)
        pending = publish(client, 1001, 12345, "gamification_balance_update", BALANCE)
        assert not isinstance(pending, int)
        assert await pending == 1
        assert await apublish(client, 1001, 7, "message", {"text": "hi"}) == 1
        assert (
            await apublish_pipelined(
                client, [(1, 2, "game_result", {"r": i}) for i in range(5)], batch_size=2
            )
            == [1] * 5
        )
        assert await publish_pipelined(client, []) == []

        class AsyncStore(MemoryNotificationStore):
            async def insert_notifications(self, notifications: Any) -> None:  # type: ignore[override]
                super().insert_notifications(notifications)

        store = AsyncStore()
        record = NotificationRecord.create(
            1001, 12345, "tournament_win", {"tournament_position": 1}
        )
        assert await apublish_notifications(client, store, [record]) == [1]
        assert store.records == [record]
        got = []
        while (msg := await pubsub.get_message(timeout=0.1)) is not None:
            if msg["type"] == "pmessage":
                got.append(json.loads(msg["data"], parse_float=Decimal))
        assert len(got) == 8
        assert got[0]["event_data"]["total_redeemed"] == Decimal("3499.90")
        assert got[-1]["event_data"]["event"] == "tournament_win"
        await pubsub.aclose()
        await client.aclose()

    asyncio.run(scenario())
