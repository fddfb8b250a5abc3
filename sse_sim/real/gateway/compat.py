"""Every use the gateway makes of uvicorn's and redis-py's private internals, in one place.

Neither library offers what the gateway's hot path and lifecycle need, so each reach-in is
wrapped in a small function here and nowhere else:

- uvicorn: the app must reach a stream's transport (to abort a slow client and to write events
  without a task switch), which ASGI cannot express; so the gateway subclasses
  ``HttpToolsProtocol`` (or ``H11Protocol``), reads ``cycle.chunked_encoding`` and frames chunks
  by hand. The same subclasses hold the HTTP-level limits uvicorn lacks (a request head's size
  and deadline, connection caps), refuse pipelining (uvicorn's queue hides a client's close
  under a stream) and send HTTP/1.0 responses unchunked, reading the parsers' and cycles' state.
  It also hooks ``Server.shutdown`` to end open streams before the graceful wait starts, and to
  cut stalled ones soon after.
- redis-py: ``PubSub.parse_response`` wraps every read in retry and telemetry layers that cost
  about as much as the fan-out; reading the connection directly halves that. Reconnects are
  silent apart from a connection's connect callbacks.

``tests/test_compat.py`` checks every one of these against the installed versions, so an upgrade
that moves them fails loudly and names the library instead of breaking delivery quietly.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "HTTP_IMPLEMENTATIONS",
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

HTTP_IMPLEMENTATIONS = ("httptools", "h11")

# How long a refused connection is still read (its bytes dropped) after its answer went out:
# closing a socket that has unread bytes sends a reset, which can destroy the answer before
# the client reads it. The client's own close ends it sooner.
_LINGER_S = 2.0


def http_protocol_class(
    on_connection_made: Callable[[asyncio.Transport], None] | None = None,
    *,
    impl: str = "httptools",
    limits: Any = None,
) -> type:
    """uvicorn's ``impl`` protocol (httptools or h11), hardened for the gateway.

    Every request's app is told its transport and protocol (see :func:`connection_of`).
    Requests are not pipelined: one that arrives before the previous response ended is not
    served, its bytes and all later ones are read and dropped (so the client's close is seen at
    once, even under a stream that never ends) and the connection closes after that response.
    An HTTP/1.0 response without a length is sent as is, ended by closing the connection
    (httptools would chunk it, which HTTP/1.0 clients cannot read).

    ``limits`` (a :class:`.limits.HttpLimits`) adds the request head's size cap and deadline and
    the connection caps; each refusal is answered outside ASGI and the connection closed.
    ``on_connection_made(transport)`` runs for every new connection after uvicorn's own set-up.
    """
    attributes: dict[str, Any] = {
        "_sse_limits": limits,
        "_sse_on_made": staticmethod(on_connection_made) if on_connection_made else None,
    }
    if impl == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return type("SseHttpToolsProtocol", (_HttpToolsHooks, HttpToolsProtocol), attributes)
    if impl == "h11":
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol

        attributes["_sse_idle"] = h11.IDLE
        attributes["_sse_request_read"] = (h11.DONE, h11.MUST_CLOSE)
        return type("SseH11Protocol", (_H11Hooks, H11Protocol), attributes)
    raise ValueError(f"impl must be one of {', '.join(HTTP_IMPLEMENTATIONS)}, got {impl!r}")


class _Guarded:
    """The gateway's additions to a uvicorn protocol (``super()`` is uvicorn's class).

    Subclasses say where a connection is in its request: :meth:`_sse_reading_head` (a request
    head is due or arriving) and :meth:`_sse_request_in_flight` (a request was read whole and
    its response has not ended: any byte now is a pipelined request).
    """

    _sse_limits: Any = None
    _sse_on_made: Any = None

    transport: asyncio.Transport
    flow: Any
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._sse_discarding = False  # refused or pipelined: bytes are read and dropped
        self._sse_head_bytes = 0  # bytes of the request head arriving now
        self._sse_heads = 0  # request heads read whole on this connection
        self._sse_timer: asyncio.TimerHandle | None = None  # head deadline, or the linger
        self._sse_ip: str | None = None  # set while the connection holds a slot
        if self._sse_on_made is not None:
            self._sse_on_made(transport)
        limits = self._sse_limits
        if limits is None:
            return
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = limits.admit(ip)
        if refusal is not None:
            self._sse_refuse(refusal)
            return
        self._sse_ip = ip
        self._sse_arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._sse_cancel_timer()
        if self._sse_ip is not None:
            self._sse_limits.release(self._sse_ip)
            self._sse_ip = None
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._sse_discarding:
            return
        if self._sse_request_in_flight():
            self._sse_stop_pipelining()
            return
        limits = self._sse_limits
        if limits is None or not self._sse_reading_head():
            self._sse_feed(data)
            return
        if self._sse_timer is None:  # the first byte of a later request on a kept-alive connection
            self._sse_arm_header_timer()
        room = limits.max_header_bytes - self._sse_head_bytes
        if len(data) <= room:
            self._sse_head_bytes += len(data)
            self._sse_feed(data)
            return
        # Feed only what the cap allows: the parsers buffer an unfinished head (httptools even
        # one header line) without limit of their own.
        heads = self._sse_heads
        if room > 0:
            self._sse_feed(data[:room])
        if self._sse_heads == heads:
            if not self._sse_discarding and not self.transport.is_closing():
                self._sse_refuse(limits.head_too_large())
            return
        self.data_received(data[room:])

    # ------------------------------------------------------------------ for the subclasses

    def _sse_feed(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]

    def _sse_reading_head(self) -> bool:
        raise NotImplementedError

    def _sse_request_in_flight(self) -> bool:
        raise NotImplementedError

    def _sse_head_done(self) -> None:
        self._sse_heads += 1
        self._sse_head_bytes = 0
        self._sse_cancel_timer()

    def _sse_stop_pipelining(self) -> None:
        if self._sse_discarding:
            return
        self._sse_discarding = True
        self._sse_cancel_timer()
        if self._sse_limits is not None:
            self._sse_limits.pipelined()
        if self.cycle is not None:
            self.cycle.keep_alive = False  # uvicorn closes the connection when the response ends
        # uvicorn pauses reading until the response ends; a stream never ends, and a paused
        # socket never reports the client's close: the stream would outlive its client.
        self.flow.resume_reading()

    # ------------------------------------------------------------------ refusals and deadlines

    def _sse_refuse(self, answer: bytes | None) -> None:
        """Answer ``answer`` (or nothing) outside ASGI and close, reading and dropping meanwhile."""
        self._sse_discarding = True
        self._sse_cancel_timer()
        self._unset_keepalive_if_required()  # type: ignore[attr-defined]
        transport = self.transport
        if transport.is_closing():
            return
        if answer is None:
            transport.close()
            return
        transport.write(answer)
        self.flow.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._sse_timer = asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    def _sse_arm_header_timer(self) -> None:
        self._sse_timer = asyncio.get_running_loop().call_later(
            self._sse_limits.header_timeout_s, self._sse_header_timeout
        )

    def _sse_header_timeout(self) -> None:
        self._sse_timer = None
        if self._sse_discarding or self.transport.is_closing():
            return
        self._sse_refuse(self._sse_limits.head_timed_out(self._sse_head_bytes > 0))

    def _sse_cancel_timer(self) -> None:
        if self._sse_timer is not None:
            self._sse_timer.cancel()
            self._sse_timer = None

    def _sse_extensions(self) -> dict[str, Any]:
        # The app aborts a slow stream's transport (policy "disconnect"); ASGI has no verb for it.
        return {_TRANSPORT_KEY: self.transport, _PROTOCOL_KEY: self}


class _HttpToolsHooks(_Guarded):
    """httptools: request state from the parser's callbacks; HTTP/1.0 responses close-delimited."""

    scope: dict[str, Any]
    _sse_between = True  # between requests: a head is due or arriving

    def _sse_reading_head(self) -> bool:
        return self._sse_between

    def _sse_request_in_flight(self) -> bool:
        cycle = self.cycle
        return self._sse_between and cycle is not None and not cycle.response_complete

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        self.scope["extensions"] = self._sse_extensions()

    def on_headers_complete(self) -> None:
        if self._sse_discarding:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A second request in the same read as the first: uvicorn would queue it and pause
            # reading (see _sse_stop_pipelining); it is not served.
            self._sse_stop_pipelining()
            return
        self._sse_between = False
        self._sse_head_done()
        super().on_headers_complete()  # type: ignore[misc]
        if self.scope.get("http_version") == "1.0" and self.cycle is not cycle:
            _send_close_delimited(self.cycle)

    def on_body(self, body: bytes) -> None:
        if not self._sse_discarding:
            super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        if self._sse_discarding:
            return
        self._sse_between = True
        super().on_message_complete()  # type: ignore[misc]


