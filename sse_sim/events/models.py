"""Typed models of the documented SSE events: the envelope, its payloads and the system events.

The models check what the documented system guarantees in both modes, and a little more in
strict mode (validation context ``{"strict": True}``, see :mod:`sse_sim.events.validate`):

=================================  ==========================  ==============================
field                              lenient                     strict adds
=================================  ==========================  ==============================
``brand_id``, ``player_id``        JSON integer 1..2**63-1     -
``notification.message_id``        UUID 8-4-4-4-12 hex         -
``notification.event``             non-empty string            one of the 11 documented kinds
``notification.is_read``           boolean                     ``false`` (new notifications)
``notification.time``              "YYYY-MM-DD HH:MM:SS"       -
gamification decimals              number or numeric string    number (as documented)
unknown fields                     ignored                     flagged
=================================  ==========================  ==============================
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from ..validation_errors import describe_value
from .channel import ID_MAX, ID_MIN, channel_name
from .codec import dumps

__all__ = [
    "ANNOUNCED_EVENT_TYPES",
    "DOCUMENTED_EVENT_TYPES",
    "NOTIFICATION_KINDS",
    "SYSTEM_EVENT_TYPES",
    "ConnectedEvent",
    "Envelope",
    "ErrorEvent",
    "EventPayload",
    "ExactDecimal",
    "GamificationBalanceUpdate",
    "KeepaliveEvent",
    "MessageId",
    "Notification",
    "NotificationTime",
    "PositiveId",
    "RecoveryEvent",
    "SystemEvent",
    "UtcTimestamp",
    "describe_json",
]

#: The notification kinds the documented system lists as its most common ones.
NOTIFICATION_KINDS: tuple[str, ...] = (
    "bonus_granted",
    "promotion_available",
    "deposit_success",
    "withdrawal_approved",
    "kyc_approved",
    "kyc_rejected",
    "account_update",
    "tournament_update",
    "tournament_win",
    "limit_reminder",
    "document_required",
)
DOCUMENTED_EVENT_TYPES: tuple[str, ...] = ("notification", "gamification_balance_update")
#: Event types the documented system announces for the future; their payloads are not specified.
ANNOUNCED_EVENT_TYPES: tuple[str, ...] = (
    "wallet_balance_update",
    "game_result",
    "tournament_update",
    "message",
    "promotion_trigger",
)
SYSTEM_EVENT_TYPES: tuple[str, ...] = ("connected", "keepalive", "error", "recovery")

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
_UTC_Z_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_DECIMAL_RE = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def describe_json(value: Any) -> str:
    """A short description of a JSON value for error messages (see :func:`~sse_sim.validation_errors.describe_value`).

    >>> describe_json("abc"), describe_json(True), describe_json([1, 2])
    ("string 'abc'", 'boolean true', 'array of 2 items')
    """
    return describe_value(value)


def _strict(info: ValidationInfo) -> bool:
    context = info.context
    return bool(context and context.get("strict"))


def _error(kind: str, message: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, message + ", got {got}", {"got": describe_json(value)})


# --------------------------------------------------------------------------- field types


def _positive_id(value: Any) -> int:
    if type(value) is not int or not ID_MIN <= value <= ID_MAX:
        raise _error("sse_id", f"expected an integer in {ID_MIN}..{ID_MAX}", value)
    return value


PositiveId = Annotated[
    int,
    PlainValidator(_positive_id),
    WithJsonSchema({"type": "integer", "minimum": ID_MIN, "maximum": ID_MAX}),
]
"""A brand or player id: a JSON integer in 1..2**63-1 (no bool, no string, no float)."""


def _message_id(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise _error("sse_uuid", "expected a UUID (8-4-4-4-12 hex digits 0-9, a-f)", value)
    return uuid.UUID(value)


MessageId = Annotated[
    uuid.UUID,
    PlainValidator(_message_id),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": "^" + _UUID_RE.pattern + "$"}),
]
"""A notification id: a UUID in its canonical hyphenated hex form, serialized lowercase."""


def _notification_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).replace(tzinfo=None)
            if value.tzinfo
            else value.replace(microsecond=0)
        )
    if isinstance(value, str) and _TIME_RE.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise _error(
                "sse_time", "expected a real date and time as YYYY-MM-DD HH:MM:SS", value
            ) from None
    raise _error("sse_time", "expected a time as YYYY-MM-DD HH:MM:SS", value)


NotificationTime = Annotated[
    datetime,
    PlainValidator(_notification_time),
    PlainSerializer(lambda d: d.strftime(TIME_FORMAT), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^" + _TIME_RE.pattern + "$",
            "examples": ["2025-10-22 14:30:45"],
        }
    ),
]
"""A time as "YYYY-MM-DD HH:MM:SS" (Go layout ``2006-01-02 15:04:05``), no zone."""


def _utc_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and _UTC_Z_RE.fullmatch(value):
        try:
            return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)
        except ValueError:
            pass
    raise _error(
        "sse_utc", "expected an ISO 8601 UTC time ending in Z, as 2025-10-22T14:30:45Z", value
    )


UtcTimestamp = Annotated[
    datetime,
    PlainValidator(_utc_timestamp),
    PlainSerializer(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^" + _UTC_Z_RE.pattern + "$",
            "examples": ["2025-10-22T14:30:45Z"],
        }
    ),
]
"""An ISO 8601 UTC instant with a ``Z`` suffix, as the ``connected`` event carries."""


def _exact_decimal(value: Any, info: ValidationInfo) -> Decimal:
    if isinstance(value, bool):
        raise _error("sse_decimal", "expected a decimal number", value)
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr is the shortest text that reads back as this float: the number the JSON had.
        number = Decimal(repr(value))
    elif isinstance(value, str) and not _strict(info) and _DECIMAL_RE.fullmatch(value):
        # Go's shopspring/decimal marshals as a quoted string unless told otherwise.
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise _error("sse_decimal", "expected a decimal number", value) from None
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        raise _error("sse_decimal", "expected a JSON number (strict: not a numeric string)", value)
    else:
        raise _error("sse_decimal", "expected a decimal number", value)
    if not number.is_finite():
        raise _error("sse_decimal", "expected a finite decimal number", value)
    return number


ExactDecimal = Annotated[
    Decimal,
    PlainValidator(_exact_decimal),
    WithJsonSchema({"type": "number"}),
]
"""A decimal kept exact: JSON numbers are read as Decimal and written back digit for digit."""


def _kind(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value:
        raise _error("sse_kind", "expected a non-empty string naming the notification kind", value)
    if _strict(info) and value not in NOTIFICATION_KINDS:
        raise _error(
            "sse_kind",
            "expected a documented notification kind (" + ", ".join(NOTIFICATION_KINDS) + ")",
            value,
        )
    return value


NotificationKind = Annotated[
    str,
    PlainValidator(_kind),
    WithJsonSchema({"type": "string", "minLength": 1, "examples": list(NOTIFICATION_KINDS)}),
]


def _is_read(value: Any, info: ValidationInfo) -> bool:
    if not isinstance(value, bool):
        raise _error("sse_bool", "expected a boolean", value)
    if value and _strict(info):
        raise _error(
            "sse_is_read", "expected false (a newly published notification is unread)", value
        )
    return value


IsRead = Annotated[bool, PlainValidator(_is_read), WithJsonSchema({"type": "boolean"})]


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _error("sse_object", "expected a JSON object", value)
    return value


JsonObject = Annotated[
    dict[str, Any],
    PlainValidator(_json_object),
    WithJsonSchema({"type": "object"}),
]


def _event_type(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _error("sse_event_type", "expected a non-empty string naming the event type", value)
    return value


EventTypeName = Annotated[
    str, PlainValidator(_event_type), WithJsonSchema({"type": "string", "minLength": 1})
]


# ----------------------------------------------------------------------------------- models


class EventPayload(BaseModel):
    """Base of typed ``event_data`` payloads; unknown fields are kept (and flagged in strict mode)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_event_data(self) -> dict[str, Any]:
        """The payload as the JSON object to publish: strings for ids and times, Decimals kept."""
        return self.model_dump(mode="python")


