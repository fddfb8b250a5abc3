"""The documented JSON examples, and the validator's exact verdict on each of them.

Five of the six notification examples of the documented system carry message_ids with letters
beyond 'f' (``b8e9d045-2c3e-5f6g-...``): they are not UUIDs, and the validator says so. The
generic envelope example has a ``// Event-specific payload`` comment and is not JSON at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from sse_sim.events import check_json, events_json_schema, parse_event
from sse_sim.events.models import Envelope, GamificationBalanceUpdate, Notification

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
UUID_MSG = "expected a UUID (8-4-4-4-12 hex digits 0-9, a-f), got string {!r}"

# file -> exact list of "path: message" problems, the same in lenient and strict mode.
VERDICTS: dict[str, list[str]] = {
    "envelope_structure.json": [
        "$: invalid JSON: Expecting property name enclosed in double quotes (line 6, column 5)"
    ],
    "notification_structure.json": [],
    "notification_1_bonus_granted.json": [],
    "notification_2_promotion_available.json": [
        "$.event_data.message_id: " + UUID_MSG.format("b8e9d045-2c3e-5f6g-0d9b-8e7f6g5b4c3d")
    ],
    "notification_3_deposit_success.json": [
        "$.event_data.message_id: " + UUID_MSG.format("c9f0e156-3d4f-6g7h-1e0c-9f8g7h6c5d4e")
    ],
    "notification_4_kyc_approved.json": [
        "$.event_data.message_id: " + UUID_MSG.format("d0g1f267-4e5g-7h8i-2f1d-0g9h8i7d6e5f")
    ],
    "notification_5_account_update.json": [
        "$.event_data.message_id: " + UUID_MSG.format("e1h2g378-5f6h-8i9j-3g2e-1h0i9j8e7f6g")
    ],
    "notification_6_tournament_win.json": [
        "$.event_data.message_id: " + UUID_MSG.format("f2i3h489-6g7i-9j0k-4h3f-2i1j0k9f8g7h")
    ],
    "gamification_structure.json": [],
    "gamification_1_after_earning.json": [],
    "gamification_2_after_redemption.json": [],
    "gamification_3_zero_redemptions.json": [],
    "system_connected.json": [],
    "system_keepalive.json": [],
    "system_error.json": [],
}


def test_every_example_file_has_a_verdict() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(VERDICTS)


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_exact_verdict(name: str, strict: bool) -> None:
    problems = check_json((EXAMPLES / name).read_bytes(), strict=strict)
    assert [str(p) for p in problems] == VERDICTS[name]


def test_valid_examples_parse_to_typed_models_and_reserialize_identically() -> None:
    for name, verdict in VERDICTS.items():
        if verdict or name.startswith("system_"):
            continue
        text = (EXAMPLES / name).read_text()
        event = parse_event(text, strict=True)
        assert isinstance(event, Envelope)
        assert isinstance(event.event_data, Notification | GamificationBalanceUpdate)
        assert json.loads(event.to_json()) == json.loads(text)
        assert event.to_json() == json.dumps(json.loads(text), separators=(",", ":"))


def test_the_json_schema_agrees_with_the_validator_on_the_examples() -> None:
    for strict in (False, True):
        validator = jsonschema.Draft202012Validator(events_json_schema(strict=strict))
        for name, verdict in VERDICTS.items():
            if name == "envelope_structure.json":
                continue
            obj = json.loads((EXAMPLES / name).read_text())
            assert validator.is_valid(obj) == (not verdict), name
