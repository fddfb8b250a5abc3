"""Figures carry the expected series, limits and tick text, not just pixels; PNGs are written and not blank."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import ROOT, SCENARIOS  # noqa: E402

from sse_sim import (  # noqa: E402
    load_scenario,
    plots,  # noqa: E402
    simulate,
    size_buffer,
)
from sse_sim.analysis import disconnects_over_time, occupancy, occupancy_by_connection  # noqa: E402
from sse_sim.analytic import mm1k_blocking  # noqa: E402
from sse_sim.sizing import SizingResult  # noqa: E402
from sse_sim.tables import (
    SIZING,  # noqa: E402
    check_frame,  # noqa: E402
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def mobile():
    sc = load_scenario(SCENARIOS / "slow_mobile.yaml").with_overrides({"duration_s": 360, "population.players_per_brand": 50})
    return simulate(sc, seed=3)


@pytest.fixture(scope="module")
def baseline():
    sc = load_scenario(SCENARIOS / "baseline.yaml").with_overrides({"duration_s": 300, "population.players_per_brand": 200})
    return simulate(sc, seed=5)


@pytest.fixture(scope="module")
def storm():
    sc = load_scenario(SCENARIOS / "deploy_storm.yaml").with_overrides({"population.players_per_brand": 800})
    return simulate(sc, seed=4)


def legend_labels(ax) -> list[str]:
    leg = ax.get_legend()
    assert leg is not None, "axes has no legend"
    return [t.get_text() for t in leg.get_texts()]


def line(ax, label: str):
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert found, f"no line labelled {label!r} in {[ln.get_label() for ln in ax.get_lines()]}"
    return found[0]


def band_bounds(ax, gid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The x values of a fill_between band and its lower and upper edge at each of them."""
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert found, f"no band {gid!r}"
    v = found[0].get_paths()[0].vertices
    xs = np.unique(v[:, 0])
    lo = np.array([v[v[:, 0] == x, 1].min() for x in xs])
    hi = np.array([v[v[:, 0] == x, 1].max() for x in xs])
    return xs, lo, hi


def by_gid(ax, gid: str):
    found = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    assert found, f"no line with gid {gid!r}"
    return found[0]


def tick_texts(fig, axis) -> list[str]:
    fig.canvas.draw()
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text() and lo <= axis.convert_units(t.get_position()[axis.axis_name == "y"]) <= hi]


def sizing_of(scenario, rows: list[dict], *, max_loss: float, seeds: int = 3):
    """A SizingResult built from a hand-written table, for exact checks of what is drawn."""
    table = pd.DataFrame(rows)
    for name in ("overflow_loss_rate", "disconnect_loss_rate", "loss_rate"):
        for suffix in ("", "_ci_low", "_ci_high"):
            column = table[name + suffix] if name + suffix in table else pd.Series(0.0, index=table.index)
            table[name + suffix] = column.fillna(0.0)
    table["capacity_k"] = table["buffer_size"] + 1
    table["seeds_n"] = seeds
    table["meets_target"] = table["overflow_loss_rate"] <= max_loss
    table = table[[c.name for c in SIZING]].astype({c.name: c.dtype for c in SIZING})
    sc = scenario
    ok = table["meets_target"].to_numpy()
    bad = np.flatnonzero(~ok)
    best = int(table["buffer_size"].iloc[bad[-1] + 1 if bad.size else 0]) if ok[-1] else None
    return SizingResult(sc, max_loss, 0.95, list(range(seeds)), table, pd.DataFrame(), best, best)


# ---- 3 and 7: throughput shows loss on its own scale; attempts are labelled as attempts


def test_throughput_stacks_attempts_by_fate_under_the_published_line(mobile):
    fig, ax = plots.plot_throughput(mobile, 10.0)
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = legend_labels(ax)
    assert labels == ["delivered", "dropped_overflow", "published (events × clients)"]
    tp = mobile.throughput(10.0)
    pub = line(ax, "published (events × clients)").get_ydata()
    assert np.allclose(pub[:-1], tp["published_n"] / 10.0)  # attempts, not events: events × clients
    assert "events × clients" in ax.get_ylabel() and "attempts" in ax.get_ylabel()
    # the top of the stack (the last filled layer) is the published rate
    top = ax.collections[len(labels) - 2].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(pub.max())