class _H11Hooks(_Guarded):
    """h11: request state from h11's own state machine (which already frames HTTP/1.0 right)."""

    conn: Any
    scope: Any
    _sse_idle: Any = None
    _sse_request_read: tuple[Any, ...] = ()

    def _sse_reading_head(self) -> bool:
        return self.conn.their_state is self._sse_idle  # type: ignore[no-any-return]

    def _sse_request_in_flight(self) -> bool:
        cycle = self.cycle
        return (
            cycle is not None
            and not cycle.response_complete
            and self.conn.their_state in self._sse_request_read
        )

    def _sse_feed(self, data: bytes) -> None:
        conn = self.conn
        was_idle = conn.their_state is self._sse_idle
        super()._sse_feed(data)
        if was_idle and conn.their_state is not self._sse_idle:
            self._sse_head_done()
            if self.scope is not None:
                # read by the app when its task starts, which is after this returns
                self.scope["extensions"] = self._sse_extensions()
        # h11 reports a request that follows one still being answered as PAUSED, and uvicorn
        # pauses reading: the same trap as httptools' queue.
        if self._sse_request_in_flight() and conn.trailing_data[0]:
            self._sse_stop_pipelining()


def _send_close_delimited(cycle: Any) -> None:
    """Make an httptools cycle send a length-less response unchunked, ended by the close (HTTP/1.0).

    uvicorn chunks whenever no length is given, whatever the client's version. The cycle's
    ``send`` is replaced before its task first runs; with ``chunked_encoding`` False it writes
    bodies as they are, counting them against ``expected_content_length``, which is set past
    any stream here and to the last body's size at the end so that the count closes at zero.
    """
    original = cycle.send
    delimited = False

    async def send(message: dict[str, Any]) -> None:
        nonlocal delimited
        kind = message["type"]
        if kind == "http.response.start" and not cycle.response_started:
            names = {name.lower() for name, _ in message.get("headers", ())}
            if (
                b"content-length" not in names
                and b"transfer-encoding" not in names
                and cycle.scope["method"] != "HEAD"
                and message["status"] not in (204, 304)
            ):
                delimited = True
                cycle.chunked_encoding = False
                cycle.expected_content_length = sys.maxsize
        elif delimited and kind == "http.response.body" and not message.get("more_body", False):
            cycle.expected_content_length = len(message.get("body", b""))
        await original(message)

    cycle.send = send


