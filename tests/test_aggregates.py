"""Aggregates: they agree with the records on every shipped scenario, and merge exactly across blocks and processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sse_sim import analysis
from sse_sim.aggregates import LATENCY_RELATIVE_ERROR, Aggregates
from sse_sim.metrics import throughput
from sse_sim.simulation import simulate
from sse_sim.tables import check_frame
from sse_sim.workload import PLAYER_CHUNK

# Shipped scenarios cut to seconds of run time (dotted overrides); the small ones run whole
CUTS = {
    "baseline": {"duration_s": 120},
    "bench_10m": {"duration_s": 20, "population.players_per_brand": 1500},
    "deploy_storm": {"duration_s": 330},
    "mm1k": {"duration_s": 500},
    "real_burst_exact": {},
    "slow_mobile": {"duration_s": 60},
    "storm_replay": {"duration_s": 60},
    "platform_1m": {"duration_s": 30, "population.players_per_brand": 400, "disconnects.mass_drops.0.at_s": 15},
}
SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "data" / "scenarios").glob("*.yaml"))


def _shipped(scenarios_dir, name):
    from sse_sim import load_scenario

    return load_scenario(scenarios_dir / f"{name}.yaml").with_overrides(CUTS.get(name, {}))


def _within(approx: float, exact: float, abs_floor: float = 0.6e-6) -> bool:
    return abs(approx - exact) <= LATENCY_RELATIVE_ERROR * abs(exact) + abs_floor


def test_large_shipped_scenarios_are_cut(scenarios_dir) -> None:
    from sse_sim.blocks import expected_attempts

    for name in SHIPPED:
        assert expected_attempts(_shipped(scenarios_dir, name)) < 3e6, name


@pytest.mark.parametrize("name", SHIPPED)
def test_aggregates_agree_with_records(name: str, scenarios_dir) -> None:
    sc = _shipped(scenarios_dir, name)
    r = simulate(sc, 3, records=True)
    agg, rec = r.aggregates, r.records
    exact = r.summary()
    approx = agg.summary()
    # counts exactly
    for key in ("published_n", "attempts_n", "delivered_n", "lost_n", "superseded_n", "replayed_n"):
        assert approx[key] == exact[key], key
    for key in exact.index:
        if key.startswith("loss_rate"):
            assert approx[key] == exact[key] or (np.isnan(approx[key]) and np.isnan(exact[key])), key
    # the largest latency exactly, the mean to the nanosecond, percentiles within the stated error
    assert approx["latency_max_s"] == exact["latency_max_s"] or np.isnan(exact["latency_max_s"])
    if exact["delivered_n"]:
        assert approx["latency_mean_s"] == pytest.approx(exact["latency_mean_s"], abs=1e-9)
        for key in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
            assert _within(approx[key], exact[key]), (key, approx[key], exact[key])
    # throughput by publish bin and deliveries by receive bin, exactly, at the aggregates' bins
    # (re-binned, they add up those bins: an instant on a coarser bin's edge may fall on either
    # side of it when the records are binned at that width directly, by rounding)
    bin_s = agg.bin_s
    pd.testing.assert_frame_equal(agg.throughput(bin_s), throughput(rec, sc.duration_s, bin_s), check_exact=True)
    coarse = agg.throughput(bin_s * 10)
    assert coarse["published_n"].sum() == len(rec) and coarse["published_n"].iloc[0] == agg.throughput()["published_n"].iloc[:10].sum()
    # occupancy: the peak per connection and bin exactly, the time averages to rounding
    by_conn = analysis.occupancy_by_connection(rec, agg.bin_s, workload=r.workload, duration_s=sc.duration_s)
    mine = agg.occupancy_by_connection()
    for col in ("connections_n", "peak_p50", "peak_p99", "peak_max"):
        np.testing.assert_array_equal(mine[col].to_numpy(), by_conn[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(mine["held_per_connection_mean"], by_conn["held_per_connection_mean"], rtol=1e-6, atol=1e-6)
    occ = analysis.occupancy(rec, agg.bin_s, duration_s=sc.duration_s)
    # held time is summed in whole nanoseconds, one rounding per held interval and bin
    np.testing.assert_allclose(agg.occupancy(agg.bin_s)["held_mean"], occ["held_mean"], rtol=1e-6, atol=1e-6)
    # connections: offline clients, closes and reconnects
    dt = analysis.disconnects_over_time(r.workload, agg.bin_s)
    mine_dt = agg.disconnects_over_time(agg.bin_s)
    np.testing.assert_array_equal(mine_dt["disconnects_n"], dt["disconnects_n"])
    np.testing.assert_array_equal(mine_dt["reconnects_n"], dt["reconnects_n"])
    np.testing.assert_allclose(mine_dt["offline_mean"], dt["offline_mean"], rtol=1e-6, atol=1e-6)
    # latency over time: counts exactly, percentiles within the error, the largest exactly
    lt = analysis.latency_percentiles_over_time(rec, agg.bin_s, duration_s=sc.duration_s)
    mine_lt = agg.latency_over_time(agg.bin_s)
    np.testing.assert_array_equal(mine_lt["delivered_n"], lt["delivered_n"])
    np.testing.assert_array_equal(mine_lt["latency_max_s"].fillna(-1), lt["latency_max_s"].fillna(-1))
    for a, e in zip(mine_lt["latency_p99_s"].dropna(), lt["latency_p99_s"].dropna(), strict=True):
        assert _within(a, e)
    # per-client loss: the histogram counts every client once, the worst client is the records' worst
    check_frame(r.client_loss(), "client_loss")
    counts = r.attempt_counts()
    check_frame(counts, "attempt_counts")
    by_records = rec.assign(b=np.floor(rec["published_at"] / agg.bin_s)).groupby(["outcome", "node"], observed=True).size()
    by_agg = counts.groupby(["outcome", "node"], observed=True)["attempts_n"].sum()
    pd.testing.assert_series_equal(by_agg.sort_index(), by_records.sort_index(), check_names=False)
    check_frame(r.worst_clients(), "worst_clients")
    for table, frame in (("throughput", agg.throughput()), ("latency_over_time", mine_lt), ("occupancy", agg.occupancy()),
                         ("occupancy_by_connection", mine), ("disconnects_over_time", mine_dt), ("latency_cdf", agg.latency_cdf())):
        check_frame(frame, table)
    assert agg.client_loss()["clients_n"].sum() == r.workload.n_clients
    lost = rec.assign(lost=~rec["outcome"].isin(["delivered", "superseded"])).groupby("client_id")["lost"].sum()
    if lost.max() > 0:
        assert agg.worst_clients["lost_n"].iloc[0] == lost.max()
        assert agg.worst_clients["client_id"].iloc[0] == lost.idxmax()


def test_latency_percentile_error_bound_holds_on_a_wide_distribution() -> None:
    rng = np.random.default_rng(0)
    lat = np.exp(rng.normal(-4, 2.5, 200_000))
    from sse_sim.aggregates import LATENCY_BINS, _hist_quantiles, _lat_bin, latency_bin_values

    values = latency_bin_values()
    k = np.array([_lat_bin(x, LATENCY_BINS) for x in lat[:2000]] + [_lat_bin(x, LATENCY_BINS) for x in lat[2000:]])
    hist = np.bincount(k, minlength=LATENCY_BINS)
    assert values.size == LATENCY_BINS
    # every latency is within the stated error of the value its bin stands for
    assert all(_within(values[b], x) for b, x in zip(k, lat, strict=True))
    for q, got in zip((0.5, 0.95, 0.99), _hist_quantiles(hist, (0.5, 0.95, 0.99)), strict=True):
        assert _within(got, float(np.quantile(lat, q)))


BLOCKED = {
    "duration_s": 40,
    "population": {"brand_ids": [1001, 1002], "players_per_brand": 1300, "clients_per_player": 2},
    "publishers": [
        {"kind": "poisson", "event_type": "gamification_balance_update", "rate_per_player_per_s": 0.4, "payload_bytes": 130},
        {"kind": "burst", "event_type": "notification", "size": 20, "every_s": 15, "spacing_s": 0.0005, "payload_bytes": 450},
    ],
    "gateway": {"nodes": 3, "buffer_size": 10, "overflow_policy": "disconnect"},
    "clients": {"drain_time": {"kind": "exponential", "mean": 0.004}, "browsers": {"chromium": 0.7, "safari": 0.3}},
    "disconnects": {
        "flaps": {"rate_per_client_per_s": 0.01, "offline": {"kind": "lognormal", "median": 2, "p99": 10}},
        "mass_drops": [{"at_s": 20, "node": 1, "jitter_s": 2}],
        "windows": [{"start_s": 5, "end_s": 8, "fraction": 0.1}],
    },
}
WITH_NODE_STAGE = {
    **BLOCKED,
    "redis": {"output_buffer": {"reader_rate_per_s": 3000, "hard_limit_bytes": 100000, "soft_limit_bytes": 0, "resubscribe_s": 0.5}},
}


@pytest.mark.parametrize("spec", [BLOCKED, WITH_NODE_STAGE], ids=["players", "node_stage"])
def test_blocks_give_the_run_in_one_piece(spec) -> None:
    whole = simulate(spec, 5, records=True)
    assert whole.metadata["blocks"] == 1
    blocked = simulate(spec, 5, records=True, block_players=PLAYER_CHUNK)
    assert blocked.metadata["blocks"] == 3
    pd.testing.assert_frame_equal(blocked.records, whole.records, check_exact=True)
    assert blocked.aggregates == whole.aggregates
    if spec is WITH_NODE_STAGE:
        assert (whole.records["outcome"] == "lost_redis_output_limit").sum() > 0
    assert (whole.records["outcome"] == "disconnected_slow").sum() > 0


def test_records_off_still_answers_everything(tmp_path) -> None:
    r = simulate(BLOCKED, 5, records=False, block_players=PLAYER_CHUNK)
    assert r.records is None
    with_records = simulate(BLOCKED, 5, records=True)
    assert r.summary()["attempts_n"] == with_records.summary()["attempts_n"]
    paths = r.save(tmp_path)
    assert "records" not in paths and paths["summary"].exists()
    with pytest.raises(Exception, match="records=True"):
        r.delivery_costs()
    with pytest.raises(ValueError, match="whole multiple"):
        r.throughput(r.aggregates.bin_s * 1.5)


def test_records_stream_to_parquet_in_row_groups(tmp_path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "records.parquet"
    r = simulate(BLOCKED, 5, records=False, records_to=path, block_players=PLAYER_CHUNK)
    assert r.records is None
    assert pq.ParquetFile(path).num_row_groups == 3
    whole = simulate(BLOCKED, 5, records=True)
    pd.testing.assert_frame_equal(pd.read_parquet(path), whole.records, check_exact=True)


def test_aggregates_refuse_to_add_other_runs() -> None:
    a = simulate(BLOCKED, 1, records=False).aggregates
    b = simulate({**BLOCKED, "duration_s": 20}, 1, records=False).aggregates
    with pytest.raises(ValueError, match="different runs"):
        _ = a + b
    assert isinstance(sum([a]), Aggregates)


@pytest.mark.parametrize("spec", [BLOCKED, WITH_NODE_STAGE], ids=["players", "node_stage"])
def test_local_worker_processes_give_the_run_in_one_piece(spec) -> None:
    whole = simulate(spec, 7, records=True)
    parted = simulate(spec, 7, records=True, workers=2, block_players=PLAYER_CHUNK)
    assert parted.metadata["workers"] == 2
    pd.testing.assert_frame_equal(parted.records, whole.records, check_exact=True)
    assert parted.aggregates == whole.aggregates


def test_a_dask_cluster_gives_the_run_in_one_piece() -> None:
    from distributed import Client, LocalCluster

    whole = simulate(WITH_NODE_STAGE, 8, records=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        parted = simulate(WITH_NODE_STAGE, 8, records=False, client=client, block_players=PLAYER_CHUNK)
    assert parted.metadata["workers"] == "dask"
    assert parted.aggregates == whole.aggregates
    assert parted.summary().equals(whole.summary())


def _peak_rss_mb(players_per_brand: int) -> float:
    import json
    import subprocess
    import sys

    spec = {
        "duration_s": 100,
        "population": {"brand_ids": [1001], "players_per_brand": players_per_brand},
        "publishers": [{"kind": "poisson", "rate_per_player_per_s": 2.0, "payload_bytes": 130}],
        "disconnects": {"flaps": {"rate_per_client_per_s": 0.001, "offline": 3}},
    }
    code = (
        "import json, resource, sys; from sse_sim import simulate; "
        f"r = simulate(json.loads({json.dumps(json.dumps(spec))}), 0, records=False, block_players=2048); "
        "assert r.records is None; "
        "print(r.summary()['published_n'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    published, rss_kb = out.stdout.split()
    return int(published), int(rss_kb) / 1024


def test_memory_without_records_does_not_grow_with_the_events() -> None:
    small_n, small = _peak_rss_mb(5_000)  # 1 M events
    big_n, big = _peak_rss_mb(50_000)  # 10 M events, in the same blocks
    assert big_n > 9 * small_n
    # the same block size: the same peak, give or take the aggregates and the allocator
    assert big < small * 1.25 + 50, (small, big)


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sse_sim.cli", *args], capture_output=True, text=True, env=_quiet_env())


def _quiet_env() -> dict:
    import os

    return {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}


def test_run_without_records_on_two_workers_writes_summary_and_every_figure(tmp_path) -> None:
    import json

    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(WITH_NODE_STAGE))
    out = tmp_path / "out"
    done = _cli("run", str(scenario), "--no-records", "--workers", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert not (out / "records.parquet").exists()
    assert {p.name for p in out.glob("*.png")} == {f"{n}.png" for n in ("throughput", "latency_cdf", "latency_over_time", "buffer_occupancy", "disconnects")}
    summary = json.loads((out / "summary.json").read_text())
    whole = simulate(WITH_NODE_STAGE, 0, records=False).summary()
    assert summary["summary"]["attempts_n"] == whole["attempts_n"]
    assert summary["summary"]["delivered_n"] == whole["delivered_n"]
    assert summary["run"]["workers"] == 2
    tp = pd.read_csv(out / "throughput.csv")
    check_frame(tp, "throughput")
    assert tp["published_n"].sum() == whole["attempts_n"]


def test_run_with_records_forced_writes_them(tmp_path) -> None:
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**BLOCKED, "duration_s": 5}))
    done = _cli("run", str(scenario), "--records", "--no-plots", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rec = pd.read_parquet(tmp_path / "out" / "records.parquet")
    pd.testing.assert_frame_equal(rec, simulate({**BLOCKED, "duration_s": 5}, 0, records=True).records, check_exact=True)


def test_an_unreachable_scheduler_is_one_line(tmp_path) -> None:
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({**BLOCKED, "duration_s": 5}))
    done = _cli("run", str(scenario), "--scheduler", "tcp://127.0.0.1:9")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "cannot reach the Dask scheduler" in done.stderr


def test_time_order_is_a_stable_argsort() -> None:
    from sse_sim.node_stage import time_order

    rng = np.random.default_rng(4)
    spread = rng.random(100_000) * 3600
    burst = np.concatenate([np.repeat(rng.random(300) * 10, 40), np.zeros(100), rng.random(500) * 1e-6])
    for t in (spread, burst, np.sort(spread)[::-1].copy(), np.full(10, 2.0), np.array([1.0]), np.zeros(0)):
        np.testing.assert_array_equal(time_order(t), np.argsort(t, kind="stable"))


def test_check_size_sweep_and_replicate_work_from_aggregates_alone(monkeypatch, capsys, tmp_path) -> None:
    import yaml

    import sse_sim.simulation as simulation
    from sse_sim.cli import main
    from sse_sim.sizing import size_buffer
    from sse_sim.sweep import sweep

    small = {**BLOCKED, "duration_s": 10, "population": {**BLOCKED["population"], "players_per_brand": 100}}
    monkeypatch.setattr(simulation, "AUTO_RECORDS_MAX_ATTEMPTS", 0)  # every run is "too large" for records
    assert simulate(small, 1).records is None
    frame = sweep(small, {"gateway.buffer_size": [5, 40]}, seeds=2, n_workers=1, progress=False)
    assert len(frame) == 4 and (frame["attempts_n"] > 0).all()
    # a larger buffer loses no more to overflow on the same seeds
    by_size = frame.groupby("gateway.buffer_size")["loss_rate_disconnected_slow"].mean()
    assert by_size[40] <= by_size[5]
    sizing = size_buffer(small, 0.5, sizes=[5, 40], seeds=2, n_workers=1, progress=False)
    assert sizing.buffer_size in (5, 40) and len(sizing.table) == 2
    per_seed, ci = simulation.replicate(small, 3)
    assert len(per_seed) == 3 and set(ci["metric"]) >= {"loss_rate", "latency_p99_s"}
    scenario = tmp_path / "small.yaml"
    scenario.write_text(yaml.safe_dump(small))
    with pytest.raises(SystemExit) as broken:
        main(["check", str(scenario), "--max-loss", "0.000001"])
    assert broken.value.code == 1
    with pytest.raises(SystemExit) as met:
        main(["check", str(scenario), "--max-loss", "0.99"])
    assert met.value.code == 0


def test_occupancy_with_socket_buffers_in_bytes_is_not_clipped() -> None:
    # 200 events of 130 B at once to a client reading one per 10 ms; the sockets hold 16 kB
    spec = {
        "duration_s": 5,
        "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 200, "every_s": 100, "spacing_s": 0, "aligned": True, "payload_bytes": 130}],
        "gateway": {"buffer_size": 50, "reader_yield_every": 1},
        "clients": {"drain_time": 0.01, "network_latency": 0, "socket_buffer_bytes": 16384},
        "redis": {"hop_latency": 0, "subscribe_latency": 0},
    }
    r = simulate(spec, 0, records=True)
    by_records = analysis.occupancy_by_connection(r.records, r.aggregates.bin_s, workload=r.workload, duration_s=5)
    mine = r.aggregates.occupancy_by_connection()
    assert by_records["peak_max"].max() > 51 + 1  # more than the queue and one event in flight
    np.testing.assert_array_equal(mine["peak_max"], by_records["peak_max"])
    np.testing.assert_array_equal(mine["peak_p99"], by_records["peak_p99"])
