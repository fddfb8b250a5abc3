"""The SSE wire format: encode frames as the gateway writes them, parse them as a browser does.

The encoder writes LF line ends only. The parser follows the WHATWG HTML "event stream"
interpretation rules (https://html.spec.whatwg.org/multipage/server-sent-events.html):

* the stream is UTF-8, invalid bytes become U+FFFD, and one leading BOM is ignored;
* lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the
  next are one line end);
* a line starting with ``:`` is a comment; ``field: value`` drops one space after the colon;
  a line without a colon is a field with an empty value;
* ``data`` appends the value and an LF to the data buffer; ``event`` sets the type;
  ``id`` sets the last event id unless the value contains NUL; ``retry`` is used only if it
  is ASCII digits; other fields are ignored;
* a blank line dispatches: an empty data buffer dispatches nothing, one trailing LF is removed,
  the type defaults to ``message``; data after the last blank line is never dispatched.

Chunks may split the stream anywhere, including inside a UTF-8 sequence.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "KEEPALIVE_TIME_FORMAT",
    "SSEComment",
    "SSEMessage",
    "SSEParser",
    "connected_frame",
    "encode_comment",
    "encode_event",
    "error_frame",
    "format_keepalive_time",
    "format_utc_z",
    "keepalive_frame",
    "parse_stream",
    "recovery_frame",
]

#: Timestamp format of keepalives and notification times ("2025-10-22 14:30:45").
KEEPALIVE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """One dispatched SSE event: its data, type, the last event id in force, and a retry it carried.

    ``id`` is the stream's last event id when the event was dispatched (``None`` if no ``id``
    field was ever seen), as ``MessageEvent.lastEventId`` would report it. ``retry`` is the
    reconnection time in ms set by a valid ``retry`` field of this event's block, else ``None``.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


@dataclass(frozen=True, slots=True)
class SSEComment:
    """A comment line (``: text``); one space after the colon is not part of the text."""

    text: str


# ---------------------------------------------------------------------------------------- encode


def _check_field(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"SSE {name} must be a str, got {type(value).__name__}")
    if "\r" in value or "\n" in value:
        raise ValueError(
            f"SSE {name} must not contain CR or LF (it would end the line): {value[:80]!r}"
        )
    return value


def encode_event(
    data: str,
    *,
    event: str | None = None,
    id: str | None = None,  # noqa: A002 - the SSE field is called id
    retry: int | None = None,
) -> bytes:
    """One SSE frame as UTF-8 bytes: ``id:``, ``event:``, ``retry:``, ``data:`` lines and a blank line.

    Each line of ``data`` (split at CRLF, CR or LF) becomes its own ``data:`` line, so a parser
    returns the data with every line end as LF. ``event=None`` (or ``""``) leaves the type at
    ``message``.

    >>> encode_event('{"a":1}')
    b'data: {"a":1}\\n\\n'
    >>> encode_event("a\\nb", event="note", id="7", retry=3000)
    b'id: 7\\nevent: note\\nretry: 3000\\ndata: a\\ndata: b\\n\\n'
    """
    if not isinstance(data, str):
        raise TypeError(f"SSE data must be a str, got {type(data).__name__}")
    parts = []
    if id is not None:
        _check_field("id", id)
        if "\0" in id:
            raise ValueError("SSE id must not contain NUL (a browser would ignore the id)")
        parts.append(f"id: {id}\n")
    if event:
        parts.append(f"event: {_check_field('event', event)}\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"SSE retry must be a non-negative int (ms), got {retry!r}")
        parts.append(f"retry: {retry}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_comment(text: str) -> bytes:
    """A comment frame ``: text``, one comment line per line of ``text``; clients ignore it.

    >>> encode_comment("keepalive 2025-10-22 14:30:45")
    b': keepalive 2025-10-22 14:30:45\\n'
    """
    if not isinstance(text, str):
        raise TypeError(f"SSE comment must be a str, got {type(text).__name__}")
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)).encode("utf-8")


def format_keepalive_time(now: datetime) -> str:
    """``now`` as "YYYY-MM-DD HH:MM:SS"; an aware datetime is converted to UTC first."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime(KEEPALIVE_TIME_FORMAT)


def format_utc_z(now: datetime) -> str:
    """``now`` as ISO 8601 UTC with a ``Z`` ("2025-10-22T14:30:45Z"); naive means UTC."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def keepalive_frame(now: datetime) -> bytes:
    """The documented keepalive: a comment line, then a ``data:`` line with the same time.

    >>> keepalive_frame(datetime(2025, 10, 22, 14, 30, 45)).decode()
    ': keepalive 2025-10-22 14:30:45\\ndata: {"type":"keepalive","timestamp":"2025-10-22 14:30:45"}\\n\\n'
    """
    stamp = format_keepalive_time(now)
    return encode_comment(f"keepalive {stamp}") + encode_event(
        _json({"type": "keepalive", "timestamp": stamp})
    )


