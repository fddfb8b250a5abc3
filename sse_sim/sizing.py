"""Buffer sizing: the smallest per-connection buffer that keeps overflow loss under a target.

``size_buffer(scenario, max_loss=1e-4)`` simulates the scenario at a range of
``gateway.buffer_size`` values (the same seeds at every size, so the curve is not seed noise),
finds the smallest size whose mean overflow loss is at most ``max_loss``, and reports next to
it the loss that no buffer size can fix: events lost because the connection (or the gateway
node's Redis subscriber) was gone. An architect sees at once which lever matters.

* overflow loss = ``dropped_overflow`` + ``disconnected_slow`` (the buffer was full);
* disconnect loss = ``lost_disconnected`` + ``lost_in_buffer`` + ``lost_redis_output_limit``.

With the overflow policy ``disconnect``, a full buffer also closes the connection, so part of
the ``lost_disconnected`` that follows is caused by the buffer; the disconnect loss is then an
upper bound on what no size can fix. ``lost_in_buffer`` grows a little with the buffer: more
events are held when a connection drops.

Loss falls with buffer size (statistically), so without ``sizes`` the search evaluates a
coarse 1-2-5 ladder up to ``max_size`` plus the scenario's own size, then bisects between
the last size that misses the target and the first that meets it. A size is accepted only
if every larger size evaluated meets the target as well, so one lucky seed cannot pick it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analytic import capacity_k
from .metrics import t_interval
from .outcomes import DISCONNECT_CAUSES, OVERFLOW_CAUSES
from .scenario import Scenario, as_scenario
from .sweep import Runner, SweepError, apply_point, seed_list, summaries_frame
from .tables import SIZING

LADDER: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


def _pct(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    return f"{x * 100:.4g}%"


@dataclass
class SizingResult:
    """The loss-vs-buffer curve of a scenario, the recommended buffer size and the loss no size fixes."""

    scenario: Scenario
    max_loss: float
    level: float
    seeds: list[int]
    table: pd.DataFrame
    """One row per buffer size evaluated, ascending (see the ``sizing`` table)."""
    per_seed: pd.DataFrame
    """The underlying runs: one sweep row per (buffer_size, seed)."""
    buffer_size: int | None
    """Smallest buffer_size whose mean overflow loss is <= max_loss (and every larger size evaluated too); None if none."""
    confident_buffer_size: int | None
    """The same with the upper confidence bound in place of the mean: the cautious choice."""
    searched: bool = True
    """True when the sizes came from the search (ladder + bisection), False when given."""
    notes: list[str] = field(default_factory=list)

    @property
    def seeds_n(self) -> int:
        return len(self.seeds)

    def row(self, buffer_size: int) -> pd.Series:
        """The table row of one evaluated size."""
        hit = self.table[self.table["buffer_size"] == buffer_size]
        if hit.empty:
            raise KeyError(f"buffer_size {buffer_size} was not evaluated (evaluated: {self.table['buffer_size'].tolist()})")
        return hit.iloc[0]

    @property
    def reference_row(self) -> pd.Series:
        """The row the headline figures are read at: the recommended size, else the largest evaluated."""
        return self.row(self.buffer_size) if self.buffer_size is not None else self.table.iloc[-1]

    @property
    def disconnect_loss_rate(self) -> float:
        """Loss no buffer size fixes (mean), read at the recommended size (else the largest evaluated)."""
        return float(self.reference_row["disconnect_loss_rate"])

    def report(self) -> str:
        """The table and the verdict as text, for a terminal or a notebook cell."""
        sc = self.scenario
        lines = [
            f"Buffer sizing for {sc.name!r}: keep overflow loss (dropped_overflow + disconnected_slow) <= {_pct(self.max_loss)}",
            f"{self.seeds_n} seed(s) per size, {self.level:.0%} intervals over seeds; "
            f"K = {connection_capacity(sc)[1]} at the scenario's buffer_size {sc.gateway.buffer_size}",
            "",
            f"{'buffer_size':>11} {'K':>6}  {'overflow loss [CI]':<34} {'disconnect loss [CI]':<34} {'total loss':>10}  meets",
        ]
        for _, r in self.table.iterrows():
            ov = f"{_pct(r.overflow_loss_rate)} [{_pct(r.overflow_loss_rate_ci_low)}, {_pct(r.overflow_loss_rate_ci_high)}]"
            dc = f"{_pct(r.disconnect_loss_rate)} [{_pct(r.disconnect_loss_rate_ci_low)}, {_pct(r.disconnect_loss_rate_ci_high)}]"
            lines.append(
                f"{int(r.buffer_size):>11} {int(r.capacity_k):>6}  {ov:<34} {dc:<34} {_pct(r.loss_rate):>10}  {'yes' if r.meets_target else 'no'}"
            )
        lines.append("")
        where = "among the sizes evaluated" if self.searched else "among the sizes given"
        if self.buffer_size is None:
            biggest = int(self.table["buffer_size"].max())
            lines.append(
                f"No buffer_size {where} (up to {biggest}) keeps overflow loss under {_pct(self.max_loss)}: "
                "clients drain slower than events reach them for longer than any buffer absorbs. "
                "The levers are the drain rate, the publish pattern or the overflow policy, not the buffer."
            )
        else:
            r = self.row(self.buffer_size)
            lines.append(
                f"Recommended buffer_size: {self.buffer_size} (K = {int(r.capacity_k)}), the smallest {where}: overflow loss "
                f"{_pct(r.overflow_loss_rate)} [{_pct(r.overflow_loss_rate_ci_low)}, {_pct(r.overflow_loss_rate_ci_high)}]."
            )
            if self.confident_buffer_size is not None and self.seeds_n > 1:
                lines.append(
                    f"Cautious choice (upper {self.level:.0%} bound under target): buffer_size {self.confident_buffer_size}."
                )
            elif self.seeds_n > 1:
                lines.append(f"No size {where} has its upper {self.level:.0%} bound under target: run more seeds or larger sizes.")
        current = int(sc.gateway.buffer_size)
        if current in set(self.table["buffer_size"]):
            c = self.row(current)
            verdict = "meets" if c.meets_target else "misses"
            lines.append(f"The scenario's own buffer_size {current}: overflow loss {_pct(c.overflow_loss_rate)}, {verdict} the target.")
        ref = self.reference_row
        d = float(ref.disconnect_loss_rate)
        lines.append(
            f"Loss no buffer size fixes (lost_disconnected + lost_in_buffer + lost_redis_output_limit): {_pct(d)} "
            f"[{_pct(ref.disconnect_loss_rate_ci_low)}, {_pct(ref.disconnect_loss_rate_ci_high)}] at buffer_size {int(ref.buffer_size)}."
        )
        if d > self.max_loss:
            lines.append(
                f"=> Disconnects alone lose more than the target ({_pct(d)} > {_pct(self.max_loss)}): the lever that matters is the "
                "disconnect path (fewer drops, faster or jittered reconnects, replay from Last-Event-ID or the database), not the buffer."
            )
        elif self.buffer_size is not None and self.buffer_size > current:
            lines.append(f"=> The buffer is the lever: raise buffer_size from {current} to {self.buffer_size}.")
        elif self.buffer_size is not None:
            lines.append("=> The current buffer already keeps overflow loss under target; disconnects are under it too.")
        lines.extend(self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.report()


def mean_framed_bytes(scenario: Scenario) -> float | None:
    """The mean framed size of the events a connection receives, where byte caps need it (else None).

    Read off the first block of players (seed 0): byte caps (``gateway.buffer_bytes``,
    ``clients.socket_buffer_bytes``) become event counts at this size in K.
    """
    if scenario.gateway.buffer_bytes is None and scenario.clients.socket_buffer_bytes is None:
        return None
    from .workload import SSE_FRAME_BYTES, build_workload

    w = build_workload(scenario, 0, chunks=(0, 1))
    return float(w.payload_bytes.mean()) + SSE_FRAME_BYTES if w.payload_bytes.size else float(SSE_FRAME_BYTES + 1)


def connection_capacity(scenario: Scenario, buffer_size: int | None = None, framed: float | None = None) -> tuple[int, str]:
    """K of one connection under ``scenario`` (at ``buffer_size``, default its own), and what it is made of.

    Without byte caps K is exact (``buffer_size + 1 + socket_buffer_events``); with them it is
    that of a workload of equal events of the mean framed size (``framed``, else measured by
    :func:`mean_framed_bytes`). The text is for tables and plot labels.
    """
    gw, cl = scenario.gateway, scenario.clients
    size = gw.buffer_size if buffer_size is None else int(buffer_size)
    if framed is None:
        framed = mean_framed_bytes(scenario)
    caps = {"framed_bytes": framed, "buffer_bytes": gw.buffer_bytes}
    waiting = capacity_k(size, 0, **caps) - 1
    k = capacity_k(size, cl.socket_buffer_events, socket_buffer_bytes=cl.socket_buffer_bytes, **caps)
    sockets = k - 1 - waiting
    text = f"buffer {waiting} + 1 in flight" + (f" + {sockets} in socket buffers" if sockets else "")
    if framed is not None:
        text += f", byte caps at {framed:,.0f} B per framed event"
    return k, text


def loss_interval(x: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean and Student-t interval of per-seed loss rates, the lower bound clipped at 0."""
    mean, _, low, high = t_interval(x, level)
    # a loss rate is never negative; the symmetric t interval would say so at rare losses
    return mean, max(low, 0.0) if np.isfinite(low) else low, high