def test_throughput_shows_a_small_loss_on_its_own_scale(baseline):
    # the baseline loses a fraction of a percent to flaps: a sliver of the attempts axis
    fig, ax = plots.plot_throughput(baseline, 5.0)
    assert legend_labels(ax) == ["delivered", "lost_disconnected", "published (events × clients)"]
    loss_ax = fig.axes[1]
    assert loss_ax is not ax and loss_ax.get_shared_x_axes().joined(ax, loss_ax)
    tp = baseline.throughput(5.0)
    lost = tp["lost_disconnected_n"].to_numpy()
    overall = lost.sum() / tp["published_n"].sum()
    assert 0 < overall < 0.01
    assert lost.max() / 5.0 < 0.02 * ax.get_ylim()[1]
    # its own panel: the share of each bin's attempts, scaled to the largest share
    share = lost / tp["published_n"].to_numpy() * 100
    layer = loss_ax.collections[0].get_paths()[0].vertices
    assert layer[:, 1].max() == pytest.approx(share.max())
    bins = {round(x0, 6): layer[layer[:, 0] == x0, 1].max() for x0 in tp["bin_start_at"]}
    assert np.allclose([bins[round(x0, 6)] for x0 in tp["bin_start_at"]][1:], np.maximum(share[1:], share[:-1]))
    assert share.max() <= loss_ax.get_ylim()[1] <= 1.2 * share.max()
    assert f"{overall * 100:.3g} % of all attempts" in loss_ax.get_title()
    assert all(t.endswith("%") for t in tick_texts(fig, loss_ax.yaxis))


def test_throughput_into_a_given_axes_puts_the_loss_share_on_a_twin(mobile):
    fig, (a, b) = plt.subplots(1, 2)
    f, ax = plots.plot_throughput(mobile, 10.0, ax=b)
    assert f is fig and ax is b
    twin = fig.axes[-1]
    assert twin not in (a, b) and "%" in twin.get_ylabel()
    tp = mobile.throughput(10.0)
    share = line(twin, "dropped_overflow, % of the bin's attempts (right)").get_ydata()
    assert np.allclose(share[:-1], tp["dropped_overflow_n"] / tp["published_n"] * 100)


# ---- 6: latency ticks in plain units


def test_latency_cdf_by_event_type(mobile):
    fig, ax = plots.plot_latency_cdf(mobile, by="event_type")
    labels = legend_labels(ax)
    assert set(labels) == {"gamification_balance_update", "notification", "100 ms"}
    for name in ("gamification_balance_update", "notification"):
        y = line(ax, name).get_ydata()
        assert y[-1] == 1.0 and np.all(np.diff(y) >= 0) and len(y) > 100
    assert line(ax, "100 ms").get_xdata()[0] == 100.0
    assert ax.get_xscale() == "log"
    texts = tick_texts(fig, ax.xaxis)
    assert "100 ms" in texts and "1 s" in texts
    assert all(t.endswith((" ms", " s")) and "10^" not in t and "times" not in t for t in texts), texts


def test_latency_over_time_has_percentiles_the_100ms_line_and_ms_ticks(mobile):
    fig, ax = plots.plot_latency_over_time(mobile, 30.0)
    p50, p99 = line(ax, "p50").get_ydata(), line(ax, "p99").get_ydata()
    assert len(p50) == 12 and np.all(np.isfinite(p50))
    assert np.all(p99 >= p50) and p99.max() > 100  # bursts against slow clients pass 100 ms
    assert set(line(ax, "100 ms").get_ydata()) == {100.0}
    assert ax.get_yscale() == "log"
    texts = tick_texts(fig, ax.yaxis)
    assert "100 ms" in texts and len(texts) >= 3
    assert all(t.endswith((" ms", " s")) and "10^" not in t and "times" not in t for t in texts), texts


def test_ms_tick_text():
    assert [plots.format_ms(v) for v in (0.5, 30.0, 100.0, 1000.0, 2500.0)] == ["0.5 ms", "30 ms", "100 ms", "1 s", "2.5 s"]


# ---- 4: buffer occupancy as a spread over connections, with K and a range that shows both


