"""The gateway's stream and latest delivery: what a (re)subscribing client is sent before live events.

Publishers write each event as :func:`~sse_sim.events.publisher.publish_delivery` does: under
``stream`` an ``XADD`` to the stream named like the channel and a ``PUBLISH`` of
``{"id":"<entry id>","envelope":{...}}``; under ``latest`` a ``SET`` of
``SSE::{brand}::{player}::latest::{event_type}`` and a ``PUBLISH`` of the envelope.

At every stream's start, once Redis has confirmed its subscription (so nothing live is missed),
:class:`Replayer` reads what the client missed; ``connected`` then goes out, followed, before
any live event, by:

* ``stream``: when the request carries a stream id as ``Last-Event-ID`` (header) or
  ``lastEventId`` (query: a page cannot set the header on its first connection), the entries
  after it that the history holds: ``XREVRANGE key + - COUNT history_size + 1``; only the
  ``history_size`` newest count as retained, whatever ``MAXLEN ~`` left; entries older than
  ``history_ttl_s`` (entry id ms against the gateway's clock) are dropped; of the rest the
  ``max_replay`` newest are sent, oldest first, each as ``id: <entry id>`` + ``data: <envelope>``.
* ``latest``: the cached value of each ``latest`` event type of the player (``MGET``, or
  ``SCAN`` for the keys when ``latest`` is the default mode), after the stream entries.

Both are announced by one ``recovery`` system event, ``{"type":"recovery","recovered":...,
"replayed":N}``, N being the frames that follow. ``recovered`` (null without a stream id) is
true only when the gateway can show that every entry after ``Last-Event-ID`` was sent: an entry
at or before ``Last-Event-ID`` is among the ``history_size + 1`` newest (so nothing after it was
trimmed: Redis trims from the oldest end), none of the gap is older than ``history_ttl_s`` and
the gap is not larger than ``max_replay``. When every entry read is newer than
``Last-Event-ID`` the gateway cannot tell whether some were trimmed in between (Redis records
no trace of trimmed ids), and says false.

No duplicates, no reordering: live events that arrive while the history is read wait in the
connection's queue (its writer starts after the replay); those with an entry id at or below the
newest replayed (or ``Last-Event-ID``, if newer) are dropped there and on arrival later, since
the client has them. A cached ``latest`` value is not sent twice either: a queued live value
equal to it is dropped, and so is the next live value of its type if equal (any other value of
the type ends that check, so the client always ends on the newest value).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from ...errors import SseSimError
from ...events.publisher import DELIVERIES, decode_stream_message, encode_stream_message, latest_key
from ...events.wire import encode_event, recovery_frame

__all__ = [
    "DeliveryOptions",
    "HISTORY_FAILED_MESSAGE",
    "HistoryEntry",
    "HistoryUnavailable",
    "Replay",
    "Replayer",
    "event_type_of",
    "frame_of",
    "last_event_id",
    "parse_stream_id",
    "select_replay",
    "split_stream_message",
]

logger = logging.getLogger("sse_sim.gateway")

Send = Callable[[dict[str, Any]], Awaitable[None]]
StreamId = tuple[int, int]

#: How long reading a history or the cached values may take before the stream gives up.
READ_TIMEOUT_S = 5.0
#: The ``error`` event's message when the history could not be read; the stream then ends, and
#: the browser's reconnect sends the same ``Last-Event-ID`` again.
HISTORY_FAILED_MESSAGE = "Failed to read the event history"

_STREAM_ID_RE = re.compile(rb"([0-9]{1,20})-([0-9]{1,20})")
_STREAM_PREFIX = b'{"id":"'
_ENVELOPE_SEP = b'","envelope":'
_TYPE_FIELD = b'"event_type":"'


# ---------------------------------------------------------------------- reading messages


def parse_stream_id(value: bytes | str | None) -> StreamId | None:
    """``(ms, seq)`` of a Redis stream id such as ``1700000000000-0``, or None if it is not one."""
    if value is None:
        return None
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    match = _STREAM_ID_RE.fullmatch(raw.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def split_stream_message(data: bytes) -> tuple[StreamId, bytes, bytes] | None:
    """``(entry id, its bytes, envelope bytes)`` of a pub/sub message made by ``encode_stream_message``, else None."""
    if data.startswith(_STREAM_PREFIX) and data.endswith(b"}"):
        # The bytes publish_delivery writes: cut them apart, so the envelope goes out exactly
        # as published (decimals and key order included) without a JSON round trip.
        end = data.find(_ENVELOPE_SEP, len(_STREAM_PREFIX))
        if end > 0:
            raw_id = data[len(_STREAM_PREFIX) : end]
            sid = parse_stream_id(raw_id)
            if sid is not None:
                return sid, raw_id, data[end + len(_ENVELOPE_SEP) : -1]
    if b'"envelope"' not in data:
        return None
    try:  # another JSON spelling of the same message
        text_id, envelope = decode_stream_message(data)
    except ValueError:
        return None
    sid = parse_stream_id(text_id)
    if sid is None:
        return None
    return sid, text_id.encode("ascii"), envelope.encode("utf-8")


def event_type_of(envelope: bytes) -> bytes | None:
    """The ``event_type`` of a compact JSON envelope (its bytes), or None if it has none."""
    start = envelope.find(_TYPE_FIELD)
    if start < 0:
        return None
    start += len(_TYPE_FIELD)
    end = envelope.find(b'"', start)
    return envelope[start:end] if end > start else None


def frame_of(data: bytes, raw_id: bytes | None = None) -> bytes:
    """The SSE frame of a message's bytes: ``data: ...`` (after ``id: ...`` for a stream entry)."""
    if data.isascii() and b"\n" not in data and b"\r" not in data:
        # One line of ASCII (any compact JSON publisher's output): the frame is the bytes
        # themselves, exactly what encode_event gives, without a decode and re-encode.
        frame = b"data: %b\n\n" % data
    else:
        frame = encode_event(data.decode("utf-8", "replace"))
    return frame if raw_id is None else b"id: %b\n%b" % (raw_id, frame)


