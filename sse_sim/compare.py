"""Simulator against a real run of the same workload: loss by cause and latency, with a statistical tolerance.

:func:`compare` runs one scenario slice through the simulator and through real mode
(:func:`~sse_sim.real.runner.run_real`) with the same seed, hence the same publishes, sessions,
drain and network samples, and tabulates each metric side by side.

Tolerance rule (a metric is *within* when ``|real - sim| <= tolerance``):

* **rates** (``loss_rate``, each ``loss_rate_<cause>``, and under ``stream`` / ``latest``
  delivery ``superseded_rate`` and ``replayed_rate``, the shares of attempts superseded and
  delivered by replay): ``z * sqrt(se_sim^2 + se_real^2) + 1 / attempts``. Losses are clustered (one burst overflows many events of one client; one
  outage loses a run of them), so the standard error is a cluster one: clusters are (seed,
  client, 1-second publish batch), ``se = sqrt(k / (k - 1) * sum (x_i - r n_i)^2) / N`` for the
  ratio estimator. The ``1 / attempts`` term is one attempt of rounding; a deterministic scenario
  has zero standard error, so its loss counts must agree to within one attempt. Under Redis's
  output-buffer limit on real Redis, ``+ lag_rate``: the real run measures how fast its node's
  subscriber really read while it had a backlog (:func:`reader_rate`) and how long its outage
  really lasted (the gateway's outages); where either was slower than the scenario says
  (``reader_rate_per_s``, ``resubscribe_s``), the simulator is run again at the measured
  figures and ``lag_rate`` is how far each rate moves (0 otherwise). A loaded machine's reader
  falls behind its plan and its resubscription comes late, which loses more events for real.
  With socket calibration (the default), ``+ hold_rate``: the real run measures what its
  sockets held at each overflow (:func:`~sse_sim.real.classify.socket_held`), which real TCP
  sizes by the segments it has seen, so it varies from run to run and burst to burst (one
  scenario's sockets held 19 to 45 events of 450 B). Each overflow episode gives two figures:
  what the sockets held at its last overflow (those events were lost at it) and what they came
  to hold before the client read again (a window that grows after the last overflow keeps more
  of what arrives later). Where a mean of either over the episodes differs from what the
  simulator's sockets hold (``clients.socket_buffer_bytes`` when the scenario counts bytes,
  else ``socket_buffer_events``), the simulator is run again holding it, and ``hold_rate`` is
  how far each rate moves, the larger of the two. The allowance is for the
  variation: when the simulator's sockets hold more or less than at any real overflow, there
  is none. Without calibration (``--no-calibrate``) the scenario's socket buffering is checked
  as given.
  With measured jitter (the default), ``+ slip_rate``: the simulator is run again with each
  row's drain longer by the drain slip the real client had on it (``drain_slip_s`` of
  :func:`~sse_sim.real.classify.jitter`, 0 for rows no client read), and ``slip_rate`` is how far
  each rate moves. A client process the scheduler holds off for 50 ms lets a queue fill that
  the simulator's on-time client keeps empty. Likewise ``+ arrival_rate`` (not under the
  output-buffer limit, whose reader ``lag_rate`` covers): the simulator is run again with each
  event reaching the gateway when it reached the real one, where that was later than its
  ``hop_latency`` (the earliest ``gateway_at`` of its rows); a loaded gateway that reads a
  burst slowly spreads it out, and slow clients drain some of it before the queue fills.
* **latency percentiles** (p50, p95, p99): ``z * sqrt(se_sim^2 + se_real^2) + latency_floor_s
  + jitter_q``, where each ``se`` is the distribution-free order-statistic one (half the width
  of the binomial index interval ``n q +- sqrt(n q (1 - q))`` mapped through the sorted sample)
  and ``latency_floor_s`` (default 10 ms) is a margin for what is not measured. ``jitter_q`` is
  the lateness the real run measured itself (``metadata["jitter"]``, see
  :func:`~sse_sim.real.classify.jitter`), which the simulator does not model:

  - once per row, ``D``: the 99th percentile of the reader delay (publish to the gateway's queue)
    beyond the simulator's 99th-percentile ``hop_latency``, plus the 99th percentile of the
    clients' lateness in delivering after the network latency;
  - per drain a row waited for, the drain slip (how much later than planned a client finished
    an event, mean ``mu`` and standard deviation ``sigma`` over the run): a row that waited
    behind ``n - 1`` events (``n`` drains ended between its arrival at the gateway and the end
    of its own, counted in the real run) is late by the sum of ``n`` slips, at most
    ``A(n) = max(n mu + z sigma sqrt(n), 0) + max_slip``: the sum of independent slips, plus
    the run's largest slip once, since one stall (a scheduler pause) delays every row queued
    behind it by its whole length;
  - ``jitter_q = D + Q_q(real) - Q_q(real - A(n))``: how far the q-quantile of the real
    latencies moves when each row's allowance is taken off.

  Without measured jitter (frames alone) ``jitter_q`` is 0.
* ``z`` defaults to 3.29 (two-sided 99.9 %): a dozen metrics are tested at once, so a looser level
  would flag a perfectly good simulator every few runs.

Redis's output-buffer limit (``redis.output_buffer``, real Redis only): unless the scenario sets
``kernel_buffer_bytes``, the simulator is run with the bytes the sockets between Redis and the
gateway's subscriber hold when Redis closes it, measured while data flows at the scenario's
reader rate (:func:`~sse_sim.real.sockbuf.subscriber_kernel_messages`);
the real runner caps the subscriber's reads at ``reader_rate_per_s``. The value used is in
``Comparison.kernel_buffer_bytes``.

Socket buffers: unless the scenario sets ``clients.socket_buffer_events`` or
``clients.socket_buffer_bytes``, the simulator is run with the value measured end to end for the workload's mean payload size and the real runner's
buffer settings (:func:`~sse_sim.real.sockbuf.gateway_socket_buffer_events`); the value used is
in ``Comparison.socket_buffer_events``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .engine import run_engine
from .outcomes import LOSS_CAUSES, OUTCOME_LABELS, Outcome
from .real.runner import prepare_scenario, run_real
from .real.sockbuf import gateway_socket_buffer_events, subscriber_kernel_messages
from .records import records_frame
from .results import SimulationResult
from .scenario import Scenario, as_scenario
from .simulation import simulate
from .tables import COMPARISON
from .workload import Workload

__all__ = ["compare", "Comparison", "COMPARISON", "arrived_workload", "comparison_table", "pool_jitter", "queue_depth", "reader_rate"]

LATENCY_METRICS = (("latency_p50_s", 0.50), ("latency_p95_s", 0.95), ("latency_p99_s", 0.99))
BATCH_S = 1.0


@dataclass
class Comparison:
    """Simulator and real run side by side: the table, the verdict, and both results."""

    table: pd.DataFrame
    sim: SimulationResult
    real: SimulationResult
    scenario: Scenario
    backend: str
    seeds: tuple[int, ...]
    socket_buffer_events: int
    kernel_buffer_bytes: int = 0
    """The simulator's ``redis.output_buffer.kernel_buffer_bytes`` (given or measured; 0 without a limit)."""
    jitter: dict[str, dict[str, float]] | None = None
    """The real runs' measured lateness, pooled over seeds (:func:`pool_jitter`); None when the latency tolerance did not use it."""
    reader_lag: dict[str, float] | None = None
    """Under Redis's output-buffer limit on real Redis: the real subscriber's measured ``reader_rate_per_s`` and outage ``resubscribe_s`` (the mean), and the scenario's; None otherwise."""
    lag_rate: dict[str, float] = field(default_factory=dict)
    """Per rate metric, what the real subscriber's measured lag added to its tolerance (module docstring); empty when nothing."""
    socket_hold: dict[str, float] | None = None
    """With socket calibration, when the real sockets overflowed: the mean they held per overflow episode at its last overflow (``events``, ``bytes``, over ``episodes``) and before the client read again (``peak_events``, ``peak_bytes``), the least (at a last overflow) and most (before a read) (``min_events``, ``max_events``, ``min_bytes``, ``max_bytes``), what the simulator's sockets hold (``sim_events`` or ``sim_bytes``), and ``allowed`` (1.0 when that is within the measured range, so ``hold_rate`` applies); None otherwise."""
    hold_rate: dict[str, float] = field(default_factory=dict)
    """Per rate metric, what the real sockets' measured holding added to its tolerance (module docstring); empty when nothing."""
    slip_rate: dict[str, float] = field(default_factory=dict)
    """Per rate metric, what the real clients' measured drain slips added to its tolerance (module docstring); empty when nothing."""
    arrival_rate: dict[str, float] = field(default_factory=dict)
    """Per rate metric, what the real gateway's late reads of events added to its tolerance (module docstring); empty when nothing."""
    sims: list[SimulationResult] = field(default_factory=list, repr=False)
    reals: list[SimulationResult] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when every metric is within tolerance."""
        return bool(self.table["within"].all())

    @property
    def failed(self) -> list[str]:
        """Names of the metrics outside tolerance."""
        return [str(m) for m in self.table.loc[~self.table["within"], "metric"]]

    def format(self) -> str:
        """The table as aligned text: rates in percent, latencies in ms, one verdict line."""
        head = (
            f"{self.scenario.name}: sim vs real ({self.backend}), seeds {', '.join(map(str, self.seeds))}, "
            f"{int(self.sim.records.shape[0])} attempts, socket_buffer_events {self.socket_buffer_events}"
            + (f", kernel_buffer_bytes {self.kernel_buffer_bytes:,}" if self.kernel_buffer_bytes else "")
        )
        lines = [head, f"  {'metric':<34} {'sim':>12} {'real':>12} {'diff':>12} {'tolerance':>12}  within"]
        for row in self.table.itertuples(index=False):
            fmt = _fmt_ms if row.metric.startswith("latency") else _fmt_pct
            lines.append(
                f"  {row.metric:<34} {fmt(row.sim):>12} {fmt(row.real):>12} {fmt(row.diff):>12} "
                f"{fmt(row.tolerance):>12}  {'yes' if row.within else 'NO'}"
            )
        if self.jitter is not None:
            slip, reader, late = (self.jitter[k] for k in ("drain_slip_s", "reader_delay_s", "receive_late_s"))
            lines.append(
                f"  real-run jitter: drain slip mean {slip['mean'] * 1000:.2f} ms, sd {slip['sd'] * 1000:.2f} ms, "
                f"p99 {slip['p99'] * 1000:.2f} ms ({slip['n']} events); reader delay p99 {reader['p99'] * 1000:.2f} ms; "
                f"delivery lateness p99 {late['p99'] * 1000:.2f} ms"
            )
        if self.slip_rate:
            lines.append(
                "  real-run drain slips replayed in the simulator move the rates by up to "
                f"{max(self.slip_rate.values()) * 100:.4f}%: rates' tolerance + slip_rate"
            )
        if self.arrival_rate:
            lines.append(
                "  real-run gateway arrivals replayed in the simulator move the rates by up to "
                f"{max(self.arrival_rate.values()) * 100:.4f}%: rates' tolerance + arrival_rate"
            )
        if self.reader_lag is not None:
            lag = self.reader_lag
            lines.append(
                f"  real-run Redis subscriber: read {lag['reader_rate_per_s']:,.0f}/s while behind (scenario "
                f"{lag['scenario_reader_rate_per_s']:,.0f}/s), outage {lag['resubscribe_s'] * 1000:.0f} ms (scenario "
                f"{lag['scenario_resubscribe_s'] * 1000:.0f} ms): rates' tolerance + lag_rate"
            )
        if self.socket_hold is not None:
            hold = self.socket_hold
            sim_says = (
                f"{hold['sim_bytes']:,.0f} B" if "sim_bytes" in hold else f"{hold['sim_events']:.0f} events"
            )
            lines.append(
                f"  real-run sockets at overflow: held {hold['events']:.1f} events, {hold['bytes']:,.0f} B on average "
                f"at the last overflow, {hold['peak_events']:.1f} events, {hold['peak_bytes']:,.0f} B before the client read again "
                f"({hold['min_bytes']:,.0f}-{hold['max_bytes']:,.0f} B over {hold['episodes']:.0f} episodes); "
                f"the simulator's hold {sim_says}"
                + (": rates' tolerance + hold_rate" if self.hold_rate else "")
                + ("" if hold["allowed"] else ", outside what the real sockets held: no allowance")
            )
        lines.append("AGREE" if self.ok else "DISAGREE: " + ", ".join(self.failed))
        return "\n".join(lines)


def _fmt_pct(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v * 100:.4f}%"


def _fmt_ms(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v * 1000:.2f} ms"


def _cluster_se(records: pd.DataFrame, hit: np.ndarray) -> float:
    """Cluster standard error of the share of rows where ``hit`` is true."""
    key = (
        records["_seed"].to_numpy().astype(np.int64) * 10**9
        + records["client_id"].to_numpy().astype(np.int64) * 10**4
        + np.floor(records["published_at"].to_numpy() / BATCH_S).astype(np.int64)
    )
    _, inverse = np.unique(key, return_inverse=True)
    n_i = np.bincount(inverse).astype(np.float64)
    x_i = np.bincount(inverse, weights=hit.astype(np.float64))
    k = n_i.size
    total = n_i.sum()
    if k < 2 or total == 0:
        return 0.0
    r = x_i.sum() / total
    return float(math.sqrt(k / (k - 1) * np.sum((x_i - r * n_i) ** 2)) / total)


def _quantile_se(values: np.ndarray, q: float) -> float:
    """Order-statistic standard error of the q-quantile of a sample."""
    n = values.size
    if n < 2:
        return 0.0
    s = np.sort(values)
    half = math.sqrt(n * q * (1 - q))
    lo = int(max(math.floor(n * q - half), 0))
    hi = int(min(math.ceil(n * q + half), n - 1))
    return float((s[hi] - s[lo]) / 2)


def pool_jitter(jitters: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """One summary of several real runs' ``metadata["jitter"]``: counts, means and standard deviations pooled; percentiles and maxima the largest."""
    out: dict[str, dict[str, float]] = {}
    for key in jitters[0]:
        parts = [j[key] for j in jitters if j[key]["n"] > 0]
        n = sum(int(p["n"]) for p in parts)
        if n == 0:
            out[key] = dict(jitters[0][key])
            continue
        mean = sum(p["n"] * p["mean"] for p in parts) / n
        within = sum((p["n"] - 1) * p["sd"] ** 2 for p in parts)
        between = sum(p["n"] * (p["mean"] - mean) ** 2 for p in parts)
        pooled = {"n": n, "mean": mean, "sd": math.sqrt((within + between) / (n - 1)) if n > 1 else 0.0}
        pooled.update({q: max(p[q] for p in parts) for q in ("p50", "p90", "p99", "max")})
        out[key] = pooled
    return out