def connected_frame(now: datetime) -> bytes:
    """The documented ``connected`` event, sent once when a stream opens.

    >>> connected_frame(datetime(2025, 10, 22, 14, 30, 45, tzinfo=UTC))
    b'data: {"type":"connected","timestamp":"2025-10-22T14:30:45Z"}\\n\\n'
    """
    return encode_event(_json({"type": "connected", "timestamp": format_utc_z(now)}))


def error_frame(message: str) -> bytes:
    """The documented ``error`` event, sent when subscribing fails.

    >>> error_frame("Failed to subscribe to events")
    b'data: {"type":"error","message":"Failed to subscribe to events"}\\n\\n'
    """
    if not isinstance(message, str):
        raise TypeError(f"error message must be a str, got {type(message).__name__}")
    return encode_event(_json({"type": "error", "message": message}))


def recovery_frame(recovered: bool | None, replayed: int) -> bytes:
    """The ``recovery`` event a gateway under stream or latest delivery sends before what it replays.

    >>> recovery_frame(True, 50)
    b'data: {"type":"recovery","recovered":true,"replayed":50}\\n\\n'
    """
    if recovered is not None and not isinstance(recovered, bool):
        raise TypeError(f"recovered must be a bool or None, got {type(recovered).__name__}")
    if isinstance(replayed, bool) or not isinstance(replayed, int) or replayed < 0:
        raise ValueError(f"replayed must be a non-negative int, got {replayed!r}")
    return encode_event(_json({"type": "recovery", "recovered": recovered, "replayed": replayed}))


# ----------------------------------------------------------------------------------------- parse


class SSEParser:
    """An incremental WHATWG event-stream parser: feed bytes in any chunks, get events in order.

    It never raises on stream content: invalid UTF-8 becomes U+FFFD, and anything that is not a
    known field is ignored, as a browser does. ``last_event_id`` and ``retry`` (ms, or ``None``
    until a valid ``retry`` field arrives) are the stream state a reconnect would use.
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_event",
        "_event_retry",
        "_id_seen",
        "_keep_comments",
        "_pending",
        "_skip_lf",
        "_started",
        "last_event_id",
        "retry",
    )

    def __init__(self, *, keep_comments: bool = False) -> None:
        self._keep_comments = keep_comments
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the unfinished last line, in pieces (no quadratic joins)
        self._skip_lf = False  # the previous text ended in CR: a leading LF belongs to it
        self._started = False  # the BOM check happens once, on the first decoded character
        self._data: list[str] = []
        self._event = ""
        self._event_retry: int | None = None
        self._id_seen = False
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEMessage | SSEComment]:
        """Parse the next chunk; return the events (and comments, if kept) it completed."""
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"SSEParser.feed takes bytes, got {type(chunk).__name__}")
        return self._feed_text(self._decoder.decode(bytes(chunk)))

    def feed_text(self, text: str) -> list[SSEMessage | SSEComment]:
        """Parse already-decoded text (for transports that decode UTF-8 themselves)."""
        return self._feed_text(text)

    def _feed_text(self, text: str) -> list[SSEMessage | SSEComment]:
        out: list[SSEMessage | SSEComment] = []
        if not text:
            return out
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        pos = 0
        for match in _LINE_BREAK.finditer(text):
            line = text[pos : match.start()]
            if self._pending:
                self._pending.append(line)
                line = "".join(self._pending)
                self._pending.clear()
            self._line(line, out)
            pos = match.end()
        if pos < len(text):
            self._pending.append(text[pos:])
        elif text and text[-1] == "\r":
            self._skip_lf = True
        return out

    def _line(self, line: str, out: list[SSEMessage | SSEComment]) -> None:
        if not line:
            self._dispatch(out)
            return
        colon = line.find(":")
        if colon == 0:
            if self._keep_comments:
                text = line[1:]
                out.append(SSEComment(text[1:] if text[:1] == " " else text))
            return
        if colon < 0:
            field, value = line, ""
        else:
            field, value = line[:colon], line[colon + 1 :]
            if value[:1] == " ":
                value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._id_seen = True
        elif field == "retry":
            if _DIGITS.fullmatch(value):
                self.retry = self._event_retry = int(value)

    def _dispatch(self, out: list[SSEMessage | SSEComment]) -> None:
        data, event, retry = self._data, self._event, self._event_retry
        self._data, self._event, self._event_retry = [], "", None
        if not data:
            return
        # Each data line added "value\n"; joining with "\n" is that buffer minus its last LF.
        out.append(
            SSEMessage(
                data="\n".join(data),
                event=event or "message",
                id=self.last_event_id if self._id_seen else None,
                retry=retry,
            )
        )

    @property
    def pending(self) -> bool:
        """True while part of an event or line has been read but not dispatched."""
        return bool(self._pending or self._data or self._event)


def parse_stream(data: bytes, *, keep_comments: bool = False) -> list[SSEMessage | SSEComment]:
    """Parse a whole byte stream at once; a trailing undispatched event is dropped, as in a browser."""
    return SSEParser(keep_comments=keep_comments).feed(data)