def _table(per_seed: pd.DataFrame, scenario: Scenario, max_loss: float, level: float) -> pd.DataFrame:
    framed = mean_framed_bytes(scenario)
    rows = []
    for size, g in per_seed.groupby("gateway.buffer_size", sort=True):
        overflow = sum(g[f"loss_rate_{c}"].to_numpy(float) for c in OVERFLOW_CAUSES)
        disconnect = sum(g[f"loss_rate_{c}"].to_numpy(float) for c in DISCONNECT_CAUSES)
        total = g["loss_rate"].to_numpy(float)
        row: dict[str, Any] = {"buffer_size": int(size), "capacity_k": connection_capacity(scenario, int(size), framed)[0], "seeds_n": len(g)}
        for name, x in (("overflow_loss_rate", overflow), ("disconnect_loss_rate", disconnect), ("loss_rate", total)):
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = loss_interval(np.asarray(x, float), level)
        row["meets_target"] = row["overflow_loss_rate"] <= max_loss
        rows.append(row)
    return pd.DataFrame(rows, columns=[c.name for c in SIZING]).astype({c.name: c.dtype for c in SIZING})


def smallest_meeting(table: pd.DataFrame, ok: np.ndarray, column: str = "buffer_size") -> Any:
    """Smallest value of ``column`` (rows ascending) such that it and every larger evaluated value are ok; None if none."""
    sizes = table[column].to_numpy()
    if not ok.size or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    first = bad[-1] + 1 if bad.size else 0
    return sizes[first].item()


