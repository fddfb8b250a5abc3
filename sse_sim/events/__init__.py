"""The event model, validation, SSE wire format, channel names and publisher of sse_sim.

Everything here follows the documented system (``SSE::{brand_id}::{player_id}`` channels, the
``{brand_id, player_id, event_type, event_data}`` envelope, the ``connected``/``keepalive``/
``error`` system events, and ``recovery`` for replaying gateways), so the simulator, real mode and trace files speak the real format.

Names are loaded from their submodule on first use, so that importing one light submodule
(the channel names, the SSE framing) does not load the pydantic models.
"""

from __future__ import annotations

import typing as _typing

if _typing.TYPE_CHECKING:
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
        RecoveryEvent,
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
        recovery_frame,
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
    "RecoveryEvent",
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
    "recovery_frame",
    "register_event_type",
    "validate_event",
]

_WHERE: dict[str, str] = {
    "ANNOUNCED_EVENT_TYPES": "models",
    "CHANNEL_PATTERN": "channel",
    "ConnectedEvent": "models",
    "DEFAULT_REGISTRY": "registry",
    "DOCUMENTED_EVENT_TYPES": "models",
    "Envelope": "models",
    "ErrorEvent": "models",
    "EventPayload": "models",
    "EventRegistry": "registry",
    "EventType": "registry",
    "GamificationBalanceUpdate": "models",
    "InvalidChannelError": "channel",
    "InvalidEventError": "validate",
    "KeepaliveEvent": "models",
    "MemoryNotificationStore": "publisher",
    "NOTIFICATION_KINDS": "models",
    "Notification": "models",
    "NotificationRecord": "publisher",
    "NotificationStore": "publisher",
    "Problem": "validate",
    "RecoveryEvent": "models",
    "SSEComment": "wire",
    "SSEMessage": "wire",
    "SSEParser": "wire",
    "SYSTEM_EVENT_TYPES": "models",
    "SystemEvent": "models",
    "apublish": "publisher",
    "apublish_notifications": "publisher",
    "apublish_pipelined": "publisher",
    "channel_name": "channel",
    "check_event": "validate",
    "check_json": "validate",
    "connected_frame": "wire",
    "dumps": "codec",
    "encode_comment": "wire",
    "encode_envelope": "publisher",
    "encode_event": "wire",
    "error_frame": "wire",
    "event_json_schema": "schema",
    "events_json_schema": "schema",
    "keepalive_frame": "wire",
    "loads": "codec",
    "parse_channel": "channel",
    "parse_event": "validate",
    "parse_stream": "wire",
    "publish": "publisher",
    "publish_notifications": "publisher",
    "publish_pipelined": "publisher",
    "recovery_frame": "wire",
    "register_event_type": "registry",
    "validate_event": "validate",
}


def __getattr__(name: str) -> _typing.Any:
    """Load a public name from the submodule that defines it, on first use (PEP 562)."""
    where = _WHERE.get(name)
    if where == "channel":
        from . import channel as module
    elif where == "codec":
        from . import codec as module
    elif where == "models":
        from . import models as module
    elif where == "publisher":
        from . import publisher as module
    elif where == "registry":
        from . import registry as module
    elif where == "schema":
        from . import schema as module
    elif where == "validate":
        from . import validate as module
    elif where == "wire":
        from . import wire as module
    else:
        raise AttributeError(f"module 'sse_sim.events' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