def frame_stream_id(frame: bytes) -> StreamId | None:
    """The entry id a frame from :func:`frame_of` carries, or None."""
    if not frame.startswith(b"id: "):
        return None
    return parse_stream_id(frame[4 : frame.find(b"\n")])


def last_event_id(scope: dict[str, Any]) -> StreamId | None:
    """The stream id a request resumes after: ``Last-Event-ID``, else ``?lastEventId=``; None if not a stream id.

    The header wins: a browser's EventSource reconnects to the same URL, with the query's id
    of the first connection, and sends the id it read last in the header.
    """
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            return parse_stream_id(bytes(value))
    query = scope.get("query_string", b"")
    if query and b"lastEventId" in query:
        values = parse_qs(query.decode("latin-1")).get("lastEventId")
        if values:
            return parse_stream_id(values[0])
    return None


# ---------------------------------------------------------------------- options


class DeliveryOptions:
    """The gateway's delivery design: the default mode, per-type overrides and the history bounds."""

    def __init__(
        self,
        delivery: str = "pubsub",
        *,
        history_size: int = 100,
        history_ttl_s: float | None = None,
        max_replay: int = 300,
        delivery_types: Mapping[str, str] | None = None,
    ) -> None:
        if delivery not in DELIVERIES:
            raise SseSimError(f"delivery must be one of {', '.join(DELIVERIES)}, got {delivery!r}")
        types = dict(delivery_types or {})
        for name, mode in types.items():
            if not isinstance(name, str) or not name or mode not in DELIVERIES:
                raise SseSimError(
                    f"delivery_types maps an event type to one of {', '.join(DELIVERIES)},"
                    f" got {name!r}: {mode!r}"
                )
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise SseSimError(f"history_size must be a positive integer, got {history_size!r}")
        if history_ttl_s is not None and not (
            isinstance(history_ttl_s, int | float) and history_ttl_s > 0
        ):
            raise SseSimError(f"history_ttl_s must be a positive number or None, got {history_ttl_s!r}")
        if isinstance(max_replay, bool) or not isinstance(max_replay, int) or max_replay < 1:
            raise SseSimError(f"max_replay must be a positive integer, got {max_replay!r}")
        self.mode = delivery
        self.types = types
        self.history_size = history_size
        self.history_ttl_s = None if history_ttl_s is None else float(history_ttl_s)
        self.max_replay = max_replay
        modes = {delivery, *types.values()}
        self.has_stream = "stream" in modes
        self.has_latest = "latest" in modes
        # Types whose mode is not the default, as the bytes found in envelopes.
        self._override = {name.encode("utf-8"): mode for name, mode in types.items()}
        self.latest_types = sorted(name for name, mode in types.items() if mode == "latest")

    @property
    def plain(self) -> bool:
        """Every type is under pub/sub: nothing to replay, nothing to check on live events."""
        return not (self.has_stream or self.has_latest)

    def is_latest(self, event_type: bytes) -> bool:
        """Whether events of ``event_type`` (bytes from the envelope) are conflated."""
        return self._override.get(event_type, self.mode) == "latest"

    def metrics(self) -> dict[str, Any]:
        """The settings, for ``/gateway/metrics``."""
        return {
            "delivery": self.mode,
            "delivery_types": dict(self.types),
            "history_size": self.history_size,
            "history_ttl_s": self.history_ttl_s,
            "max_replay": self.max_replay,
        }