def size_buffer(
    scenario: Scenario | str | Path | dict,
    max_loss: float,
    *,
    sizes: Iterable[int] | None = None,
    seeds: int | Iterable[int] = 5,
    client: Any = None,
    n_workers: int | None = None,
    level: float = 0.95,
    max_size: int = 10000,
    progress: bool = True,
) -> SizingResult:
    """Find the smallest ``gateway.buffer_size`` whose overflow loss is at most ``max_loss`` (a fraction).

    ``sizes``: evaluate exactly these sizes; default: search (a 1-2-5 ladder up to ``max_size``
    and the scenario's own size, then bisection). ``seeds``: a count or a list, the same at
    every size. ``client`` / ``n_workers``: where the runs go, as for :func:`sse_sim.sweep`.
    ``level``: confidence level of the bands. Returns a :class:`SizingResult` with the table,
    the recommendation and :meth:`SizingResult.report`.
    """
    sc = as_scenario(scenario)
    if isinstance(max_loss, bool) or not isinstance(max_loss, (int, float)) or not 0 <= max_loss < 1:
        raise SweepError(f"max_loss must be a loss fraction in [0, 1), e.g. 0.0001 for 0.01 %, got {max_loss!r}")
    if not isinstance(level, (int, float)) or not 0.5 <= level < 1:
        raise SweepError(f"level must be a confidence level in [0.5, 1), got {level!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or max_size < 1:
        raise SweepError(f"max_size must be a whole number >= 1, got {max_size!r}")
    seeds_ = seed_list(seeds)
    if sizes is not None:
        given = list(sizes)
        if not given or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in given):
            raise SweepError(f"sizes must be a non-empty list of whole numbers >= 1, got {given!r}")
        candidates = sorted({int(s) for s in given})
    else:
        candidates = sorted({s for s in LADDER if s <= max_size} | {max_size, min(int(sc.gateway.buffer_size), max_size)})
    cache: dict[int, list[dict[str, Any]]] = {}

    def evaluate(run: Runner, new_sizes: list[int]) -> None:
        todo = [s for s in new_sizes if s not in cache]
        if not todo:
            return
        points = {s: apply_point(sc, {"gateway.buffer_size": s}, "buffer_size") for s in todo}
        tasks = [(points[s], seed) for s in todo for seed in seeds_]
        results = run.run(tasks, desc=f"sizing {sc.name} ({len(todo)} size{'s' if len(todo) > 1 else ''})")
        for i, s in enumerate(todo):
            cache[s] = results[i * len(seeds_) : (i + 1) * len(seeds_)]

    def current_table() -> pd.DataFrame:
        order = sorted(cache)
        per = summaries_frame(["gateway.buffer_size"], [{"gateway.buffer_size": s} for s in order], seeds_, [r for s in order for r in cache[s]])
        return _table(per, sc, max_loss, level)

    def bisect(run: Runner, column: str) -> None:
        while True:
            t = current_table()
            ok = t[column].to_numpy() <= max_loss
            best = smallest_meeting(t, ok)
            if best is None:
                return
            below = t["buffer_size"].to_numpy()[t["buffer_size"].to_numpy() < best]
            if not below.size or below.max() == best - 1:
                return
            evaluate(run, [(int(below.max()) + best) // 2])

    with Runner(client=client, n_workers=n_workers, progress=progress) as run:
        evaluate(run, candidates)
        if sizes is None:
            bisect(run, "overflow_loss_rate")
            if len(seeds_) > 1:
                bisect(run, "overflow_loss_rate_ci_high")
    table = current_table()
    order = sorted(cache)
    per_seed = summaries_frame(["gateway.buffer_size"], [{"gateway.buffer_size": s} for s in order], seeds_, [r for s in order for r in cache[s]])
    notes = []
    if len(seeds_) == 1:
        notes.append("Note: one seed gives no confidence band; use seeds >= 2 to see how sure the recommendation is.")
    return SizingResult(
        scenario=sc,
        max_loss=float(max_loss),
        level=float(level),
        seeds=seeds_,
        table=table,
        per_seed=per_seed,
        buffer_size=smallest_meeting(table, table["overflow_loss_rate"].to_numpy() <= max_loss),
        confident_buffer_size=smallest_meeting(table, table["overflow_loss_rate_ci_high"].to_numpy() <= max_loss) if len(seeds_) > 1 else None,
        searched=sizes is None,
        notes=notes,
    )


__all__ = ["size_buffer", "SizingResult", "loss_interval", "smallest_meeting", "SIZING", "OVERFLOW_CAUSES", "DISCONNECT_CAUSES"]
