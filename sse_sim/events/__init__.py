"""The event model, validation, SSE wire format, channel names and publisher of sse_sim.

Everything here follows the documented system (``SSE::{brand_id}::{player_id}`` channels, the
``{brand_id, player_id, event_type, event_data}`` envelope, the ``connected``/``keepalive``/
``error`` system events), so the simulator, real mode and trace files speak the real format.
"""

from __future__ import annotations

from .channel import CHANNEL_PATTERN, InvalidChannelError, channel_name, parse_channel
from .codec import dumps, loads
from .models import (
    ANNOUNCED_EVENT_TYPES,
    DOCUMENTED_EVENT_TYPES,
    NOTIFICATION_KINDS,
    SYSTEM_EVENT_TYPES,
    ConnectedEvent,
    Envelope,
    ErrorEvent,
    EventPayload,
    GamificationBalanceUpdate,
    KeepaliveEvent,
    Notification,
    SystemEvent,
)
from .publisher import (
    MemoryNotificationStore,
    NotificationRecord,
    NotificationStore,
    apublish,
    apublish_notifications,
    apublish_pipelined,
    encode_envelope,
    publish,
    publish_notifications,
    publish_pipelined,
)
from .registry import DEFAULT_REGISTRY, EventRegistry, EventType, register_event_type
from .schema import event_json_schema, events_json_schema
from .validate import (
    InvalidEventError,
    Problem,
    check_event,
    check_json,
    parse_event,
    validate_event,
)
from .wire import (
    SSEComment,
    SSEMessage,
    SSEParser,
    connected_frame,
    encode_comment,
    encode_event,
    error_frame,
    keepalive_frame,
    parse_stream,
)

__all__ = [
    "ANNOUNCED_EVENT_TYPES",
    "CHANNEL_PATTERN",
    "DEFAULT_REGISTRY",
    "DOCUMENTED_EVENT_TYPES",
    "NOTIFICATION_KINDS",
    "SYSTEM_EVENT_TYPES",
    "ConnectedEvent",
    "Envelope",
    "ErrorEvent",
    "EventPayload",
    "EventRegistry",
    "EventType",
    "GamificationBalanceUpdate",
    "InvalidChannelError",
    "InvalidEventError",
    "KeepaliveEvent",
    "MemoryNotificationStore",
    "Notification",
    "NotificationRecord",
    "NotificationStore",
    "Problem",
    "SSEComment",
    "SSEMessage",
    "SSEParser",
    "SystemEvent",
    "apublish",
    "apublish_notifications",
    "apublish_pipelined",
    "channel_name",
    "check_event",
    "check_json",
    "connected_frame",
    "dumps",
    "encode_comment",
    "encode_envelope",
    "encode_event",
    "error_frame",
    "event_json_schema",
    "events_json_schema",
    "keepalive_frame",
    "loads",
    "parse_channel",
    "parse_event",
    "parse_stream",
    "publish",
    "publish_notifications",
    "publish_pipelined",
    "register_event_type",
    "validate_event",
]