# ---------------------------------------------------------------------- the replay rule


class HistoryEntry(NamedTuple):
    """One stream entry as read back: its id, the id's bytes, and the envelope (None if it has none)."""

    id: StreamId
    raw_id: bytes
    envelope: bytes | None


def select_replay(
    newest_first: list[HistoryEntry],
    last: StreamId,
    *,
    history_size: int,
    history_ttl_s: float | None,
    max_replay: int,
    now_ms: float,
) -> tuple[list[HistoryEntry], bool]:
    """The entries to replay after ``last``, oldest first, and whether that is the whole gap.

    ``newest_first`` is ``XREVRANGE key + - COUNT history_size + 1``. The one entry beyond
    ``history_size`` is read only to tell whether the gap reaches past what is retained.
    """
    retained = newest_first[:history_size]
    gap = [e for e in retained if e.id > last and e.envelope is not None]
    if history_ttl_s is not None:
        # kept while younger than the TTL, as the simulator's walk keeps them
        oldest_ms = now_ms - history_ttl_s * 1000.0
        fresh = [e for e in gap if e.id[0] > oldest_ms]
    else:
        fresh = gap
    chosen = fresh[:max_replay]
    chosen.reverse()
    # Redis trims from the oldest end: an entry at or before `last` among those read proves that
    # no entry after `last` was trimmed (the extra one read is exactly the next older entry).
    covered = bool(newest_first) and newest_first[-1].id <= last
    return chosen, covered and len(fresh) == len(gap) and len(fresh) <= max_replay


# ---------------------------------------------------------------------- per stream


class _Sent(NamedTuple):
    """A replayed frame as the event log records it (see ``Fanout.log_fates``)."""

    frame: bytes
    raw: str
    gateway_at: float


class Replay(NamedTuple):
    """What one stream is sent before live events: the ``recovery`` event's verdict and the frames."""

    recovered: bool | None
    frames: list[_Sent]


class HistoryUnavailable(Exception):
    """Reading a stream's history or cached values failed (Redis away, or too slow)."""


