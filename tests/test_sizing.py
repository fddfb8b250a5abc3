"""Buffer sizing: agreement with the M/M/1/K closed form, the loss no size fixes, the report and the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import SCENARIOS
from typer.testing import CliRunner

from sse_sim import load_scenario, size_buffer
from sse_sim.analytic import mm1k_blocking, mm1k_smallest_k
from sse_sim.cli import app
from sse_sim.sizing import smallest_meeting
from sse_sim.sweep import SweepError
from sse_sim.tables import check_frame


@pytest.mark.slow
def test_mm1k_size_matches_the_closed_form():
    sc = load_scenario(SCENARIOS / "mm1k.yaml")
    rho = 0.9
    # Neighbouring capacities differ by a factor ~rho in blocking, so put the target at the
    # geometric midpoint between K = 16 and K = 17: either neighbour is ~5 % away from it.
    # 4 seeds x 20000 s is 7.2 M arrivals per size; the standard error of the blocking
    # estimate there is ~0.7 % (measured over seeds), so the answer is ~7 standard errors clear.
    target = math.sqrt(mm1k_blocking(rho, 16) * mm1k_blocking(rho, 17))
    k = mm1k_smallest_k(rho, target)
    assert k == 17
    result = size_buffer(sc, target, seeds=4, n_workers=2, progress=False)
    assert result.buffer_size == k - 1  # K = buffer_size + 1
    t = result.table.set_index("buffer_size")
    assert t.loc[k - 1, "capacity_k"] == k
    # the curve itself follows the closed form wherever blocking is frequent enough to measure
    for size in (1, 2, 5, 10, k - 2, k - 1):
        exact = mm1k_blocking(rho, size + 1)
        assert t.loc[size, "overflow_loss_rate"] == pytest.approx(exact, rel=0.03), size
        assert t.loc[size, "overflow_loss_rate_ci_low"] <= exact * 1.01 and exact * 0.99 <= t.loc[size, "overflow_loss_rate_ci_high"]
    # the search bisected down to neighbours: the size below the answer misses the target
    assert not t.loc[k - 2, "meets_target"] and t.loc[k - 1, "meets_target"]
    assert (t["disconnect_loss_rate"] == 0).all()
    assert "Recommended buffer_size: 16 (K = 17)" in result.report()


@pytest.fixture(scope="module")
def storm_sizing():
    # a deploy drops a quarter of the clients for 3 s: that loss does not depend on the buffer
    sc = load_scenario(SCENARIOS / "deploy_storm.yaml").with_overrides(
        {
            "population.players_per_brand": 400,
            "publishers.1": {"kind": "burst", "size": 30, "every_s": 60, "spacing_s": 0.001},
            "clients.drain_time": {"kind": "exponential", "mean": 0.05},
        }
    )
    return size_buffer(sc, 1e-4, sizes=[2, 5, 10, 20, 50], seeds=3, n_workers=2, progress=False)


def test_sizing_table_is_documented(storm_sizing):
    check_frame(storm_sizing.table, "sizing")
    assert storm_sizing.table["buffer_size"].tolist() == [2, 5, 10, 20, 50]
    assert storm_sizing.per_seed.shape[0] == 15


def test_disconnect_loss_is_reported_apart_and_does_not_shrink_with_the_buffer(storm_sizing):
    t = storm_sizing.table
    assert (t["disconnect_loss_rate"] > 5e-4).all()
    # with drop_newest, who is subscribed when does not depend on the buffer: per seed,
    # lost_disconnected is the same at every size
    per = storm_sizing.per_seed.groupby("seed")["loss_rate_lost_disconnected"]
    assert (per.nunique() == 1).all() and (per.first() > 0).all()
    # a bigger buffer holds more events when the node drops, so lost_in_buffer only grows
    assert np.all(np.diff(t["disconnect_loss_rate"]) >= 0)
    assert t["overflow_loss_rate"].iloc[0] > 10 * t["overflow_loss_rate"].iloc[-1]
    # total = overflow + disconnect
    assert np.allclose(t["loss_rate"], t["overflow_loss_rate"] + t["disconnect_loss_rate"])
    report = storm_sizing.report()
    assert "Loss no buffer size fixes" in report
    assert "the lever that matters is the disconnect path" in report
    assert storm_sizing.disconnect_loss_rate == pytest.approx(t.set_index("buffer_size").loc[storm_sizing.buffer_size, "disconnect_loss_rate"])


def test_a_size_counts_only_if_every_larger_size_meets_the_target():
    table = pd.DataFrame({"buffer_size": [10, 20, 30, 40, 50]})
    assert smallest_meeting(table, np.array([False, True, False, True, True])) == 40
    assert smallest_meeting(table, np.array([True, True, True, True, True])) == 10
    assert smallest_meeting(table, np.array([True, True, True, True, False])) is None


def test_no_size_fixes_a_client_that_is_always_too_slow():
    # arrivals 50/s, drains 20/s: half the events must be dropped whatever the buffer
    sc = load_scenario(SCENARIOS / "mm1k.yaml").with_overrides(
        {"duration_s": 200, "publishers.0.rate_per_player_per_s": 50, "clients.drain_time": {"kind": "exponential", "mean": 0.05}}
    )
    r = size_buffer(sc, 0.01, seeds=2, max_size=2000, n_workers=1, progress=False)
    assert r.buffer_size is None
    assert r.table["buffer_size"].max() == 2000
    assert "No buffer_size among the sizes evaluated (up to 2000)" in r.report()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_loss": 1.5}, "max_loss"),
        ({"max_loss": -0.1}, "max_loss"),
        ({"max_loss": 0.01, "sizes": [0, 5]}, "sizes"),
        ({"max_loss": 0.01, "sizes": []}, "sizes"),
        ({"max_loss": 0.01, "level": 1.0}, "level"),
        ({"max_loss": 0.01, "seeds": 0}, "seeds"),
        ({"max_loss": 0.01, "max_size": 0}, "max_size"),
    ],
)
def test_bad_input_is_a_clear_error(kw, message):
    with pytest.raises(SweepError, match=message):
        size_buffer(SCENARIOS / "mm1k.yaml", progress=False, **kw)


def test_cli_size_prints_the_recommendation_and_writes_the_curve(tmp_path):
    out = tmp_path / "sizing"
    res = CliRunner().invoke(
        app,
        ["size", str(SCENARIOS / "slow_mobile.yaml"), "--max-loss", "0.001", "--sizes", "40,50,60,80", "--seeds", "2", "--out", str(out)],
        env={"TQDM_DISABLE": "1", "MPLBACKEND": "Agg"},
    )
    assert res.exit_code == 0, res.output
    assert "Recommended buffer_size: 60 (K = 61)" in res.output
    assert "The scenario's own buffer_size 50" in res.output
    table = pd.read_csv(out / "sizing.csv")
    assert table["buffer_size"].tolist() == [40, 50, 60, 80]
    assert (out / "loss_vs_buffer.png").stat().st_size > 15_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-loss", "2"], "--max-loss"),
        (["--max-loss", "0.01", "--sizes", "10,x"], "--sizes"),
    ],
)
def test_cli_size_bad_input(args, message):
    res = CliRunner().invoke(app, ["size", str(SCENARIOS / "mm1k.yaml"), *args])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_cli_sweep(tmp_path):
    out = tmp_path / "sweep.csv"
    res = CliRunner().invoke(
        app,
        [
            "sweep", str(SCENARIOS / "slow_mobile.yaml"),
            "--param", "gateway.buffer_size=40,70",
            "--param", "population.players_per_brand=5",
            "--seeds", "2", "--workers", "1", "--out", str(out),
        ],
        env={"TQDM_DISABLE": "1"},
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert frame["gateway.buffer_size"].tolist() == [40, 40, 70, 70]
    assert "2 points x 2 seed(s)" in res.output
    bad = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "sweep", str(SCENARIOS / "slow_mobile.yaml"), "--param", "gateway.bufer_size=4"],
        capture_output=True, text=True, timeout=600,
    )
    assert bad.returncode == 2
    assert "gateway.bufer_size: unknown key" in bad.stderr and "Traceback" not in bad.stderr


def test_capacity_counts_byte_caps_in_events_of_the_mean_framed_size():
    from sse_sim.sizing import connection_capacity

    # one payload size, 450 B: 458 B framed
    sc = load_scenario(SCENARIOS / "mm1k.yaml").with_overrides({"publishers.0.payload_bytes": 450})
    assert connection_capacity(sc) == (51, "buffer 50 + 1 in flight")
    # 13,312 B of sockets hold 29 such events; with 0 events the bytes alone decide
    k, text = connection_capacity(sc.with_overrides({"clients.socket_buffer_bytes": 13312}))
    assert k == 50 + 1 + 29 and "29 in socket buffers" in text and "458 B per framed event" in text
    # both socket caps apply: the smaller wins
    assert connection_capacity(sc.with_overrides({"clients.socket_buffer_bytes": 13312, "clients.socket_buffer_events": 10}))[0] == 61
    # a byte cap on the gateway's queue: 4,580 B hold 10 waiting events
    k, text = connection_capacity(sc.with_overrides({"gateway.buffer_bytes": 4580}))
    assert k == 11 and text.startswith("buffer 10 + 1 in flight")
    # at another buffer size, as the sizing table reads it
    assert connection_capacity(sc.with_overrides({"gateway.buffer_bytes": 4580}), buffer_size=5)[0] == 6
