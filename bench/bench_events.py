"""Parse-and-validate speed of sse_sim.events against plain ``json.loads`` plus dict access.

Run: .venv/bin/python bench/bench_events.py [--n 20000] [--repeat 5]

Prints events/s for each way of reading the same documented events, measured in this process,
and the ratio to the plain-json reference. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from sse_sim.events import SSEParser, dumps, encode_event, parse_event


def make_events(n: int) -> list[str]:
    """``n`` envelope JSON texts: 3 notifications for each gamification balance update."""
    start = datetime(2025, 10, 22, 14, 30, 45)
    out = []
    for i in range(n):
        if i % 4 == 3:
            data = {
                "balance": Decimal(f"{i}.50"),
                "total_received": Decimal(10 * i),
                "total_redeemed": Decimal(f"{9 * i}.50"),
            }
            event_type = "gamification_balance_update"
        else:
            data = {
                "message_id": str(uuid.UUID(int=i * 7919 + 1, version=4)),
                "event": ("bonus_granted", "deposit_success", "kyc_approved")[i % 3],
                "event_details": {
                    "amount": Decimal("250.00"),
                    "currency": "USD",
                    "transaction_id": f"TXN{i}",
                },
                "is_read": False,
                "time": (start + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S"),
            }
            event_type = "notification"
        out.append(
            dumps(
                {
                    "brand_id": 1001,
                    "player_id": 10_000 + i % 500,
                    "event_type": event_type,
                    "event_data": data,
                }
            )
        )
    return out


def plain_json(texts: list[str]) -> int:
    """The reference: json.loads and read the fields a client reads, no checks."""
    total = 0
    for text in texts:
        obj = json.loads(text)
        data = obj["event_data"]
        total += obj["brand_id"] + obj["player_id"] + len(obj["event_type"])
        if obj["event_type"] == "notification":
            total += (
                len(data["message_id"])
                + len(data["event"])
                + len(data["event_details"])
                + (not data["is_read"])
                + len(data["time"])
            )
        else:
            total += int(data["balance"] + data["total_received"] + data["total_redeemed"])
    return total


def sse_sim_lenient(texts: list[str]) -> int:
    return sum(parse_event(t).player_id for t in texts)


def sse_sim_strict(texts: list[str]) -> int:
    return sum(parse_event(t, strict=True).player_id for t in texts)


def wire_and_validate(stream: bytes, chunk: int = 4096) -> int:
    parser = SSEParser()
    total = 0
    for start in range(0, len(stream), chunk):
        for msg in parser.feed(stream[start : start + chunk]):
            total += parse_event(msg.data).player_id
    return total


def wire_plain(stream: bytes) -> int:
    """Reference for the wire: split frames on blank lines, strip 'data: ', json.loads."""
    total = 0
    for frame in stream.split(b"\n\n"):
        if frame:
            total += json.loads(frame[6:])["player_id"]
    return total


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="events per run")
    ap.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    args = ap.parse_args()
    texts = make_events(args.n)
    stream = b"".join(encode_event(t) for t in texts)
    assert (
        sse_sim_lenient(texts)
        == sse_sim_strict(texts)
        == wire_and_validate(stream)
        == wire_plain(stream)
    )
    ref = best(lambda: plain_json(texts), args.repeat)
    rows = [
        ("json.loads + dict access (reference)", ref),
        ("parse_event, lenient", best(lambda: sse_sim_lenient(texts), args.repeat)),
        ("parse_event, strict", best(lambda: sse_sim_strict(texts), args.repeat)),
    ]
    wire_ref = best(lambda: wire_plain(stream), args.repeat)
    wire_rows = [
        ("split frames + json.loads (reference)", wire_ref),
        (
            "SSEParser (4 KiB chunks) + parse_event",
            best(lambda: wire_and_validate(stream), args.repeat),
        ),
    ]
    print(
        f"{args.n:,} events (3 notifications : 1 gamification_balance_update), best of {args.repeat}"
    )
    for title, table, base in (
        ("JSON text -> event", rows, ref),
        ("SSE bytes -> event", wire_rows, wire_ref),
    ):
        print(f"\n{title}")
        for name, seconds in table:
            rate = args.n / seconds
            print(
                f"  {name:<42} {rate:>12,.0f} events/s   {seconds / base:5.2f}x the reference time"
            )


if __name__ == "__main__":
    main()
