"""The gateway's ASGI app: routing, the life of an SSE stream, control, metrics and health.

Raw ASGI, no framework. A stream is admitted (see :mod:`.admission`), registered with the
fan-out and the shared subscriber, answered with ``connected`` once Redis confirms its channel
(under stream or latest delivery, once what it missed has been read too: see :mod:`.replay`),
sent what it missed, then fed by its writer until the client leaves, the overflow policy ends it
or the gateway shuts down. ``/gateway/demo``
serves a small page that opens a stream (see :mod:`.demo`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ...errors import SseSimError
from ...events.wire import connected_frame, error_frame
from ..auth import QUERY_TOKEN_MAX_TTL_S
from . import compat
from .admission import Refusal, admit, check_metrics_token, metrics_refusal, respond_json
from .backends import RedisClientFactory
from .browser import Cors, answer_refusal
from .demo import DEMO_PATH, serve_demo
from .fanout import (
    DEFAULT_MAX_QUEUE_BYTES,
    OVERFLOW_POLICIES,
    Connection,
    ConnectionInfo,
    EventFate,
    Fanout,
)
from .limits import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_MAX_HEADER_BYTES,
    HttpLimits,
)
from .replay import HISTORY_FAILED_MESSAGE, DeliveryOptions, HistoryUnavailable, Replayer
from .subscriber import SUBSCRIPTION_MODES, SharedSubscriber, SubscribeFailed, wait_confirmed

__all__ = ["Gateway", "create_gateway"]

# The replay counters of a gateway that replays nothing (every type under pub/sub).
_NO_REPLAYS = {
    "replayed_entries": 0,
    "replayed_latest": 0,
    "recoveries_true": 0,
    "recoveries_false": 0,
    "xrange_calls": 0,
    "latest_reads": 0,
    "replay_failures": 0,
}

logger = logging.getLogger("sse_sim.gateway")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Gateway:
    """The ASGI application: SSE streams, metrics and health, over one shared Redis subscription.

    Build it with :func:`create_gateway`; serve it with :func:`run_gateway` or
    :func:`start_gateway`. :meth:`metrics` and :meth:`event_log` may be read from any thread.
    ``on_connection`` is called in the gateway's event loop with a :class:`ConnectionInfo` each
    time a stream registers (its response head sent, its subscription asked for); it must not
    block, and what it raises is logged, not passed to the stream.

    ``cors_origins`` lists the origins whose pages may read the answers (see :mod:`.browser`);
    ``metrics_token`` makes ``/gateway/metrics`` ask for ``Authorization: Bearer <token>``, and
    without it only loopback clients may read the metrics.

    ``max_header_bytes``, ``header_timeout_s``, ``idle_timeout_s``, ``max_connections`` and
    ``max_connections_per_ip`` are the HTTP-level limits (see :class:`.limits.HttpLimits`).

    ``delivery`` (``pubsub``, ``stream`` or ``latest``), overridden per event type by
    ``delivery_types``, with ``history_size``, ``history_ttl_s`` and ``max_replay``, is the
    delivery design publishers follow (see :mod:`.replay`); ``retry_ms`` is sent as ``retry:``
    with ``connected``.

    ``reader_rate_per_s`` caps the shared subscriber's reads (messages a second; None: no cap).
    The real runner sets it to a scenario's ``redis.output_buffer.reader_rate_per_s``, so that
    Redis holds the same backlog as in the simulator; a production gateway reads as fast as it can.
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
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        retry_ms: int | None = None,
        subscribe_timeout_s: float = 5.0,
        query_token_max_ttl_s: float = QUERY_TOKEN_MAX_TTL_S,
        on_connection: Callable[[ConnectionInfo], None] | None = None,
        cors_origins: Iterable[str] = (),
        metrics_token: str | None = None,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_connections: int | None = None,
        max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
        delivery: str = "pubsub",
        history_size: int = 100,
        history_ttl_s: float | None = None,
        max_replay: int = 300,
        delivery_types: dict[str, str] | None = None,
        reader_rate_per_s: float | None = None,
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
        if reader_rate_per_s is not None and not reader_rate_per_s > 0:
            raise SseSimError(f"reader_rate_per_s must be positive or None, got {reader_rate_per_s!r}")
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise SseSimError(f"subscription_mode must be one of {', '.join(SUBSCRIPTION_MODES)}")
        if not isinstance(max_write_batch, int) or max_write_batch < 1:
            raise SseSimError(
                f"max_write_batch must be a positive integer, got {max_write_batch!r}"
            )
        if send_buffer_bytes is not None and send_buffer_bytes < 1:
            raise SseSimError(f"send_buffer_bytes must be positive, got {send_buffer_bytes!r}")
        if max_queue_bytes is not None and (
            not isinstance(max_queue_bytes, int) or max_queue_bytes < 1
        ):
            raise SseSimError(
                f"max_queue_bytes must be a positive integer or None, got {max_queue_bytes!r}"
            )
        self.delivery = DeliveryOptions(
            delivery,
            history_size=history_size,
            history_ttl_s=history_ttl_s,
            max_replay=max_replay,
            delivery_types=delivery_types,
        )
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
        self.max_queue_bytes = max_queue_bytes
        self.retry_ms = None if retry_ms is None else int(retry_ms)
        self.subscribe_timeout_s = subscribe_timeout_s
        self.query_token_max_ttl_s = query_token_max_ttl_s
        self.on_connection = on_connection
        self.cors = Cors(cors_origins)
        self.metrics_token = check_metrics_token(metrics_token)
        # Enforced by the server's protocol (see .limits), per process; kept here so that one
        # create_gateway call configures everything.
        self.http_limits = HttpLimits(
            max_header_bytes=max_header_bytes,
            header_timeout_s=header_timeout_s,
            idle_timeout_s=idle_timeout_s,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
        )

        self._fanout = Fanout(
            buffer_size=buffer_size,
            overflow_policy=overflow_policy,
            keepalive_interval_s=self.keepalive_interval_s,
            record_events=self.record_events,
            max_write_batch=max_write_batch,
            max_queue_bytes=max_queue_bytes,
            delivery=self.delivery,
        )
        # Reads what a (re)subscribing stream missed (stream and latest delivery only).
        self._replayer = (
            None
            if self.delivery.plain
            else Replayer(self.delivery, redis_client_factory, self._fanout)
        )
        # After any loss of the shared subscription the fan-out tells the streams that had it
        # and ends them (see fanout.tell_lost); the subscriber resubscribes the rest.
        self._subscriber = SharedSubscriber(
            client_factory=redis_client_factory,
            deliver=self._fanout.deliver,
            mode=subscription_mode,
            reader_yield_every=reader_yield_every,
            on_lost=self._fanout.tell_lost,
            reader_rate_per_s=reader_rate_per_s,
        )
        self.reader_rate_per_s = reader_rate_per_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._next_id = 0
        self._shutting_down = False
        self._counts: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ ASGI entry point

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if scope["method"] == "OPTIONS":  # a browser's CORS preflight
                await self.cors.preflight(send, scope)
            elif path.startswith("/gateway/sse/"):
                await self._stream(scope, receive, send)
            elif path == "/gateway/metrics":
                await self._serve_metrics(scope, send)
            elif path == DEMO_PATH:
                await serve_demo(send, scope, self.cors)
            elif path == "/healthz":
                ok = not self._shutting_down
                await respond_json(
                    send,
                    200 if ok else 503,
                    {"status": "ok" if ok else "shutting_down"},
                    scope,
                    self.cors.headers(scope),
                )
            else:
                await respond_json(send, 404, {"error": "not found"}, scope)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _serve_metrics(self, scope: dict[str, Any], send: Send) -> None:
        """Answer ``/gateway/metrics``: the counters, or 401/403 (see :func:`.admission.metrics_refusal`)."""
        cors = self.cors.headers(scope)
        refusal = metrics_refusal(scope, self.metrics_token)
        if refusal is None:
            await respond_json(send, 200, self.metrics(), scope, cors)
        else:
            await respond_json(
                send, refusal.status, refusal.payload, scope, (refusal.headers or []) + cors
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
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

    async def _stream(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Serve one SSE stream: admit it, subscribe, then write events until it ends."""
        target = admit(scope, secret=self.secret, query_token_max_ttl_s=self.query_token_max_ttl_s)
        if isinstance(target, Refusal):
            if target.counter is not None:
                self._counts[target.counter] += 1
            await answer_refusal(send, scope, target, self.cors.headers(scope))
            return
        if self._shutting_down:
            cors = self.cors.headers(scope)
            await respond_json(send, 503, {"error": "shutting down"}, scope, cors)
            return
        loop = self._bind_loop()
        conn = self._open(scope, *target)
        key = conn.channel.encode("ascii")
        watcher = loop.create_task(_watch_disconnect(conn, receive))
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
                        *self.cors.headers(scope),
                    ],
                }
            )
            confirmed = self._register(conn, key)
            registered = True
            if await self._subscribed(conn, confirmed, watcher, send):
                replay = None
                if self._replayer is not None:
                    try:
                        replay = await self._replayer.prepare(conn, scope)
                    except HistoryUnavailable as exc:
                        # Told like a failed subscription; the browser reconnects with the
                        # same Last-Event-ID, and the history is still there.
                        logger.warning("reading what %s missed failed: %s", conn.channel, exc)
                        await self._send_error(conn, send, HISTORY_FAILED_MESSAGE)
                        return
                await self._begin_events(conn, send, loop)
                if replay is not None and self._replayer is not None:
                    await self._replayer.send(conn, replay, send)
                self._allow_direct_writes(conn)
                await self._fanout.write_loop(conn, send, loop)
        finally:
            await self._close(conn, key, watcher, registered, send)

    def _open(
        self, scope: dict[str, Any], brand_id: int, player_id: int, channel: str
    ) -> Connection:
        self._next_id += 1
        transport, protocol = compat.connection_of(scope)
        conn = Connection(self._next_id, brand_id, player_id, channel, transport, protocol)
        self._conns.add(conn)
        self._counts["connections_total"] += 1
        return conn

    async def _subscribed(
        self,
        conn: Connection,
        confirmed: asyncio.Future[None],
        watcher: asyncio.Task[None],
        send: Send,
    ) -> bool:
        """Whether the stream may go on: Redis confirmed its channel and the client is still there.

        A failed subscription is reported to the client as an ``error`` event.
        """
        try:
            await wait_confirmed(confirmed, watcher, self.subscribe_timeout_s)
        except SubscribeFailed as exc:
            self._counts["subscribe_failures"] += 1
            logger.warning("subscribing to %s failed: %s", conn.channel, exc)
            await self._send_error(conn, send, "Failed to subscribe to events")
            return False
        return not conn.gone

    async def _send_error(self, conn: Connection, send: Send, message: str) -> None:
        """Send the documented ``error`` event (the stream then ends), unless the client left."""
        if not conn.gone:
            await send({"type": "http.response.body", "body": error_frame(message), "more_body": True})

    async def _begin_events(
        self, conn: Connection, send: Send, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Send ``connected`` (after ``retry:`` if set) and start keepalives."""
        head = connected_frame(dt.datetime.now(dt.UTC))
        if self.retry_ms is not None:
            head = b"retry: %d\n" % self.retry_ms + head
        await send({"type": "http.response.body", "body": head, "more_body": True})
        self._counts["connections_connected"] += 1
        self._fanout.start_keepalives(conn, loop)

    def _allow_direct_writes(self, conn: Connection) -> None:
        """Let the reader write to an idle stream itself (see ``Fanout.deliver``); only after any replay went out."""
        conn.direct = (
            self.reader_yield_every == 1
            and conn.transport is not None
            and compat.is_chunked(conn.protocol)
        )

    async def _close(
        self,
        conn: Connection,
        key: bytes,
        watcher: asyncio.Task[None],
        registered: bool,
        send: Send,
    ) -> None:
        """Stop the stream's timers, unregister it, settle its queue and end the response."""
        if conn.keepalive_handle is not None:
            conn.keepalive_handle.cancel()
        watcher.cancel()
        if registered:
            self._unregister(conn, key)
        self._fanout.discard_queue(conn)
        self._conns.discard(conn)
        if not conn.gone and (not conn.slow or conn.transport is None):
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _register(self, conn: Connection, key: bytes) -> asyncio.Future[None]:
        confirmed = self._subscriber.subscribe(key)
        self._fanout.add(conn, key)
        self._counts["connections_open"] += 1
        if self.on_connection is not None:
            self._announce(conn)
        return confirmed

    def _announce(self, conn: Connection) -> None:
        assert self.on_connection is not None
        try:
            self.on_connection(ConnectionInfo.of(conn))
        except Exception:
            logger.exception("on_connection failed for connection %d", conn.id)

    def _unregister(self, conn: Connection, key: bytes) -> None:
        self._counts["connections_open"] -= 1
        self._fanout.remove(conn, key)
        self._subscriber.unsubscribe(key)

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._subscriber.start(loop)
        elif self._loop is not loop:
            raise SseSimError("a Gateway serves one event loop; create another for another loop")
        return loop

    # ------------------------------------------------------------------ control and introspection

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the gateway serves, once it has started (None before)."""
        return self._loop

    def stall_subscriber(self, seconds: float) -> None:
        """Stop the shared reader for ``seconds`` (thread-safe): emulates a lagging gateway node."""
        if self._loop is None:
            raise SseSimError("the gateway has not started")
        self._subscriber.stall(seconds)

    def begin_shutdown(self) -> None:
        """End every stream (clients reconnect elsewhere) and refuse new ones; call in the loop."""
        self._shutting_down = True
        for conn in list(self._conns):
            conn.closing = True
            conn.wake()

    def drop_connections(self, brand_id: int, player_id: int) -> int:
        """End every open stream of a player, as a deploy or a network fault would; how many (any thread).

        What each had queued is written first, then its response ends, so a browser reconnects
        after its retry delay (with ``Last-Event-ID`` if it read a stream event).
        """
        loop = self._loop
        if loop is None:
            return 0
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return self._drop(brand_id, player_id)

        async def drop() -> int:
            return self._drop(brand_id, player_id)

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(10.0)

    def _drop(self, brand_id: int, player_id: int) -> int:
        dropped = 0
        for conn in list(self._conns):
            if conn.brand_id == brand_id and conn.player_id == player_id and not conn.closing:
                conn.closing = True
                conn.wake()
                dropped += 1
        self._counts["connections_dropped"] += dropped
        return dropped

    async def aclose(self) -> None:
        """Stop the subscriber tasks and close the Redis connections."""
        await self._subscriber.aclose()
        if self._replayer is not None:
            await self._replayer.aclose()

    def subscribed_channels(self) -> list[str]:
        """Channels the shared subscription holds (or is asking Redis for) right now."""
        return sorted(k.decode() for k in self._fanout.routes)

    def subscriber_log(self) -> list[tuple[float, str]]:
        """``(time.time(), what)`` for each connect, reconnect and error of the shared subscriber."""
        return self._subscriber.log()

    def event_log(self) -> list[EventFate]:
        """One :class:`EventFate` per (message, connection) decided so far (``record_events=True``)."""
        if not self.record_events:
            raise SseSimError("event_log() needs create_gateway(record_events=True)")
        return list(self._fanout.log)

    def metrics(self) -> dict[str, Any]:
        """Counters of the gateway process, as served on ``/gateway/metrics``.

        Losses of the shared Redis subscription: ``subscriber_outages``, ``outage_s_total``
        (loss to resubscribe, the ongoing one included), ``streams_told_of_loss`` (streams sent
        the loss notice and ended), ``loss_notices_sent`` (notices that reached the socket) and
        ``outages`` (the last 100 in detail). Events published during an outage never reached
        the gateway, so it cannot count them; the streams told are the ones that missed some.
        """
        c, f = self._counts, self._fanout
        drops = {
            "dropped_overflow": f.dropped_overflow,
            "lost_in_buffer": f.lost_in_buffer,
            "disconnected_slow": f.disconnected_slow,
        }
        return {
            "connections_open": c["connections_open"],
            "connections_total": c["connections_total"],
            "connections_connected": c["connections_connected"],
            "connections_disconnected_slow": f.connections_disconnected_slow,
            "refused_unauthorized": c["refused_unauthorized"],
            "refused_forbidden": c["refused_forbidden"],
            "refused_bad_request": c["refused_bad_request"],
            "events_in": f.events_in,
            "events_unrouted": f.events_unrouted,
            "events_out": f.events_out,
            "keepalives_out": f.keepalives_out,
            **drops,
            "drops": drops,
            "subscribe_failures": c["subscribe_failures"],
            "subscriber_reconnects": self._subscriber.reconnects,
            "subscriber_errors": self._subscriber.errors,
            **self._subscriber.outage_metrics(),
            "loss_notices_sent": f.loss_notices_sent,
            "channels_subscribed": len(f.routes),
            "subscription_mode": self.subscription_mode,
            "buffer_size": self.buffer_size,
            "overflow_policy": self.overflow_policy,
            "reader_yield_every": self.reader_yield_every,
            "reader_rate_per_s": self.reader_rate_per_s,
            "max_queue_bytes": self.max_queue_bytes,
            "queue_bytes_peak": f.queue_bytes_peak,
            "connections_dropped": c["connections_dropped"],
            **self.delivery.metrics(),
            "superseded": f.superseded,
            "replay_duplicates_dropped": f.replay_duplicates_dropped,
            **(self._replayer.metrics() if self._replayer is not None else _NO_REPLAYS),
            "pid": os.getpid(),  # which worker answered, with --workers
            **self.http_limits.metrics(),
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
    on_connection: Callable[[ConnectionInfo], None] | None = None,
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
        on_connection=on_connection,
        **options,
    )


# ---------------------------------------------------------------------- helpers for the endpoint


async def _watch_disconnect(conn: Connection, receive: Receive) -> None:
    # uvicorn ignores send() after the peer left; only http.disconnect tells us.
    while (await receive())["type"] != "http.disconnect":
        pass
    conn.gone = True
    conn.wake()
