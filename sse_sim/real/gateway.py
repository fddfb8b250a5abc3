"""The real SSE gateway: ``GET /gateway/sse/{brand_id}/stream`` over uvicorn, fed by one shared Redis subscription.

Raw ASGI, no framework: the hot path is a dict lookup and a deque append per (event,
connection), and every frame is encoded once per Redis message, not once per connection.

Delivery model (the same as the simulator's):

- each connection has a bounded queue of ``buffer_size`` events plus the one its writer is
  handing to the socket, so K = buffer_size + 1 in M/M/1/K terms; what the kernel and the
  transport buffer hold beyond that is "socket buffering" (``send_buffer_bytes`` shrinks it);
- when the queue is full the overflow policy decides: ``drop_newest`` drops the arriving event
  (the documented Go ``select`` with ``default``), ``drop_oldest`` evicts the oldest queued one,
  ``disconnect`` aborts the slow stream (the client's EventSource reconnects later);
- one shared subscription per gateway process fans messages out to the connections. The shared
  reader yields to the event loop every ``reader_yield_every`` messages (0 = only when the
  socket has nothing more), because a reader that never yields fills a 50-event queue from one
  burst before the connection's writer ever runs, dropping events even for a fast client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import math
import os
import re
import secrets as _secrets
import signal
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qs

from ..errors import SseSimError
from ..events.channel import CHANNEL_PATTERN, InvalidChannelError, channel_name, check_id
from ..events.wire import connected_frame, encode_event, error_frame, keepalive_frame
from .auth import QUERY_TOKEN_MAX_TTL_S, TokenError, verify_token

__all__ = [
    "Gateway",
    "GatewayThread",
    "EventFate",
    "create_gateway",
    "run_gateway",
    "start_gateway",
    "redis_factory",
    "fakeredis_factory",
    "OVERFLOW_POLICIES",
    "SUBSCRIPTION_MODES",
    "STREAM_PATH",
    "TOKEN_HEADER",
    "TOKEN_COOKIE",
    "DEV_SECRET",
]

logger = logging.getLogger("sse_sim.gateway")

OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "disconnect")
SUBSCRIPTION_MODES = ("channel", "pattern")
STREAM_PATH = "/gateway/sse/{brand_id}/stream"
TOKEN_HEADER = b"x-auth-token"
TOKEN_COOKIE = "sse_token"
DEV_SECRET = b"sse-sim-development-secret-not-for-production"
"""Secret used when none is given, so ``sse-sim token`` and ``sse-sim gateway`` agree out of the box."""

_STREAM_RE = re.compile(r"/gateway/sse/([^/]*)/stream")
_BRAND_RE = re.compile(r"[1-9][0-9]{0,18}")
_TRANSPORT_KEY = "sse_sim.transport"
_PROTOCOL_KEY = "sse_sim.protocol"

Fate = Literal["sent", "dropped_overflow", "evicted", "lost_in_buffer", "disconnected_slow"]


class EventFate(NamedTuple):
    """What happened to one Redis message on one connection (``record_events=True`` only)."""

    connection_id: int
    brand_id: int
    player_id: int
    channel: str
    raw_message: str
    """The message exactly as published (identify the event by parsing it)."""
    gateway_at: float
    """``time.time()`` when the shared reader took it off the Redis connection."""
    fate: Fate
    left_at: float | None
    """``time.time()`` when it was written to the socket or dropped."""


class _Event:
    """One Redis message as queued when events are recorded (shared by every connection it reaches)."""

    __slots__ = ("frame", "raw", "gateway_at")

    def __init__(self, frame: bytes, raw: str, gateway_at: float) -> None:
        self.frame = frame
        self.raw = raw
        self.gateway_at = gateway_at


class _Connection:
    """One open SSE stream: its bounded queue and the flags its writer acts on."""

    __slots__ = (
        "id",
        "brand_id",
        "player_id",
        "channel",
        "queue",
        "waiter",
        "gone",
        "slow",
        "closing",
        "keepalive_due",
        "keepalive_handle",
        "transport",
        "protocol",
        "direct",
        "__weakref__",
    )

    def __init__(
        self, conn_id: int, brand_id: int, player_id: int, channel: str, transport: Any
    ) -> None:
        self.id = conn_id
        self.brand_id = brand_id
        self.player_id = player_id
        self.channel = channel
        self.queue: collections.deque[Any] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.gone = False  # the client went away (http.disconnect)
        self.slow = False  # overflow policy "disconnect" fired
        self.closing = False  # the gateway is shutting down
        self.keepalive_due = False
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.transport = transport
        self.protocol: Any = None
        # True once the stream is set up and chunked: an idle writer's next event may then be
        # written straight to the transport by the reader (see Gateway._deliver)
        self.direct = False

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Channel:
    """The connections reading one Redis channel, and whether Redis confirmed the subscription."""

    __slots__ = ("conns", "confirmed", "sub_sent")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.conns: list[_Connection] = []
        self.sub_sent = False
        self.confirmed: asyncio.Future[None] = loop.create_future()


class _SubscribeFailed(Exception):
    """Subscribing to a channel failed (Redis unreachable, refused, or no confirmation in time)."""


RedisClientFactory = Callable[[], Any]


def redis_factory(url: str, **kwargs: Any) -> RedisClientFactory:
    """A factory of redis-py asyncio clients for ``url`` (bytes responses, as the gateway expects)."""
    import redis.asyncio as aredis

    def make() -> Any:
        return aredis.Redis.from_url(url, **kwargs)

    return make


def fakeredis_factory(server: Any) -> RedisClientFactory:
    """A factory of fakeredis asyncio clients on ``server`` (a ``fakeredis.FakeServer``)."""
    import fakeredis

    def make() -> Any:
        return fakeredis.FakeAsyncRedis(server=server)

    return make


class Gateway:
    """The ASGI application: SSE streams, metrics and health, over one shared Redis subscription.

    Build it with :func:`create_gateway`; serve it with :func:`run_gateway` or
    :func:`start_gateway`. :meth:`metrics` and :meth:`event_log` may be read from any thread.
    """

    def __init__(
        self,
        *,
        redis_client_factory: RedisClientFactory,
        secret: bytes,
        buffer_size: int = 50,
        overflow_policy: str = "drop_newest",
        keepalive_interval_s: float = 15.0,
        reader_yield_every: int = 1,
        record_events: bool = False,
        send_buffer_bytes: int | None = None,
        subscription_mode: str = "channel",
        max_write_batch: int = 1,
        retry_ms: int | None = None,
        subscribe_timeout_s: float = 5.0,
        query_token_max_ttl_s: float = QUERY_TOKEN_MAX_TTL_S,
    ) -> None:
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise SseSimError(f"buffer_size must be a positive integer, got {buffer_size!r}")
        if overflow_policy not in OVERFLOW_POLICIES:
            raise SseSimError(
                f"overflow_policy must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow_policy!r}"
            )
        if not keepalive_interval_s > 0:
            raise SseSimError(
                f"keepalive_interval_s must be positive, got {keepalive_interval_s!r}"
            )
        if not isinstance(reader_yield_every, int) or reader_yield_every < 0:
            raise SseSimError(
                f"reader_yield_every must be an integer >= 0, got {reader_yield_every!r}"
            )
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise SseSimError(f"subscription_mode must be one of {', '.join(SUBSCRIPTION_MODES)}")
        if not isinstance(max_write_batch, int) or max_write_batch < 1:
            raise SseSimError(
                f"max_write_batch must be a positive integer, got {max_write_batch!r}"
            )
        if send_buffer_bytes is not None and send_buffer_bytes < 1:
            raise SseSimError(f"send_buffer_bytes must be positive, got {send_buffer_bytes!r}")
        if retry_ms is not None and retry_ms < 0:
            raise SseSimError(f"retry_ms must be >= 0, got {retry_ms!r}")
        if len(secret) < 16:
            raise SseSimError("the token secret must be at least 16 bytes")
        self.redis_client_factory = redis_client_factory
        self.secret = bytes(secret)
        self.buffer_size = buffer_size
        self.overflow_policy = overflow_policy
        self.keepalive_interval_s = float(keepalive_interval_s)
        self.reader_yield_every = reader_yield_every
        self.record_events = bool(record_events)
        self.send_buffer_bytes = send_buffer_bytes
        self.subscription_mode = subscription_mode
        self.max_write_batch = max_write_batch
        self.retry_ms = retry_ms
        self.subscribe_timeout_s = subscribe_timeout_s
        self.query_token_max_ttl_s = query_token_max_ttl_s

        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._pubsub: Any = None
        self._reader_task: asyncio.Task[None] | None = None
        self._command_task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[tuple[str, bytes]] | None = None
        self._pattern_confirmed: asyncio.Future[None] | None = None
        self._start_lock: asyncio.Lock | None = None
        self._reader_gate: asyncio.Event | None = None
        self._routes: dict[bytes, _Channel] = {}
        self._sub_inflight: collections.Counter[bytes] = collections.Counter()
        self._conns: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._next_id = 0
        self._shutting_down = False
        self._log: list[EventFate] = []
        self._subscriber_log: list[tuple[float, str]] = []
        self._counts: collections.Counter[str] = collections.Counter()
        # Hot-path counters are plain attributes: a Counter lookup per event costs measurably.
        self._events_in = 0
        self._events_unrouted = 0
        self._events_out = 0
        self._dropped_overflow = 0
        self._lost_in_buffer = 0
        self._disconnected_slow = 0

    # ------------------------------------------------------------------ ASGI entry point

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/gateway/sse/"):
                await self._stream(scope, receive, send)
            elif path == "/gateway/metrics":
                await _respond_json(send, 200, self.metrics(), scope)
            elif path == "/healthz":
                ok = not self._shutting_down
                await _respond_json(
                    send, 200 if ok else 503, {"status": "ok" if ok else "shutting_down"}, scope
                )
            else:
                await _respond_json(send, 404, {"error": "not found"}, scope)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(
        self,
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._bind_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.begin_shutdown()
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ the stream endpoint

    async def _stream(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        match = _STREAM_RE.fullmatch(scope["path"])
        if match is None:
            await _respond_json(send, 404, {"error": "not found"}, scope)
            return
        if scope["method"] != "GET":
            await _respond_json(
                send, 405, {"error": "method not allowed"}, scope, [(b"allow", b"GET")]
            )
            return
        token, max_ttl = _find_token(scope, self.query_token_max_ttl_s)
        try:
            claims = verify_token(self.secret, token, max_ttl_s=max_ttl)
        except TokenError as exc:
            self._counts["refused_unauthorized"] += 1
            await _respond_json(
                send,
                401,
                {"error": str(exc), "reason": exc.reason},
                scope,
                [(b"www-authenticate", b"x-auth-token")],
            )
            return
        brand_text = match.group(1)
        if _BRAND_RE.fullmatch(brand_text) is None:
            self._counts["refused_bad_request"] += 1
            await _respond_json(send, 400, {"error": "brand_id must be a positive integer"}, scope)
            return
        try:
            brand_id = check_id(int(brand_text), "brand_id")
            # The player comes from the signed token alone: no path or query part reaches the channel.
            channel = channel_name(brand_id, claims.player_id)
        except InvalidChannelError as exc:
            self._counts["refused_bad_request"] += 1
            await _respond_json(send, 400, {"error": str(exc)}, scope)
            return
        if claims.brand_id != brand_id:
            self._counts["refused_forbidden"] += 1
            await _respond_json(send, 403, {"error": "token is for another brand"}, scope)
            return
        if self._shutting_down:
            await _respond_json(send, 503, {"error": "shutting down"}, scope)
            return

        loop = self._bind_loop()
        self._next_id += 1
        transport = scope.get("extensions", {}).get(_TRANSPORT_KEY)
        conn = _Connection(self._next_id, brand_id, claims.player_id, channel, transport)
        conn.protocol = scope.get("extensions", {}).get(_PROTOCOL_KEY)
        self._conns.add(conn)
        self._counts["connections_total"] += 1
        key = channel.encode("ascii")

        async def watch_disconnect() -> None:
            # uvicorn ignores send() after the peer left; only http.disconnect tells us.
            while (await receive())["type"] != "http.disconnect":
                pass
            conn.gone = True
            conn.wake()

        watcher = loop.create_task(watch_disconnect())
        registered = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            state = self._register(conn, key, loop)
            registered = True
            try:
                await self._await_subscription(state, watcher)
            except _SubscribeFailed as exc:
                self._counts["subscribe_failures"] += 1
                logger.warning("subscribing to %s failed: %s", channel, exc)
                if not conn.gone:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": error_frame("Failed to subscribe to events"),
                            "more_body": True,
                        }
                    )
                return
            if conn.gone:
                return
            head = connected_frame(dt.datetime.now(dt.UTC))
            if self.retry_ms is not None:
                head = b"retry: %d\n" % self.retry_ms + head
            await send({"type": "http.response.body", "body": head, "more_body": True})
            self._counts["connections_connected"] += 1
            conn.keepalive_handle = loop.call_later(
                self.keepalive_interval_s, self._keepalive_tick, conn, loop
            )
            cycle = getattr(conn.protocol, "cycle", None)
            conn.direct = (
                self.reader_yield_every == 1
                and transport is not None
                and cycle is not None
                and cycle.chunked_encoding is True
            )
            await self._write_loop(conn, send, loop)
        finally:
            if conn.keepalive_handle is not None:
                conn.keepalive_handle.cancel()
            watcher.cancel()
            if registered:
                self._unregister(conn, key)
            self._discard_queue(conn, "disconnected_slow" if conn.slow else "lost_in_buffer")
            self._conns.discard(conn)
            if not conn.gone and (not conn.slow or conn.transport is None):
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _await_subscription(self, state: _Channel, watcher: asyncio.Task[None]) -> None:
        """Return once Redis confirmed the subscription (or the client left); raise if it failed."""
        waiting = (
            self._pattern_confirmed if self.subscription_mode == "pattern" else state.confirmed
        )
        assert waiting is not None
        if not waiting.done():
            done, _ = await asyncio.wait(
                {waiting, watcher},
                timeout=self.subscribe_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                raise _SubscribeFailed(f"no confirmation within {self.subscribe_timeout_s:g} s")
            if waiting not in done:
                return  # the client left first
        exc = waiting.exception()
        if exc is not None:
            raise _SubscribeFailed(str(exc)) from exc

    async def _write_loop(
        self,
        conn: _Connection,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Hand queued events to the socket one at a time (or ``max_write_batch`` at a time) until the stream ends."""
        queue = conn.queue
        record = self.record_events
        batch = self.max_write_batch
        while True:
            if conn.gone or conn.slow:
                return
            if queue:
                if batch == 1 or len(queue) == 1:
                    items = [queue.popleft()]
                else:
                    items = [queue.popleft() for _ in range(min(batch, len(queue)))]
                body = b"".join(item.frame for item in items) if record else b"".join(items)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if conn.gone:
                    # uvicorn drops writes once the peer has left (or the gateway aborted a slow
                    # stream while this write waited for the socket): they never reached it.
                    fate: Fate = "disconnected_slow" if conn.slow else "lost_in_buffer"
                    if conn.slow:
                        self._disconnected_slow += len(items)
                    else:
                        self._lost_in_buffer += len(items)
                    if record:
                        self._log_fates(conn, items, fate)
                    return
                self._events_out += len(items)
                if record:
                    self._log_fates(conn, items, "sent")
                continue
            if conn.keepalive_due:
                conn.keepalive_due = False
                await send(
                    {
                        "type": "http.response.body",
                        "body": keepalive_frame(dt.datetime.now(dt.UTC)),
                        "more_body": True,
                    }
                )
                self._counts["keepalives_out"] += 1
                continue
            if conn.closing:
                return
            waiter = loop.create_future()
            conn.waiter = waiter
            try:
                await waiter
            finally:
                conn.waiter = None

    def _keepalive_tick(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        # A fixed ticker, like the documented gateway's: keepalives do not wait for idle time.
        conn.keepalive_due = True
        conn.wake()
        conn.keepalive_handle = loop.call_later(
            self.keepalive_interval_s, self._keepalive_tick, conn, loop
        )

    def _discard_queue(self, conn: _Connection, fate: Fate) -> None:
        queue = conn.queue
        if not queue:
            return
        if fate == "disconnected_slow":
            self._disconnected_slow += len(queue)
        else:
            self._lost_in_buffer += len(queue)
        if self.record_events:
            self._log_fates(conn, list(queue), fate)
        queue.clear()

    def _log_fates(self, conn: _Connection, items: list[_Event], fate: Fate) -> None:
        now = time.time()
        self._log.extend(
            EventFate(
                conn.id,
                conn.brand_id,
                conn.player_id,
                conn.channel,
                ev.raw,
                ev.gateway_at,
                fate,
                now,
            )
            for ev in items
        )

    # ------------------------------------------------------------------ fan-out (the hot path)

    def _deliver(self, channel: bytes, data: bytes) -> None:
        """Fan one Redis message out to every connection on ``channel``; never awaits."""
        self._events_in += 1
        state = self._routes.get(channel)
        if state is None or not state.conns:
            self._events_unrouted += 1
            return
        if data.isascii() and b"\n" not in data and b"\r" not in data:
            # One line of ASCII (any compact JSON publisher's output): the frame is the bytes
            # themselves, exactly what encode_event gives, without a decode and re-encode.
            frame = b"data: %b\n\n" % data
            text = None
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("utf-8", "replace")
            frame = encode_event(text)
        if self.record_events:
            item: Any = _Event(frame, data.decode("ascii") if text is None else text, time.time())
        else:
            item = frame
        cap = self.buffer_size
        chunk = None
        for conn in state.conns:
            if conn.gone or conn.slow or conn.closing:
                continue
            queue = conn.queue
            if not queue and conn.direct:
                # The writer is idle and the socket has taken everything written so far: the
                # writer would take this event at once and write it, so write it here and save
                # the task switch and the ASGI send (about half the cost per event). Only when
                # the reader yields after every message, so that the knob keeps its meaning.
                waiter = conn.waiter
                transport = conn.transport
                if (
                    waiter is not None
                    and not waiter.done()
                    and transport.get_write_buffer_size() == 0
                    and not transport.is_closing()
                ):
                    if chunk is None:
                        chunk = b"%x\r\n%b\r\n" % (len(frame), frame)
                    transport.write(chunk)
                    self._events_out += 1
                    if self.record_events:
                        self._log_fates(conn, [item], "sent")
                    continue
            if len(queue) < cap:
                queue.append(item)
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            else:
                self._overflow(conn, item)

    def _overflow(self, conn: _Connection, item: Any) -> None:
        policy = self.overflow_policy
        if policy == "drop_newest":
            self._dropped_overflow += 1
            if self.record_events:
                self._log_fates(conn, [item], "dropped_overflow")
        elif policy == "drop_oldest":
            old = conn.queue.popleft()
            conn.queue.append(item)
            self._dropped_overflow += 1
            if self.record_events:
                self._log_fates(conn, [old], "evicted")
        else:
            conn.slow = True
            self._disconnected_slow += 1
            self._counts["connections_disconnected_slow"] += 1
            if self.record_events:
                self._log_fates(conn, [item], "disconnected_slow")
            # The writer may be blocked on a socket the client no longer drains: abort the
            # transport so the stream ends now and the client's retry takes over.
            if conn.transport is not None:
                conn.transport.abort()
            conn.wake()

    # ------------------------------------------------------------------ the shared subscription

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._commands = asyncio.Queue()
            self._start_lock = asyncio.Lock()
            self._reader_gate = asyncio.Event()
            self._reader_gate.set()
            if self.subscription_mode == "pattern":
                self._pattern_confirmed = loop.create_future()
            self._command_task = loop.create_task(
                self._command_loop(), name="sse_sim-subscriber-commands"
            )
        elif self._loop is not loop:
            raise SseSimError("a Gateway serves one event loop; create another for another loop")
        return loop

    def _register(self, conn: _Connection, key: bytes, loop: asyncio.AbstractEventLoop) -> _Channel:
        assert self._commands is not None
        state = self._routes.get(key)
        if state is None:
            state = self._routes[key] = _Channel(loop)
            if self.subscription_mode == "channel":
                self._commands.put_nowait(("subscribe", key))
        if self.subscription_mode == "pattern" and self._pubsub is None:
            self._commands.put_nowait(("ensure", key))
        state.conns.append(conn)
        self._counts["connections_open"] += 1
        return state

    def _unregister(self, conn: _Connection, key: bytes) -> None:
        state = self._routes.get(key)
        self._counts["connections_open"] -= 1
        if state is None:
            return
        with contextlib.suppress(ValueError):
            state.conns.remove(conn)
        if not state.conns:
            del self._routes[key]
            if not state.confirmed.done():
                state.confirmed.cancel()
            if self.subscription_mode == "channel" and self._commands is not None:
                self._commands.put_nowait(("unsubscribe", key))

    async def _ensure_subscriber(self) -> Any:
        """Connect the shared PubSub and start its reader, once; raises if Redis is unreachable."""
        if self._pubsub is not None:
            return self._pubsub
        if self._client is None:
            self._client = self.redis_client_factory()
        pubsub = self._client.pubsub()
        await pubsub.connect()
        # redis-py reconnects and resubscribes silently when Redis drops the connection (for
        # example past client-output-buffer-limit pubsub); its connect callbacks are the only
        # place that sees it. The first connect happened before this registration, so every
        # call is a reconnect. The bound method is kept alive by self (callbacks are weak).
        pubsub.connection.register_connect_callback(self._on_subscriber_reconnect)
        if self.subscription_mode == "pattern":
            await pubsub.psubscribe(CHANNEL_PATTERN)
        self._pubsub = pubsub
        assert self._loop is not None
        self._reader_task = self._loop.create_task(
            self._read_loop(pubsub), name="sse_sim-subscriber-reader"
        )
        self._subscriber_log.append((time.time(), "connected"))
        return pubsub

    async def _on_subscriber_reconnect(self, connection: Any) -> None:
        self._counts["subscriber_reconnects"] += 1
        # redis-py resubscribes every channel it knows on reconnect: the confirmations that
        # follow prove all of them, whatever was in flight before.
        self._sub_inflight.clear()
        self._subscriber_log.append((time.time(), "reconnected"))
        logger.warning(
            "the shared Redis subscriber was disconnected and has resubscribed; events in between are lost"
        )

    async def _command_loop(self) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE in order, batching what queued up (connection storms)."""
        assert self._commands is not None
        commands = self._commands
        while True:
            kind, key = await commands.get()
            batch = [key]
            while not commands.empty():
                next_kind, next_key = commands.get_nowait()
                if next_kind != kind:
                    await self._run_command(kind, batch)
                    kind, batch = next_kind, []
                batch.append(next_key)
            await self._run_command(kind, batch)

    async def _run_command(self, kind: str, keys: list[bytes]) -> None:
        try:
            pubsub = await self._ensure_subscriber()
            if kind == "subscribe":
                # A channel released while its SUBSCRIBE waited in the queue needs no subscription.
                keys = [k for k in keys if k in self._routes]
                for key in keys:
                    self._routes[key].sub_sent = True
                    self._sub_inflight[key] += 1
                if keys:
                    await pubsub.subscribe(*keys)
            elif kind == "unsubscribe":
                keys = [k for k in keys if k not in self._routes]
                if keys:
                    await pubsub.unsubscribe(*keys)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._counts["subscriber_errors"] += 1
            self._subscriber_log.append((time.time(), f"error: {exc}"))
            if kind == "subscribe":
                for key in keys:
                    state = self._routes.get(key)
                    if state is not None and not state.confirmed.done():
                        state.confirmed.set_exception(_SubscribeFailed(str(exc)))
            if (
                self.subscription_mode == "pattern"
                and self._pattern_confirmed is not None
                and not self._pattern_confirmed.done()
            ):
                self._pattern_confirmed.set_exception(_SubscribeFailed(str(exc)))
                self._pattern_confirmed = self._loop.create_future() if self._loop else None
            # Let the next command try a fresh connection.
            await self._drop_subscriber()

    async def _drop_subscriber(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _read_loop(self, pubsub: Any) -> None:
        """Take messages off the shared Redis connection and fan them out."""
        parse = pubsub.parse_response
        deliver = self._deliver
        every = self.reader_yield_every
        gate = self._reader_gate
        assert gate is not None
        n = 0
        failures = 0
        # redis-py's PubSub.parse_response wraps every read in its retry and telemetry layers,
        # which costs about as much as the fan-out itself. On a real Redis connection read the
        # connection directly and fall back to parse_response only after an error: that path
        # reconnects, resubscribes and fires the reconnect callback. fakeredis keeps the
        # documented path.
        connection = pubsub.connection
        fast = type(connection).__module__.startswith("redis.")
        while True:
            try:
                if fast and connection.is_connected:
                    try:
                        response = await connection.read_response(
                            timeout=math.inf, push_request=True
                        )
                    except (asyncio.CancelledError, KeyboardInterrupt):
                        raise
                    except Exception:
                        response = await parse(block=True)
                else:
                    response = await parse(block=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Retries inside redis-py are exhausted: Redis is down. Keep trying, slowly;
                # the streams stay open and receive again once the subscriber is back.
                failures += 1
                self._counts["subscriber_errors"] += 1
                self._subscriber_log.append((time.time(), f"error: {exc}"))
                await asyncio.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
                continue
            failures = 0
            if response is None:
                continue
            kind = response[0]
            if kind == b"message":
                deliver(response[1], response[2])
            elif kind == b"pmessage":
                deliver(response[2], response[3])
            else:
                await self._control(pubsub, response)
            if every:
                n += 1
                if n >= every:
                    n = 0
                    await asyncio.sleep(0)
            if not gate.is_set():
                await gate.wait()

    async def _control(self, pubsub: Any, response: Any) -> None:
        """Subscription confirmations: resolve the connections waiting for them; keep redis-py's books."""
        await pubsub.handle_message(response, ignore_subscribe_messages=False)
        kind = response[0]
        if kind == b"subscribe":
            key = response[1]
            # Redis confirms in order: only the confirmation of the latest SUBSCRIBE sent for a
            # channel proves the current subscription (an earlier one may precede an UNSUBSCRIBE).
            inflight = self._sub_inflight.get(key, 0)
            if inflight > 1:
                self._sub_inflight[key] = inflight - 1
                return
            self._sub_inflight.pop(key, None)
            state = self._routes.get(key)
            if state is not None and state.sub_sent and not state.confirmed.done():
                state.confirmed.set_result(None)
        elif kind == b"psubscribe":
            if self._pattern_confirmed is not None and not self._pattern_confirmed.done():
                self._pattern_confirmed.set_result(None)

    # ------------------------------------------------------------------ control and introspection

    def stall_subscriber(self, seconds: float) -> None:
        """Stop the shared reader for ``seconds`` (thread-safe): emulates a lagging gateway node."""
        loop = self._loop
        if loop is None:
            raise SseSimError("the gateway has not started")

        def stall() -> None:
            assert self._reader_gate is not None
            self._reader_gate.clear()
            loop.call_later(seconds, self._reader_gate.set)

        loop.call_soon_threadsafe(stall)

    def begin_shutdown(self) -> None:
        """End every stream (clients reconnect elsewhere) and refuse new ones; call in the loop."""
        self._shutting_down = True
        for conn in list(self._conns):
            conn.closing = True
            conn.wake()

    async def aclose(self) -> None:
        """Stop the subscriber tasks and close the Redis connections."""
        task, self._command_task = self._command_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop_subscriber()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def subscribed_channels(self) -> list[str]:
        """Channels the shared subscription holds (or is asking Redis for) right now."""
        return sorted(k.decode() for k in self._routes)

    def subscriber_log(self) -> list[tuple[float, str]]:
        """``(time.time(), what)`` for each connect, reconnect and error of the shared subscriber."""
        return list(self._subscriber_log)

    def event_log(self) -> list[EventFate]:
        """One :class:`EventFate` per (message, connection) decided so far (``record_events=True``)."""
        if not self.record_events:
            raise SseSimError("event_log() needs create_gateway(record_events=True)")
        return list(self._log)

    def metrics(self) -> dict[str, Any]:
        """Counters of the gateway process, as served on ``/gateway/metrics``."""
        c = self._counts
        drops = {
            "dropped_overflow": self._dropped_overflow,
            "lost_in_buffer": self._lost_in_buffer,
            "disconnected_slow": self._disconnected_slow,
        }
        return {
            "connections_open": c["connections_open"],
            "connections_total": c["connections_total"],
            "connections_connected": c["connections_connected"],
            "connections_disconnected_slow": c["connections_disconnected_slow"],
            "refused_unauthorized": c["refused_unauthorized"],
            "refused_forbidden": c["refused_forbidden"],
            "refused_bad_request": c["refused_bad_request"],
            "events_in": self._events_in,
            "events_unrouted": self._events_unrouted,
            "events_out": self._events_out,
            "keepalives_out": c["keepalives_out"],
            **drops,
            "drops": drops,
            "subscribe_failures": c["subscribe_failures"],
            "subscriber_reconnects": c["subscriber_reconnects"],
            "subscriber_errors": c["subscriber_errors"],
            "channels_subscribed": len(self._routes),
            "subscription_mode": self.subscription_mode,
            "buffer_size": self.buffer_size,
            "overflow_policy": self.overflow_policy,
            "reader_yield_every": self.reader_yield_every,
        }


def create_gateway(
    *,
    redis_client_factory: RedisClientFactory,
    secret: bytes,
    buffer_size: int = 50,
    overflow_policy: str = "drop_newest",
    keepalive_interval_s: float = 15.0,
    reader_yield_every: int = 1,
    record_events: bool = False,
    send_buffer_bytes: int | None = None,
    **options: Any,
) -> Gateway:
    """A :class:`Gateway` ASGI app; ``options`` are the other keyword arguments of :class:`Gateway`."""
    return Gateway(
        redis_client_factory=redis_client_factory,
        secret=secret,
        buffer_size=buffer_size,
        overflow_policy=overflow_policy,
        keepalive_interval_s=keepalive_interval_s,
        reader_yield_every=reader_yield_every,
        record_events=record_events,
        send_buffer_bytes=send_buffer_bytes,
        **options,
    )


# ---------------------------------------------------------------------- helpers for the endpoint


def _find_token(scope: dict[str, Any], query_max_ttl_s: float) -> tuple[str | None, float | None]:
    """The token from the header, else the cookie, else ``?token=`` (which must be short-lived)."""
    cookie_header = None
    for name, value in scope["headers"]:
        if name == TOKEN_HEADER:
            return value.decode("latin-1"), None
        if name == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header:
        for part in cookie_header.split(";"):
            key, _, val = part.strip().partition("=")
            if key == TOKEN_COOKIE and val:
                return val, None
    query = scope.get("query_string", b"")
    if query:
        values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("token")
        if values:
            return values[0], query_max_ttl_s
    return None, None


async def _respond_json(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    payload: dict[str, Any],
    scope: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache"),
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send(
        {"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""}
    )


# ---------------------------------------------------------------------- serving with uvicorn


def _protocol_class(send_buffer_bytes: int | None) -> type:
    """uvicorn's httptools protocol, telling the app its transport and shrinking send buffers if asked."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class SseProtocol(HttpToolsProtocol):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if send_buffer_bytes is not None:
                # Events the kernel and the transport hold are invisible to the gateway's queue;
                # small buffers make the queue the only buffer that matters.
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
                transport.set_write_buffer_limits(high=send_buffer_bytes)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            # The app aborts a slow stream's transport (policy "disconnect"); ASGI has no verb for it.
            self.scope["extensions"] = {_TRANSPORT_KEY: self.transport, _PROTOCOL_KEY: self}

    return SseProtocol


def _uvicorn_server(gateway: Gateway, *, timeout_graceful_shutdown: float, log_level: str) -> Any:
    import uvicorn

    class GatewayServer(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Open streams never finish by themselves; end them first so a graceful shutdown
            # takes a moment, and only writers stuck on a stalled client wait for the timeout.
            gateway.begin_shutdown()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        gateway,
        http=_protocol_class(gateway.send_buffer_bytes),
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
        backlog=4096,
        ws="none",
    )
    return GatewayServer(config)


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SseSimError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def run_gateway(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    gateway: Gateway | None = None,
    timeout_graceful_shutdown: float = 3.0,
    log_level: str = "warning",
    on_ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Serve a gateway until Ctrl-C or SIGTERM, then shut down within ``timeout_graceful_shutdown`` s.

    ``options`` go to :func:`create_gateway` when no ``gateway`` is given.
    """
    if gateway is None:
        gateway = create_gateway(**options)
    sock = _listen(host, port)
    server = _uvicorn_server(
        gateway, timeout_graceful_shutdown=timeout_graceful_shutdown, log_level=log_level
    )
    if on_ready is not None:
        on_ready(f"http://{host}:{sock.getsockname()[1]}")
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # handlers that kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT) before the
    # caller can clean up (a throwaway redis-server, for one). Quiet handlers make it return.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class _Backend:
    factory: RedisClientFactory
    fake_server: Any = None
    redis_url: str | None = None
    redis_server: Any = None


def _make_backend(
    backend: str, redis_url: str | None, fake_server: Any, redis_config: dict[str, str] | None
) -> _Backend:
    if backend == "fakeredis":
        if redis_url is not None:
            raise SseSimError("--redis-url needs --backend redis")
        import fakeredis

        server = fake_server if fake_server is not None else fakeredis.FakeServer()
        return _Backend(fakeredis_factory(server), fake_server=server)
    if backend == "redis":
        if redis_url is not None:
            if not redis_url.startswith(("redis://", "rediss://", "unix://")):
                raise SseSimError(
                    f"--redis-url must start with redis://, rediss:// or unix://, got {redis_url!r}"
                )
            return _Backend(redis_factory(redis_url), redis_url=redis_url)
        from .redis_server import RedisServer

        server = RedisServer(config=redis_config)
        return _Backend(redis_factory(server.url), redis_url=server.url, redis_server=server)
    raise SseSimError(f"unknown backend {backend!r} (allowed: fakeredis, redis)")


class GatewayThread:
    """A gateway served by uvicorn on 127.0.0.1 in a background thread with its own event loop.

    Start it with :func:`start_gateway`. ``.url`` is the base URL, ``.gateway`` the app,
    ``.fake_server`` the shared ``fakeredis.FakeServer`` (fakeredis backend) and ``.redis_url``
    the Redis URL (redis backend). :meth:`stop` shuts down gracefully and stops a throwaway
    redis-server if this object started one.
    """

    def __init__(
        self,
        gateway: Gateway,
        backend: _Backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_graceful_shutdown: float = 3.0,
        log_level: str = "warning",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.gateway = gateway
        self._backend = backend
        self.fake_server = backend.fake_server
        self.redis_url = backend.redis_url
        self.redis_server = backend.redis_server
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self._sock = _listen(host, port)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        self._server = _uvicorn_server(
            gateway, timeout_graceful_shutdown=timeout_graceful_shutdown, log_level=log_level
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"sse_sim-gateway-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SseSimError(f"the gateway did not start: {self._error or 'timeout'}")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by the starting thread
            self._error = exc

    @property
    def secret(self) -> bytes:
        return self.gateway.secret

    def token(self, player_id: int, brand_id: int = 1001, ttl_s: float = 3600) -> str:
        """A token for this gateway's secret."""
        from .auth import mint_token

        return mint_token(self.gateway.secret, brand_id, player_id, ttl_s)

    def publisher(self) -> Any:
        """A synchronous redis-py (or fakeredis) client on the gateway's backend, for publishing."""
        if self.fake_server is not None:
            import fakeredis

            return fakeredis.FakeRedis(server=self.fake_server)
        import redis

        assert self.redis_url is not None
        return redis.Redis.from_url(self.redis_url)

    def call(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run ``fn`` in the gateway's event loop and return its result (for inspection)."""
        loop = self.gateway._loop
        if loop is None:
            raise SseSimError("the gateway has not started")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> float:
        """Shut down gracefully (at most about ``timeout_graceful_shutdown`` s); returns seconds taken."""
        start = time.monotonic()
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(self.timeout_graceful_shutdown + 10)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.redis_server is not None:
            self.redis_server.stop()
        return time.monotonic() - start

    def __enter__(self) -> GatewayThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_gateway(
    *,
    backend: str = "fakeredis",
    redis_url: str | None = None,
    fake_server: Any = None,
    redis_config: dict[str, str] | None = None,
    secret: bytes | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_graceful_shutdown: float = 3.0,
    log_level: str = "warning",
    **options: Any,
) -> GatewayThread:
    """Start a gateway in a background thread; use as a context manager or call ``.stop()``.

    ``backend`` is ``fakeredis`` (a shared ``FakeServer``, given or new) or ``redis`` (``redis_url``,
    or a throwaway redis-server started here with ``redis_config`` and stopped by ``.stop()``).
    ``options`` go to :func:`create_gateway`. ``secret`` defaults to a random one.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SseSimError("start_gateway listens on loopback only")
    backend_obj = _make_backend(backend, redis_url, fake_server, redis_config)
    try:
        gateway = create_gateway(
            redis_client_factory=backend_obj.factory,
            secret=secret if secret is not None else _secrets.token_bytes(32),
            **options,
        )
        return GatewayThread(
            gateway,
            backend_obj,
            host=host,
            port=port,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
            log_level=log_level,
        )
    except BaseException:
        if backend_obj.redis_server is not None:
            backend_obj.redis_server.stop()
        raise


def secret_from_env(value: str | None = None) -> bytes:
    """The token secret: ``value``, else ``$SSE_SIM_SECRET``, else the development secret."""
    text = value if value is not None else os.environ.get("SSE_SIM_SECRET")
    if text is None:
        return DEV_SECRET
    secret = text.encode()
    if len(secret) < 16:
        raise SseSimError(
            "the token secret (--secret or $SSE_SIM_SECRET) must be at least 16 bytes"
        )
    return secret
