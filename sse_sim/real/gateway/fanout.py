"""The gateway's fan-out: per-connection bounded queues, overflow policies, writers and event fates.

Delivery model (the same as the simulator's):

- each connection has a bounded queue of ``buffer_size`` events plus the one its writer is
  handing to the socket, so K = buffer_size + 1 in M/M/1/K terms; what the kernel and the
  transport buffer hold beyond that is "socket buffering" (``send_buffer_bytes`` shrinks it);
- when the queue is full the overflow policy decides: ``drop_newest`` drops the arriving event
  (the documented Go ``select`` with ``default``), ``drop_oldest`` evicts the oldest queued one,
  ``disconnect`` aborts the slow stream with a TCP reset, so what the sockets held for it is
  freed too (the client's EventSource reconnects later);
- the queue is also capped in bytes (``max_queue_bytes``, the frames' encoded size), so a
  stalled client of big events holds at most that much instead of ``buffer_size`` times the
  largest event: an event that would pass the cap meets the same overflow policy. An event
  always fits an empty queue (else an event bigger than the cap could reach nobody), so a queue
  holds at most ``max(max_queue_bytes, one event)``;
- when the shared subscription is lost (:meth:`Fanout.tell_lost`) each stream that had a live
  subscription gets what it already queued, then the documented ``error`` event saying events
  may have been lost, then the end of the response.
- under ``stream`` delivery a message ``{"id":...,"envelope":...}`` is written as ``id:`` +
  ``data: <envelope>``, and a stream that was sent a replay drops live entries it already has
  (see :mod:`.replay`); under ``latest`` a newer event of a conflated type takes the place of the
  one of its type still waiting in a queue, which is ``superseded``.

:meth:`Fanout.deliver` is the hot path: a dict lookup and a deque append per (event,
connection), and every frame is encoded once per Redis message, not once per connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ...events.wire import error_frame, keepalive_frame
from ...scenario import OVERFLOW_POLICIES
from .compat import chunk
from .replay import DeliveryOptions, event_type_of, frame_of, split_stream_message

__all__ = [
    "DEFAULT_MAX_QUEUE_BYTES",
    "LOSS_MESSAGE",
    "OVERFLOW_POLICIES",
    "Connection",
    "ConnectionInfo",
    "EventFate",
    "Fanout",
    "Fate",
]

DEFAULT_MAX_QUEUE_BYTES = 1 << 20
"""Bytes a connection's queue may hold by default: 1 MiB, Centrifugo's client queue limit."""

LOSS_MESSAGE = "Events may have been lost: the subscription to events was interrupted"
"""The ``error`` event's message when the shared Redis subscription was lost."""

# The loss notice, then the stream ends. The notice alone would change nothing in a browser:
# EventSource hands an `error` *message* to onmessage like any other, and the documented client
# filters on event_type and would ignore it, staying on a stream that missed events. Ending the
# response is what makes EventSource reconnect (after its retry delay), and the new stream's
# `connected` is sent only once Redis has confirmed the new subscription, so a client is never
# left open on a subscription that is gone, receiving keepalives and nothing else.
_LOSS_NOTICE = error_frame(LOSS_MESSAGE)

Fate = Literal[
    "sent", "dropped_overflow", "evicted", "lost_in_buffer", "disconnected_slow", "superseded"
]

Send = Callable[[dict[str, Any]], Awaitable[None]]


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
    """``superseded``: a newer event of its ``latest`` type took its place in the queue.

    A replayed entry or cached value is logged ``sent`` (with ``gateway_at`` the instant the
    history was read); its ``raw_message`` is the message as live delivery would have carried it.
    """
    left_at: float | None
    """``time.time()`` when it was written to the socket or dropped."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One stream as it registers, for ``on_connection``: its id in the event log and its client."""

    connection_id: int
    """The id :class:`EventFate` rows carry."""
    brand_id: int
    player_id: int
    channel: str
    peer: tuple[Any, ...] | None
    """The client socket's address as the transport reports it (``(host, port)`` for IPv4)."""
    opened_at: float
    """``time.time()`` when the stream registered."""

    @classmethod
    def of(cls, conn: Connection) -> ConnectionInfo:
        """The info of ``conn``, stamped now."""
        peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
        return cls(
            conn.id,
            conn.brand_id,
            conn.player_id,
            conn.channel,
            peer if isinstance(peer, tuple) else None,
            time.time(),
        )