def test_occupancy_by_connection_by_hand():
    # client 0 holds [0, 2) and [1, 3): two at once during [1, 2); client 1 holds [0.5, 1.5);
    # a dropped row (left_at NaN) and one that never got there (gateway_at NaN) hold nothing
    rec = pd.DataFrame(
        {
            "client_id": np.array([0, 0, 1, 1, 0, 2], np.int32),
            "gateway_at": [0.0, 1.0, 0.5, 1.0, np.nan, 3.2],
            "left_at": [2.0, 3.0, 1.5, np.nan, np.nan, 3.4],
            "published_at": [0.0, 1.0, 0.5, 1.0, 0.0, 3.2],
        }
    )
    occ = occupancy_by_connection(rec, 1.0, duration_s=4.0)
    check_frame(occ, "occupancy_by_connection")
    assert occ["connections_n"].tolist() == [3, 3, 3, 3]
    assert occ["peak_max"].tolist() == [1, 2, 1, 1]
    assert occ["peak_p99"].tolist() == [1, 2, 1, 1]
    assert occ["peak_p50"].tolist() == [1, 1, 0, 0]  # bin 1: peaks 2, 1, 0 -> median 1
    assert occ["held_per_connection_mean"].tolist() == pytest.approx([1.5 / 3, 2.5 / 3, 1 / 3, 0.2 / 3])


def test_occupancy_by_connection_counts_only_connected_clients(storm):
    occ = occupancy_by_connection(storm.records, 1.0, workload=storm.workload)
    # node 0's 200 clients are gone from t = 300 s until they resubscribe about 3 s later
    assert occ["connections_n"].max() == 800
    assert occ["connections_n"].iloc[301] == 600
    off = disconnects_over_time(storm.workload, 1.0)["offline_mean"].to_numpy()
    assert occ["connections_n"].iloc[301] == 800 - round(off[301])


def test_buffer_occupancy_draws_the_spread_against_k(mobile):
    fig, ax = plots.plot_buffer_occupancy(mobile, 10.0)
    occ = occupancy_by_connection(mobile.records, 10.0, workload=mobile.workload, duration_s=mobile.duration_s)
    busiest = line(ax, "busiest connection's peak").get_ydata()[:-1]
    p99 = line(ax, "99th percentile of connections' peaks").get_ydata()[:-1]
    mean = line(ax, "mean held per connected connection").get_ydata()[:-1]
    assert np.array_equal(busiest, occ["peak_max"]) and busiest.max() == 51  # bursts fill the buffer
    assert np.array_equal(p99, occ["peak_p99"]) and np.all(p99 <= busiest)
    # slow_mobile keeps its 50 clients connected: the mean per connected connection is the total over 50
    total = occupancy(mobile.records, 10.0, duration_s=mobile.duration_s)["held_mean"].to_numpy()
    assert np.allclose(mean, total / 50) and 0.1 < mean.max() < 5
    assert any(t.startswith("capacity K = 51") for t in legend_labels(ax))
    assert set(line(ax, legend_labels(ax)[-1]).get_ydata()) == {51}
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "log" and lo < mean[mean > 0].min() and hi > 51
    assert "50 connections" in ax.get_title()
    _, ax1 = plots.plot_buffer_occupancy(mobile, 10.0, client_id=0)
    assert line(ax1, "busiest connection's peak").get_ydata().max() <= 51
    assert "client 0" in ax1.get_title()


def test_buffer_occupancy_of_idle_buffers_is_not_a_flat_zero(storm):
    # most connections hold nothing most of the time: the median is 0, drawn at the floor line
    fig, ax = plots.plot_buffer_occupancy(storm, 5.0)
    occ = occupancy_by_connection(storm.records, 5.0, workload=storm.workload, duration_s=storm.duration_s)
    floor = plots.zero_floor(np.concatenate([occ[c].to_numpy(float) for c in ("peak_max", "peak_p99", "peak_p50", "held_per_connection_mean")]))
    median = line(ax, "median connection's peak").get_ydata()[:-1]
    assert np.allclose(median, np.where(occ["peak_p50"] > 0, occ["peak_p50"], floor))
    assert [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_gid() == "zero_floor"] == [pytest.approx(floor)]
    mean = line(ax, "mean held per connected connection").get_ydata()
    lo, hi = ax.get_ylim()
    assert lo < floor < mean.min() and hi > 51
    assert all("10^" not in t for t in tick_texts(fig, ax.yaxis))


