"""Typed models, the exact-decimal JSON codec, the registry and the schemas."""

from __future__ import annotations

import doctest
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import sse_sim.events as events
from sse_sim.events import (
    DEFAULT_REGISTRY,
    NOTIFICATION_KINDS,
    ConnectedEvent,
    Envelope,
    EventRegistry,
    GamificationBalanceUpdate,
    KeepaliveEvent,
    Notification,
    RecoveryEvent,
    check_event,
    codec,
    dumps,
    event_json_schema,
    events_json_schema,
    loads,
    models,
    parse_event,
    registry,
    validate_event,
)
from sse_sim.events.codec import JSONDecodeProblem


def test_all_lists_exactly_the_public_names() -> None:
    assert len(events.__all__) == len(set(events.__all__))
    for name in events.__all__:
        assert getattr(events, name) is not None
    public = {
        n
        for n in vars(events)
        if not n.startswith("_") and not isinstance(getattr(events, n), type(events))
    }
    assert public - {"annotations"} == set(events.__all__)


def test_doctests() -> None:
    for module in (codec, models, events.validate, events.publisher):
        assert doctest.testmod(module).failed == 0


def test_eleven_notification_kinds() -> None:
    assert len(NOTIFICATION_KINDS) == 11 and len(set(NOTIFICATION_KINDS)) == 11


# ------------------------------------------------------------------------------------ codec


def test_decimals_exact_both_ways() -> None:
    text = '{"balance":0.1,"total_received":250.00,"total_redeemed":1000.5,"n":3}'
    obj = loads(text)
    assert obj == {
        "balance": Decimal("0.1"),
        "total_received": Decimal("250.00"),
        "total_redeemed": Decimal("1000.5"),
        "n": 3,
    }
    assert dumps(obj) == text
    assert dumps(loads("[1E+3, 1.5e-7, 1e400]")) == "[1000,0.00000015,1E+400]"
    assert dumps(
        {"a": [Decimal("-0.000000001"), Decimal("123456789012345678901234567890.123456789")]}
    ) == ('{"a":[-0.000000001,123456789012345678901234567890.123456789]}')


def test_dumps_rejects_non_finite_and_unknown_types() -> None:
    for bad in (Decimal("NaN"), Decimal("Infinity"), float("nan")):
        with pytest.raises(ValueError):
            dumps({"x": bad})
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_dumps_placeholder_cannot_be_forged_by_data() -> None:
    tricky = "\x00sse-sim-decimal-0"
    out = dumps({"s": tricky, "d": Decimal("1.5")})
    assert json.loads(out, parse_float=Decimal) == {"s": tricky, "d": Decimal("1.5")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"a": NaN}', "invalid JSON: NaN is not valid JSON"),
        ("[1, Infinity]", "invalid JSON: Infinity is not valid JSON"),
        (b"\xff\xfe", "not UTF-8 text"),
        ("[" * 100_000 + "]" * 100_000, "invalid JSON: nested too deeply to parse"),
        ("", "invalid JSON: Expecting value"),
    ],
)
def test_loads_errors(text: str | bytes, message: str) -> None:
    with pytest.raises(JSONDecodeProblem) as info:
        loads(text)
    assert info.value.message == message