class Notification(EventPayload):
    """``event_data`` of a ``notification`` event: one new in-app notification for a player."""

    message_id: MessageId = Field(description="Unique notification identifier (UUID).")
    event: NotificationKind = Field(description="Notification kind, e.g. bonus_granted.")
    event_details: JsonObject = Field(description="Kind-specific details, free-form JSON object.")
    is_read: IsRead = Field(description="Whether the notification was read; false when new.")
    time: NotificationTime = Field(description='Creation time, "YYYY-MM-DD HH:MM:SS".')

    @classmethod
    def new(
        cls,
        event: str,
        event_details: dict[str, Any] | None = None,
        *,
        time: datetime | None = None,
        message_id: uuid.UUID | None = None,
    ) -> Notification:
        """A new unread notification with a fresh UUID, stamped now (UTC) unless ``time`` is given."""
        return cls(
            message_id=message_id or uuid.uuid4(),
            event=event,
            event_details=event_details or {},
            is_read=False,
            time=time or datetime.now(UTC).replace(microsecond=0, tzinfo=None),
        )


class GamificationBalanceUpdate(EventPayload):
    """``event_data`` of a ``gamification_balance_update`` event: a player's coin balance changed."""

    balance: ExactDecimal = Field(description="Coin balance after the update.")
    total_received: ExactDecimal = Field(description="Coins received, lifetime.")
    total_redeemed: ExactDecimal = Field(description="Coins redeemed, lifetime.")


