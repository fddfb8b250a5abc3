"""Sizing a replay window: the smallest history (entries, or TTL) that keeps ``lost_history_expired`` under a target.

Under ``stream`` delivery a client that comes back is replayed what the player's history still
holds. ``size_history(scenario, max_loss=1e-4)`` simulates the scenario at a range of
``delivery.history_size`` values (or ``history_ttl_s`` with ``by="ttl"``), the same seeds at
every value, and reports the smallest one whose mean ``lost_history_expired`` is at most the
target, with Student-t bands over seeds and the Redis memory each value costs. A scenario
whose types are all under ``pubsub`` is sized as if they were under ``stream``.

Like buffer sizing, a value counts only if every larger value evaluated meets the target too.
``max_replay`` also trims a replay; when it binds, no history fixes what it cuts, and the
report says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .scenario import Scenario, as_scenario
from .sizing import loss_interval, smallest_meeting
from .sweep import Runner, SweepError, apply_point, seed_list
from .tables import HISTORY_SIZING

ENTRIES_LADDER: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
TTL_LADDER: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x * 100:.4g}%"


@dataclass
class HistorySizingResult:
    """The expired-loss-vs-history curve of a scenario, the recommended window and what it costs Redis."""

    scenario: Scenario
    max_loss: float
    level: float
    seeds: list[int]
    by: str
    """"entries" (history_size) or "ttl" (history_ttl_s)."""
    table: pd.DataFrame
    """One row per value evaluated, ascending (see the ``history_sizing`` table)."""
    value: float | None
    """Smallest value whose mean expired loss is <= max_loss (and every larger value evaluated too); None if none."""
    confident_value: float | None
    """The same with the upper confidence bound in place of the mean."""
    notes: list[str] = field(default_factory=list)

    @property
    def column(self) -> str:
        """The table column being sized."""
        return "history_size" if self.by == "entries" else "history_ttl_s"

    def _held(self) -> str:
        d = self.scenario.delivery
        if self.by == "entries":
            return f"history_ttl_s = {d.history_ttl_s if d.history_ttl_s is not None else 'none'}, max_replay = {d.max_replay}"
        return f"history_size = {d.history_size}, max_replay = {d.max_replay}"

    def report(self) -> str:
        """The table and the verdict as text."""
        unit = "entries" if self.by == "entries" else "s"
        lines = [
            f"History sizing for {self.scenario.name!r} ({self.column}): keep lost_history_expired <= {_pct(self.max_loss)}",
            f"{len(self.seeds)} seed(s) per value, {self.level:.0%} intervals over seeds; held: {self._held()}",
            "",
            f"{self.column:>14}  {'expired loss [CI]':<34} {'total loss':>10} {'Redis memory':>14}  meets",
        ]
        for _, r in self.table.iterrows():
            ci = f"{_pct(r.expired_loss_rate)} [{_pct(r.expired_loss_rate_ci_low)}, {_pct(r.expired_loss_rate_ci_high)}]"
            lines.append(
                f"{r[self.column]:>14g}  {ci:<34} {_pct(r.loss_rate):>10} {r.history_memory_bytes / 2**20:>11.2f} MiB  "
                f"{'yes' if r.meets_target else 'no'}"
            )
        lines.append("")
        if self.value is None:
            lines.append(f"No {self.column} evaluated keeps lost_history_expired under {_pct(self.max_loss)}.")
        else:
            r = self.table[self.table[self.column] == self.value].iloc[0]
            lines.append(
                f"Recommended {self.column}: {self.value:g} {unit}: expired loss {_pct(r.expired_loss_rate)}, "
                f"Redis memory {r.history_memory_bytes / 2**20:.2f} MiB."
            )
            if self.confident_value is not None and len(self.seeds) > 1:
                lines.append(f"Cautious choice (upper {self.level:.0%} bound under target): {self.confident_value:g} {unit}.")
        lines.extend(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def _table(by: str, values: list[float], held: dict[str, Any], results: dict[float, list[dict[str, Any]]], max_loss: float, level: float) -> pd.DataFrame:
    rows = []
    for v in sorted(values):
        runs = results[v]
        expired = np.array([r["loss_rate_lost_history_expired"] for r in runs], float)
        row: dict[str, Any] = {
            "history_size": int(v) if by == "entries" else int(held["history_size"]),
            "history_ttl_s": float(v) if by == "ttl" else (np.nan if held["history_ttl_s"] is None else float(held["history_ttl_s"])),
            "seeds_n": len(runs),
        }
        row["expired_loss_rate"], row["expired_loss_rate_ci_low"], row["expired_loss_rate_ci_high"] = loss_interval(expired, level)
        row["loss_rate"] = float(np.mean([r["loss_rate"] for r in runs]))
        row["history_memory_bytes"] = float(np.mean([r["history_memory_bytes"] for r in runs]))
        row["meets_target"] = row["expired_loss_rate"] <= max_loss
        rows.append(row)
    return pd.DataFrame(rows, columns=[c.name for c in HISTORY_SIZING]).astype({c.name: c.dtype for c in HISTORY_SIZING})


def size_history(
    scenario: Scenario | str | Path | dict,
    max_loss: float,
    *,
    by: Literal["entries", "ttl"] = "entries",
    values: Iterable[float] | None = None,
    seeds: int | Iterable[int] = 5,
    client: Any = None,
    n_workers: int | None = None,
    level: float = 0.95,
    progress: bool = True,
) -> HistorySizingResult:
    """Find the smallest history (``by="entries"``: ``history_size``; ``"ttl"``: ``history_ttl_s``) keeping expired loss <= ``max_loss``.

    ``values``: evaluate exactly these; default: a ladder (1, 2, 5, 10, ... entries, or 0.5 s
    to an hour), then, for entries, bisection between the last miss and the first hit.
    ``seeds``, ``client``, ``n_workers`` and ``level`` as for :func:`sse_sim.size_buffer`.
    """
    sc = as_scenario(scenario)
    if by not in ("entries", "ttl"):
        raise SweepError(f"by must be 'entries' or 'ttl', got {by!r}")
    if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)) or not 0 <= max_loss < 1:
        raise SweepError(f"max_loss must be a loss fraction in [0, 1), e.g. 0.0001 for 0.01 %, got {max_loss!r}")
    if not isinstance(level, (int, float)) or not 0.5 <= level < 1:
        raise SweepError(f"level must be a confidence level in [0.5, 1), got {level!r}")
    notes = []
    if not any(sc.delivery.mode_of(t) == "stream" for t in sc.event_types):
        sc = apply_point(sc, {"delivery.mode": "stream"}, "stream delivery")
        notes.append("Note: the scenario has no event type under stream delivery; it was sized with delivery.mode: stream.")
    key = "delivery.history_size" if by == "entries" else "delivery.history_ttl_s"
    if values is not None:
        given = [float(v) for v in values]
        if not given or any(not v > 0 for v in given) or (by == "entries" and any(v != int(v) for v in given)):
            raise SweepError(f"values must be a non-empty list of {'whole numbers >= 1' if by == 'entries' else 'seconds > 0'}, got {given!r}")
        candidates = sorted(set(given))
    else:
        candidates = [float(v) for v in (ENTRIES_LADDER if by == "entries" else TTL_LADDER)]
    seeds_ = seed_list(seeds)
    held = {"history_size": sc.delivery.history_size, "history_ttl_s": sc.delivery.history_ttl_s}
    results: dict[float, list[dict[str, Any]]] = {}

    def evaluate(run: Runner, new: list[float]) -> None:
        todo = [v for v in new if v not in results]
        if not todo:
            return
        tasks = [(apply_point(sc, {key: int(v) if by == "entries" else v}, by), seed) for v in todo for seed in seeds_]
        out = run.run(tasks, desc=f"history sizing {sc.name} ({len(todo)} value{'s' if len(todo) > 1 else ''})")
        for i, v in enumerate(todo):
            results[v] = out[i * len(seeds_) : (i + 1) * len(seeds_)]

    def table() -> pd.DataFrame:
        return _table(by, list(results), held, results, max_loss, level)

    with Runner(client=client, n_workers=n_workers, progress=progress) as run:
        evaluate(run, candidates)
        if values is None and by == "entries":
            for column in ("expired_loss_rate", "expired_loss_rate_ci_high")[: 1 + (len(seeds_) > 1)]:
                while True:
                    t = table()
                    best = smallest_meeting(t, t[column].to_numpy() <= max_loss, "history_size")
                    below = t["history_size"].to_numpy()[t["history_size"].to_numpy() < (best or 0)]
                    if best is None or not below.size or below.max() == best - 1:
                        break
                    evaluate(run, [float((int(below.max()) + best) // 2)])
    t = table()
    col = "history_size" if by == "entries" else "history_ttl_s"

    def smallest(column: str) -> float | None:
        got = smallest_meeting(t, t[column].to_numpy() <= max_loss, col)
        return None if got is None else float(got)

    replay_cut = np.array([r["replayed_per_reconnect_p99"] for runs in results.values() for r in runs], float)
    if replay_cut.size and np.nanmax(replay_cut) >= sc.delivery.max_replay:
        notes.append(
            f"Note: some reconnects replayed max_replay = {sc.delivery.max_replay} entries: what the cap cut is "
            "lost_history_expired whatever the history; raise delivery.max_replay too."
        )
    if len(seeds_) == 1:
        notes.append("Note: one seed gives no confidence band; use seeds >= 2.")
    return HistorySizingResult(
        scenario=sc,
        max_loss=float(max_loss),
        level=float(level),
        seeds=seeds_,
        by=by,
        table=t,
        value=smallest("expired_loss_rate"),
        confident_value=smallest("expired_loss_rate_ci_high") if len(seeds_) > 1 else None,
        notes=notes,
    )


__all__ = ["size_history", "HistorySizingResult", "HISTORY_SIZING", "ENTRIES_LADDER", "TTL_LADDER"]
