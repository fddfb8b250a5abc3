"""Validation: JSON paths and expectations in every message, strict and lenient modes, fuzzing."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sse_sim.errors import EventValidationError, SseSimError
from sse_sim.events import (
    NOTIFICATION_KINDS,
    InvalidEventError,
    Problem,
    SSEMessage,
    SSEParser,
    check_event,
    check_json,
    dumps,
    encode_event,
    parse_event,
    validate_event,
)
from sse_sim.events.validate import Locator, format_path, locate


def notification(**data: Any) -> dict[str, Any]:
    event_data = {
        "message_id": "a7f8c934-1b2d-4e5f-9c8a-7d6e5f4a3b2c",
        "event": "bonus_granted",
        "event_details": {"bonus_amount": 100},
        "is_read": False,
        "time": "2025-10-22 14:30:45",
    }
    event_data.update(data)
    return {
        "brand_id": 1001,
        "player_id": 12345,
        "event_type": "notification",
        "event_data": event_data,
    }


def problems(obj: Any, strict: bool = False) -> list[str]:
    return [str(p) for p in check_event(obj, strict=strict)]


def test_valid_notification_both_modes() -> None:
    assert problems(notification()) == [] and problems(notification(), strict=True) == []


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (True, "boolean true"),
        ("1001", "string '1001'"),
        (1001.0, "number 1001.0"),
        (0, "integer 0"),
        (-1, "integer -1"),
        (2**63, "integer 9223372036854775808"),
        (None, "null"),
        ([1], "array of 1 item"),
    ],
)
def test_id_problems(value: Any, got: str) -> None:
    obj = notification()
    obj["brand_id"] = value
    assert problems(obj) == [
        f"$.brand_id: expected an integer in 1..9223372036854775807, got {got}"
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("message_id", "A7F8C934-1B2D-4E5F-9C8A-7D6E5F4A3B2C", None),
        (
            "message_id",
            "a7f8c9341b2d4e5f9c8a7d6e5f4a3b2c",
            "expected a UUID (8-4-4-4-12 hex digits 0-9, a-f), got string 'a7f8c9341b2d4e5f9c8a7d6e5f4a3b2c'",
        ),
        ("message_id", 5, "expected a UUID (8-4-4-4-12 hex digits 0-9, a-f), got integer 5"),
        ("event", "", "expected a non-empty string naming the notification kind, got string ''"),
        ("event_details", None, "expected a JSON object, got null"),
        ("is_read", "false", "expected a boolean, got string 'false'"),
        ("is_read", 0, "expected a boolean, got integer 0"),
        (
            "time",
            "2025-10-22T14:30:45",
            "expected a time as YYYY-MM-DD HH:MM:SS, got string '2025-10-22T14:30:45'",
        ),
        (
            "time",
            "2025-13-01 00:00:00",
            "expected a real date and time as YYYY-MM-DD HH:MM:SS, got string '2025-13-01 00:00:00'",
        ),
        (
            "time",
            "2025-10-22 14:30:45 ",
            "expected a time as YYYY-MM-DD HH:MM:SS, got string '2025-10-22 14:30:45 '",
        ),
    ],
)
def test_notification_field_problems(field: str, value: Any, message: str | None) -> None:
    expected = [] if message is None else [f"$.event_data.{field}: {message}"]
    assert problems(notification(**{field: value})) == expected


def test_missing_fields_all_reported() -> None:
    obj = notification()
    del obj["event_data"]["time"], obj["event_data"]["message_id"], obj["player_id"]
    assert problems(obj) == [
        "$.player_id: required field is missing",
        "$.event_data.message_id: required field is missing",
        "$.event_data.time: required field is missing",
    ]


def test_strict_adds_documentation_checks() -> None:
    obj = notification(event="vip_party", is_read=True, extra=1)
    obj["trace"] = "x"
    assert problems(obj) == []
    assert problems(obj, strict=True) == [
        "$.event_data.event: expected a documented notification kind ("
        + ", ".join(NOTIFICATION_KINDS)
        + "), got string 'vip_party'",
        "$.event_data.is_read: expected false (a newly published notification is unread), got boolean true",
        "$.trace: unexpected field (strict: not in the documented envelope)",
        "$.event_data.extra: unexpected field (strict: not in the documented notification event_data)",
    ]


def test_gamification_decimal_strings_lenient_only() -> None:
    obj = {
        "brand_id": 1,
        "player_id": 2,
        "event_type": "gamification_balance_update",
        "event_data": {"balance": "1500.50", "total_received": 5000, "total_redeemed": "3499.50"},
    }
    assert validate_event(obj).event_data.balance == Decimal("1500.50")
    assert problems(obj, strict=True) == [
        "$.event_data.balance: expected a JSON number (strict: not a numeric string), got string '1500.50'",
        "$.event_data.total_redeemed: expected a JSON number (strict: not a numeric string), got string '3499.50'",
    ]
    obj["event_data"]["balance"] = "1,500"
    assert problems(obj) == ["$.event_data.balance: expected a decimal number, got string '1,500'"]
    obj["event_data"]["balance"] = True
    assert problems(obj) == ["$.event_data.balance: expected a decimal number, got boolean true"]


def test_unknown_event_types() -> None:
    obj = {"brand_id": 1, "player_id": 2, "event_type": "loyalty_tier", "event_data": {"tier": 3}}
    assert problems(obj) == []
    (only,) = check_event(obj, strict=True)
    assert only.path == "$.event_type" and "unknown event type 'loyalty_tier'" in only.message
    obj["event_data"] = [1]
    assert problems(obj) == ["$.event_data: expected a JSON object, got array of 1 item"]


def test_system_events() -> None:
    assert problems({"type": "connected", "timestamp": "2025-10-22T14:30:45Z"}, strict=True) == []
    assert problems({"type": "connected", "timestamp": "2025-10-22 14:30:45"}) == [
        "$.timestamp: expected an ISO 8601 UTC time ending in Z, as 2025-10-22T14:30:45Z, got string '2025-10-22 14:30:45'"
    ]
    assert problems({"type": "error"}) == ["$.message: required field is missing"]
    assert problems({"type": "error", "message": 3}) == [
        "$.message: expected a valid string, got integer 3"
    ]
    assert problems({"type": "ping"}) == [
        "$.type: expected a system event type (connected, keepalive, error or recovery), got string 'ping'"
    ]
    assert problems({"type": "error", "message": "x", "code": 1}, strict=True) == [
        "$.code: unexpected field (strict: not in the documented error event)"
    ]


def test_not_an_object() -> None:
    assert problems([]) == [
        "$: expected a JSON object (an event envelope or a system event), got array of 0 items"
    ]
    assert problems("x") == [
        "$: expected a JSON object (an event envelope or a system event), got string 'x'"
    ]


def test_errors_are_sse_sim_errors_with_all_problems() -> None:
    obj = notification(message_id="nope", time="yesterday")
    with pytest.raises(InvalidEventError) as info:
        validate_event(obj)
    assert isinstance(info.value, EventValidationError) and isinstance(info.value, SseSimError)
    assert [p.path for p in info.value.problems] == ["$.event_data.message_id", "$.event_data.time"]
    assert "$.event_data.message_id: expected a UUID" in str(info.value)
    with pytest.raises(EventValidationError, match=r"\$: invalid JSON"):
        parse_event("{")


def test_paths_and_locations() -> None:
    assert format_path(()) == "$"
    assert format_path(("a", 0, "b-c", "")) == '$.a[0]["b-c"][""]'
    text = '[\n  {"a": 1},\n  {"a": {"b":\n     [1, 2, 3]}}\n]'
    assert locate(text, (1, "a", "b", 2)) == (4, 13)
    assert locate(text, (1, "zz")) == (3, 3)  # a missing key points at its object
    assert locate('{"a": 1, "a": 2}', ("a",)) == (1, 15)  # duplicate keys: the last counts
    assert locate("{", ("a",)) is None
    # Broken after the item asked for: the item is still found, as the text up to it is JSON.
    assert locate('[1, {"a": 2}, {', (1, "a")) == (1, 11)
    assert locate('[1, {"a": 2}, {', (3,)) is None


def _paths(obj: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path in ``obj``, plus a missing key or index under each container."""
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
        out.append((*prefix, "missing"))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            out += _paths(value, (*prefix, index))
        out += [(*prefix, len(obj)), (*prefix, -1)]
    return out