def queue_depth(records: pd.DataFrame) -> np.ndarray:
    """Per row, how many drains its latency spans: the client's reads that ended after it reached the gateway, up to and including its own (NaN unless delivered).

    Rows are grouped by (``_seed``, ``client_id``); a row that found its client idle counts 1.
    """
    depth = np.full(len(records), np.nan)
    left = records["left_at"].to_numpy(dtype=np.float64)
    arrived = records["gateway_at"].to_numpy(dtype=np.float64)
    ok = (records["outcome"].cat.codes.to_numpy() == Outcome.DELIVERED) & np.isfinite(left) & np.isfinite(arrived)
    if not ok.any():
        return depth
    seed = records["_seed"].to_numpy()[ok] if "_seed" in records.columns else np.zeros(int(ok.sum()), np.int64)
    _, group = np.unique(np.stack([seed.astype(np.int64), records["client_id"].to_numpy()[ok].astype(np.int64)]), axis=1, return_inverse=True)
    left, arrived = left[ok], np.fmin(arrived[ok], left[ok])
    # one sorted axis for every group: each group's instants shifted past the previous group's
    span = float(left.max() - arrived.min()) + 1.0
    base = group.reshape(-1).astype(np.float64) * span - float(arrived.min())
    ends = np.sort(base + left)
    depth[ok] = np.searchsorted(ends, base + left, "right") - np.searchsorted(ends, base + arrived, "right")
    return depth


