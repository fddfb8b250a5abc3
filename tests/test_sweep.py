"""Sweeps: one tidy row per (point, seed), the same frame inline, on local processes and on Dask."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import SCENARIOS

from sse_sim import load_scenario, simulate, sweep
from sse_sim.records import SUMMARY
from sse_sim.sweep import SweepError, sweep_points
from sse_sim.tables import check_frame


@pytest.fixture(scope="module")
def tiny():
    """slow_mobile cut down so each run takes milliseconds."""
    return load_scenario(SCENARIOS / "slow_mobile.yaml").with_overrides({"duration_s": 130, "population.players_per_brand": 4})


# 10 buffer sizes x 3 policies x 2 drain means = 60 points
GRID = {
    "gateway.buffer_size": [5, 10, 20, 30, 40, 50, 55, 60, 70, 100],
    "gateway.overflow_policy": ["drop_newest", "drop_oldest", "disconnect"],
    "clients.drain_time.mean": [0.03, 0.05],
}
SEEDS = [3, 11]


@pytest.fixture(scope="module")
def local_frame(tiny):
    return sweep(tiny, GRID, seeds=SEEDS, n_workers=2, progress=False)


def test_frame_is_tidy_and_documented(local_frame):
    assert len(sweep_points(GRID)[1]) == 60
    assert len(local_frame) == 120
    assert list(local_frame.columns) == [*GRID, "seed", *(c.name for c in SUMMARY)]
    summary_part = local_frame[[c.name for c in SUMMARY]]
    check_frame(summary_part, SUMMARY)
    assert local_frame["seed"].dtype == "int64"
    # rows: points in grid order (first key slowest), then seeds in the order given
    assert local_frame["gateway.buffer_size"].tolist()[:12] == [5] * 12
    assert local_frame["seed"].tolist()[:4] == [3, 11, 3, 11]
    assert local_frame["gateway.overflow_policy"].tolist()[:6] == ["drop_newest"] * 4 + ["drop_oldest"] * 2


def test_rows_are_the_runs_they_name(tiny, local_frame):
    row = local_frame.iloc[37]
    point = {k: row[k] for k in GRID}
    direct = simulate(tiny.with_overrides(point), seed=int(row["seed"])).summary()
    for c in SUMMARY:
        assert row[c.name] == pytest.approx(direct[c.name], nan_ok=True), c.name


def test_the_sweep_shows_the_buffer_effect(local_frame):
    m = local_frame.groupby(["gateway.overflow_policy", "gateway.buffer_size"])["loss_rate_dropped_overflow"].mean()
    # a burst of 60 overflows small buffers and not those that hold it all
    assert m["drop_newest", 5] > m["drop_newest", 50] > m["drop_newest", 100]
    assert m["drop_newest", 100] == 0
    assert (local_frame.loc[local_frame["gateway.overflow_policy"] == "disconnect", "loss_rate_dropped_overflow"] == 0).all()


def test_inline_run_gives_the_same_frame(tiny, local_frame):
    points = sweep_points(GRID)[1][::7]
    inline = sweep(tiny, points, seeds=SEEDS, n_workers=1, progress=False)
    sub = local_frame[local_frame.index // 2 % 7 == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(inline, sub)


@pytest.mark.slow
def test_dask_cluster_gives_the_same_frame_as_local_processes(tiny, local_frame):
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        dask_frame = sweep(tiny, GRID, seeds=SEEDS, client=client, progress=False)
    pd.testing.assert_frame_equal(dask_frame, local_frame)


def test_list_of_points(tiny):
    frame = sweep(tiny, [{"gateway.buffer_size": 10}, {"gateway.buffer_size": 80}], seeds=2, n_workers=1, progress=False)
    assert frame["gateway.buffer_size"].tolist() == [10, 10, 80, 80]
    assert frame["seed"].tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("grid", "seeds", "kw", "message"),
    [
        ({"gateway.buffer_size": 50}, 1, {}, "must be a list"),
        ({"gateway.buffer_size": []}, 1, {}, "empty list"),
        ([], 1, {}, "empty list"),
        ([{"gateway.buffer_size": 5}, {"gateway.nodes": 2}], 1, {}, "same parameters"),
        ({"gateway.bufer_size": [5]}, 1, {}, r"(?s)grid point 0 .*unknown key"),
        ({"gateway.buffer_size": [5, 0]}, 1, {}, r"(?s)grid point 1 .*buffer_size"),
        ({"duration_s.x": [1]}, 1, {}, "grid point 0"),
        ({"gateway.buffer_size": [5]}, 0, {}, "seeds must be at least 1"),
        ({"gateway.buffer_size": [5]}, [1, 1], {}, "repeats"),
        ({"gateway.buffer_size": [5]}, [-1], {}, "seeds must be whole numbers"),
        ({"gateway.buffer_size": [5]}, 1, {"n_workers": 0}, "n_workers"),
        ({"gateway.buffer_size": [5]}, 1, {"client": "tcp://x"}, "dask.distributed.Client"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, grid, seeds, kw, message):
    with pytest.raises(SweepError, match=message):
        sweep(tiny, grid, seeds=seeds, progress=False, **kw)