# ---------------------------------------------------------------------------- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, st.sampled_from([None, 1, 2]), st.integers(0, 300), st.randoms())
def test_locator_answers_like_locate_in_any_order(
    obj: Any, indent: int | None, cut: int, rnd: Any
) -> None:
    # One Locator keeps what it scanned between lookups; whatever the order of the lookups, and
    # on a text cut short, it must answer exactly as a fresh locate() does.
    for text in (json.dumps(obj, indent=indent), json.dumps(obj, indent=indent)[:cut]):
        locator = Locator(text)
        paths = _paths(obj)
        rnd.shuffle(paths)
        for path in paths:
            assert locator.locate(path) == locate(text, path), (text, path)


envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "brand_id": json_values,
        "player_id": json_values,
        "event_type": st.sampled_from(["notification", "gamification_balance_update", "x", ""])
        | json_values,
        "event_data": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "message_id": json_values,
                "event": json_values,
                "event_details": json_values,
                "is_read": json_values,
                "time": json_values,
                "balance": json_values,
            },
        ),
        "type": st.sampled_from(["connected", "keepalive", "error"]) | json_values,
        "timestamp": json_values,
        "message": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(json_values | envelope_like, st.booleans())
def test_any_json_value_gives_problems_never_a_crash(obj: Any, strict: bool) -> None:
    found = check_event(obj, strict=strict)
    assert all(isinstance(p, Problem) and p.path.startswith("$") and p.message for p in found)
    assert all("\n" not in str(p) for p in found)
    if not found:
        validate_event(obj, strict=strict)  # agrees: valid means a model comes back


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_through_parser_and_validator_give_only_validation_errors(
    data: bytes, strict: bool
) -> None:
    for item in SSEParser().feed(data) + [SSEMessage(data.decode("utf-8", "replace"))]:
        try:
            parse_event(item.data, strict=strict)
        except EventValidationError as exc:
            assert exc.problems  # type: ignore[attr-defined]
    assert all(isinstance(p, Problem) for p in check_json(data, strict=strict))


