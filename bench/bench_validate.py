"""How ``sse-sim validate-events`` time grows with the size of a JSON array of events.

Run: .venv/bin/python bench/bench_validate.py [--sizes 1000 10000 20000] [--repeat 3]

Times ``validate_source`` (what the command runs) on pretty-printed arrays of 1,000, 10,000 and
20,000 documented notifications, once with a problem in every item (every problem is looked up
in the text for its line: the case that was quadratic) and once with one bad item in 100.
Prints best-of-``--repeat`` seconds, the ratio to the smallest size (linear: 10x and 20x) and,
as a reference measured in the same run, the time of a bare ``json.loads`` of the same text.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

from sse_sim.events.files import validate_source

EXAMPLE = (
    Path(__file__).resolve().parents[1] / "data" / "examples" / "notification_1_bonus_granted.json"
)


def make_array(n: int, bad_every: int) -> bytes:
    """A pretty-printed array of ``n`` notifications, every ``bad_every``-th one with a bad player_id."""
    good = json.loads(EXAMPLE.read_text())
    items = []
    for i in range(n):
        item = json.loads(json.dumps(good))
        item["player_id"] = -1 if i % bad_every == 0 else 10_000 + i
        items.append(item)
    return json.dumps(items, indent=2).encode()


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """The shortest of ``repeat`` wall-clock timings of ``fn()``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 20_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    print(
        f"{'case':<24} {'items':>7} {'problems':>9} {'seconds':>9} {'vs first':>9} {'json.loads':>11} {'vs loads':>9}"
    )
    for case, bad_every in (("a problem in every item", 1), ("1 bad item in 100", 100)):
        first = None
        for n in args.sizes:
            raw = make_array(n, bad_every)
            problems, events = validate_source(raw)
            assert events == n and len(problems) == -(-n // bad_every), (events, len(problems))
            seconds = best_of(args.repeat, lambda raw=raw: validate_source(raw))
            reference = best_of(args.repeat, lambda raw=raw: json.loads(raw))
            first = first or seconds
            print(
                f"{case:<24} {n:>7,} {len(problems):>9,} {seconds:>9.3f} {seconds / first:>8.1f}x"
                f" {reference:>11.4f} {seconds / reference:>8.0f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