def connection_of(scope: dict[str, Any]) -> tuple[Any, Any]:
    """The ``(transport, protocol)`` of a request served by :func:`http_protocol_class`, else Nones."""
    extensions = scope.get("extensions") or {}
    return extensions.get(_TRANSPORT_KEY), extensions.get(_PROTOCOL_KEY)


def is_chunked(protocol: Any) -> bool:
    """Whether the protocol's current response went out with ``Transfer-Encoding: chunked`` by httptools.

    Only then may a frame from :func:`chunk` be written straight to the transport (h11 keeps
    its own framing state, so its responses never qualify).
    """
    cycle = getattr(protocol, "cycle", None)
    return cycle is not None and getattr(cycle, "chunked_encoding", None) is True


def chunk(frame: bytes) -> bytes:
    """``frame`` as one HTTP/1.1 chunk, the bytes uvicorn's ``send`` would write for it."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


def server_with_shutdown_hook(
    config: Any, before_shutdown: Callable[[], None], *, abort_after_s: float | None = None
) -> Any:
    """A ``uvicorn.Server`` for ``config`` that calls ``before_shutdown()`` as its shutdown begins.

    With ``abort_after_s``, connections still open that long after the shutdown began are
    aborted: the streams were ended at once, so what is left is a client that stopped reading.
    Their tasks then end by themselves instead of being cancelled at uvicorn's graceful timeout
    (which logs a CancelledError traceback per task).
    """
    import uvicorn

    class Server(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            before_shutdown()
            handle = None
            if abort_after_s is not None:
                handle = asyncio.get_running_loop().call_later(abort_after_s, self._abort_open)
            try:
                await super().shutdown(sockets)
            finally:
                if handle is not None:
                    handle.cancel()

        def _abort_open(self) -> None:
            for protocol in list(self.server_state.connections):
                transport = getattr(protocol, "transport", None)
                if transport is not None:
                    transport.abort()

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
    On None or an error the caller ends its Redis session and starts a new one (the subscriber
    resubscribes everything its streams hold and tells them what may have been lost).
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


def lock_receive_buffer(pubsub: Any, size: int) -> bool:
    """Fix the ``SO_RCVBUF`` of ``pubsub``'s connection at ``size`` bytes; False where there is no socket to set.

    Linux grows a receive buffer by itself (up to ``net.ipv4.tcp_rmem``'s maximum) while data
    flows; a set size stops that, so what the socket holds for a slow reader stays bounded.
    """
    connection = pubsub.connection
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    import socket

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return True
