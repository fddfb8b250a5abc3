"""Publishing events to Redis as the backend services do: ``sseService.Publish`` in Python.

``publish(redis, brand_id, player_id, event_type, event_data)`` writes the compact JSON envelope
to ``SSE::{brand_id}::{player_id}`` and returns the number of subscribers Redis reported (0
means nobody was listening: with pub/sub the event is gone). It works with redis-py and
fakeredis clients, sync and asyncio: with an asyncio client it returns an awaitable.

Arguments are checked before anything is sent, so a bad id or payload raises at the call, not
on the wire: ids via :func:`~sse_sim.events.channel.channel_name`, and the envelope by the
lenient validator unless ``validate=False`` (for load generation that already knows its data
is valid).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from .channel import channel_name, check_id
from .codec import dumps, loads
from .models import Notification, PositiveId
from .validate import InvalidEventError, Problem, validate_event

__all__ = [
    "DELIVERIES",
    "LATEST_KEY_FORMAT",
    "MemoryNotificationStore",
    "NotificationRecord",
    "NotificationStore",
    "apublish",
    "apublish_notifications",
    "apublish_pipelined",
    "decode_stream_message",
    "encode_envelope",
    "encode_stream_message",
    "latest_key",
    "publish",
    "publish_delivery",
    "publish_notifications",
    "publish_pipelined",
    "Published",
]

log = logging.getLogger(__name__)

#: The event type the notification service publishes (Go: ``sse.SSENotificationEvent``).
NOTIFICATION_EVENT = "notification"


def _event_data(event_data: Any) -> Any:
    if isinstance(event_data, BaseModel):
        return event_data.model_dump(mode="python")
    return event_data


def encode_envelope(
    brand_id: int,
    player_id: int,
    event_type: str,
    event_data: dict[str, Any] | BaseModel,
    *,
    validate: bool = True,
) -> tuple[str, str]:
    """The (channel, compact JSON envelope) a publish sends; raises on a bad id or event.

    >>> encode_envelope(1001, 12345, "gamification_balance_update",
    ...                 {"balance": 1500, "total_received": 5000, "total_redeemed": 3500})
    ('SSE::1001::12345', '{"brand_id":1001,"player_id":12345,"event_type":"gamification_balance_update","event_data":{"balance":1500,"total_received":5000,"total_redeemed":3500}}')
    """
    channel = channel_name(brand_id, player_id)
    envelope = {
        "brand_id": int(brand_id),
        "player_id": int(player_id),
        "event_type": event_type,
        "event_data": _event_data(event_data),
    }
    if validate:
        validate_event(envelope)
    elif not isinstance(event_type, str) or not event_type:
        raise InvalidEventError([Problem(("event_type",), "expected a non-empty string")])
    try:
        payload = dumps(envelope)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(
            [Problem(("event_data",), f"not serializable as JSON: {exc}")]
        ) from None
    return channel, payload


def publish(
    redis: Any,
    brand_id: int,
    player_id: int,
    event_type: str,
    event_data: dict[str, Any] | BaseModel,
    *,
    validate: bool = True,
) -> Any:
    """Publish one event; returns the receiver count (an awaitable of it for an asyncio client)."""
    channel, payload = encode_envelope(
        brand_id, player_id, event_type, event_data, validate=validate
    )
    result = redis.publish(channel, payload)
    if inspect.isawaitable(result):
        return _await_int(result)
    return int(result)


async def _await_int(result: Awaitable[Any]) -> int:
    return int(await result)


async def apublish(
    redis: Any,
    brand_id: int,
    player_id: int,
    event_type: str,
    event_data: dict[str, Any] | BaseModel,
    *,
    validate: bool = True,
) -> int:
    """Publish one event through an asyncio client; the receiver count Redis reported."""
    result = publish(redis, brand_id, player_id, event_type, event_data, validate=validate)
    return int(await result) if inspect.isawaitable(result) else int(result)


# ----------------------------------------------------------------- stream and latest delivery

#: How an event is published: ``pubsub`` (the documented PUBLISH), ``stream`` (also kept in a
#: per-player Redis stream for replay) or ``latest`` (also kept as the newest value per type).
DELIVERIES = ("pubsub", "stream", "latest")
#: The key holding a player's newest value of one event type under ``latest`` delivery.
LATEST_KEY_FORMAT = "{channel}::latest::{event_type}"


def encode_stream_message(entry_id: str, envelope: str) -> str:
    """The pub/sub message of an event kept in a stream: its entry id, then the envelope.

    ``{"id":"1700000000000-0","envelope":{...}}``: the gateway's one shared subscription still
    carries every live event, and the id lets it write ``id:`` and drop what a replay already sent.
    """
    return '{"id":' + dumps(entry_id) + ',"envelope":' + envelope + "}"


def decode_stream_message(message: str | bytes) -> tuple[str, str]:
    """(entry id, envelope JSON) of a message made by :func:`encode_stream_message`; ValueError otherwise."""
    try:
        # codec.loads keeps decimals exact, so the envelope is written back digit for digit
        doc = loads(message)
        entry_id, envelope = doc["id"], doc["envelope"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a stream message: {exc}") from None
    if not isinstance(entry_id, str):
        raise ValueError("not a stream message: id is not a string")
    return entry_id, dumps(envelope)


def latest_key(channel: str, event_type: str) -> str:
    """The cache key of a player's newest value of ``event_type``, next to its channel."""
    return LATEST_KEY_FORMAT.format(channel=channel, event_type=event_type)


