"""Fitting a scenario to captured traffic: rates, their spread over players, bursts, a daily cycle and payload sizes.

``fit_trace(trace)`` takes a capture (see :mod:`sse_sim.real.capture`: ``received_at``,
``brand_id``, ``player_id``, ``event_type``, ``payload_bytes``) and returns a :class:`Fit`: the
scenario as a dict, the payload samples it refers to, and a goodness-of-fit table. Per event type:

* **bursts**: runs of one player's events closer together than a gap found in the data (the
  largest gap, on a 1 ms … 10 s ladder, below which the share of gaps is at least ten times
  what a Poisson stream of the same rate would give) become a ``burst`` publisher: the median
  size and spacing, and the period that gives the observed number of bursts;
* **the rest** becomes a ``poisson`` publisher at the mean rate per player, with
  ``activity_sigma`` from the spread of counts over players (a Poisson-lognormal fitted by
  moments: Var = m + m² (e^σ² − 1)), and a ``diurnal`` cycle when the trace spans 2 h or more
  (a cosine of period 24 h fitted to hourly counts by least squares);
* **payload sizes**: an ``empirical`` distribution of the captured sizes.

``replay_trace(trace)`` instead writes the trace itself as a ``trace`` publisher, to replay it
exactly. Players are numbered per brand in order of first appearance; a population holds every
brand with the largest number of players seen in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Gaps tried as the burst threshold, seconds.
GAP_LADDER: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: How many times more short gaps than a Poisson stream gives count as bursts.
BURST_EXCESS = 10.0
#: Shortest span, seconds, over which a daily cycle is fitted.
DIURNAL_MIN_SPAN_S = 2 * 3600.0

TRACE_NEEDS = ("received_at", "brand_id", "player_id", "event_type", "payload_bytes")


class FitError(ValueError):
    """The trace cannot be fitted: a column is missing, or it holds no events."""


@dataclass
class Fit:
    """A fitted (or replaying) scenario: the dict to write as YAML, its data files, and how well it fits."""

    scenario: dict[str, Any]
    files: dict[str, pd.DataFrame]
    """Data files the scenario names (relative path -> frame), to write next to it."""
    report: pd.DataFrame
    """One row per event type: what was measured and what the scenario says."""
    notes: list[str] = field(default_factory=list)


def _check(trace: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in TRACE_NEEDS if c not in trace.columns]
    if missing:
        raise FitError(f"the trace lacks column(s) {', '.join(missing)} (a capture has {', '.join(TRACE_NEEDS)})")
    if trace.empty:
        raise FitError("the trace holds no events")
    t = trace.sort_values("received_at", kind="stable").reset_index(drop=True)
    if not float(t["received_at"].iloc[0]) >= 0:
        raise FitError("received_at must be seconds since the capture started (>= 0)")
    return t


def _population(t: pd.DataFrame, players: int | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """The population holding every (brand, player) seen, and each row's player index in it.

    ``players`` sets the players per brand (at least the most seen in one brand).
    """
    brands = sorted(int(b) for b in t["brand_id"].unique())
    rank = t.groupby("brand_id")["player_id"].transform(lambda s: pd.factorize(s)[0]).to_numpy()
    seen = int(t.groupby("brand_id")["player_id"].nunique().max())
    if players is not None and players < seen:
        raise FitError(f"players={players} is fewer than the {seen} players seen in one brand")
    per_brand = seen if players is None else int(players)
    brand_index = t["brand_id"].map({b: i for i, b in enumerate(brands)}).to_numpy()
    return {"brand_ids": brands, "players_per_brand": per_brand}, brand_index * per_brand + rank


def _duration(t: pd.DataFrame) -> float:
    last = float(t["received_at"].iloc[-1])
    return max(last * 1.0001, 1.0)


def _burst_gap(times: np.ndarray, players: np.ndarray, span: float) -> float | None:
    """The burst threshold: the largest ladder gap with >= BURST_EXCESS times the Poisson share of gaps below it.

    The Poisson share is taken at each player's own rate, so a player who is merely busy (many
    events, so many short gaps) does not read as bursting.
    """
    order = np.lexsort((times, players))
    ps = players[order]
    same = ps[1:] == ps[:-1]
    gaps = np.diff(times[order])[same]
    if gaps.size < 10:
        return None
    own_rate = (np.bincount(players) / span)[ps[1:][same]]
    found = None
    for g in GAP_LADDER:
        observed = float((gaps < g).mean())
        poisson = float((1.0 - np.exp(-own_rate * g)).mean())
        if observed >= BURST_EXCESS * poisson and observed > 0.01:
            found = g
    return found


def _diurnal(times: np.ndarray, span: float) -> dict[str, float] | None:
    if span < DIURNAL_MIN_SPAN_S:
        return None
    hours = np.floor(times / 3600.0)
    counts = np.bincount(hours.astype(np.int64)).astype(float)
    centre = (np.arange(counts.size) + 0.5) * 3600.0
    w = 2 * np.pi * centre / 86400.0
    design = np.column_stack([np.ones_like(w), np.cos(w), np.sin(w)])
    (a, b, c), *_ = np.linalg.lstsq(design, counts, rcond=None)
    if a <= 0:
        return None
    amplitude = float(min(np.hypot(b, c) / a, 1.0))
    if amplitude < 0.05:
        return None
    peak = float((np.arctan2(c, b) / (2 * np.pi) * 86400.0) % 86400.0)
    return {"amplitude": round(amplitude, 4), "period_s": 86400.0, "peak_at_s": round(peak, 1)}


def _activity_sigma(counts: np.ndarray) -> float:
    m = float(counts.mean())
    v = float(counts.var(ddof=1)) if counts.size > 1 else 0.0
    if m <= 0 or v <= m:
        return 0.0
    return float(min(np.sqrt(np.log1p((v - m) / (m * m))), 5.0))


def fit_trace(trace: pd.DataFrame, *, name: str = "fitted", players: int | None = None) -> Fit:
    """A scenario fitted to a captured trace (see the module docstring for the rules).

    ``players``: players per brand, when the population is known to be larger than the
    players seen (a player that published nothing in the trace is not in it).
    """
    t = _check(trace)
    population, index = _population(t, players)
    n_players = len(population["brand_ids"]) * population["players_per_brand"]
    span = _duration(t)
    publishers: list[dict[str, Any]] = []
    files: dict[str, pd.DataFrame] = {}
    rows = []
    notes: list[str] = []
    for event_type, part in t.groupby("event_type", sort=True):
        times = part["received_at"].to_numpy(float)
        who = index[part.index.to_numpy()]
        sizes = part["payload_bytes"].to_numpy(int)
        size_file = f"payload_{event_type}.csv"
        files[size_file] = pd.DataFrame({"payload_bytes": sizes})
        payload = {"kind": "empirical", "file": size_file, "column": "payload_bytes"}
        rate = times.size / (n_players * span)
        gap = _burst_gap(times, who, span)
        in_burst = np.zeros(times.size, bool)
        burst_row: dict[str, Any] = {}
        if gap is not None:
            order = np.lexsort((times, who))
            ts, ps = times[order], who[order]
            close = np.concatenate(([False], (ps[1:] == ps[:-1]) & (np.diff(ts) < gap)))
            starts = ~close
            run_id = np.cumsum(starts) - 1
            run_size = np.bincount(run_id)
            member = run_size[run_id] >= 2
            in_burst[order[member]] = True
            sizes_of_bursts = run_size[run_size >= 2]
            within = np.diff(ts)[close[1:]]
            n_bursts = int(sizes_of_bursts.size)
            if n_bursts:
                publishers.append(
                    {
                        "kind": "burst",
                        "event_type": str(event_type),
                        "size": int(np.median(sizes_of_bursts)),
                        "every_s": round(n_players * span / n_bursts, 3),
                        "spacing_s": round(float(np.median(within)) if within.size else 0.0, 6),
                        "payload_bytes": payload,
                    }
                )
                burst_row = {"burst_gap_s": gap, "bursts_n": n_bursts, "burst_size_median": int(np.median(sizes_of_bursts))}
        single = ~in_burst
        counts = np.bincount(who[single], minlength=n_players)
        single_rate = float(single.sum()) / (n_players * span)
        sigma = _activity_sigma(counts)
        diurnal = _diurnal(times[single], span)
        if single.any():
            pub: dict[str, Any] = {
                "kind": "poisson",
                "event_type": str(event_type),
                "rate_per_player_per_s": float(f"{single_rate:.6g}"),
                "payload_bytes": payload,
            }
            if sigma > 0:
                pub["activity_sigma"] = round(sigma, 4)
            if diurnal is not None:
                pub["diurnal"] = diurnal
                # the fitted rate is the cycle's mean: thinning keeps rate (1 + a cos) / (1 + a)
            publishers.append(pub)
        # how Poisson the non-burst part is: inter-arrival gaps scaled by each player's own rate
        # should be exponential with mean 1 (KS distance)
        ks = _ks_exponential(times[single], who[single])
        rows.append(
            {
                "event_type": str(event_type),
                "events_n": int(times.size),
                "players_n": int(np.unique(who).size),
                "rate_per_player_per_s": rate,
                "activity_sigma": sigma,
                "burst_gap_s": burst_row.get("burst_gap_s", np.nan),
                "bursts_n": burst_row.get("bursts_n", 0),
                "burst_size_median": burst_row.get("burst_size_median", 0),
                "diurnal_amplitude": diurnal["amplitude"] if diurnal else 0.0,
                "payload_bytes_median": float(np.median(sizes)),
                "payload_bytes_p99": float(np.quantile(sizes, 0.99)),
                "gaps_ks_vs_exponential": ks,
            }
        )
    if span < DIURNAL_MIN_SPAN_S:
        notes.append(f"The trace spans {span / 60:.1f} min: too short to fit a daily cycle (needs 2 h).")
    scenario = {
        "name": name,
        "description": f"Fitted to a {span:.0f} s trace of {len(t):,} events.",
        "duration_s": round(span, 3),
        "population": {**population, "clients_per_player": 1},
        "publishers": publishers,
    }
    return Fit(scenario=scenario, files=files, report=pd.DataFrame(rows), notes=notes)


def _ks_exponential(times: np.ndarray, players: np.ndarray) -> float:
    """KS distance between per-player-rate-scaled inter-arrival gaps and Exp(1); NaN with too few gaps."""
    order = np.lexsort((times, players))
    ts, ps = times[order], players[order]
    same = ps[1:] == ps[:-1]
    gaps = np.diff(ts)[same]
    owner = ps[1:][same]
    if gaps.size < 20:
        return float("nan")
    mean_gap = pd.Series(gaps).groupby(owner).transform("mean").to_numpy()
    x = np.sort(gaps[mean_gap > 0] / mean_gap[mean_gap > 0])
    if x.size < 20:
        return float("nan")
    cdf = 1.0 - np.exp(-x)
    n = x.size
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def replay_trace(trace: pd.DataFrame, *, name: str = "replay") -> Fit:
    """A scenario that replays the trace exactly: one ``trace`` publisher per event type, over a CSV of its rows."""
    t = _check(trace)
    population, index = _population(t)
    publishers = []
    files = {}
    for event_type, part in t.groupby("event_type", sort=True):
        file = f"trace_{event_type}.csv"
        files[file] = pd.DataFrame(
            {
                "published_at": part["received_at"].to_numpy(float),
                "player": index[part.index.to_numpy()],
                "payload_bytes": part["payload_bytes"].to_numpy(int),
            }
        )
        publishers.append({"kind": "trace", "file": file, "event_type": str(event_type)})
    scenario = {
        "name": name,
        "description": f"Replays a {_duration(t):.0f} s trace of {len(t):,} events.",
        "duration_s": round(_duration(t), 3),
        "population": {**population, "clients_per_player": 1},
        "publishers": publishers,
    }
    return Fit(scenario=scenario, files=files, report=pd.DataFrame(), notes=[])


__all__ = ["fit_trace", "replay_trace", "Fit", "FitError", "GAP_LADDER"]