class Replayer:
    """Reads what a (re)subscribing stream missed and sends it first, with the ``recovery`` event; counts it.

    ``client_factory`` makes the asyncio Redis client used for ``XREVRANGE``, ``MGET`` and
    ``SCAN`` (one, made on first use, closed by :meth:`aclose`); ``fanout`` is the gateway's
    :class:`~.fanout.Fanout` (its event log and ``events_out``).
    """

    def __init__(self, options: DeliveryOptions, client_factory: Callable[[], Any], fanout: Any) -> None:
        self.options = options
        self._factory = client_factory
        self._client: Any = None
        self._fanout = fanout
        self.read_timeout_s = READ_TIMEOUT_S
        self.xrange_calls = 0
        self.latest_reads = 0
        self.replayed_entries = 0
        self.replayed_latest = 0
        self.recoveries_true = 0
        self.recoveries_false = 0
        self.replay_failures = 0

    def metrics(self) -> dict[str, Any]:
        """Counters for ``/gateway/metrics``."""
        return {
            "replayed_entries": self.replayed_entries,
            "replayed_latest": self.replayed_latest,
            "recoveries_true": self.recoveries_true,
            "recoveries_false": self.recoveries_false,
            "xrange_calls": self.xrange_calls,
            "latest_reads": self.latest_reads,
            "replay_failures": self.replay_failures,
        }

    async def aclose(self) -> None:
        """Close the command client."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # closing a client whose Redis is gone
                logger.debug("closing the replay client failed", exc_info=True)

    def _redis(self) -> Any:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def prepare(self, conn: Any, scope: dict[str, Any]) -> Replay | None:
        """Read and decide what ``conn`` missed (None: nothing to send); raises :class:`HistoryUnavailable`.

        Called once Redis confirmed the stream's subscription and before ``connected`` goes out,
        so ``connected`` means the stream is in step: what was published before it is replayed
        or accounted for, what comes after is live. Returns with the stream's dedupe state set,
        before anything awaits again, so every live event from now on is checked as it arrives.
        """
        opts = self.options
        last = last_event_id(scope) if opts.has_stream else None
        if last is None and not opts.has_latest:
            return None
        try:
            async with asyncio.timeout(self.read_timeout_s):
                history = await self._history(conn.channel) if last is not None else []
                cached = await self._latest(conn.channel) if opts.has_latest else []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.replay_failures += 1
            raise HistoryUnavailable(str(exc) or type(exc).__name__) from exc
        read_at = time.time()
        frames: list[_Sent] = []
        recovered: bool | None = None
        if last is not None:
            chosen, recovered = select_replay(
                history,
                last,
                history_size=opts.history_size,
                history_ttl_s=opts.history_ttl_s,
                max_replay=opts.max_replay,
                now_ms=read_at * 1000.0,
            )
            for e in chosen:
                assert e.envelope is not None
                raw = encode_stream_message(e.raw_id.decode("ascii"), e.envelope.decode("utf-8", "replace"))
                frames.append(_Sent(frame_of(e.envelope, e.raw_id), raw, read_at))
            conn.skip_upto = max(last, chosen[-1].id) if chosen else last
            self.replayed_entries += len(chosen)
            if recovered:
                self.recoveries_true += 1
            else:
                self.recoveries_false += 1
        latest_sent: dict[bytes, bytes] = {}
        for event_type, value in cached:
            frame = frame_of(value)
            frames.append(_Sent(frame, value.decode("utf-8", "replace"), read_at))
            latest_sent[event_type] = frame
        self.replayed_latest += len(cached)
        if last is None and not frames:
            return None
        conn.latest_sent = latest_sent or None
        _drop_replayed_from_queue(conn, self._fanout)
        return Replay(recovered, frames)

    async def send(self, conn: Any, replay: Replay, send: Send) -> None:
        """Write the ``recovery`` event and the replayed frames (after ``connected``, before the writer starts); log their fates."""
        frames = replay.frames
        body = recovery_frame(replay.recovered, len(frames)) + b"".join(f.frame for f in frames)
        await send({"type": "http.response.body", "body": body, "more_body": True})
        fanout = self._fanout
        if conn.gone:  # uvicorn drops writes once the peer has left
            fanout.lost_in_buffer += len(frames)
            fate = "lost_in_buffer"
        else:
            fanout.events_out += len(frames)
            fate = "sent"
        if fanout.record_events and frames:
            fanout.log_fates(conn, frames, fate)

    async def _history(self, channel: str) -> list[HistoryEntry]:
        """``XREVRANGE channel + - COUNT history_size + 1``, newest first."""
        self.xrange_calls += 1
        rows = await self._redis().xrevrange(
            channel, max="+", min="-", count=self.options.history_size + 1
        )
        entries = []
        for raw_id, fields in rows:
            raw = raw_id if isinstance(raw_id, bytes) else str(raw_id).encode("ascii")
            sid = parse_stream_id(raw)
            if sid is None:
                continue
            envelope = fields.get(b"envelope", fields.get("envelope"))
            if isinstance(envelope, str):
                envelope = envelope.encode("utf-8")
            entries.append(HistoryEntry(sid, raw, envelope))
        return entries

    async def _latest(self, channel: str) -> list[tuple[bytes, bytes]]:
        """``(event type, cached value)`` of each ``latest`` type of the channel's player, by type."""
        opts = self.options
        client = self._redis()
        if opts.mode == "latest":
            # Every type not overridden is conflated: the keys say which types were published.
            prefix = latest_key(channel, "")
            found: set[str] = set()
            self.latest_reads += 1
            async for key in client.scan_iter(match=prefix + "*", count=1000):
                name = (key.decode("utf-8", "replace") if isinstance(key, bytes) else key)[len(prefix) :]
                if name and opts.is_latest(name.encode("utf-8")):
                    found.add(name)
            types = sorted(found)
        else:
            types = opts.latest_types
        if not types:
            return []
        self.latest_reads += 1
        values = await client.mget([latest_key(channel, t) for t in types])
        return [
            (t.encode("utf-8"), v if isinstance(v, bytes) else str(v).encode("utf-8"))
            for t, v in zip(types, values, strict=True)
            if v is not None
        ]