_LINGER_RESET = struct.pack("ii", 1, 0)


def _reset(transport: Any) -> None:
    """Make the transport's close a TCP reset: what its send buffer holds is freed, not delivered.

    A stream cut for being slow is cut to free its buffers: with an orderly close the kernel
    would go on holding (and sending) what the client has not taken, for as long as the
    client takes to read it. So everything held for the stream, queued or in the sockets, goes
    with it (the simulator's ``disconnected_slow``).
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


class RecordedEvent:
    """One Redis message as queued when events are recorded (shared by every connection it reaches)."""

    __slots__ = ("frame", "raw", "gateway_at")

    def __init__(self, frame: bytes, raw: str, gateway_at: float) -> None:
        self.frame = frame
        self.raw = raw
        self.gateway_at = gateway_at


class Connection:
    """One open SSE stream: its bounded queue and the flags its writer acts on."""

    __slots__ = (
        "id",
        "brand_id",
        "player_id",
        "channel",
        "queue",
        "queued_bytes",
        "notice",
        "waiter",
        "gone",
        "slow",
        "closing",
        "keepalive_due",
        "keepalive_handle",
        "transport",
        "protocol",
        "direct",
        "skip_upto",
        "latest_sent",
        "pending_latest",
        "__weakref__",
    )

    def __init__(
        self,
        conn_id: int,
        brand_id: int,
        player_id: int,
        channel: str,
        transport: Any,
        protocol: Any = None,
    ) -> None:
        self.id = conn_id
        self.brand_id = brand_id
        self.player_id = player_id
        self.channel = channel
        self.queue: collections.deque[Any] = collections.deque()
        self.queued_bytes = 0  # encoded size of the frames in queue
        self.notice: bytes | None = None  # a frame to write after the queue, before the stream ends
        self.waiter: asyncio.Future[None] | None = None
        self.gone = False  # the client went away (http.disconnect)
        self.slow = False  # overflow policy "disconnect" fired
        # the stream is to end: the gateway shuts down, or it was told of a loss
        self.closing = False
        self.keepalive_due = False
        self.keepalive_handle: asyncio.TimerHandle | None = None
        self.transport = transport
        self.protocol = protocol
        # True once the stream is set up and chunked: an idle writer's next event may then be
        # written straight to the transport by the reader (see Fanout.deliver)
        self.direct = False
        # stream delivery: live entries up to this id were replayed or read before (dropped)
        self.skip_upto: tuple[int, int] | None = None
        # latest delivery: cached value frames just replayed, by type, whose live copy is dropped
        self.latest_sent: dict[bytes, bytes] | None = None
        # latest delivery: the last queued item of each conflated type (it may be gone since)
        self.pending_latest: dict[bytes, Any] | None = None

    def wake(self) -> None:
        """Let the connection's writer look at its queue and flags again."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Fanout:
    """Routes Redis messages to the connections of their channel and writes them out, counting fates.

    The counters are plain attributes because a Counter lookup per event costs measurably.
    """

    def __init__(
        self,
        *,
        buffer_size: int,
        overflow_policy: str,
        keepalive_interval_s: float,
        record_events: bool,
        max_write_batch: int,
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        delivery: DeliveryOptions | None = None,
    ) -> None:
        self.buffer_size = buffer_size
        delivery = delivery if delivery is not None else DeliveryOptions()
        self._stream_ids = delivery.has_stream
        self._latest = delivery.is_latest if delivery.has_latest else None
        self._checks = not delivery.plain
        self.max_queue_bytes = max_queue_bytes
        # an int either way: the hot path compares without a None check
        self._byte_cap = max_queue_bytes if max_queue_bytes is not None else sys.maxsize
        self.overflow_policy = overflow_policy
        self.keepalive_interval_s = keepalive_interval_s
        self.record_events = record_events
        self.max_write_batch = max_write_batch
        # channel -> the connections reading it, in the order they connected
        self.routes: dict[bytes, list[Connection]] = {}
        self.log: list[EventFate] = []
        self.events_in = 0
        self.events_unrouted = 0
        self.events_out = 0
        self.dropped_overflow = 0
        self.lost_in_buffer = 0
        self.disconnected_slow = 0
        self.connections_disconnected_slow = 0
        self.keepalives_out = 0
        self.queue_bytes_peak = 0  # the most bytes any connection's queue has held
        self.streams_told_of_loss = 0
        self.loss_notices_sent = 0
        self.superseded = 0
        self.replay_duplicates_dropped = 0

    # ------------------------------------------------------------------ routing

    def add(self, conn: Connection, key: bytes) -> None:
        """Route the messages of channel ``key`` to ``conn`` too."""
        conns = self.routes.get(key)
        if conns is None:
            conns = self.routes[key] = []
        conns.append(conn)

    def remove(self, conn: Connection, key: bytes) -> None:
        """Stop routing ``key`` to ``conn``; forget the channel once nobody reads it."""
        conns = self.routes.get(key)
        if conns is None:
            return
        with contextlib.suppress(ValueError):
            conns.remove(conn)
        if not conns:
            del self.routes[key]

    # ------------------------------------------------------------------ the hot path

    def deliver(self, channel: bytes, data: bytes) -> None:
        """Fan one Redis message out to every connection on ``channel``; never awaits."""
        self.events_in += 1
        conns = self.routes.get(channel)
        if not conns:
            self.events_unrouted += 1
            return
        entry_id = None
        event_type = None
        if self._checks:
            body, raw_id = data, None
            if self._stream_ids and data.startswith(b'{"id"'):
                split = split_stream_message(data)
                if split is not None:
                    entry_id, raw_id, body = split
            if self._latest is not None:
                found = event_type_of(body)
                if found is not None and self._latest(found):
                    event_type = found
            frame = frame_of(body, raw_id)
        else:
            frame = frame_of(data)
        if self.record_events:
            item: Any = RecordedEvent(frame, data.decode("utf-8", "replace"), time.time())
        else:
            item = frame
        cap = self.buffer_size
        byte_cap = self._byte_cap
        size = len(frame)
        framed = None
        for conn in conns:
            if conn.gone or conn.slow or conn.closing:
                continue
            if (entry_id is not None or event_type is not None) and self._handled(
                conn, entry_id, event_type, item, frame, size
            ):
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
                    if framed is None:
                        framed = chunk(frame)
                    transport.write(framed)
                    self.events_out += 1
                    if self.record_events:
                        self.log_fates(conn, [item], "sent")
                    continue
            queued = conn.queued_bytes + size
            if len(queue) < cap and (queued <= byte_cap or not queue):
                queue.append(item)
                conn.queued_bytes = queued
                if queued > self.queue_bytes_peak:
                    self.queue_bytes_peak = queued
                waiter = conn.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            else:
                self._overflow(conn, item, size)

    def _handled(
        self,
        conn: Connection,
        entry_id: tuple[int, int] | None,
        event_type: bytes | None,
        item: Any,
        frame: bytes,
        size: int,
    ) -> bool:
        """Whether a stream or latest event was dealt with here: a duplicate dropped, or conflated into the queue."""
        if entry_id is not None:
            skip = conn.skip_upto
            if skip is not None and entry_id <= skip:
                self.replay_duplicates_dropped += 1  # the replay sent it, or the client had it
                return True
            return False
        assert event_type is not None
        cached = conn.latest_sent
        if cached:
            # Only the first live value after the replay can be the cached one arriving late.
            value = cached.pop(event_type, None)
            if value is not None and value == frame:
                self.replay_duplicates_dropped += 1
                return True
        pending = conn.pending_latest
        if pending is None:
            pending = conn.pending_latest = {}
        old = pending.get(event_type)
        pending[event_type] = item
        if old is None or not conn.queue:
            return False
        queue = conn.queue
        for i, queued in enumerate(queue):
            if queued is old:
                # In its place: the client reads the newest value where the old one would have been.
                queue[i] = item
                conn.queued_bytes += size - (len(old.frame) if self.record_events else len(old))
                self.superseded += 1
                if self.record_events:
                    self.log_fates(conn, [old], "superseded")
                return True
        return False

    def _overflow(self, conn: Connection, item: Any, size: int) -> None:
        policy = self.overflow_policy
        if policy == "drop_newest":
            self.dropped_overflow += 1
            if self.record_events:
                self.log_fates(conn, [item], "dropped_overflow")
        elif policy == "drop_oldest":
            # Evict as many as it takes to fit both caps (several small ones may make room for
            # one big one).
            queue = conn.queue
            byte_cap = self._byte_cap
            record = self.record_events
            evicted = []
            while queue and (len(queue) >= self.buffer_size or conn.queued_bytes + size > byte_cap):
                old = queue.popleft()
                conn.queued_bytes -= len(old.frame) if record else len(old)
                evicted.append(old)
            queue.append(item)
            conn.queued_bytes += size
            if conn.queued_bytes > self.queue_bytes_peak:
                self.queue_bytes_peak = conn.queued_bytes
            self.dropped_overflow += len(evicted)
            if record:
                self.log_fates(conn, evicted, "evicted")
            conn.wake()
        else:
            conn.slow = True
            self.disconnected_slow += 1
            self.connections_disconnected_slow += 1
            if self.record_events:
                self.log_fates(conn, [item], "disconnected_slow")
            # The writer may be blocked on a socket the client no longer drains: abort the
            # transport so the stream ends now and the client's retry takes over.
            if conn.transport is not None:
                _reset(conn.transport)
                conn.transport.abort()
            conn.wake()

    # ------------------------------------------------------------------ one connection's writer

    async def write_loop(
        self, conn: Connection, send: Send, loop: asyncio.AbstractEventLoop
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
                conn.queued_bytes -= len(body)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                if conn.gone:
                    # uvicorn drops writes once the peer has left (or the gateway aborted a slow
                    # stream while this write waited for the socket): they never reached it.
                    fate: Fate = "disconnected_slow" if conn.slow else "lost_in_buffer"
                    if conn.slow:
                        self.disconnected_slow += len(items)
                    else:
                        self.lost_in_buffer += len(items)
                    if record:
                        self.log_fates(conn, items, fate)
                    return
                self.events_out += len(items)
                if record:
                    self.log_fates(conn, items, "sent")
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
                self.keepalives_out += 1
                continue
            if conn.closing:
                notice, conn.notice = conn.notice, None
                if notice is not None:
                    await send({"type": "http.response.body", "body": notice, "more_body": True})
                    if not conn.gone:
                        self.loss_notices_sent += 1
                return
            waiter = loop.create_future()
            conn.waiter = waiter
            try:
                await waiter
            finally:
                conn.waiter = None

    def start_keepalives(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Mark a keepalive due on ``conn`` every ``keepalive_interval_s``, until the handle is cancelled."""
        conn.keepalive_handle = loop.call_later(
            self.keepalive_interval_s, self._keepalive_tick, conn, loop
        )

    def _keepalive_tick(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        # A fixed ticker, like the documented gateway's: keepalives do not wait for idle time.
        conn.keepalive_due = True
        conn.wake()
        conn.keepalive_handle = loop.call_later(
            self.keepalive_interval_s, self._keepalive_tick, conn, loop
        )

    def discard_queue(self, conn: Connection) -> None:
        """Count (and log) what is still queued on a stream that ended, then empty its queue."""
        queue = conn.queue
        if not queue:
            return
        fate: Fate = "disconnected_slow" if conn.slow else "lost_in_buffer"
        if conn.slow:
            self.disconnected_slow += len(queue)
        else:
            self.lost_in_buffer += len(queue)
        if self.record_events:
            self.log_fates(conn, list(queue), fate)
        queue.clear()
        conn.queued_bytes = 0

    def tell_lost(self, keys: list[bytes] | None) -> int:
        """Tell the open streams on channels ``keys`` (None: every stream) that events may be lost, and end them.

        Each gets what it already queued, the ``error`` event and the end of the response (see
        ``_LOSS_NOTICE`` for why it ends). Returns how many streams were told.
        """
        groups = (
            list(self.routes.values())
            if keys is None
            else [self.routes[k] for k in keys if k in self.routes]
        )
        told = 0
        for conns in groups:
            for conn in conns:
                if conn.gone or conn.slow or conn.closing:
                    continue
                conn.notice = _LOSS_NOTICE
                conn.closing = True
                conn.wake()
                told += 1
        self.streams_told_of_loss += told
        return told

    def log_fates(self, conn: Connection, items: list[RecordedEvent], fate: Fate) -> None:
        """Append one :class:`EventFate` per item, stamped now."""
        now = time.time()
        self.log.extend(
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
