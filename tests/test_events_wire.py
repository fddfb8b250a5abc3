"""SSE wire format: the encoder, and the incremental parser against the WHATWG rules."""

from __future__ import annotations

import doctest
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_sim.events import wire
from sse_sim.events.wire import (
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

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


def feed_all(chunks: list[bytes], **kw: bool) -> list[SSEMessage | SSEComment]:
    parser = SSEParser(**kw)
    out: list[SSEMessage | SSEComment] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# ----------------------------------------------------------------------------------- encoder


def test_encode_fields_and_multiline() -> None:
    assert encode_event("x") == b"data: x\n\n"
    assert encode_event("a\r\nb\rc\nd", event="note", id="42", retry=1500) == (
        b"id: 42\nevent: note\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert encode_event("") == b"data: \n\n"
    assert encode_event("é€😀") == "data: é€😀\n\n".encode()
    assert encode_comment("a\nb") == b": a\n: b\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "a\nb"},
        {"id": "a\rb"},
        {"id": "a\0b"},
        {"retry": -1},
        {"retry": True},
        {"retry": 1.5},
    ],
)
def test_encode_rejects_fields_that_break_framing(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        encode_event("x", **kwargs)


def test_encode_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        encode_event(b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_comment(None)  # type: ignore[arg-type]


def test_keepalive_frame_is_exactly_the_documented_one() -> None:
    frame = keepalive_frame(datetime(2025, 10, 22, 14, 30, 45))
    assert frame == (
        b": keepalive 2025-10-22 14:30:45\n"
        b'data: {"type":"keepalive","timestamp":"2025-10-22 14:30:45"}\n\n'
    )
    aware = datetime(2025, 10, 22, 16, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    assert keepalive_frame(aware) == frame
    (comment, message) = parse_stream(frame, keep_comments=True)
    assert comment == SSEComment("keepalive 2025-10-22 14:30:45")
    assert json.loads(message.data) == {"type": "keepalive", "timestamp": "2025-10-22 14:30:45"}


def test_connected_and_error_frames() -> None:
    assert connected_frame(datetime(2025, 10, 22, 14, 30, 45)) == (
        b'data: {"type":"connected","timestamp":"2025-10-22T14:30:45Z"}\n\n'
    )
    eastern = datetime(2025, 10, 22, 10, 30, 45, tzinfo=timezone(timedelta(hours=-4)))
    assert connected_frame(eastern) == connected_frame(
        datetime(2025, 10, 22, 14, 30, 45, tzinfo=UTC)
    )
    (msg,) = parse_stream(error_frame('Failed to "subscribe"\nto events'))
    assert json.loads(msg.data) == {"type": "error", "message": 'Failed to "subscribe"\nto events'}


def test_recovery_frame() -> None:
    assert recovery_frame(False, 10) == (
        b'data: {"type":"recovery","recovered":false,"replayed":10}\n\n'
    )
    (msg,) = parse_stream(recovery_frame(None, 0))
    assert json.loads(msg.data) == {"type": "recovery", "recovered": None, "replayed": 0}
    with pytest.raises(ValueError):
        recovery_frame(True, -1)
    with pytest.raises(TypeError):
        recovery_frame(1, 1)  # type: ignore[arg-type]


def test_system_frames_match_documented_examples() -> None:
    (msg,) = parse_stream(connected_frame(datetime(2025, 10, 22, 14, 30, 45)))
    assert json.loads(msg.data) == json.loads((EXAMPLES / "system_connected.json").read_text())
    (msg,) = parse_stream(error_frame("Failed to subscribe to events"))
    assert json.loads(msg.data) == json.loads((EXAMPLES / "system_error.json").read_text())
    (msg,) = parse_stream(keepalive_frame(datetime(2025, 10, 22, 14, 30, 45)))
    assert json.loads(msg.data) == json.loads((EXAMPLES / "system_keepalive.json").read_text())
    assert (
        keepalive_frame(datetime(2025, 10, 22, 14, 30, 45))
        == (EXAMPLES / "keepalive_frame.sse").read_bytes()
    )


# ------------------------------------------------------------------------------ parser rules


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_line_ends(eol: bytes) -> None:
    stream = eol.join([b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    assert parse_stream(stream) == [SSEMessage("1\n2", "a"), SSEMessage("3")]


def test_mixed_line_ends_and_cr_lf_split_across_chunks() -> None:
    # CR ends a line; the LF at the start of the next chunk is part of the same line end,
    # not a blank line (which would dispatch early).
    chunks = [b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]
    assert feed_all(chunks) == [SSEMessage("a\nb")]
    assert feed_all([b"data: a\r", b"\r"]) == [SSEMessage("a")]
    assert feed_all([b"data: a\r", b"", b"\n", b"\n"]) == [SSEMessage("a")]


def test_bom_only_once_at_start() -> None:
    assert parse_stream(b"\xef\xbb\xbfdata: x\n\n") == [SSEMessage("x")]
    assert feed_all([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [SSEMessage("x")]
    # A second BOM is part of the field name, so the line is an unknown field and ignored.
    assert parse_stream(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []
    # A BOM later in the stream is data.
    assert parse_stream("data: x\n\ndata: \ufeffy\n\n".encode()) == [
        SSEMessage("x"),
        SSEMessage("\ufeffy"),
    ]


def test_comments_in_stream_order() -> None:
    stream = b": hello\ndata: a\n:no-space\n\n:  two\n"
    assert parse_stream(stream) == [SSEMessage("a")]
    assert parse_stream(stream, keep_comments=True) == [
        SSEComment("hello"),
        SSEComment("no-space"),
        SSEMessage("a"),
        SSEComment(" two"),
    ]


def test_field_parsing() -> None:
    assert parse_stream(b"data\n\n") == [SSEMessage("")]  # no colon: empty value, still data
    assert parse_stream(b"data:x\n\n") == [SSEMessage("x")]
    assert parse_stream(b"data:  x\n\n") == [SSEMessage(" x")]  # only one space is dropped
    assert parse_stream(b"data: a:b\n\n") == [SSEMessage("a:b")]
    assert parse_stream(b"Data: x\n\n") == []  # field names are case-sensitive
    assert parse_stream(b"foo: bar\ndata: x\n\n") == [SSEMessage("x")]
    assert parse_stream(b"data:\ndata:\n\n") == [SSEMessage("\n")]


def test_dispatch_rules() -> None:
    assert parse_stream(b"\n\n\n") == []  # empty data buffer: nothing
    assert parse_stream(b"event: x\n\ndata: y\n\n") == [
        SSEMessage("y")
    ]  # type resets after a blank line
    assert parse_stream(b"data: x\n") == []  # never dispatched without a blank line
    assert parse_stream(b"event: x\nid: 1\n\n") == []
    parser = SSEParser()
    assert parser.feed(b"data: x") == [] and parser.pending


def test_id_rules() -> None:
    parser = SSEParser()
    out = parser.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 2\0x\ndata: c\n\nid\ndata: d\n\n")
    assert [(m.data, m.id) for m in out] == [("a", "1"), ("b", "1"), ("c", "1"), ("d", "")]
    assert parser.last_event_id == ""
    # An id without data still updates the last event id, though nothing is dispatched.
    parser = SSEParser()
    assert parser.feed(b"id: 9\n\n") == [] and parser.last_event_id == "9"
    assert parse_stream(b"data: a\n\n") == [SSEMessage("a", id=None)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"retry: 3000", 3000),
        (b"retry:10", 10),
        (b"retry: 0", 0),
        (b"retry: 3000ms", None),
        (b"retry: -1", None),
        (b"retry: 1.5", None),
        (b"retry: ", None),
        (b"retry:  5", None),
        ("retry: ٣".encode(), None),
        (b"retry", None),
    ],
)
def test_retry_digits_only(line: bytes, expected: int | None) -> None:
    parser = SSEParser()
    out = parser.feed(line + b"\ndata: x\n\n")
    assert parser.retry == expected
    assert out == [SSEMessage("x", retry=expected)]


def test_retry_persists_on_parser_but_not_on_later_messages() -> None:
    parser = SSEParser()
    out = parser.feed(b"retry: 5\ndata: a\n\ndata: b\n\nretry: x\ndata: c\n\n")
    assert [m.retry for m in out] == [5, None, None]
    assert parser.retry == 5


def test_utf8_split_inside_sequence_and_invalid_bytes() -> None:
    raw = "data: é€😀\n\n".encode()
    for cut in range(len(raw) + 1):
        assert feed_all([raw[:cut], raw[cut:]]) == [SSEMessage("é€😀")]
    assert feed_all([bytes([b]) for b in raw]) == [SSEMessage("é€😀")]
    assert parse_stream(b"data: \xff\xfe\n\n") == [SSEMessage("\ufffd\ufffd")]


def test_long_line_in_tiny_chunks_is_linear() -> None:
    body = b"x" * 200_000
    chunks = [b"data: "] + [body[i : i + 7] for i in range(0, len(body), 7)] + [b"\n\n"]
    (msg,) = feed_all(chunks)
    assert msg.data == body.decode()


def test_feed_type_checked_and_feed_text() -> None:
    with pytest.raises(TypeError):
        SSEParser().feed("data: x\n\n")  # type: ignore[arg-type]
    assert SSEParser().feed_text("data: x\r\n\r\n") == [SSEMessage("x")]
    assert SSEParser().feed(bytearray(b"data: x\n\n")) == [SSEMessage("x")]


def test_doctests() -> None:
    assert doctest.testmod(wire).failed == 0


# ------------------------------------------------------------------------- property tests

field_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
event_names = st.one_of(st.none(), field_text)
ids = st.one_of(st.none(), field_text.filter(lambda s: "\0" not in s))
frames = st.tuples(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),
    event_names,
    ids,
    st.one_of(st.none(), st.integers(0, 10**12)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(frames, max_size=8), st.lists(st.integers(0, 10_000), max_size=12), st.booleans())
def test_round_trip_in_arbitrary_chunks(events: list, cuts: list[int], with_comments: bool) -> None:
    stream = b""
    expected: list[SSEMessage | SSEComment] = []
    last_id: str | None = None
    for data, event, id_, retry in events:
        if with_comments:
            stream += encode_comment("keepalive")
            expected.append(SSEComment("keepalive"))
        stream += encode_event(data, event=event, id=id_, retry=retry)
        if id_ is not None:
            last_id = id_
        expected.append(
            SSEMessage(re.sub(r"\r\n|\r", "\n", data), event or "message", last_id, retry)
        )
    assert feed_all(split_at(stream, cuts), keep_comments=True) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_fuzz_arbitrary_bytes_never_crash_and_chunking_is_invisible(
    data: bytes, cuts: list[int]
) -> None:
    whole = SSEParser(keep_comments=True)
    out = whole.feed(data)
    for item in out:
        assert isinstance(item, SSEMessage | SSEComment)
        if isinstance(item, SSEMessage):
            assert item.event and isinstance(item.data, str)
            assert item.retry is None or item.retry >= 0
    chunked = SSEParser(keep_comments=True)
    got: list[SSEMessage | SSEComment] = []
    for chunk in split_at(data, cuts):
        got.extend(chunked.feed(chunk))
    assert got == out
    assert (chunked.last_event_id, chunked.retry) == (whole.last_event_id, whole.retry)


line_atoms = st.sampled_from(
    [
        b"data",
        b"data:",
        b"data: ",
        b"event: e",
        b"id: 1",
        b"id",
        b"retry: 10",
        b"retry: x",
        b":c",
        b"\r",
        b"\n",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"\xe2\x82",
        b"\xac",
        b"x",
        b" ",
        b"\0",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(line_atoms, max_size=40), st.lists(st.integers(0, 200), max_size=8))
def test_fuzz_sse_like_streams_chunking_is_invisible(atoms: list[bytes], cuts: list[int]) -> None:
    data = b"".join(atoms)
    assert feed_all(split_at(data, cuts), keep_comments=True) == parse_stream(
        data, keep_comments=True
    )
