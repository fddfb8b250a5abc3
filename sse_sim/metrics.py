"""Pure DataFrame -> DataFrame metrics over records: summary, throughput bins, confidence intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .outcomes import LOSS_CAUSES, OUTCOME_LABELS, Outcome
from .records import SUMMARY, THROUGHPUT, Column


def summarize(records: pd.DataFrame, duration_s: float) -> pd.Series:
    """The headline figures of one run: counts, loss rate by cause, latency percentiles, throughput.

    Returns a Series indexed by the SUMMARY column names.
    """
    codes = records["outcome"].cat.codes.to_numpy()
    counts = np.bincount(codes, minlength=len(OUTCOME_LABELS))
    attempts = int(codes.size)
    replayed = int((records["replayed"].to_numpy() & (codes == Outcome.DELIVERED)).sum()) if "replayed" in records else 0
    published = _distinct(records["event_id"].to_numpy()) if attempts else 0
    lat = records["latency_s"].to_numpy()
    lat = lat[~np.isnan(lat)]
    if lat.size:
        p50, p95, p99 = np.quantile(lat, [0.5, 0.95, 0.99])
        lmax, lmean = float(lat.max()), float(lat.mean())
    else:
        p50 = p95 = p99 = lmax = lmean = np.nan
    return summary_series(counts, published, replayed, (p50, p95, p99, lmax, lmean), duration_s)


def summary_series(
    by_outcome: np.ndarray, published: int, replayed: int, latency: tuple[float, float, float, float, float], duration_s: float
) -> pd.Series:
    """The SUMMARY Series from attempts per outcome code, events published, replayed deliveries and latency figures.

    ``latency`` is (p50, p95, p99, max, mean) in seconds, NaN when nothing was delivered. The
    one place the summary's arithmetic lives, for records and aggregates alike.
    """
    attempts = int(by_outcome.sum())
    delivered = int(by_outcome[Outcome.DELIVERED])
    superseded = int(by_outcome[Outcome.SUPERSEDED])
    denom = attempts if attempts else np.nan
    values: dict[str, float | int] = {
        "published_n": int(published),
        "attempts_n": attempts,
        "delivered_n": delivered,
        "lost_n": attempts - delivered - superseded,
        "loss_rate": (attempts - delivered - superseded) / denom,
        "superseded_n": superseded,
        "replayed_n": int(replayed),
    }
    for i, cause in enumerate(OUTCOME_LABELS):
        if cause in LOSS_CAUSES:
            values[f"loss_rate_{cause}"] = by_outcome[i] / denom
    p50, p95, p99, lmax, lmean = latency
    values.update(
        latency_p50_s=float(p50),
        latency_p95_s=float(p95),
        latency_p99_s=float(p99),
        latency_max_s=float(lmax),
        latency_mean_s=float(lmean),
        published_per_s=published / duration_s,
        delivered_per_s=delivered / duration_s,
        duration_s=float(duration_s),
    )
    return pd.Series({c.name: values[c.name] for c in SUMMARY}, name="value", dtype=object)


def _distinct(ids: np.ndarray) -> int:
    """How many distinct ids: by counting when they are dense (a run's event ids), else by hashing."""
    ids = np.asarray(ids)
    if ids.size and ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < 4 * ids.size + 1024:
        return int(np.count_nonzero(np.bincount(ids)))
    return int(pd.unique(ids).size)


def throughput(records: pd.DataFrame, duration_s: float, bin_s: float = 1.0) -> pd.DataFrame:
    """Attempts per time bin by fate (binned by publish time), and deliveries by receive time.

    An instant's bin is floor(t / bin_s) with the division rounded (15.0 s is in bin 150 of
    0.1 s, where 15.0 // 0.1 would say 149), as in the aggregates, so that both agree.
    """
    if bin_s <= 0:
        raise ValueError("bin_s must be positive")
    n_bins = max(int(np.ceil(duration_s / bin_s)), 1)
    pub_bin = np.clip(np.floor(records["published_at"].to_numpy() / bin_s).astype(np.int64), 0, n_bins - 1)
    codes = records["outcome"].cat.codes.to_numpy().astype(np.int64)
    k = len(OUTCOME_LABELS)
    grid = np.bincount(pub_bin * k + codes, minlength=n_bins * k).reshape(n_bins, k)
    recv = records["received_at"].to_numpy()
    recv = recv[~np.isnan(recv)]
    recv_bin = np.floor(recv / bin_s).astype(np.int64)
    recv_bin = recv_bin[recv_bin < n_bins]
    received = np.bincount(recv_bin, minlength=n_bins)
    return throughput_frame(grid, received, np.arange(n_bins) * float(bin_s), float(bin_s))


def throughput_frame(grid: np.ndarray, received: np.ndarray, starts: np.ndarray, width: float) -> pd.DataFrame:
    """The THROUGHPUT frame from attempts per (bin, outcome code) and deliveries per bin by receive time."""
    data: dict[str, np.ndarray] = {
        "bin_start_at": starts,
        "bin_s": np.full(starts.size, width),
        "published_n": grid.sum(axis=1).astype(np.int64),
        "delivered_n": grid[:, Outcome.DELIVERED].astype(np.int64),
        "superseded_n": grid[:, Outcome.SUPERSEDED].astype(np.int64),
    }
    for i, cause in enumerate(OUTCOME_LABELS):
        if cause in LOSS_CAUSES:
            data[f"{cause}_n"] = grid[:, i].astype(np.int64)
    data["received_n"] = received.astype(np.int64)
    data["received_per_s"] = received / width
    return pd.DataFrame({c.name: data[c.name] for c in THROUGHPUT})


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, standard error and Student-t confidence interval of per-seed values: (mean, se, low, high).

    NaN values are ignored; with fewer than two values the error and bounds are NaN. The one
    place sse_sim computes a confidence interval over seeds (summaries, sizing).
    """
    from scipy import stats

    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan
    mean = float(x.mean())
    if n < 2:
        return mean, np.nan, np.nan, np.nan
    se = float(stats.sem(x))
    if se == 0.0:
        return mean, 0.0, mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=se)
    return mean, se, float(low), float(high)


def confidence_intervals(per_seed: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean, standard error and Student-t interval of each numeric summary metric over seeds."""
    rows = []
    n = len(per_seed)
    metrics = [c.name for c in SUMMARY if c.name in per_seed.columns]
    for m in metrics:
        x = pd.to_numeric(per_seed[m], errors="coerce").to_numpy(dtype=float)
        mean, se, low, high = t_interval(x, level)
        rows.append((m, mean, se, low, high, n))
    return pd.DataFrame(rows, columns=["metric", "mean", "std_err", "ci_low", "ci_high", "seeds_n"]).astype(
        {"metric": object, "seeds_n": np.int64}
    )


def format_summary(summary: pd.Series, title: str = "", columns: tuple[Column, ...] = SUMMARY) -> str:
    """A summary-like Series (``columns`` declares its units) as an aligned two-column text table."""
    units = {c.name: c.unit for c in columns}
    lines = [title] if title else []
    width = max(len(k) for k in summary.index)
    for key, value in summary.items():
        unit = units.get(key, "")
        if isinstance(value, float):
            if math.isnan(value):
                text = "-"
            elif key.startswith("loss_rate"):
                text = f"{value:.6%}"
            elif unit == "s" and key != "duration_s":
                text = f"{value * 1000:.3f} ms"
                unit = ""
            else:
                text = f"{value:,.3f}"
        else:
            text = f"{value:,}"
        lines.append(f"  {key:<{width}}  {text} {unit if unit not in ('fraction',) else ''}".rstrip())
    return "\n".join(lines)


__all__ = ["summarize", "summary_series", "throughput", "throughput_frame", "confidence_intervals", "t_interval", "format_summary"]
