"""The event model, validation, SSE wire format, channel names and publisher of sse_sim."""

from __future__ import annotations

from .channel import CHANNEL_PATTERN, InvalidChannelError, channel_name, parse_channel
from .wire import (
    SSEComment,
    SSEMessage,
    SSEParser,
    connected_frame,
    encode_comment,
    encode_event,
    error_frame,
    keepalive_frame,
)

__all__ = [
    "CHANNEL_PATTERN",
    "InvalidChannelError",
    "SSEComment",
    "SSEMessage",
    "SSEParser",
    "channel_name",
    "connected_frame",
    "encode_comment",
    "encode_event",
    "error_frame",
    "keepalive_frame",
    "parse_channel",
]