@dataclass(frozen=True)
class Published:
    """What one publish did: the receivers Redis counted and, under stream delivery, the entry id."""

    receivers: int
    entry_id: str | None = None


def publish_delivery(
    redis: Any,
    brand_id: int,
    player_id: int,
    event_type: str,
    event_data: dict[str, Any] | BaseModel,
    *,
    delivery: str = "pubsub",
    history_size: int = 100,
    history_ttl_s: float | None = None,
    validate: bool = True,
) -> Published:
    """Publish one event the way a gateway under ``delivery`` expects it (a sync redis-py or fakeredis client).

    * ``pubsub``: ``PUBLISH`` the envelope, as :func:`publish`;
    * ``stream``: ``XADD`` it to the stream named like the channel (``MAXLEN ~ history_size``,
      then ``XTRIM MINID ~`` when ``history_ttl_s`` is set), then ``PUBLISH`` the entry id with
      the envelope (:func:`encode_stream_message`);
    * ``latest``: ``SET`` the envelope at :func:`latest_key`, then ``PUBLISH`` it.
    """
    if delivery not in DELIVERIES:
        raise ValueError(f"delivery must be one of {', '.join(DELIVERIES)}, got {delivery!r}")
    channel, payload = encode_envelope(brand_id, player_id, event_type, event_data, validate=validate)
    if delivery == "pubsub":
        return Published(int(redis.publish(channel, payload)))
    if delivery == "latest":
        redis.set(latest_key(channel, event_type), payload)
        return Published(int(redis.publish(channel, payload)))
    raw_id = redis.xadd(channel, {"envelope": payload}, maxlen=int(history_size), approximate=True)
    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
    if history_ttl_s is not None:
        oldest_ms = int(entry_id.split("-")[0]) - int(history_ttl_s * 1000)
        redis.xtrim(channel, minid=f"{max(oldest_ms, 0)}-0", approximate=True)
    return Published(int(redis.publish(channel, encode_stream_message(entry_id, payload))), entry_id)


# -------------------------------------------------------------------------------- pipelined


def _encode_all(
    messages: Iterable[tuple[int, int, str, dict[str, Any] | BaseModel]], validate: bool
) -> list[tuple[str, str]]:
    encoded = []
    for index, message in enumerate(messages):
        try:
            brand_id, player_id, event_type, event_data = message
        except (TypeError, ValueError):
            raise InvalidEventError(
                [
                    Problem(
                        (index,), "expected a (brand_id, player_id, event_type, event_data) tuple"
                    )
                ]
            ) from None
        try:
            encoded.append(
                encode_envelope(brand_id, player_id, event_type, event_data, validate=validate)
            )
        except InvalidEventError as exc:
            raise InvalidEventError(
                [Problem((index, *p.loc), p.message) for p in exc.problems]
            ) from None
    return encoded