def reader_rate(records: pd.DataFrame) -> tuple[float, int]:
    """The rate a node's subscriber read at while it had a backlog, from records: messages per second and how many reads it rests on.

    Per seed and node, each event's read instant is its earliest ``gateway_at``; a read counts
    when its event was published before the read ahead of it, so the reader went from one to
    the next without waiting for Redis. The rate is those reads over the time between them.
    """
    keep = np.isfinite(records["gateway_at"].to_numpy(dtype=np.float64))
    cols = [c for c in ("_seed", "node") if c in records.columns]
    first = records.loc[keep, [*cols, "event_id", "gateway_at", "published_at"]].groupby([*cols, "event_id"], observed=True).min()
    n, span = 0, 0.0
    groups = first.groupby(level=cols, observed=True) if cols else [(None, first)]
    for _, g in groups:
        g = g.sort_values("gateway_at")
        read = g["gateway_at"].to_numpy(dtype=np.float64)
        published = g["published_at"].to_numpy(dtype=np.float64)
        busy = published[1:] <= read[:-1]
        n += int(busy.sum())
        span += float(np.diff(read)[busy].sum())
    return (n / span if span > 0 else math.nan), n


def _reader_lag(
    sim_sc: Scenario, seeds: list[int], sim_frame: pd.DataFrame, real_frame: pd.DataFrame, reals: list[SimulationResult]
) -> tuple[dict[str, float], dict[str, float]]:
    """The real subscriber's measured reading rate and outage, and ``lag_rate`` of the tolerance rule (module docstring)."""
    ob = sim_sc.redis.output_buffer
    assert ob is not None
    measured, _ = reader_rate(real_frame)
    durations = [
        float(o["duration_s"]) for r in reals for m in r.metadata.get("gateway_metrics", [])
        for o in m.get("outages", []) if o.get("duration_s") is not None
    ]
    outage = float(np.mean(durations)) if durations else float(ob.resubscribe_s)
    lag = {
        "reader_rate_per_s": measured if math.isfinite(measured) else float(ob.reader_rate_per_s),
        "scenario_reader_rate_per_s": float(ob.reader_rate_per_s),
        "resubscribe_s": outage,
        "scenario_resubscribe_s": float(ob.resubscribe_s),
    }
    # lateness is one-sided: a reader faster than planned or a quicker outage widens nothing
    slower = {}
    if lag["reader_rate_per_s"] < ob.reader_rate_per_s:
        slower["redis.output_buffer.reader_rate_per_s"] = lag["reader_rate_per_s"]
    if outage > ob.resubscribe_s:
        slower["redis.output_buffer.resubscribe_s"] = outage
    if not slower:
        return lag, {}
    return lag, _moved_rates(sim_sc, slower, seeds, sim_frame)


