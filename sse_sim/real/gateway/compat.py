"""Every use the gateway makes of uvicorn's and redis-py's private internals, in one place.

Neither library offers what the gateway's hot path and lifecycle need, so each reach-in is
wrapped in a small function here and nowhere else:

- uvicorn: the app must reach a stream's transport (to abort a slow client and to write events
  without a task switch), which ASGI cannot express; so the gateway subclasses
  ``HttpToolsProtocol``, reads ``cycle.chunked_encoding`` and frames chunks by hand. It also
  hooks ``Server.shutdown`` to end open streams before the graceful wait starts.
- redis-py: ``PubSub.parse_response`` wraps every read in retry and telemetry layers that cost
  about as much as the fan-out; reading the connection directly halves that. Reconnects are
  silent apart from a connection's connect callbacks.

``tests/test_compat.py`` checks every one of these against the installed versions, so an upgrade
that moves them fails loudly and names the library instead of breaking delivery quietly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "chunk",
    "connection_of",
    "direct_connection",
    "http_protocol_class",
    "is_chunked",
    "on_reconnect",
    "read_push",
    "server_with_shutdown_hook",
]

# Our own keys in the ASGI scope's "extensions" (which the spec leaves to servers).
_TRANSPORT_KEY = "sse_sim.transport"
_PROTOCOL_KEY = "sse_sim.protocol"


# ---------------------------------------------------------------------- uvicorn


def http_protocol_class(
    on_connection_made: Callable[[asyncio.Transport], None] | None = None,
) -> type:
    """uvicorn's httptools protocol, telling each request's app its transport and protocol.

    ``on_connection_made(transport)`` runs for every new connection after uvicorn's own set-up.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class SseProtocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if on_connection_made is not None:
                on_connection_made(transport)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            # The app aborts a slow stream's transport (policy "disconnect"); ASGI has no verb for it.
            self.scope["extensions"] = {_TRANSPORT_KEY: self.transport, _PROTOCOL_KEY: self}

    return SseProtocol


def connection_of(scope: dict[str, Any]) -> tuple[Any, Any]:
    """The ``(transport, protocol)`` of a request served by :func:`http_protocol_class`, else Nones."""
    extensions = scope.get("extensions", {})
    return extensions.get(_TRANSPORT_KEY), extensions.get(_PROTOCOL_KEY)


def is_chunked(protocol: Any) -> bool:
    """Whether the protocol's current response went out with ``Transfer-Encoding: chunked``.

    Only then may a frame from :func:`chunk` be written straight to the transport.
    """
    cycle = getattr(protocol, "cycle", None)
    return cycle is not None and cycle.chunked_encoding is True


def chunk(frame: bytes) -> bytes:
    """``frame`` as one HTTP/1.1 chunk, the bytes uvicorn's ``send`` would write for it."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def server_with_shutdown_hook(config: Any, before_shutdown: Callable[[], None]) -> Any:
    """A ``uvicorn.Server`` for ``config`` that calls ``before_shutdown()`` as its shutdown begins."""
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            before_shutdown()
            await super().shutdown(sockets)

    return Server(config)


# ---------------------------------------------------------------------- redis-py


def direct_connection(pubsub: Any) -> Any:
    """The redis-py connection under a connected ``pubsub``, or None where reading it is not safe.

    fakeredis subclasses redis-py's classes with a connection of its own: it keeps the
    documented ``parse_response`` path.
    """
    connection = pubsub.connection
    if connection is None or not type(connection).__module__.startswith("redis."):
        return None
    return connection


def read_push(connection: Any) -> Awaitable[Any] | None:
    """A read of the next pub/sub message straight off ``connection``, or None if it is down.

    A plain function returning the awaitable, so the hot path pays no extra coroutine frame.
    On None or an error, read through ``PubSub.parse_response``: that path reconnects,
    resubscribes and fires the callbacks of :func:`on_reconnect`.
    """
    if not connection.is_connected:
        return None
    return connection.read_response(timeout=math.inf, push_request=True)  # type: ignore[no-any-return]


def on_reconnect(pubsub: Any, callback: Callable[[Any], Awaitable[None]]) -> None:
    """Call ``callback(connection)`` each time ``pubsub``'s connection connects again.

    redis-py keeps only a weak reference: the caller must keep ``callback`` (a bound method of a
    live object) alive. The first connect has happened already, so every call is a reconnect.
    """
    pubsub.connection.register_connect_callback(callback)