# ---- 5: reconnects are counted per bin, not turned into a rate


def test_disconnects_timeline_counts_reconnects_per_bin(storm):
    fig, axes = plots.plot_disconnects(storm, 1.0, max_clients=20)
    assert axes.shape == (3,)
    ax_win, ax_off, ax_loss = axes
    bars = [c for c in ax_win.collections if len(c.get_paths())]
    assert len(bars) == 20  # one broken_barh per client shown
    assert "of 200 clients" in ax_win.get_title()
    # the reconnect storm: every client of node 0 resubscribes within one second
    twin = [a for a in fig.axes if a not in axes][0]
    rc = line(twin, "reconnects per 1 s bin").get_ydata()
    assert rc.max() == 200 and np.argmax(rc) == 303
    assert "lost_disconnected" in legend_labels(ax_loss)


def test_storm_in_5s_bins_reads_200_reconnects_not_40_per_second(storm):
    fig, axes = plots.plot_disconnects(storm, 5.0)
    twin = [a for a in fig.axes if a not in axes][0]
    rc = line(twin, "reconnects per 5 s bin").get_ydata()
    assert rc.max() == 200
    assert twin.get_ylabel() == "reconnects per 5 s bin"
    assert axes[2].get_ylabel() == "attempts lost per 5 s bin"
    lost = storm.throughput(5.0)["lost_disconnected_n"].to_numpy()
    assert axes[2].collections[0].get_paths()[0].vertices[:, 1].max() == lost.max()


# ---- 1 and 2: loss vs buffer on a log axis: zeros drawn, bands around their curves


def test_loss_vs_buffer_curve(mobile):
    sizing = size_buffer(mobile.scenario, 0.001, sizes=[30, 50, 60, 80], seeds=3, n_workers=1, progress=False)
    fig, ax = plots.plot_loss_vs_buffer(sizing)
    labels = legend_labels(ax)
    assert labels[0].startswith("overflow loss") and labels[1].startswith("disconnect loss") and labels[2] == "total loss"
    assert f"recommended buffer_size {sizing.buffer_size}" in labels
    ov = line(ax, labels[0])
    assert list(ov.get_xdata()) == [30, 50, 60, 80]
    raw = sizing.table["overflow_loss_rate"].to_numpy()
    floor = by_gid(ax, "zero_floor").get_ydata()[0]
    assert np.allclose(ov.get_ydata(), np.where(raw > 0, raw, floor))
    assert line(ax, "target 0.001 (0.1 % of attempts)").get_ydata()[0] == 0.001
    assert "3 seeds of 360 s" in ax.get_title()