def _drop_replayed_from_queue(conn: Any, fanout: Any) -> None:
    """Drop from ``conn``'s queue the live events its replay just sent (same entry id or cached value)."""
    skip = conn.skip_upto
    cached = conn.latest_sent
    queue = conn.queue
    if not queue or (skip is None and not cached):
        return
    kept: list[Any] = []
    dropped = 0
    for item in queue:
        frame = getattr(item, "frame", item)
        if skip is not None:
            sid = frame_stream_id(frame)
            if sid is not None and sid <= skip:
                dropped += 1
                conn.queued_bytes -= len(frame)
                continue
        if cached and _take_cached(cached, frame, conn.pending_latest, item):
            dropped += 1
            conn.queued_bytes -= len(frame)
            continue
        kept.append(item)
    if dropped:
        queue.clear()
        queue.extend(kept)
        fanout.replay_duplicates_dropped += dropped
    if cached and conn.pending_latest:
        # A different value of a cached type is already queued: it may be older or newer than
        # the cached one, so a later live copy of the cached value is sent again (the client
        # ends on the newest value either way).
        for event_type in list(cached):
            if any(conn.pending_latest.get(event_type) is item for item in kept):
                del cached[event_type]


def _take_cached(
    cached: dict[bytes, bytes], frame: bytes, pending: dict[bytes, Any] | None, item: Any
) -> bool:
    """Whether a queued ``item`` (``frame``) is a cached value just replayed; its check is then done."""
    for event_type, value in cached.items():
        if value == frame:
            del cached[event_type]
            if pending is not None and pending.get(event_type) is item:
                del pending[event_type]
            return True
    return False