def _moved_rates(sim_sc: Scenario, overrides: dict[str, Any], seeds: list[int], sim_frame: pd.DataFrame) -> dict[str, float]:
    """Per rate metric, how far the simulator's value moves when run again with ``overrides`` (an allowance of the tolerance rule)."""
    frame = pd.concat([simulate(sim_sc.with_overrides(overrides), s).records.assign(_seed=s) for s in seeds], ignore_index=True)
    return _rate_shift(sim_frame, frame)


def _rate_shift(sim_frame: pd.DataFrame, frame: pd.DataFrame) -> dict[str, float]:
    """Per rate metric, how far ``frame``'s value is from ``sim_frame``'s (the nonzero ones)."""
    moved = comparison_table(sim_frame, frame, z=0.0, latency_floor_s=0.0)
    rates = moved[~moved["metric"].str.startswith("latency")]
    return {str(m): abs(float(d)) for m, d in zip(rates["metric"], rates["diff"], strict=True) if math.isfinite(d) and d != 0}


def _replayed_rates(
    sim_sc: Scenario,
    sims: list[SimulationResult],
    reals: list[SimulationResult],
    sim_frame: pd.DataFrame,
    rerun: Callable[[Workload, SimulationResult, SimulationResult], tuple[Workload, dict[str, Any]] | None],
) -> dict[str, float]:
    """Per rate metric, how far the simulator moves when each seed's engine run is redone with what its real run measured.

    ``rerun(workload, sim, real)`` gives the workload to run and ``run_engine``'s extra keyword
    arguments, or None when the real run did not measure what is needed (no allowance then).
    """
    frames = []
    for sim, real in zip(sims, reals, strict=True):
        if sim.workload is None:
            return {}
        how = rerun(sim.workload, sim, real)
        if how is None:
            return {}
        w, extra = how
        frames.append(records_frame(w, run_engine(sim_sc, w, **extra)).assign(_seed=sim.seed))
    return _rate_shift(sim_frame, pd.concat(frames, ignore_index=True))