def publish_pipelined(
    redis: Any,
    messages: Iterable[tuple[int, int, str, dict[str, Any] | BaseModel]],
    *,
    batch_size: int = 1000,
    validate: bool = True,
) -> Any:
    """Publish many events in pipelined batches (no MULTI); the receiver count of each, in order.

    Every message is encoded and checked before the first is sent, so a bad one sends none.
    With an asyncio client, returns an awaitable of the list.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    encoded = _encode_all(messages, validate)
    if not encoded:
        return [] if not _is_async_client(redis) else _ready([])
    first = _execute(redis, encoded[:batch_size])
    if inspect.isawaitable(first):
        return _finish_async(redis, first, encoded, batch_size)
    counts = [int(n) for n in first]
    for start in range(batch_size, len(encoded), batch_size):
        counts.extend(int(n) for n in _execute(redis, encoded[start : start + batch_size]))
    return counts


async def apublish_pipelined(
    redis: Any,
    messages: Iterable[tuple[int, int, str, dict[str, Any] | BaseModel]],
    *,
    batch_size: int = 1000,
    validate: bool = True,
) -> list[int]:
    """Publish many events in pipelined batches through an asyncio client."""
    result = publish_pipelined(redis, messages, batch_size=batch_size, validate=validate)
    return list(await result) if inspect.isawaitable(result) else list(result)


def _is_async_client(redis: Any) -> bool:
    return type(redis).__module__.startswith(("redis.asyncio", "fakeredis._clients._async")) or (
        inspect.iscoroutinefunction(getattr(redis, "execute_command", None))
    )


async def _ready(value: list[int]) -> list[int]:
    return value


def _execute(redis: Any, batch: Sequence[tuple[str, str]]) -> Any:
    pipe = redis.pipeline(transaction=False)
    for channel, payload in batch:
        pipe.publish(channel, payload)
    return pipe.execute()


async def _finish_async(
    redis: Any, first: Awaitable[list[Any]], encoded: list[tuple[str, str]], batch_size: int
) -> list[int]:
    counts = [int(n) for n in await first]
    for start in range(batch_size, len(encoded), batch_size):
        counts.extend(int(n) for n in await _execute(redis, encoded[start : start + batch_size]))
    return counts


# ---------------------------------------------------------------------------- notifications


class NotificationRecord(Notification):
    """A stored notification: the ``notification`` payload plus who it is for (Go ``domain.Notification``)."""

    brand_id: PositiveId = Field(description="The casino brand identifier.")
    player_id: PositiveId = Field(description="The player identifier.")

    @classmethod
    def create(
        cls,
        brand_id: int,
        player_id: int,
        event: str,
        event_details: dict[str, Any] | None = None,
        *,
        time: datetime | None = None,
    ) -> NotificationRecord:
        """A new unread notification for a player, with a fresh UUID, stamped now unless ``time``."""
        payload = Notification.new(event, event_details, time=time)
        return cls(
            brand_id=check_id(brand_id, "brand_id"),
            player_id=check_id(player_id, "player_id"),
            **payload.model_dump(mode="python"),
        )

    def event_data(self) -> dict[str, Any]:
        """The ``event_data`` the notification service publishes, in its documented field order."""
        return {
            "message_id": str(self.message_id),
            "event": self.event,
            "event_details": self.event_details,
            "is_read": self.is_read,
            "time": self.model_dump(mode="python", include={"time"})["time"],
        }


class NotificationStore(Protocol):
    """Where notifications are kept before they are published (the database in the real system)."""

    def insert_notifications(self, notifications: Sequence[NotificationRecord]) -> Any:
        """Store all of them or raise; may return an awaitable for an asyncio store."""
        ...


@dataclass
class MemoryNotificationStore:
    """An in-process notification store: keeps records in insertion order, refuses duplicate ids."""

    records: list[NotificationRecord] = field(default_factory=list)
    _ids: set[Any] = field(default_factory=set, repr=False)

    def insert_notifications(self, notifications: Sequence[NotificationRecord]) -> None:
        """Store all notifications, or none if any message_id is already stored or repeated."""
        seen = set()
        for record in notifications:
            if record.message_id in self._ids or record.message_id in seen:
                raise ValueError(f"notification {record.message_id} is already stored")
            seen.add(record.message_id)
        self.records.extend(notifications)
        self._ids.update(seen)

    def for_player(self, brand_id: int, player_id: int) -> list[NotificationRecord]:
        """The stored notifications of one player, oldest first."""
        return [r for r in self.records if (r.brand_id, r.player_id) == (brand_id, player_id)]


def publish_notifications(
    redis: Any,
    store: NotificationStore,
    notifications: Sequence[NotificationRecord],
    *,
    raise_on_publish_error: bool = False,
) -> list[int | None]:
    """Store notifications, then publish each as a ``notification`` event (``InsertNewNotifications``).

    If storing fails, nothing is published and the error propagates. A failed publish is logged
    and its count is None, as the Go service ignores ``Publish`` errors: the notification is
    stored, only its real-time delivery is lost. ``raise_on_publish_error=True`` raises instead.
    """
    notifications = list(notifications)
    result = store.insert_notifications(notifications)
    if inspect.isawaitable(result):
        raise TypeError("the store is asynchronous: use apublish_notifications")
    counts: list[int | None] = []
    for record in notifications:
        channel, payload = encode_envelope(
            record.brand_id, record.player_id, NOTIFICATION_EVENT, record.event_data()
        )
        try:
            count = redis.publish(channel, payload)
        except Exception as exc:
            if raise_on_publish_error:
                raise
            log.warning("publishing notification %s failed: %s", record.message_id, exc)
            counts.append(None)
            continue
        if inspect.isawaitable(count):
            count.close()  # type: ignore[attr-defined]
            raise TypeError("the Redis client is asynchronous: use apublish_notifications")
        counts.append(int(count))
    return counts


async def apublish_notifications(
    redis: Any,
    store: NotificationStore,
    notifications: Sequence[NotificationRecord],
    *,
    raise_on_publish_error: bool = False,
) -> list[int | None]:
    """The asyncio form of :func:`publish_notifications` (store and client may be sync or async)."""
    notifications = list(notifications)
    result = store.insert_notifications(notifications)
    if inspect.isawaitable(result):
        await result
    counts: list[int | None] = []
    for record in notifications:
        channel, payload = encode_envelope(
            record.brand_id, record.player_id, NOTIFICATION_EVENT, record.event_data()
        )
        try:
            count = redis.publish(channel, payload)
            if inspect.isawaitable(count):
                count = await count
            counts.append(int(count))
        except Exception as exc:
            if raise_on_publish_error:
                raise
            log.warning("publishing notification %s failed: %s", record.message_id, exc)
            counts.append(None)
    return counts