@settings(max_examples=100, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_round_trip_property(value: Decimal) -> None:
    back = loads(dumps({"v": value}))["v"]
    assert back == value
    assert isinstance(back, Decimal | int)


# ----------------------------------------------------------------------------------- models


def test_notification_new_and_event_data() -> None:
    n = Notification.new(
        "bonus_granted", {"bonus_amount": 100}, time=datetime(2025, 10, 22, 14, 30, 45)
    )
    data = n.to_event_data()
    assert list(data) == ["message_id", "event", "event_details", "is_read", "time"]
    assert data["time"] == "2025-10-22 14:30:45" and data["is_read"] is False
    assert uuid.UUID(data["message_id"]).version == 4


def test_gamification_decimals_no_float_drift() -> None:
    event = parse_event(
        '{"brand_id":1,"player_id":2,"event_type":"gamification_balance_update",'
        '"event_data":{"balance":0.1,"total_received":0.3,"total_redeemed":0.2}}'
    )
    data = event.event_data
    assert isinstance(data, GamificationBalanceUpdate)
    assert data.total_received - data.total_redeemed == data.balance  # 0.3 - 0.2 == 0.1 exactly
    assert event.to_json().endswith(
        '"event_data":{"balance":0.1,"total_received":0.3,"total_redeemed":0.2}}'
    )
    # A Python float (from plain json.loads) is read as the number its JSON text showed.
    from_float = GamificationBalanceUpdate.model_validate(
        {"balance": 0.1, "total_received": 1, "total_redeemed": 0}
    )
    assert from_float.balance == Decimal("0.1")


def test_envelope_channel_and_system_events() -> None:
    event = validate_event(
        {
            "brand_id": 1001,
            "player_id": 12345,
            "event_type": "game_result",
            "event_data": {"win": 5},
        }
    )
    assert isinstance(event, Envelope) and event.channel == "SSE::1001::12345"
    connected = ConnectedEvent(
        timestamp=datetime(2025, 10, 22, 16, 30, 45, tzinfo=timezone(timedelta(hours=2)))
    )
    assert connected.to_json() == '{"type":"connected","timestamp":"2025-10-22T14:30:45Z"}'
    assert KeepaliveEvent(timestamp=datetime(2025, 10, 22, 14, 30, 45)).to_json() == (
        '{"type":"keepalive","timestamp":"2025-10-22 14:30:45"}'
    )
    assert validate_event(
        {"type": "connected", "timestamp": "2025-10-22T14:30:45.123Z"}
    ).timestamp == datetime(2025, 10, 22, 14, 30, 45, tzinfo=UTC)


def test_recovery_event_validation() -> None:
    assert "recovery" in events.SYSTEM_EVENT_TYPES
    event = validate_event({"type": "recovery", "recovered": True, "replayed": 50})
    assert isinstance(event, RecoveryEvent) and (event.recovered, event.replayed) == (True, 50)
    assert RecoveryEvent(recovered=None, replayed=2).to_json() == (
        '{"type":"recovery","recovered":null,"replayed":2}'
    )
    assert validate_event({"type": "recovery", "recovered": False, "replayed": 0}, strict=True)
    assert [str(p) for p in check_event({"type": "recovery", "recovered": "yes", "replayed": -1})] == [
        "$.recovered: expected a boolean or null, got string 'yes'",
        "$.replayed: expected a non-negative integer, got integer -1",
    ]
    assert [str(p) for p in check_event({"type": "recovery", "recovered": 1, "replayed": True})] == [
        "$.recovered: expected a boolean or null, got integer 1",
        "$.replayed: expected a non-negative integer, got boolean true",
    ]
    assert {p.path for p in check_event({"type": "recovery"})} == {"$.recovered", "$.replayed"}
    extra = {"type": "recovery", "recovered": True, "replayed": 1, "gap": 3}
    assert check_event(extra) == [] and check_event(extra, strict=True) != []


def test_models_are_immutable() -> None:
    n = Notification.new("kyc_approved")
    with pytest.raises(ValidationError):
        n.event = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------------- registry


def test_default_registry_holds_documented_and_announced_types() -> None:
    assert DEFAULT_REGISTRY.names() == [
        "notification",
        "gamification_balance_update",
        "wallet_balance_update",
        "game_result",
        "tournament_update",
        "message",
        "promotion_trigger",
    ]
    assert DEFAULT_REGISTRY.get("notification").status == "documented"  # type: ignore[union-attr]
    assert DEFAULT_REGISTRY.get("game_result").payload is None  # type: ignore[union-attr]


class WalletBalance(BaseModel):
    balance: Decimal
    currency: str


def test_operator_types_without_editing_the_core() -> None:
    private = DEFAULT_REGISTRY.copy()
    private.register("wallet_balance_update", WalletBalance, replace=True)
    private.register("vip_upgrade", None, description="Operator event")
    good = {
        "brand_id": 1,
        "player_id": 2,
        "event_type": "wallet_balance_update",
        "event_data": {"balance": "1.5", "currency": "EUR"},
    }
    assert validate_event(good, registry=private).event_data == WalletBalance(
        balance=Decimal("1.5"), currency="EUR"
    )
    bad = {**good, "event_data": {"balance": "1.5"}}
    assert [str(p) for p in events.check_event(bad, registry=private)] == [
        "$.event_data.currency: required field is missing"
    ]
    # The default registry is untouched: there the announced type takes any object.
    assert events.check_event(bad) == []
    vip = {"brand_id": 1, "player_id": 2, "event_type": "vip_upgrade", "event_data": {}}
    assert events.check_event(vip, strict=True, registry=private) == []
    assert [p.path for p in events.check_event(vip, strict=True)] == ["$.event_type"]


def test_register_event_type_on_the_default_registry() -> None:
    registry.register_event_type("sse_sim_test_type")
    try:
        assert (
            events.check_event(
                {
                    "brand_id": 1,
                    "player_id": 2,
                    "event_type": "sse_sim_test_type",
                    "event_data": {},
                },
                strict=True,
            )
            == []
        )
    finally:
        DEFAULT_REGISTRY.unregister("sse_sim_test_type")


@pytest.mark.parametrize("name", ["", "Bad", "a b", "keepalive", "notification", 3])
def test_register_rejects_bad_names(name: object) -> None:
    with pytest.raises(ValueError):
        EventRegistry(list(DEFAULT_REGISTRY)).register(name)  # type: ignore[arg-type]


def test_register_rejects_non_model_payload() -> None:
    with pytest.raises(TypeError):
        EventRegistry().register("x", dict)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- schemas


def test_schemas_are_valid_json_schema_and_name_every_event() -> None:
    for strict in (False, True):
        schema = events_json_schema(strict=strict)
        jsonschema.Draft202012Validator.check_schema(schema)
        names = {ref["$ref"].rsplit(".", 1)[1] for ref in schema["oneOf"]}
        expected = {*DEFAULT_REGISTRY.names(), "connected", "keepalive", "error", "recovery"}
        assert names == (expected if strict else expected | {"other"})
    one = event_json_schema("notification", strict=True)
    jsonschema.Draft202012Validator.check_schema(one)
    with pytest.raises(KeyError):
        event_json_schema("nope")


def test_lenient_schema_accepts_unknown_types_and_strict_does_not() -> None:
    obj = {"brand_id": 1, "player_id": 2, "event_type": "custom", "event_data": {}}
    assert jsonschema.Draft202012Validator(events_json_schema()).is_valid(obj)
    assert not jsonschema.Draft202012Validator(events_json_schema(strict=True)).is_valid(obj)