notifications = st.builds(
    lambda brand, player, kind, details, when, mid: {
        "brand_id": brand,
        "player_id": player,
        "event_type": "notification",
        "event_data": {
            "message_id": str(mid),
            "event": kind,
            "event_details": details,
            "is_read": False,
            "time": when.strftime("%Y-%m-%d %H:%M:%S"),
        },
    },
    st.integers(1, 2**63 - 1),
    st.integers(1, 2**63 - 1),
    st.sampled_from(NOTIFICATION_KINDS),
    st.dictionaries(
        st.text(max_size=8),
        st.integers() | st.text(max_size=8) | st.decimals(allow_nan=False, allow_infinity=False),
        max_size=4,
    ),
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.uuids(),
)


@settings(max_examples=150, deadline=None)
@given(notifications, st.lists(st.integers(0, 2000), max_size=5))
def test_valid_events_survive_serialize_sse_chunking_parse_validate(
    obj: dict, cuts: list[int]
) -> None:
    stream = encode_event(dumps(obj))
    points = sorted(set(min(c, len(stream)) for c in cuts))
    parser, out = SSEParser(), []
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        out.extend(parser.feed(stream[a:b]))
    (msg,) = out
    event = parse_event(msg.data, strict=True)
    assert json.loads(event.to_json(), parse_float=Decimal) == json.loads(
        dumps(obj), parse_float=Decimal
    )
    assert event.event_data.message_id == uuid.UUID(obj["event_data"]["message_id"])
