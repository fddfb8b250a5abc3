"""Synthetic, schema-valid event payloads that carry their workload event id end to end.

A real run must tell which workload event every received SSE message is, without a side
channel. The id travels inside the payload, in a field the event's schema allows:

* ``notification``: ``event_data.message_id`` is :func:`sse_sim.workload.message_id`, a UUID
  whose low 62 bits are the event id (the UUID version and variant bits sit above them);
* ``gamification_balance_update``: ``event_data.total_received`` is the event id (an integer),
  ``balance`` the same number and ``total_redeemed`` 0, so the balance arithmetic holds;
* any other type: ``event_data.event_id``.

Each payload is padded to the workload's ``payload_bytes`` (never shortened below its minimal
form): notifications through ``event_details.pad``, balance updates through trailing zero
decimals of ``balance`` (an exact decimal, so ``12.000`` is still 12), other types through
``event_data.pad``. Sizes matter because kernel socket buffers hold bytes, not events.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ..events.publisher import encode_envelope
from ..workload import event_id_of_message_id, message_id

__all__ = ["build_payload", "event_id_of"]

# A fixed creation time: payloads are built before the replay starts, and a constant keeps
# every payload of a size class the same length.
_NOTIFICATION_TIME = "2025-10-22 14:30:45"


def _notification(brand: int, player: int, event_id: int, seed: int, pad: int) -> dict[str, Any]:
    return {
        "message_id": message_id(seed, event_id),
        "event": "bonus_granted",
        "event_details": {"pad": "x" * pad},
        "is_read": False,
        "time": _NOTIFICATION_TIME,
    }


def _balance(event_id: int, pad: int) -> dict[str, Any]:
    balance = Decimal(event_id) if pad <= 1 else Decimal(f"{event_id}." + "0" * (pad - 1))
    return {"balance": balance, "total_received": int(event_id), "total_redeemed": 0}


def _other(event_id: int, pad: int) -> dict[str, Any]:
    return {"event_id": int(event_id), "pad": "x" * pad}


def build_payload(
    brand_id: int, player_id: int, event_type: str, event_id: int, seed: int, payload_bytes: int
) -> tuple[str, str]:
    """The (channel, JSON) to publish for one workload event, padded to about ``payload_bytes``."""

    def make(pad: int) -> dict[str, Any]:
        if event_type == "notification":
            return _notification(brand_id, player_id, event_id, seed, pad)
        if event_type == "gamification_balance_update":
            return _balance(event_id, pad)
        return _other(event_id, pad)

    known = event_type in ("notification", "gamification_balance_update")
    channel, text = encode_envelope(brand_id, player_id, event_type, make(0), validate=known)
    missing = int(payload_bytes) - len(text.encode())
    if missing > 0:
        channel, text = encode_envelope(
            brand_id, player_id, event_type, make(missing), validate=False
        )
    return channel, text


def event_id_of(data: str) -> int | None:
    """The workload event id carried by a published JSON message, or None if it carries none.

    Also takes the pub/sub message of an event kept in a stream (``{"id":...,"envelope":{...}}``,
    what the gateway's log records under ``stream`` delivery): the id is the envelope's. The
    event id doubles as the message id a client dedupes on (a cached ``latest`` value it
    already read may be sent again at a resubscription).
    """
    try:
        env = json.loads(data)
        if "envelope" in env and "event_data" not in env:
            env = env["envelope"]
        event_data = env["event_data"]
        kind = env["event_type"]
        if kind == "notification":
            return event_id_of_message_id(event_data["message_id"])
        if kind == "gamification_balance_update":
            return int(event_data["total_received"])
        return int(event_data["event_id"])
    except (ValueError, KeyError, TypeError):
        return None