def _arrival_rate(sim_sc: Scenario, sims: list[SimulationResult], reals: list[SimulationResult], sim_frame: pd.DataFrame) -> dict[str, float]:
    """``arrival_rate`` of the tolerance rule (module docstring): how far the rates move when events reach the simulator's gateway as late as they reached the real one."""
    return _replayed_rates(sim_sc, sims, reals, sim_frame, lambda w, _sim, real: (arrived_workload(w, real.records), {}))


def arrived_workload(w: Workload, real_records: pd.DataFrame) -> Workload:
    """``w`` with each event published late enough to reach the gateway when the real run's gateway had it (never earlier than planned).

    The arrival is an event's earliest ``gateway_at`` over its rows that were not replayed (a
    replay's is when the history was read); the publish instant is that less its
    ``hop_latency``. Events the real gateway never had keep their instant.
    """
    live = real_records[~real_records["replayed"].to_numpy(dtype=bool)]
    arrived = live.groupby("event_id")["gateway_at"].min().dropna()
    e = arrived.index.to_numpy(dtype=np.int64)
    published = w.published_at.copy()
    published[e] = np.maximum(published[e], arrived.to_numpy(dtype=np.float64) - w.hop_latency_s[e])
    return dataclasses.replace(w, published_at=published)


def _slip_rate(sim_sc: Scenario, sims: list[SimulationResult], reals: list[SimulationResult], sim_frame: pd.DataFrame) -> dict[str, float]:
    """``slip_rate`` of the tolerance rule (module docstring): how far the rates move when the simulator's clients drain as late as the real ones did."""

    def slipped(w: Workload, sim: SimulationResult, real: SimulationResult) -> tuple[Workload, dict[str, Any]] | None:
        slip = real.metadata.get("drain_slip_by_row")
        if slip is None or len(slip) != len(sim.records):
            return None
        return w, {"drain_extra": np.nan_to_num(np.asarray(slip, np.float64), nan=0.0)}

    return _replayed_rates(sim_sc, sims, reals, sim_frame, slipped)


