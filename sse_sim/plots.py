"""Pictures of a run for architects and analysts; the only sse_sim module that imports matplotlib.

Every ``plot_*`` function returns the matplotlib Figure and its Axes (``(fig, ax)`` or
``(fig, axes)``) for further styling, and takes ``ax=`` (or ``axes=``) to draw into an existing
figure. Nothing here calls ``plt.show()``: in Jupyter the figures show by themselves, in a
script call ``fig.savefig(...)``. What is drawn is computed by :mod:`sse_sim.analysis` and
:mod:`sse_sim.metrics`, so the numbers behind each picture are a documented DataFrame too.

:func:`save_standard_figures` writes a run's figures as PNG files (``sse-sim run --out``).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import analysis
from .analytic import capacity_k
from .outcomes import DISCONNECT_CAUSES, LOSS_CAUSES

if TYPE_CHECKING:  # pragma: no cover
    from .results import SimulationResult
    from .sizing import SizingResult

#: One colour per fate, the same in every figure.
OUTCOME_COLORS: dict[str, str] = {
    "delivered": "#4c9a2a",
    "lost_disconnected": "#8c8c8c",
    "dropped_overflow": "#d62728",
    "lost_in_buffer": "#ff7f0e",
    "disconnected_slow": "#9467bd",
    "lost_redis_output_limit": "#8c564b",
}

# Figures for files are built without pyplot, so writing PNGs never opens a GUI window nor
# piles figures up in pyplot's registry; interactive calls use pyplot so notebooks show them.
_DETACHED: contextvars.ContextVar[bool] = contextvars.ContextVar("sse_sim_plots_detached", default=False)


@contextmanager
def detached() -> Iterator[None]:
    """Within this block, plot functions build stand-alone Figures that pyplot does not track."""
    token = _DETACHED.set(True)
    try:
        yield
    finally:
        _DETACHED.reset(token)


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (8.0, 4.0), **kw: Any) -> tuple[Figure, Any]:
    if _DETACHED.get():
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.subplots(nrows, ncols, **kw)
    return plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", **kw)


def _figure_for(ax: Axes | None, **kw: Any) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(), ax  # type: ignore[return-value]
    return _subplots(**kw)


def default_bin_s(duration_s: float, bins: int = 150) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about ``bins`` bins over the run."""
    raw = max(float(duration_s) / bins, 1e-6)
    exp = math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= raw:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))  # pragma: no cover


def _records(obj: SimulationResult | pd.DataFrame) -> pd.DataFrame:
    return obj if isinstance(obj, pd.DataFrame) else obj.records


def _stacked_steps(ax: Axes, x_edges: np.ndarray, layers: list[tuple[str, np.ndarray, str]]) -> None:
    """Stack per-bin values as filled steps, bottom to top, one legend entry per layer."""
    bottom = np.zeros(x_edges.size - 1)
    for label, values, color in layers:
        top = bottom + values
        ax.fill_between(
            x_edges, np.append(bottom, bottom[-1]), np.append(top, top[-1]), step="post", color=color, alpha=0.85, label=label, linewidth=0
        )
        bottom = top


def _edges(frame: pd.DataFrame) -> np.ndarray:
    start = frame["bin_start_at"].to_numpy()
    return np.append(start, start[-1] + frame["bin_s"].to_numpy()[-1])


def _log_if_positive(ax: Axes, axis: str, values: np.ndarray) -> None:
    # a log axis with no positive value makes matplotlib warn and draw nothing
    vals = np.asarray(values, float)
    if np.any(np.isfinite(vals) & (vals > 0)):
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log", nonpositive="mask")


# ----------------------------------------------------------------------------------------------
# Throughput and latency


