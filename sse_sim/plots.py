"""Pictures of a run for architects and analysts; the only sse_sim module that imports matplotlib.

Every ``plot_*`` function returns the matplotlib Figure and its Axes (``(fig, ax)`` or
``(fig, axes)``) for further styling, and takes ``ax=`` (or ``axes=``) to draw into an existing
figure. Nothing here calls ``plt.show()``: in Jupyter the figures show by themselves, in a
script call ``fig.savefig(...)``. What is drawn is computed by :mod:`sse_sim.analysis` and
:mod:`sse_sim.metrics`, so the numbers behind each picture are a documented DataFrame too.

Conventions: on a log axis a zero is drawn at a floor line labelled "0", never dropped;
latency ticks read in plain units ("30 ms"); counts per time bin are labelled as counts per bin,
not turned into per-second rates; delivery attempts (events × clients) are labelled as such.

:func:`save_standard_figures` writes a run's figures as PNG files (``sse-sim run --out``).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from . import analysis
from .outcomes import DISCONNECT_CAUSES, LOSS_CAUSES
from .sizing import connection_capacity

if TYPE_CHECKING:  # pragma: no cover
    from .history_sizing import HistorySizingResult
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
    "lost_history_expired": "#e377c2",
    "lost_connection_limit": "#17becf",
    "superseded": "#bcbd22",
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


def _bin_s(result: SimulationResult, bin_s: float | None) -> float:
    """The plot's bin width: as asked or a round default; without records, a whole multiple of the aggregates' bins."""
    want = bin_s or default_bin_s(result.duration_s)
    if result.records is None and result.aggregates is not None:
        unit = result.aggregates.bin_s
        return unit * max(round(want / unit), 1)
    return want


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


def zero_floor(values: np.ndarray, *, target: float | None = None) -> float | None:
    """Where zeros are drawn on a log axis: half the smallest positive value, and at least a decade under ``target``.

    None when nothing is positive (the axis then stays linear and zeros are drawn as zeros).
    """
    vals = np.asarray(values, float)
    pos = vals[np.isfinite(vals) & (vals > 0)]
    if not pos.size:
        return None
    floor = float(pos.min()) / 2
    if target is not None and target > 0:
        floor = min(floor, float(target) / 10)
    return floor


def _at_floor(values: np.ndarray, floor: float | None) -> np.ndarray:
    """Values with zeros (and NaN bounds) raised to the floor, so a log axis draws them."""
    vals = np.asarray(values, float)
    if floor is None:
        return vals
    return np.where(np.isfinite(vals) & (vals > floor), vals, floor)


def _mark_floor(ax: Axes, floor: float, text: str) -> None:
    """A faint line at the floor and its label, so a value drawn there reads as zero, not as a small number."""
    ax.axhline(floor, color="#7f7f7f", linestyle=(0, (1, 3)), linewidth=0.8, gid="zero_floor")
    ax.text(
        1.005, floor, text, transform=blended_transform_factory(ax.transAxes, ax.transData),
        va="center", ha="left", fontsize="x-small", color="#555555", gid="zero_floor_label",
    )


def format_ms(value: float, _pos: object = None) -> str:
    """A latency tick in plain units: milliseconds below one second, seconds above ("30 ms", "2 s")."""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


def _ms_ticks(axis: Any) -> None:
    # the default log formatter writes 3x10^1; an analyst reads "30 ms"
    if axis.get_scale() == "log":
        lo, hi = sorted(axis.get_view_interval())
        decades = math.log10(hi / lo) if lo > 0 else math.inf
        subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.5 else (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0, 3.0)
        axis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
        axis.set_minor_locator(ticker.LogLocator(base=10, subs=tuple(float(m) for m in range(2, 10) if m not in subs)))
        axis.set_minor_formatter(ticker.NullFormatter())
    axis.set_major_formatter(ticker.FuncFormatter(format_ms))


def _plain_ticks(axis: Any, *, percent: bool = False) -> None:
    # plain numbers ("0.01 %", "5", "50") rather than powers of ten on log axes; call after the limits are set
    if axis.get_scale() == "log":
        lo, hi = sorted(axis.get_view_interval())
        few_decades = lo > 0 and hi / lo <= 1e3
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if few_decades and not percent else (1.0,)))
        axis.set_minor_formatter(ticker.NullFormatter())
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: f"{v * 100:.3g} %" if percent else f"{v:g}"))


# ----------------------------------------------------------------------------------------------
# Throughput and latency


def plot_throughput(
    result: SimulationResult, bin_s: float | None = None, *, ax: Axes | None = None, loss_ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Delivery attempts over time by fate, and below it the share lost per bin by cause, on its own scale.

    The top panel stacks attempts per second (events × clients, by publish time): delivered,
    then each loss cause, under the published line. Loss of a fraction of a percent is a
    sliver there, so the second panel (``loss_ax``) shows the percentage of each bin's attempts
    lost, stacked by cause. Without ``ax`` a two-panel figure is made and the loss panel is
    ``fig.axes[1]``; with ``ax`` and no ``loss_ax`` the loss share goes on a right-hand twin
    axis of ``ax`` (``fig.axes[-1]``). Returns the figure and the top axes.
    """
    bin_s = _bin_s(result, bin_s)
    tp = result.throughput(bin_s)
    if ax is None:
        fig, (ax, loss_ax) = _subplots(2, 1, figsize=(8.0, 5.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        twin = False
    else:
        fig = ax.get_figure()
        twin = loss_ax is None
        if loss_ax is None:
            loss_ax = ax.twinx()
    x = _edges(tp)
    per_s = 1.0 / bin_s
    layers = [("delivered", tp["delivered_n"].to_numpy() * per_s, OUTCOME_COLORS["delivered"])]
    causes = [c for c in LOSS_CAUSES if tp[f"{c}_n"].to_numpy().sum() > 0]
    for cause in causes:
        layers.append((cause, tp[f"{cause}_n"].to_numpy() * per_s, OUTCOME_COLORS[cause]))
    _stacked_steps(ax, x, layers)
    pub = tp["published_n"].to_numpy() * per_s
    ax.step(x, np.append(pub, pub[-1]), where="post", color="black", linewidth=1.0, label="published (events × clients)")
    ax.set_ylabel("delivery attempts per second\n(events × clients)")
    ax.set_title(f"{result.scenario.name}: throughput by fate ({bin_s:g} s bins, by publish time)")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(bottom=0)
    # (2) the share lost per bin: visible however small the overall loss is
    attempts = tp["published_n"].to_numpy().astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = [(c, np.where(attempts > 0, tp[f"{c}_n"].to_numpy() / attempts * 100, 0.0), OUTCOME_COLORS[c]) for c in causes]
    total = tp["published_n"].sum() - tp["delivered_n"].sum()
    overall = total / max(int(tp["published_n"].sum()), 1) * 100
    if twin:
        bottom = np.zeros(x.size - 1)
        for cause, share, color in shares:
            bottom = bottom + share
            loss_ax.step(x, np.append(bottom, bottom[-1]), where="post", color="black", linewidth=2.2)
            loss_ax.step(x, np.append(bottom, bottom[-1]), where="post", color=color, linewidth=1.2, label=f"{cause}, % of the bin's attempts (right)")
    elif shares:
        _stacked_steps(loss_ax, x, shares)
    loss_ax.set_ylabel("lost, % of the bin's\nattempts" if not twin else "lost, % of the bin's attempts")
    if shares:
        top = max(float(np.max(sum(sh for _, sh, _ in shares))), 1e-9)
        loss_ax.set_ylim(0, top * 1.15)
    else:
        loss_ax.set_ylim(0, 1)
        loss_ax.text(0.5, 0.5, "no attempt lost", transform=loss_ax.transAxes, ha="center", va="center")
    loss_ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: f"{v:g} %"))
    lost_text = f"lost: {overall:.3g} % of all attempts ({int(total)} of {int(tp['published_n'].sum())})"
    if twin:
        ax.set_title(f"{ax.get_title()}\n{lost_text}, right axis")
    else:
        loss_ax.set_title(lost_text, fontsize="medium")
    (ax if twin else loss_ax).set_xlabel("time since start (s)")
    if twin:
        # one legend for both scales, under the axes where neither y axis label is in the way
        handles = ax.get_legend_handles_labels()[0] + loss_ax.get_legend_handles_labels()[0]
        ax.legend(handles, [str(h.get_label()) for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small")
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        loss_ax.set_xlim(x[0], x[-1])
        loss_ax.grid(True, axis="y", alpha=0.3)
    return fig, ax


def plot_latency_cdf(
    result: SimulationResult | pd.DataFrame,
    *,
    by: str | None = None,
    slo_s: float = 0.1,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """The share of deliveries within each latency, one line per group of ``by``, with the 100 ms line."""
    cdf = analysis.latency_cdf(result, by=by) if isinstance(result, pd.DataFrame) else result.latency_cdf(by=by)
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
    _ms_ticks(ax.xaxis)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("latency, publish to client")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title("latency CDF (delivered events)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig, ax


def plot_latency_over_time(
    result: SimulationResult, bin_s: float | None = None, *, slo_s: float = 0.1, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Latency p50, p95 and p99 of the events published in each bin, with the 100 ms line."""
    bin_s = _bin_s(result, bin_s)
    lt = result.latency_over_time(bin_s)
    fig, ax = _figure_for(ax)
    x = lt["bin_start_at"].to_numpy() + bin_s / 2
    for col, label in (("latency_p50_s", "p50"), ("latency_p95_s", "p95"), ("latency_p99_s", "p99")):
        ax.plot(x, lt[col].to_numpy() * 1000, label=label, marker="." if len(lt) < 40 else None)
    ax.axhline(slo_s * 1000, color="black", linestyle="--", linewidth=1, label=f"{slo_s * 1000:g} ms")
    _log_if_positive(ax, "y", lt["latency_p99_s"].to_numpy())
    _ms_ticks(ax.yaxis)
    ax.set_xlabel("publish time (s)")
    ax.set_ylabel("latency")
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
    """How full the connections' buffers get over time, as a spread over connections, against the capacity K.

    Per bin (see :func:`sse_sim.analysis.occupancy_by_connection`): the busiest connection's
    peak, the 99th percentile and the median of the connected connections' peaks, and the
    mean held per connected connection, on a log axis so that an idle mean, a burst of a few
    events and K all show. Zeros are drawn at a floor line labelled "0".
    """
    bin_s = _bin_s(result, bin_s)
    occ = result.occupancy_by_connection(bin_s, client_id=client_id)
    bin_s = float(occ["bin_s"].iloc[0]) if len(occ) else bin_s
    sc = result.scenario
    k, held_by = connection_capacity(sc)
    fig, ax = _figure_for(ax, figsize=(8.5, 4.2))
    x = _edges(occ)
    # the busiest connection's line is wide and pale so the percentile drawn over it stays readable
    series = (
        ("peak_max", "busiest connection's peak", "#1f77b4", 4.0, 0.45),
        ("peak_p99", "99th percentile of connections' peaks", "#ff7f0e", 1.5, 1.0),
        ("peak_p50", "median connection's peak", "#9467bd", 1.5, 1.0),
        ("held_per_connection_mean", "mean held per connected connection", "#2ca02c", 1.5, 1.0),
    )
    values = np.concatenate([occ[c].to_numpy(float) for c, *_ in series])
    floor = zero_floor(values)
    for col, label, color, width, alpha in series:
        y = _at_floor(occ[col].to_numpy(float), floor)
        ax.step(x, np.append(y, y[-1]), where="post", color=color, linewidth=width, alpha=alpha, label=label)
    ax.axhline(k, color="#d62728", linestyle="--", linewidth=1.2, label=f"capacity K = {k} ({held_by})", zorder=3)
    ax.set_xlim(x[0], x[-1])
    if floor is not None:
        ax.set_yscale("log")
        _mark_floor(ax, floor, "0 (nothing held)")
        ax.set_ylim(floor / 2, k * 2)
        _plain_ticks(ax.yaxis)
    else:
        ax.set_ylim(0, k * 1.1)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("events held by a connection\n(waiting + in flight)")
    n_conn = int(occ["connections_n"].max()) if len(occ) else 0
    who = f"{n_conn} connections" if client_id is None else f"client {client_id}"
    ax.set_title(f"buffer occupancy, {who} ({bin_s:g} s bins)")
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig, ax


def _offline_timeline(ax_win: Axes, w: Any, dur: float, max_clients: int) -> None:
    """Panel (0) with the run's sessions: a timeline of offline windows of the clients offline longest."""
    # the sub-second gap before a first subscription is left out here
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


def _worst_clients(ax: Axes, worst: pd.DataFrame, max_clients: int) -> None:
    """Panel (0) from the aggregates alone: the clients that lost most, and how much of what they were sent."""
    worst = worst.head(max_clients)
    if worst.empty:
        ax.text(0.5, 0.5, "no client lost anything", transform=ax.transAxes, ha="center")
        ax.set_title("clients that lost most")
        return
    y = np.arange(len(worst))
    ax.barh(y, worst["loss_rate"].to_numpy() * 100, color=OUTCOME_COLORS["lost_disconnected"])
    ax.set_yticks(y, [str(c) for c in worst["client_id"]] if len(worst) <= 15 else [""] * len(worst))
    ax.invert_yaxis()
    ax.set_xlabel("lost, % of the client's attempts")
    ax.set_ylabel("client")
    ax.set_title(f"the {len(worst)} clients that lost most (every cause)")


def plot_disconnects(
    result: SimulationResult, bin_s: float | None = None, *, max_clients: int = 30, axes: Any = None
) -> tuple[Figure, np.ndarray]:
    """Disconnect windows: offline windows per client, clients offline and reconnects, and the events lost.

    Three panels sharing the time axis: (0) a timeline of offline windows for up to
    ``max_clients`` clients (those offline longest), (1) clients without an active subscription
    and reconnects counted per bin (a reconnect storm is a spike), (2) delivery attempts lost
    to disconnect causes, counted per bin. Counts, not rates: 1,000 clients reconnecting in one
    instant are 1,000 reconnects in their bin, not "200 per second" over a 5 s bin.
    """
    if result.workload is None and result.aggregates is None:
        raise ValueError("plot_disconnects needs the run's workload (its connection sessions) or its aggregates; this result has neither")
    bin_s = _bin_s(result, bin_s)
    w = result.workload
    if axes is None:
        fig, axes = _subplots(3, 1, figsize=(8.0, 8.0), sharex=w is not None)
    else:
        fig = axes[0].get_figure()
    ax_win, ax_off, ax_loss = axes
    dur = result.duration_s
    if w is None:
        _worst_clients(ax_win, result.worst_clients(), max_clients)
    else:
        _offline_timeline(ax_win, w, dur, max_clients)
    # (1) clients offline and reconnects
    dt = result.disconnects_over_time(bin_s)
    x = _edges(dt)
    off = dt["offline_mean"].to_numpy()
    ax_off.fill_between(x, np.append(off, off[-1]), step="post", color="#8c8c8c", alpha=0.5, linewidth=0, label="clients offline")
    ax_off.set_ylabel("clients offline")
    ax_rc = ax_off.twinx()
    rc = dt["reconnects_n"].to_numpy()
    per_bin = f"per {bin_s:g} s bin"
    ax_rc.step(x, np.append(rc, rc[-1]), where="post", color="#1f77b4", label=f"reconnects {per_bin}")
    ax_rc.set_ylabel(f"reconnects {per_bin}")
    ax_off.set_ylim(bottom=0)
    ax_off.set_xlim(0, dur)
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
            layers.append((cause, col.astype(float), OUTCOME_COLORS[cause]))
    if layers:
        _stacked_steps(ax_loss, _edges(tp), layers)
        ax_loss.legend(loc="upper right", fontsize="small")
    else:
        ax_loss.text(0.5, 0.5, "no events lost to disconnects", transform=ax_loss.transAxes, ha="center")
    ax_loss.set_ylim(bottom=0)
    ax_loss.set_ylabel(f"attempts lost {per_bin}")
    ax_loss.set_xlabel("time since start (s)")
    ax_loss.set_xlim(0, dur)
    return fig, np.asarray(axes)


# ----------------------------------------------------------------------------------------------
# Buffer sizing and comparisons


def plot_loss_vs_buffer(
    sizing: SizingResult,
    *,
    reference: Callable[[int], float] | None = None,
    reference_label: str = "closed form",
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Loss against buffer size with confidence bands, the target, the recommended size's point, and the loss no size fixes.

    On the log axis a size where no seed lost anything is drawn at a floor line labelled
    "0 (no loss seen)" with a hollow marker (zero has no place on a log axis, and leaving it
    out would end the curve before the recommended size); the bands' lower bounds are raised
    to the same floor, so each band contains its curve. ``reference``, a function of
    ``buffer_size`` giving a loss fraction (say an M/M/1/K closed form), is drawn over the
    evaluated sizes only, and only where it is above the floor: the y axis spans the data's
    decades, not the reference's.
    """
    t = sizing.table
    fig, ax = _figure_for(ax, figsize=(8.5, 6.0))
    x = t["buffer_size"].to_numpy()
    series = (
        ("overflow_loss_rate", "overflow loss (dropped_overflow + disconnected_slow)", OUTCOME_COLORS["dropped_overflow"], "-", 2.0),
        ("disconnect_loss_rate", "disconnect loss (no buffer size fixes it)", "#5a5a5a", "-", 3.0),
        ("loss_rate", "total loss", "black", "--", 1.0),
    )
    # the dashed total is drawn over the wider cause lines, so a total equal to one cause hides neither
    shown = np.concatenate([t[c].to_numpy(float) for c, *_ in series] + [t[f"{c}_ci_high"].to_numpy(float) for c, *_ in series])
    floor = zero_floor(shown, target=sizing.max_loss)
    for col, label, color, style, width in series:
        raw = t[col].to_numpy(float)
        y = _at_floor(raw, floor)
        ax.plot(x, y, marker="o", markersize=3, color=color, linestyle=style, linewidth=width, label=label, zorder=3)
        lo, hi = t[f"{col}_ci_low"].to_numpy(float), t[f"{col}_ci_high"].to_numpy(float)
        if np.isfinite(lo).any():
            # on a log axis a lower bound of 0 would pull the band off the curve to the bottom edge
            lo = _at_floor(np.clip(lo, 0, None), floor) if floor is not None else np.clip(lo, 0, None)
            hi = np.maximum(_at_floor(hi, floor), y) if floor is not None else hi
            band = ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0, zorder=1)
            band.set_gid(f"band:{col}")
    zero_label = "0: no loss seen in any seed (drawn at the floor)"
    for col, _, color, _, _ in series:
        raw = t[col].to_numpy(float)
        if floor is not None and (raw <= 0).any():
            ax.plot(
                x[raw <= 0], np.full(int((raw <= 0).sum()), floor), linestyle="none", marker="v", markersize=7,
                markerfacecolor="white", markeredgecolor=color, label=zero_label, gid=f"zeros:{col}", zorder=4,
            )
            zero_label = "_" + zero_label  # one legend entry for the hollow markers of every series
    ax.axhline(
        sizing.max_loss, color="#2ca02c", linestyle="--", linewidth=1,
        label=f"target {sizing.max_loss:.3g} ({sizing.max_loss * 100:.3g} % of attempts)",
    )
    current = int(sizing.scenario.gateway.buffer_size)
    if sizing.buffer_size is not None:
        n = int(sizing.buffer_size)
        at = t["buffer_size"].to_numpy() == n
        y_rec = _at_floor(t["overflow_loss_rate"].to_numpy(float)[at], floor)
        current_meets = bool(t.loc[t["buffer_size"] == current, "meets_target"].any())
        if n < current and current_meets:
            # the smallest size that meets the target is not advice to shrink a buffer that meets it too
            rec_label = f"smallest buffer_size meeting the target: {n} (the scenario's {current} meets it too)"
        else:
            rec_label = f"recommended buffer_size {n}"
        ax.axvline(n, color="#1f77b4", linestyle=":", linewidth=1.2, zorder=2)
        ax.plot([n], y_rec, linestyle="none", marker="*", markersize=15, color="#1f77b4", markeredgecolor="white", label=rec_label, gid="recommended", zorder=5)
    ax.axvline(current, color="#7f7f7f", linestyle="-.", linewidth=1, label=f"scenario buffer_size {current}")
    if x.size and x.max() / max(x.min(), 1) > 20:
        ax.set_xscale("log")
    if floor is not None:
        ax.set_yscale("log")
        top = float(np.nanmax(np.append(shown, sizing.max_loss))) * 2
        ax.set_ylim(floor / 2, top)
        _mark_floor(ax, floor, "0 (no loss seen)")
    else:
        ax.set_ylim(0, max(sizing.max_loss, 1e-6) * 2)
    if reference is not None and x.size:
        sizes = np.unique(np.round(np.geomspace(max(int(x.min()), 1), int(x.max()), 300)).astype(np.int64))
        ref = np.array([float(reference(int(size))) for size in sizes])
        if floor is not None:
            ref = np.where(ref >= floor, ref, np.nan)
        ax.plot(sizes, ref, color="#17becf", linestyle=":", linewidth=2.2, label=reference_label, gid="reference", zorder=4)
    _plain_ticks(ax.yaxis, percent=True)
    ax.set_xlabel("buffer_size (events waiting; K = buffer_size + 1)")
    ax.set_ylabel("loss, % of delivery attempts")
    ax.set_title(
        f"{sizing.scenario.name}: loss vs buffer size ({sizing.seeds_n} seeds of {sizing.scenario.duration_s:g} s, "
        f"{sizing.level:.0%} bands)"
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize="small")
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
    _ms_ticks(ax_cdf.xaxis)
    ax_cdf.set_xlabel("latency")
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
    if result.aggregates is not None:
        # drawn from the aggregates: a second or so each whatever the run's size
        result = result.aggregates_only()
    paths: dict[str, Path] = {}
    with detached():
        for name, make in standard_figure_makers(result).items():
            fig, _ = make()
            path = out / f"{name}.png"
            # zlib's fastest level: a third of the time of the default for a few percent more bytes
            fig.savefig(path, dpi=dpi, pil_kwargs={"compress_level": 1})
            paths[f"figure_{name}"] = path
    return paths


def standard_figure_makers(result: SimulationResult) -> dict[str, Any]:
    """Each standard figure this result can draw, by name (STANDARD_FIGURES order): a function making it."""
    makers = {
        "throughput": lambda: plot_throughput(result),
        "latency_cdf": lambda: plot_latency_cdf(result),
        "latency_over_time": lambda: plot_latency_over_time(result),
        "buffer_occupancy": lambda: plot_buffer_occupancy(result),
        "disconnects": lambda: plot_disconnects(result),
    }
    if result.workload is None and result.aggregates is None:
        del makers["disconnects"]
    return {name: makers[name] for name in STANDARD_FIGURES if name in makers}


def plot_loss_vs_history(sizing: HistorySizingResult, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Expired loss against the history window (entries or TTL) with its band, the target, the recommendation and Redis memory.

    Values where no seed lost anything are drawn at a floor line with hollow markers (zero has
    no place on a log axis); the band's lower bound is raised to the same floor, so the band
    contains its curve. Redis memory is on a second axis.
    """
    t = sizing.table
    col = sizing.column
    fig, ax = _figure_for(ax, figsize=(8.5, 5.5))
    x = t[col].to_numpy(float)
    raw = t["expired_loss_rate"].to_numpy(float)
    lo = np.clip(t["expired_loss_rate_ci_low"].to_numpy(float), 0, None)
    hi = t["expired_loss_rate_ci_high"].to_numpy(float)
    floor = zero_floor(np.concatenate([raw, hi]), target=sizing.max_loss)
    y = _at_floor(raw, floor)
    color = OUTCOME_COLORS["lost_history_expired"]
    ax.plot(x, y, marker="o", markersize=3, color=color, linewidth=2, label="lost_history_expired", zorder=3)
    if np.isfinite(lo).any():
        lo_b = _at_floor(lo, floor) if floor is not None else lo
        hi_b = np.maximum(_at_floor(hi, floor), y) if floor is not None else hi
        band = ax.fill_between(x, np.minimum(lo_b, y), hi_b, color=color, alpha=0.2, linewidth=0, zorder=1)
        band.set_gid("band:expired_loss_rate")
    if floor is not None and (raw <= 0).any():
        ax.plot(
            x[raw <= 0], np.full(int((raw <= 0).sum()), floor), linestyle="none", marker="v", markersize=7,
            markerfacecolor="white", markeredgecolor=color, label="0: none expired in any seed (drawn at the floor)",
            gid="zeros:expired_loss_rate", zorder=4,
        )
    ax.axhline(sizing.max_loss, color="#2ca02c", linestyle="--", linewidth=1, label=f"target {sizing.max_loss:.3g}")
    if sizing.value is not None:
        at = x == sizing.value
        ax.plot(x[at], y[at], marker="*", markersize=14, color="black", linestyle="none", zorder=5,
                label=f"recommended {col}: {sizing.value:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("history_size (entries kept per player)" if sizing.by == "entries" else "history_ttl_s (seconds kept)")
    ax.set_ylabel("share of attempts lost_history_expired")
    mem = ax.twinx()
    mem.plot(x, t["history_memory_bytes"].to_numpy(float) / 2**20, color="#1f77b4", linestyle=":", marker=".",
             label="Redis memory of the histories (MiB)")
    mem.set_ylabel("Redis memory (MiB)")
    lines, labels = ax.get_legend_handles_labels()
    lines2, labels2 = mem.get_legend_handles_labels()
    ax.legend(lines + lines2, labels + labels2, fontsize=8, loc="upper right")
    ax.set_title(f"{sizing.scenario.name}: expired loss vs {col} ({len(sizing.seeds)} seeds, {sizing.level:.0%} bands)")
    return fig, ax


__all__ = [
    "plot_throughput",
    "plot_latency_cdf",
    "plot_latency_over_time",
    "plot_buffer_occupancy",
    "plot_disconnects",
    "plot_loss_vs_buffer",
    "plot_loss_vs_history",
    "plot_comparison",
    "save_standard_figures",
    "standard_figure_makers",
    "detached",
    "default_bin_s",
    "zero_floor",
    "format_ms",
    "OUTCOME_COLORS",
    "STANDARD_FIGURES",
]