def _socket_hold(
    sim_sc: Scenario, seeds: list[int], sim_frame: pd.DataFrame, reals: list[SimulationResult]
) -> tuple[dict[str, float] | None, dict[str, float]]:
    """What the real sockets held at overflow, pooled over the runs, and ``hold_rate`` of the tolerance rule (module docstring)."""
    held = [r.metadata.get("socket_held", {}) for r in reals]

    def pooled(key: str) -> list[float]:
        return [x for h in held for x in h.get(key, [])]

    events, held_bytes, peak_events, peak_bytes = (pooled(k) for k in ("events", "bytes", "peak_events", "peak_bytes"))
    if not events:
        return None, {}
    hold = {
        "episodes": float(len(events)),
        "events": float(np.mean(events)),
        "bytes": float(np.mean(held_bytes)),
        "peak_events": float(np.mean(peak_events)),
        "peak_bytes": float(np.mean(peak_bytes)),
        "min_events": float(np.min(events)),
        "max_events": float(np.max(peak_events)),
        "min_bytes": float(np.min(held_bytes)),
        "max_bytes": float(np.max(peak_bytes)),
    }
    cl = sim_sc.clients
    if cl.socket_buffer_bytes is not None:
        hold["sim_bytes"] = float(cl.socket_buffer_bytes)
        # A cap of B bytes holds the whole events that fit, on average half an event short of
        # B; the measured means are of whole events, so the cap that holds one is half an event more.
        half_event = 0.5 * hold["bytes"] / hold["events"] if hold["events"] > 0 else 0.0
        key, current = "clients.socket_buffer_bytes", cl.socket_buffer_bytes
        measured = {int(round(hold[k] + half_event)) for k in ("bytes", "peak_bytes")}
        inside = hold["min_bytes"] <= current <= hold["max_bytes"] + 2 * half_event
    else:
        hold["sim_events"] = float(cl.socket_buffer_events)
        key, current = "clients.socket_buffer_events", cl.socket_buffer_events
        measured = {int(round(hold[k])) for k in ("events", "peak_events")}
        inside = hold["min_events"] <= current <= hold["max_events"]
    # The allowance is for how real holding varies, not for a wrong setting: a simulator whose
    # sockets hold more or less than any overflow in the real runs found is checked as it is.
    hold["allowed"] = float(inside)
    if not inside:
        return hold, {}
    # The overflows were lost at what the sockets held at the last one, and what arrived later
    # was kept by what they came to hold before the client read again: the simulator, whose
    # holding is fixed, is run at each mean and the rates may move as far as either takes them.
    allowance: dict[str, float] = {}
    for m in sorted(measured - {current}):
        for metric, d in _moved_rates(sim_sc, {key: m}, seeds, sim_frame).items():
            allowance[metric] = max(allowance.get(metric, 0.0), d)
    return hold, allowance


def _jitter_allowance(sim: pd.DataFrame, real: pd.DataFrame, jitter: dict[str, dict[str, float]], q: float, z: float) -> float:
    """``jitter_q`` of the tolerance rule (module docstring): the measured lateness a real q-quantile may carry."""
    sim_hop = (sim["gateway_at"] - sim["published_at"]).to_numpy(dtype=np.float64)
    sim_hop = sim_hop[np.isfinite(sim_hop)]
    hop_p99 = float(np.quantile(sim_hop, 0.99)) if sim_hop.size else 0.0
    once = max(jitter["reader_delay_s"]["p99"] - hop_p99, 0.0) + max(jitter["receive_late_s"]["p99"], 0.0)
    lat = real["latency_s"].to_numpy(dtype=np.float64)
    n = queue_depth(real)
    keep = np.isfinite(lat) & np.isfinite(n)
    if not keep.any():
        return once
    lat, n = lat[keep], n[keep]
    slip = jitter["drain_slip_s"]
    # one stall (a scheduler pause) shifts every row queued behind it by its whole length, which
    # the sum-of-independent-slips bound does not cover: the run's largest slip is added once
    allowance = np.maximum(n * slip["mean"] + z * slip["sd"] * np.sqrt(n), 0.0) + max(slip["max"], 0.0)
    return once + float(np.quantile(lat, q) - np.quantile(lat - allowance, q))