def plot_throughput(result: SimulationResult, bin_s: float | None = None, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Published vs delivered vs lost over time, the losses stacked by cause (per second, by publish time)."""
    bin_s = bin_s or default_bin_s(result.duration_s)
    tp = result.throughput(bin_s)
    fig, ax = _figure_for(ax)
    x = _edges(tp)
    per_s = 1.0 / bin_s
    layers = [("delivered", tp["delivered_n"].to_numpy() * per_s, OUTCOME_COLORS["delivered"])]
    for cause in LOSS_CAUSES:
        col = tp[f"{cause}_n"].to_numpy()
        if col.sum() > 0:
            layers.append((cause, col * per_s, OUTCOME_COLORS[cause]))
    _stacked_steps(ax, x, layers)
    pub = tp["published_n"].to_numpy() * per_s
    ax.step(x, np.append(pub, pub[-1]), where="post", color="black", linewidth=1.0, label="published")
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("delivery attempts per second")
    ax.set_title(f"{result.scenario.name}: throughput by fate ({bin_s:g} s bins, by publish time)")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig, ax


def plot_latency_cdf(
    result: SimulationResult | pd.DataFrame,
    *,
    by: str | None = None,
    slo_s: float = 0.1,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """The share of deliveries within each latency, one line per group of ``by``, with the 100 ms line."""
    cdf = analysis.latency_cdf(_records(result), by=by)
    fig, ax = _figure_for(ax)
    for name, g in cdf.groupby("group", sort=False):
        ax.step(g["latency_s"].to_numpy() * 1000, g["fraction"].to_numpy(), where="post", label=str(name))
    ax.axvline(slo_s * 1000, color="black", linestyle="--", linewidth=1, label=f"{slo_s * 1000:g} ms")
    if len(cdf):
        lat = cdf["latency_s"].to_numpy()
        pos = lat[lat > 0]
        if pos.size and pos.max() / pos.min() > 100:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no deliveries", transform=ax.transAxes, ha="center")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("latency, publish to client (ms)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("latency CDF (delivered events)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig, ax


def plot_latency_over_time(
    result: SimulationResult, bin_s: float | None = None, *, slo_s: float = 0.1, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Latency p50, p95 and p99 of the events published in each bin, with the 100 ms line."""
    bin_s = bin_s or default_bin_s(result.duration_s)
    lt = analysis.latency_percentiles_over_time(result.records, bin_s, duration_s=result.duration_s)
    fig, ax = _figure_for(ax)
    x = lt["bin_start_at"].to_numpy() + bin_s / 2
    for col, label in (("latency_p50_s", "p50"), ("latency_p95_s", "p95"), ("latency_p99_s", "p99")):
        ax.plot(x, lt[col].to_numpy() * 1000, label=label, marker="." if len(lt) < 40 else None)
    ax.axhline(slo_s * 1000, color="black", linestyle="--", linewidth=1, label=f"{slo_s * 1000:g} ms")
    _log_if_positive(ax, "y", lt["latency_p99_s"].to_numpy())
    ax.set_xlabel("publish time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"latency percentiles over time ({bin_s:g} s bins)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return fig, ax


# ----------------------------------------------------------------------------------------------
# Buffers and disconnects


def plot_buffer_occupancy(
    result: SimulationResult,
    bin_s: float | None = None,
    *,
    client_id: int | list[int] | None = None,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Events held per connection over time (peak and mean) against the capacity K = buffer_size + 1."""
    bin_s = bin_s or default_bin_s(result.duration_s)
    occ = analysis.occupancy(result.records, bin_s, duration_s=result.duration_s, client_id=client_id)
    if client_id is None:
        n_conn = result.workload.n_clients if result.workload is not None else int(result.records["client_id"].nunique())
    else:
        n_conn = int(np.atleast_1d(client_id).size)
    fig, ax = _figure_for(ax)
    x = _edges(occ)
    peak = occ["held_max"].to_numpy()
    mean = occ["held_mean"].to_numpy() / max(n_conn, 1)
    ax.step(x, np.append(peak, peak[-1]), where="post", color="#1f77b4", label="peak held by one connection")
    ax.step(x, np.append(mean, mean[-1]), where="post", color="#2ca02c", label="mean held per connection")
    sc = result.scenario
    k = capacity_k(sc.gateway.buffer_size, sc.clients.socket_buffer_events)
    ax.axhline(k, color="#d62728", linestyle="--", linewidth=1, label=f"capacity K = {k} (buffer {result.scenario.gateway.buffer_size} + in flight)")
    ax.set_ylim(0, k * 1.1)
    ax.set_xlim(x[0], x[-1])
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("events held (waiting + in flight)")
    who = "all connections" if client_id is None else f"client {client_id}"
    ax.set_title(f"buffer occupancy, {who} ({bin_s:g} s bins)")
    ax.legend(loc="center right", fontsize="small")
    return fig, ax


def plot_disconnects(
    result: SimulationResult, bin_s: float | None = None, *, max_clients: int = 30, axes: Any = None
) -> tuple[Figure, np.ndarray]:
    """Disconnect windows: offline windows per client, clients offline and reconnects, and the events lost.

    Three panels sharing the time axis: (0) a timeline of offline windows for up to
    ``max_clients`` clients (those offline longest), (1) clients without an active subscription
    and reconnects per second (a reconnect storm is a spike), (2) events lost per second to
    disconnect causes.
    """
    if result.workload is None:
        raise ValueError("plot_disconnects needs the run's workload (its connection sessions); this result has none")
    bin_s = bin_s or default_bin_s(result.duration_s)
    w = result.workload
    if axes is None:
        fig, axes = _subplots(3, 1, figsize=(8.0, 8.0), sharex=True)
    else:
        fig = axes[0].get_figure()
    ax_win, ax_off, ax_loss = axes
    dur = result.duration_s
    # (0) timeline of windows; the sub-second gap before a first subscription is left out here
    win = analysis.offline_windows(w)
    win = win[win["offline_at"] > 0]
    longest = win.groupby("client_id")["offline_s"].sum().sort_values(ascending=False).index[:max_clients]
    shown = sorted(longest)
    for row, cid in enumerate(shown):
        ws = win[win["client_id"] == cid]
        bars = [(a, s) for a, s in zip(ws["offline_at"], ws["offline_s"], strict=True)]
        ax_win.broken_barh(bars, (row - 0.4, 0.8), color=OUTCOME_COLORS["lost_disconnected"], label="offline" if row == 0 else None)
    ax_win.set_ylim(-1, max(len(shown), 1))
    ax_win.set_yticks(range(len(shown)), [str(c) for c in shown] if len(shown) <= 15 else [""] * len(shown))
    ax_win.set_ylabel("client")
    ax_win.set_xlim(0, dur)
    ax_win.set_title(f"offline windows ({len(shown)} of {win['client_id'].nunique()} clients that went offline)")
    if not shown:
        ax_win.text(0.5, 0.5, "no client went offline", transform=ax_win.transAxes, ha="center")
    # (1) clients offline and reconnects
    dt = analysis.disconnects_over_time(w, bin_s)
    x = _edges(dt)
    off = dt["offline_mean"].to_numpy()
    ax_off.fill_between(x, np.append(off, off[-1]), step="post", color="#8c8c8c", alpha=0.5, linewidth=0, label="clients offline")
    ax_off.set_ylabel("clients offline")
    ax_rc = ax_off.twinx()
    rc = dt["reconnects_n"].to_numpy() / bin_s
    ax_rc.step(x, np.append(rc, rc[-1]), where="post", color="#1f77b4", label="reconnects / s")
    ax_rc.set_ylabel("reconnects per second")
    ax_off.set_ylim(bottom=0)
    ax_rc.set_ylim(bottom=0)
    handles = ax_off.get_legend_handles_labels()[0] + ax_rc.get_legend_handles_labels()[0]
    ax_off.legend(handles, [str(h.get_label()) for h in handles], loc="upper right", fontsize="small")
    ax_off.set_title(f"clients offline and reconnects ({bin_s:g} s bins)")
    # (2) what the disconnects cost
    tp = result.throughput(bin_s)
    layers = []
    for cause in (*DISCONNECT_CAUSES, "disconnected_slow"):
        col = tp[f"{cause}_n"].to_numpy()
        if col.sum() > 0:
            layers.append((cause, col / bin_s, OUTCOME_COLORS[cause]))
    if layers:
        _stacked_steps(ax_loss, _edges(tp), layers)
        ax_loss.legend(loc="upper right", fontsize="small")
    else:
        ax_loss.text(0.5, 0.5, "no events lost to disconnects", transform=ax_loss.transAxes, ha="center")
    ax_loss.set_ylim(bottom=0)
    ax_loss.set_ylabel("events lost per second")
    ax_loss.set_xlabel("time since start (s)")
    ax_loss.set_xlim(0, dur)
    return fig, np.asarray(axes)


# ----------------------------------------------------------------------------------------------
# Buffer sizing and comparisons


def plot_loss_vs_buffer(sizing: SizingResult, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Loss against buffer size with confidence bands, the target, the recommendation, and the loss no size fixes."""
    t = sizing.table
    fig, ax = _figure_for(ax)
    x = t["buffer_size"].to_numpy()
    series = (
        ("overflow_loss_rate", "overflow loss (dropped_overflow + disconnected_slow)", OUTCOME_COLORS["dropped_overflow"]),
        ("disconnect_loss_rate", "disconnect loss (no buffer size fixes it)", OUTCOME_COLORS["lost_disconnected"]),
        ("loss_rate", "total loss", "black"),
    )
    for col, label, color in series:
        y = t[col].to_numpy()
        ax.plot(x, y, marker="o", markersize=3, color=color, label=label)
        lo, hi = t[f"{col}_ci_low"].to_numpy(), t[f"{col}_ci_high"].to_numpy()
        if np.isfinite(lo).any():
            ax.fill_between(x, np.clip(lo, 0, None), hi, color=color, alpha=0.2, linewidth=0)
    ax.axhline(sizing.max_loss, color="#2ca02c", linestyle="--", linewidth=1, label=f"target {sizing.max_loss:.3g}")
    if sizing.buffer_size is not None:
        ax.axvline(sizing.buffer_size, color="#1f77b4", linestyle=":", linewidth=1.5, label=f"recommended buffer_size {sizing.buffer_size}")
    current = sizing.scenario.gateway.buffer_size
    ax.axvline(current, color="#7f7f7f", linestyle="-.", linewidth=1, label=f"scenario buffer_size {current}")
    if x.size and x.max() / max(x.min(), 1) > 20:
        ax.set_xscale("log")
    _log_if_positive(ax, "y", np.concatenate([t[c].to_numpy() for c, _, _ in series]))
    ax.set_xlabel("buffer_size (events waiting; K = buffer_size + 1)")
    ax.set_ylabel("loss rate (fraction of delivery attempts)")
    ax.set_title(f"{sizing.scenario.name}: loss vs buffer size ({sizing.seeds_n} seeds, {sizing.level:.0%} bands)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return fig, ax


def plot_comparison(comparison: Any, *, axes: Any = None) -> tuple[Figure, np.ndarray]:
    """Simulator vs real run: latency CDFs side by side, and each metric's difference against its tolerance.

    ``comparison`` is what :func:`sse_sim.compare.compare` returns: ``.table`` with columns
    ``metric, sim, real, diff, tolerance, within``, and ``.sim`` / ``.real`` results.
    """
    if axes is None:
        fig, axes = _subplots(1, 2, figsize=(11.0, 4.5))
    else:
        fig = axes[0].get_figure()
    ax_cdf, ax_tab = axes
    real_backend = getattr(comparison.real, "backend", "real")
    for name, res, style in (("sim", comparison.sim, "-"), (f"real ({real_backend})", comparison.real, "--")):
        cdf = analysis.latency_cdf(res.records)
        ax_cdf.step(cdf["latency_s"].to_numpy() * 1000, cdf["fraction"].to_numpy(), where="post", linestyle=style, label=name)
    ax_cdf.axvline(100, color="black", linestyle=":", linewidth=1, label="100 ms")
    ax_cdf.set_xlabel("latency (ms)")
    ax_cdf.set_ylabel("fraction of deliveries")
    ax_cdf.set_ylim(0, 1.01)
    ax_cdf.set_title("latency CDF: simulator vs real")
    ax_cdf.legend(loc="lower right", fontsize="small")
    # differences in units of each metric's tolerance: inside [-1, 1] means agreement
    tab = comparison.table
    diff = tab["diff"].to_numpy(dtype=float)
    tol = tab["tolerance"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(tol > 0, diff / tol, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
    shown = np.clip(np.nan_to_num(score, nan=0.0), -3, 3)
    within = tab["within"].to_numpy(dtype=bool)
    y = np.arange(len(tab))
    ax_tab.axvspan(-1, 1, color="#2ca02c", alpha=0.12, label="within tolerance")
    ax_tab.barh(y, shown, color=np.where(within, "#2ca02c", "#d62728"))
    for yi, (s, r) in enumerate(zip(tab["sim"], tab["real"], strict=True)):
        ax_tab.text(3.05, yi, f"sim {float(s):.3g} / real {float(r):.3g}", va="center", fontsize="x-small")
    ax_tab.set_yticks(y, [str(m) for m in tab["metric"]])
    ax_tab.invert_yaxis()
    ax_tab.set_xlim(-3, 5.2)
    ax_tab.axvline(0, color="black", linewidth=0.8)
    ax_tab.set_xlabel("difference / tolerance (clipped to ±3)")
    ok = bool(getattr(comparison, "ok", within.all()))
    ax_tab.set_title(f"metrics: {'all within tolerance' if ok else 'OUT OF TOLERANCE'}")
    ax_tab.legend(loc="lower right", fontsize="small")
    return fig, np.asarray(axes)


# ----------------------------------------------------------------------------------------------
# Files


STANDARD_FIGURES: tuple[str, ...] = ("throughput", "latency_cdf", "latency_over_time", "buffer_occupancy", "disconnects")


def save_standard_figures(result: SimulationResult, out_dir: str | Path, *, dpi: int = 110) -> dict[str, Path]:
    """Write a run's standard figures as PNG into ``out_dir``; returns {``figure_<name>``: path}.

    The figures: throughput by fate, latency CDF, latency percentiles over time, buffer
    occupancy, and the disconnect timeline.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "throughput": lambda: plot_throughput(result),
        "latency_cdf": lambda: plot_latency_cdf(result),
        "latency_over_time": lambda: plot_latency_over_time(result),
        "buffer_occupancy": lambda: plot_buffer_occupancy(result),
        "disconnects": lambda: plot_disconnects(result),
    }
    paths: dict[str, Path] = {}
    with detached():
        for name in STANDARD_FIGURES:
            if name == "disconnects" and result.workload is None:
                continue
            fig, _ = makers[name]()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=dpi)
            paths[f"figure_{name}"] = path
    return paths


__all__ = [
    "plot_throughput",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_buffer_occupancy",
    "plot_disconnects",
    "plot_loss_vs_buffer",
    "plot_comparison",
    "save_standard_figures",
    "detached",
    "default_bin_s",
    "OUTCOME_COLORS",
    "STANDARD_FIGURES",
]