def test_zero_loss_is_drawn_at_a_labelled_floor_and_bands_contain_their_curves(mobile):
    # the old picture: a lower bound of 0 on a log axis drew a wedge away from the curve, and
    # the sizes with no loss were left out, so the curve ended before the recommended size
    rows = [
        {"buffer_size": 1, "overflow_loss_rate": 0.3, "overflow_loss_rate_ci_low": 0.25, "overflow_loss_rate_ci_high": 0.35},
        {"buffer_size": 20, "overflow_loss_rate": 0.05, "overflow_loss_rate_ci_low": 0.0, "overflow_loss_rate_ci_high": 0.12},
        {"buffer_size": 50, "overflow_loss_rate": 2e-4, "overflow_loss_rate_ci_low": 0.0, "overflow_loss_rate_ci_high": 9e-4},
        {"buffer_size": 60, "overflow_loss_rate": 0.0},
        {"buffer_size": 100, "overflow_loss_rate": 0.0},
    ]
    for r in rows:
        r.update(disconnect_loss_rate=1e-3, disconnect_loss_rate_ci_low=5e-4, disconnect_loss_rate_ci_high=1.5e-3)
        r.update(loss_rate=r["overflow_loss_rate"] + 1e-3, loss_rate_ci_low=r.get("overflow_loss_rate_ci_low", 0) + 5e-4)
        r.update(loss_rate_ci_high=r.get("overflow_loss_rate_ci_high", 0) + 1.5e-3)
    sizing = sizing_of(mobile.scenario, rows, max_loss=1e-4)
    assert sizing.buffer_size == 60
    fig, ax = plots.plot_loss_vs_buffer(sizing)
    assert ax.get_yscale() == "log"
    floor = by_gid(ax, "zero_floor").get_ydata()[0]
    assert floor == pytest.approx(min(2e-4 / 2, 1e-4 / 10))  # half the smallest loss, a decade under the target
    labels = [t for t in ax.texts if t.get_gid() == "zero_floor_label"]
    assert [t.get_text() for t in labels] == ["0 (no loss seen)"]
    ov = line(ax, "overflow loss (dropped_overflow + disconnected_slow)")
    # the curve runs through every size, the zeros at the floor
    assert list(ov.get_xdata()) == [1, 20, 50, 60, 100]
    assert np.allclose(ov.get_ydata(), [0.3, 0.05, 2e-4, floor, floor])
    zeros = by_gid(ax, "zeros:overflow_loss_rate")
    assert list(zeros.get_xdata()) == [60, 100] and np.allclose(zeros.get_ydata(), floor)
    assert zeros.get_marker() != ov.get_marker() and zeros.get_markerfacecolor() == "white"
    assert "0: no loss seen in any seed (drawn at the floor)" in legend_labels(ax)
    # every band contains its curve, bound to bound, and none reaches below the floor
    for col, label in (
        ("overflow_loss_rate", "overflow loss (dropped_overflow + disconnected_slow)"),
        ("disconnect_loss_rate", "disconnect loss (no buffer size fixes it)"),
        ("loss_rate", "total loss"),
    ):
        xs, lo, hi = band_bounds(ax, f"band:{col}")
        curve = line(ax, label)
        y = dict(zip(curve.get_xdata(), curve.get_ydata(), strict=True))
        assert list(xs) == [1, 20, 50, 60, 100]
        for x, low, high in zip(xs, lo, hi, strict=True):
            assert floor * 0.999 <= low <= y[x] * 1.0001 and y[x] <= high * 1.0001, (col, x, low, y[x], high)
    _, lo, hi = band_bounds(ax, "band:overflow_loss_rate")
    assert np.allclose(lo, [0.25, floor, floor, floor, floor]) and np.allclose(hi, [0.35, 0.12, 9e-4, floor, floor])
    # the recommended size's point sits on the curve
    star = by_gid(ax, "recommended")
    assert list(star.get_xdata()) == [60] and np.allclose(star.get_ydata(), [floor])
    assert star.get_label() == "recommended buffer_size 60"
    ylo, yhi = ax.get_ylim()
    assert 0 < ylo < floor and yhi >= 0.35
    texts = tick_texts(fig, ax.yaxis)
    assert "0.01 %" in texts and all(t.endswith("%") for t in texts), texts


def test_a_smaller_size_meeting_the_target_is_not_labelled_a_recommendation(mobile):
    rows = [{"buffer_size": b, "overflow_loss_rate": v} for b, v in ((2, 0.07), (5, 0.0), (50, 0.0), (100, 0.0))]
    for r in rows:
        r.update(disconnect_loss_rate=4e-3, loss_rate=r["overflow_loss_rate"] + 4e-3)
    sizing = sizing_of(mobile.scenario, rows, max_loss=1e-4)
    _, ax = plots.plot_loss_vs_buffer(sizing)
    assert by_gid(ax, "recommended").get_label() == "smallest buffer_size meeting the target: 5 (the scenario's 50 meets it too)"
    assert not any(t.startswith("recommended") for t in legend_labels(ax))