def comparison_table(
    sim: pd.DataFrame,
    real: pd.DataFrame,
    *,
    z: float = 3.29,
    latency_floor_s: float = 0.010,
    jitter: dict[str, dict[str, float]] | None = None,
    lag_rate: dict[str, float] | None = None,
    hold_rate: dict[str, float] | None = None,
) -> pd.DataFrame:
    """The comparison table of two record frames of the same workload (columns: COMPARISON).

    Both frames may hold several seeds, told apart by a ``_seed`` column (absent: one seed).
    ``jitter``: the real run's measured lateness (``metadata["jitter"]``, or :func:`pool_jitter`
    of several), which widens the latency tolerances as the module docstring says; None: the
    floor alone. ``lag_rate`` and ``hold_rate``: per rate metric, what the real subscriber's
    measured lag and the real sockets' measured holding add to its tolerance (module docstring).
    """
    frames = []
    for f in (sim, real):
        if "_seed" not in f.columns:
            f = f.assign(_seed=0)
        frames.append(f)
    sim, real = frames
    rows: list[tuple[str, float, float, float]] = []
    one = 1.0 / max(len(sim), 1)
    for name, s_hit, r_hit in _rate_metrics(sim, real):
        s_val = float(s_hit.mean()) if len(s_hit) else math.nan
        r_val = float(r_hit.mean()) if len(r_hit) else math.nan
        se = math.hypot(_cluster_se(sim, s_hit), _cluster_se(real, r_hit))
        allowance = (lag_rate or {}).get(name, 0.0) + (hold_rate or {}).get(name, 0.0)
        rows.append((name, s_val, r_val, z * se + one + allowance))
    s_lat = sim["latency_s"].dropna().to_numpy()
    r_lat = real["latency_s"].dropna().to_numpy()
    for name, q in LATENCY_METRICS:
        s_val = float(np.quantile(s_lat, q)) if s_lat.size else math.nan
        r_val = float(np.quantile(r_lat, q)) if r_lat.size else math.nan
        se = math.hypot(_quantile_se(s_lat, q), _quantile_se(r_lat, q))
        measured = _jitter_allowance(sim, real, jitter, q, z) if jitter is not None else 0.0
        rows.append((name, s_val, r_val, z * se + latency_floor_s + measured))
    table = pd.DataFrame(rows, columns=["metric", "sim", "real", "tolerance"])
    table["diff"] = table["real"] - table["sim"]
    both_nan = table["sim"].isna() & table["real"].isna()
    # a difference of exactly the tolerance (one attempt at the floor) is within: 0.48 - 0.47 is
    # 0.010000000000000009 in floating point, which a plain <= would count as outside
    table["within"] = both_nan | (table["diff"].abs() <= table["tolerance"] * (1 + 1e-9))
    table = table[[c.name for c in COMPARISON]].astype({"metric": object, "within": bool})
    return table.reset_index(drop=True)