P = TypeVar("P")


class Envelope(BaseModel, Generic[P]):
    """The envelope every application event is published in: who it is for, its type, its data."""

    model_config = ConfigDict(extra="allow", frozen=True)

    brand_id: PositiveId = Field(description="The casino brand identifier.")
    player_id: PositiveId = Field(description="The player identifier.")
    event_type: EventTypeName = Field(description="The type of event, e.g. notification.")
    event_data: P = Field(description="Event-specific data; its structure depends on event_type.")

    @property
    def channel(self) -> str:
        """The Redis channel this event is published to."""
        return channel_name(self.brand_id, self.player_id)

    def to_json(self) -> str:
        """The envelope as the compact JSON a publishing service writes (decimals exact)."""
        data = self.event_data
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="python")
        return dumps(
            {
                "brand_id": self.brand_id,
                "player_id": self.player_id,
                "event_type": self.event_type,
                "event_data": data,
            }
        )


class SystemEvent(BaseModel):
    """Base of the events the SSE gateway sends by itself (they have ``type``, not an envelope)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_json(self) -> str:
        """The event as the compact JSON the gateway writes in a ``data:`` line."""
        return dumps(self.model_dump(mode="python"))


class ConnectedEvent(SystemEvent):
    """Sent once when an SSE stream is established."""

    type: Literal["connected"] = "connected"
    timestamp: UtcTimestamp = Field(description="Connection time, ISO 8601 UTC with Z.")


class KeepaliveEvent(SystemEvent):
    """Sent every 15 s, after a ``: keepalive ...`` comment line, to keep the connection open."""

    type: Literal["keepalive"] = "keepalive"
    timestamp: NotificationTime = Field(description='Send time, "YYYY-MM-DD HH:MM:SS".')


class ErrorEvent(SystemEvent):
    """Sent when the gateway fails, e.g. to subscribe to the player's channel."""

    type: Literal["error"] = "error"
    message: str = Field(description="What went wrong.", strict=True)


def _recovered(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise _error("sse_bool", "expected a boolean or null", value)
    return value


def _replayed(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _error("sse_count", "expected a non-negative integer", value)
    return value


class RecoveryEvent(SystemEvent):
    """Sent at a (re)connection, before the events it replays (stream and latest delivery; not in the documented system).

    ``replayed`` frames follow it before any live event: stream entries after the client's
    ``Last-Event-ID``, oldest first, then the newest cached values of ``latest`` event types.
    ``recovered`` is true when every entry after ``Last-Event-ID`` was replayed, false when some
    were trimmed, expired or beyond the replay cap, and null when the client sent no stream id.
    """

    type: Literal["recovery"] = "recovery"
    recovered: Annotated[
        bool | None,
        PlainValidator(_recovered),
        WithJsonSchema({"type": ["boolean", "null"]}),
    ] = Field(description="Whether the whole gap after Last-Event-ID was replayed (null: no stream id sent).")
    replayed: Annotated[
        int,
        PlainValidator(_replayed),
        WithJsonSchema({"type": "integer", "minimum": 0}),
    ] = Field(description="How many replayed frames follow, before any live event.")


SYSTEM_EVENT_MODELS: dict[str, type[SystemEvent]] = {
    "connected": ConnectedEvent,
    "keepalive": KeepaliveEvent,
    "error": ErrorEvent,
    "recovery": RecoveryEvent,
}
