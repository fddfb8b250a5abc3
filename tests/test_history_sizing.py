"""Sizing the replay window: checked by hand on one client, the plot by content, the CLI by its output."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from sse_sim.cli import app  # noqa: E402
from sse_sim.history_sizing import size_history  # noqa: E402
from sse_sim.plots import plot_loss_vs_history  # noqa: E402
from sse_sim.scenario import scenario_from_dict  # noqa: E402
from sse_sim.sweep import SweepError  # noqa: E402
from sse_sim.tables import check_frame  # noqa: E402

# one client; 100 events 10 ms apart; offline from 0.195 s to 0.695 s: a gap of events 21..70
SPEC = {
    "name": "gap50",
    "duration_s": 1.5,
    "population": {"players_per_brand": 1},
    "publishers": [{"kind": "burst", "size": 100, "every_s": 100, "spacing_s": 0.01, "aligned": True, "payload_bytes": 100}],
    "redis": {"hop_latency": 0, "subscribe_latency": 0},
    "clients": {"drain_time": 0.001, "network_latency": 0},
    "disconnects": {"windows": [{"start_s": 0.195, "end_s": 0.695}]},
}


def test_entries_the_gap_needs_found_by_bisection():
    # a pub/sub scenario is sized as stream delivery; the gap holds 50 events
    res = size_history(scenario_from_dict(SPEC), 0.0, seeds=1, n_workers=1, progress=False)
    check_frame(res.table, "history_sizing")
    assert res.value == 50
    row = res.table.set_index("history_size").loc
    assert row[49, "expired_loss_rate"] == pytest.approx(1 / 100) and row[50, "expired_loss_rate"] == 0
    # memory: the newest history_size entries of the one player, payload + 32 B each
    assert row[50, "history_memory_bytes"] == 50 * (100 + 32)
    assert "delivery.mode: stream" in res.report() and "Recommended history_size: 50" in res.report()


def test_ttl_the_gap_needs():
    # event 21 (t = 0.20 s) is 0.495 s old when the client is back at 0.695 s
    res = size_history(scenario_from_dict(SPEC), 0.0, by="ttl", values=[0.3, 0.4, 0.5, 1.0], seeds=1, n_workers=1, progress=False)
    assert res.value == 0.5
    expired = res.table.set_index("history_ttl_s")["expired_loss_rate"]
    assert expired[0.3] == pytest.approx(20 / 100) and expired[0.4] == pytest.approx(10 / 100)


def test_bad_arguments_are_clear():
    with pytest.raises(SweepError, match="by must be"):
        size_history(scenario_from_dict(SPEC), 0.01, by="bytes", progress=False)  # type: ignore[arg-type]
    with pytest.raises(SweepError, match="whole numbers"):
        size_history(scenario_from_dict(SPEC), 0.01, values=[2.5], progress=False)


def test_the_plot_draws_the_curve_inside_its_band_and_the_memory():
    spec = {**SPEC, "population": {"players_per_brand": 20}, "disconnects": {"flaps": {"rate_per_client_per_s": 2, "offline": 0.2}}}
    res = size_history(scenario_from_dict(spec), 0.001, values=[1, 2, 5, 20], seeds=3, n_workers=1, progress=False)
    fig, ax = plot_loss_vs_history(res)
    curve = next(line for line in ax.get_lines() if line.get_label() == "lost_history_expired")
    assert np.array_equal(curve.get_xdata(), res.table["history_size"].to_numpy(float))
    band = next(c for c in ax.collections if c.get_gid() == "band:expired_loss_rate")
    verts = band.get_paths()[0].vertices
    for x, y in zip(curve.get_xdata(), curve.get_ydata(), strict=True):
        ys = verts[np.isclose(verts[:, 0], x), 1]
        assert ys.min() <= y * (1 + 1e-9) and ys.max() >= y * (1 - 1e-9)
    memory_axis = fig.axes[1]
    assert np.allclose(memory_axis.get_lines()[0].get_ydata(), res.table["history_memory_bytes"] / 2**20)


def test_size_history_on_the_command_line(tmp_path):
    path = tmp_path / "gap.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["size", str(path), "--history", "--max-loss", "0", "--seeds", "1", "--sizes", "10,50,60", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Recommended history_size: 50" in result.output
    assert (out / "history_sizing.csv").exists() and (out / "loss_vs_history.png").stat().st_size > 10_000