def _rate_metrics(sim: pd.DataFrame, real: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each rate metric's name and which rows count, in the simulator's and the real frame.

    ``superseded`` is not a loss (the client holds the newer value), so ``loss_rate`` counts the
    loss causes only; ``superseded_rate`` and ``replayed_rate`` (delivered by replay) come after
    the causes (zero on both sides unless some type is under ``stream`` or ``latest``).
    """
    codes = [f["outcome"].cat.codes.to_numpy() for f in (sim, real)]
    loss = [OUTCOME_LABELS.index(c) for c in LOSS_CAUSES]
    out = [("loss_rate", *(np.isin(c, loss) for c in codes))]
    out += [(f"loss_rate_{cause}", *(c == OUTCOME_LABELS.index(cause) for c in codes)) for cause in LOSS_CAUSES]
    superseded = [c == Outcome.SUPERSEDED for c in codes]
    replayed = [f["replayed"].to_numpy(dtype=bool) & (c == Outcome.DELIVERED) for f, c in zip((sim, real), codes, strict=True)]
    out += [("superseded_rate", *superseded), ("replayed_rate", *replayed)]
    return out


def _mean_payload_bytes(result: SimulationResult) -> int:
    sizes = result.records["payload_bytes"].to_numpy()
    return int(round(float(sizes.mean()))) if sizes.size else 300


def compare(
    scenario: Scenario | str | Path | dict,
    *,
    backend: str = "fakeredis",
    seed: int = 0,
    redis_url: str | None = None,
    duration_s: float | None = None,
    max_players: int | None = None,
    start_s: float = 0.0,
    seeds: int | list[int] | tuple[int, ...] | None = None,
    z: float = 3.29,
    latency_floor_s: float = 0.010,
    calibrate_socket_buffers: bool = True,
    measured_jitter: bool = True,
    **run_options: Any,
) -> Comparison:
    """Run the simulator and real mode on the same slice and seed(s); tabulate them with tolerances.

    ``seeds``: an int n (seeds ``seed .. seed + n - 1``) or a list; several seeds pool their
    records, which narrows the tolerance on random scenarios. ``measured_jitter``: widen the
    latency tolerances by the lateness the real runs measured (False: the fixed floor alone).
    ``run_options`` go to :func:`~sse_sim.real.runner.run_real` (for example ``time_scale``,
    ``send_buffer_bytes``).
    """
    sc, _ = prepare_scenario(as_scenario(scenario), duration_s=duration_s, max_players=max_players, start_s=start_s)
    if seeds is None:
        seed_list = [int(seed)]
    elif isinstance(seeds, int):
        seed_list = list(range(int(seed), int(seed) + seeds))
    else:
        seed_list = [int(s) for s in seeds]
    socket_events = int(sc.clients.socket_buffer_events)

    @lru_cache(maxsize=1)
    def mean_payload() -> int:
        # both calibrations take the workload's mean payload: one simulation of the first seed
        return _mean_payload_bytes(simulate(sc, seed_list[0]))

    # a scenario that counts its sockets in bytes has said what they hold: no count in events on top
    if calibrate_socket_buffers and socket_events == 0 and sc.clients.socket_buffer_bytes is None:
        socket_events = gateway_socket_buffer_events(
            mean_payload(),
            backend=backend,
            redis_url=redis_url,
            send_buffer_bytes=run_options.get("send_buffer_bytes", 1),
            recv_buffer_bytes=run_options.get("recv_buffer_bytes", 8192),
            buffer_size=sc.gateway.buffer_size,
        )
        sim_sc = sc.with_overrides({"clients.socket_buffer_events": socket_events})
    else:
        sim_sc = sc
    ob = sc.redis.output_buffer
    kernel_bytes = int(ob.kernel_buffer_bytes) if ob is not None else 0
    if calibrate_socket_buffers and backend == "redis" and ob is not None and kernel_bytes == 0:
        # Only real Redis enforces the limit. It counts what it still holds, not what has left
        # it for the sockets to the gateway; those messages, measured here as Redis closes a
        # subscriber reading at the scenario's rate, are the simulator's kernel_buffer_bytes.
        payload = mean_payload()
        held = subscriber_kernel_messages(
            payload,
            ob.reader_rate_per_s / float(run_options.get("time_scale", 1.0)),
            ob.hard_limit_bytes,
            redis_url=redis_url,
        )
        kernel_bytes = int(round(held * (payload + ob.overhead_bytes)))
        sim_sc = sim_sc.with_overrides({"redis.output_buffer.kernel_buffer_bytes": kernel_bytes})
    sims, reals = [], []
    for s in seed_list:
        reals.append(run_real(sc, s, backend=backend, redis_url=redis_url, **run_options))
        sims.append(simulate(sim_sc, s))
    sim_frame = pd.concat([r.records.assign(_seed=s) for r, s in zip(sims, seed_list, strict=True)], ignore_index=True)
    real_frame = pd.concat([r.records.assign(_seed=s) for r, s in zip(reals, seed_list, strict=True)], ignore_index=True)
    jitter = pool_jitter([r.metadata["jitter"] for r in reals]) if measured_jitter else None
    lag = lag_rate = None
    if backend == "redis" and ob is not None and measured_jitter:
        lag, lag_rate = _reader_lag(sim_sc, seed_list, sim_frame, real_frame, reals)
    hold, hold_rate = _socket_hold(sim_sc, seed_list, sim_frame, reals) if calibrate_socket_buffers else (None, {})
    slip_rate = _slip_rate(sim_sc, sims, reals, sim_frame) if measured_jitter else {}
    # under the output-buffer limit the node's reader is simulated, and lag_rate measures it
    arrival_rate = _arrival_rate(sim_sc, sims, reals, sim_frame) if measured_jitter and ob is None else {}
    parts = (hold_rate, slip_rate, arrival_rate)
    allowance = {m: sum(p.get(m, 0.0) for p in parts) for m in set().union(*parts)}
    table = comparison_table(
        sim_frame, real_frame, z=z, latency_floor_s=latency_floor_s, jitter=jitter, lag_rate=lag_rate, hold_rate=allowance
    )
    return Comparison(
        table=table,
        sim=sims[0],
        real=reals[0],
        scenario=sc,
        backend=backend,
        seeds=tuple(seed_list),
        socket_buffer_events=socket_events,
        kernel_buffer_bytes=kernel_bytes,
        jitter=jitter,
        reader_lag=lag,
        lag_rate=lag_rate or {},
        socket_hold=hold,
        hold_rate=hold_rate,
        slip_rate=slip_rate,
        arrival_rate=arrival_rate,
        sims=sims,
        reals=reals,
    )
