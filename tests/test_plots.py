"""Figures carry the expected series and data, not just pixels; PNGs are written and not blank."""

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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def mobile():
    sc = load_scenario(SCENARIOS / "slow_mobile.yaml").with_overrides({"duration_s": 360, "population.players_per_brand": 50})
    return simulate(sc, seed=3)


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


def test_throughput_stacks_fates_under_the_published_line(mobile):
    fig, ax = plots.plot_throughput(mobile, 10.0)
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = legend_labels(ax)
    assert labels[:2] == ["delivered", "dropped_overflow"] and "published" in labels
    tp = mobile.throughput(10.0)
    pub = line(ax, "published").get_ydata()
    assert np.allclose(pub[:-1], tp["published_n"] / 10.0)
    assert pub.max() > 0
    # the top of the stack (the last filled layer) is the published rate, bin by bin
    top = ax.collections[len(labels) - 2].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(pub.max())
    assert ax.get_xlabel() and ax.get_ylabel()


def test_throughput_of_a_disconnect_shows_that_cause(storm):
    _, ax = plots.plot_throughput(storm, 5.0)
    assert "lost_disconnected" in legend_labels(ax)
    assert "dropped_overflow" not in legend_labels(ax)


def test_latency_cdf_by_event_type(mobile):
    fig, ax = plots.plot_latency_cdf(mobile, by="event_type")
    labels = legend_labels(ax)
    assert set(labels) == {"gamification_balance_update", "notification", "100 ms"}
    for name in ("gamification_balance_update", "notification"):
        y = line(ax, name).get_ydata()
        assert y[-1] == 1.0 and np.all(np.diff(y) >= 0) and len(y) > 100
    assert line(ax, "100 ms").get_xdata()[0] == 100.0


def test_latency_over_time_has_percentiles_and_the_100ms_line(mobile):
    _, ax = plots.plot_latency_over_time(mobile, 30.0)
    p50, p99 = line(ax, "p50").get_ydata(), line(ax, "p99").get_ydata()
    assert len(p50) == 12 and np.all(np.isfinite(p50))
    assert np.all(p99 >= p50) and p99.max() > 100  # bursts against slow clients pass 100 ms
    assert set(line(ax, "100 ms").get_ydata()) == {100.0}
    assert ax.get_yscale() == "log"


def test_buffer_occupancy_reaches_capacity_under_bursts(mobile):
    _, ax = plots.plot_buffer_occupancy(mobile, 10.0)
    peak = line(ax, "peak held by one connection").get_ydata()
    assert peak.max() == 51
    mean = line(ax, "mean held per connection").get_ydata()
    assert 0 < mean.max() < 51
    assert any(t.startswith("capacity K = 51") for t in legend_labels(ax))
    _, ax1 = plots.plot_buffer_occupancy(mobile, 10.0, client_id=0)
    assert line(ax1, "peak held by one connection").get_ydata().max() <= 51
    assert "client 0" in ax1.get_title()


def test_disconnects_timeline(storm):
    fig, axes = plots.plot_disconnects(storm, 1.0, max_clients=20)
    assert axes.shape == (3,)
    ax_win, ax_off, ax_loss = axes
    bars = [c for c in ax_win.collections if len(c.get_paths())]
    assert len(bars) == 20  # one broken_barh per client shown
    assert "of 200 clients" in ax_win.get_title()
    # the reconnect storm: every client of node 0 resubscribes within one second
    twin = [a for a in fig.axes if a not in axes][0]
    rc = line(twin, "reconnects / s").get_ydata()
    assert rc.max() == 200 and np.argmax(rc) == 303
    assert "lost_disconnected" in legend_labels(ax_loss)


def test_loss_vs_buffer_curve(mobile):
    sizing = size_buffer(mobile.scenario, 0.001, sizes=[30, 50, 60, 80], seeds=3, n_workers=1, progress=False)
    fig, ax = plots.plot_loss_vs_buffer(sizing)
    labels = legend_labels(ax)
    assert labels[0].startswith("overflow loss") and labels[1].startswith("disconnect loss") and labels[2] == "total loss"
    assert f"recommended buffer_size {sizing.buffer_size}" in labels
    ov = line(ax, labels[0])
    assert list(ov.get_xdata()) == [30, 50, 60, 80]
    assert np.allclose(ov.get_ydata(), sizing.table["overflow_loss_rate"])
    assert len(ax.collections) >= 1  # the confidence band
    assert set(line(ax, "target 0.001").get_ydata()) == {0.001}


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