def test_closed_form_reference_is_drawn_over_the_simulated_sizes_within_the_data_decades(mobile):
    # notebook 04: drawn out to buffer_size 10,000 the closed form took the y axis to 1e-241
    sizes = [1, 2, 5, 10, 20, 50, 100, 1000, 10000]
    rows = [{"buffer_size": b, "overflow_loss_rate": mm1k_blocking(0.9, b + 1) if b <= 50 else 0.0} for b in sizes]
    for r in rows:
        r.update(loss_rate=r["overflow_loss_rate"])
    sizing = sizing_of(mobile.scenario, rows, max_loss=0.01)
    _, ax = plots.plot_loss_vs_buffer(sizing, reference=lambda b: mm1k_blocking(0.9, b + 1), reference_label="M/M/1/K closed form")
    ref = line(ax, "M/M/1/K closed form")
    x, y = np.asarray(ref.get_xdata()), np.asarray(ref.get_ydata(), float)
    assert x.min() == 1 and x.max() == 10000
    floor = by_gid(ax, "zero_floor").get_ydata()[0]
    shown = np.isfinite(y)
    assert shown.sum() > 10 and np.all(y[shown] >= floor)
    assert np.allclose(y[shown], [mm1k_blocking(0.9, int(b) + 1) for b in x[shown]])
    ylo, yhi = ax.get_ylim()
    data = sizing.table["overflow_loss_rate"].to_numpy()
    assert ylo == pytest.approx(floor / 2) and yhi == pytest.approx(data.max() * 2)
    assert np.log10(yhi / ylo) < np.log10(data.max() / data[data > 0].min()) + 1.5


def test_comparison_plot_against_the_compare_contract(mobile):
    other = simulate(mobile.scenario, seed=9)
    other.backend = "fakeredis"
    s, r = mobile.summary(), other.summary()
    metrics = ["loss_rate", "loss_rate_dropped_overflow", "latency_p50_s", "latency_p99_s"]
    table = pd.DataFrame(
        {
            "metric": metrics,
            "sim": [s[m] for m in metrics],
            "real": [r[m] for m in metrics],
            "diff": [r[m] - s[m] for m in metrics],
            "tolerance": [0.01, 0.01, 0.005, 1e-6],
        }
    )
    table["within"] = table["diff"].abs() <= table["tolerance"]
    comparison = SimpleNamespace(table=table, ok=bool(table["within"].all()), sim=mobile, real=other)
    fig, axes = plots.plot_comparison(comparison)
    ax_cdf, ax_tab = axes
    assert {"sim", "real (fakeredis)", "100 ms"} <= set(legend_labels(ax_cdf))
    assert [t.get_text() for t in ax_tab.get_yticklabels()] == metrics
    bars = list(ax_tab.containers[0])
    assert len(bars) == 4
    widths = [b.get_width() for b in bars]
    assert widths[0] == pytest.approx(table["diff"][0] / 0.01)
    assert abs(widths[3]) == 3  # far outside a tiny tolerance: clipped, and shown red
    assert bars[3].get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("#d62728"))
    assert "OUT OF TOLERANCE" in ax_tab.get_title()


def test_draws_into_given_axes(mobile):
    fig, (a, b) = plt.subplots(1, 2)
    f1, ax1 = plots.plot_latency_cdf(mobile, ax=a)
    f2, ax2 = plots.plot_throughput(mobile, ax=b)
    assert f1 is fig and f2 is fig and ax1 is a and ax2 is b


def test_save_standard_figures_writes_non_blank_pngs(tmp_path, storm):
    before = plt.get_fignums()
    paths = plots.save_standard_figures(storm, tmp_path)
    assert set(paths) == {f"figure_{n}" for n in plots.STANDARD_FIGURES}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 15_000
        img = mpimg.imread(path)
        # plenty of distinct colours: axes, text and data, not an empty canvas
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 50
    # figures written to files are not left in pyplot's registry
    assert plt.get_fignums() == before


def test_only_plots_imports_matplotlib_and_nothing_calls_show():
    for path in (ROOT / "sse_sim").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            if path.name != "plots.py":
                assert not any(n.split(".")[0] == "matplotlib" for n in names), f"{path} imports matplotlib"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "show":
                owner = node.func.value
                assert not (isinstance(owner, ast.Name) and owner.id in ("plt", "pyplot")), f"{path}:{node.lineno} calls plt.show()"


def test_default_bin_is_round():
    assert plots.default_bin_s(600) == 5.0
    assert plots.default_bin_s(20000) == 200.0
    assert plots.default_bin_s(1.0) == pytest.approx(0.01)


def test_sse_sim_run_writes_the_baseline_figures(tmp_path):
    # what `make run` does: the baseline's figures as PNG next to its records
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "run", str(SCENARIOS / "baseline.yaml"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    for name in plots.STANDARD_FIGURES:
        png = tmp_path / f"{name}.png"
        assert png.stat().st_size > 15_000, name
        assert f"wrote figure_{name}: {png}" in proc.stdout
