"""The frames behind the plots: occupancy, latency over time, CDFs, offline windows and disconnect bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SCENARIOS

from sse_sim import load_scenario, simulate
from sse_sim.analysis import (
    disconnects_over_time,
    latency_cdf,
    latency_percentiles_over_time,
    occupancy,
    offline_windows,
)
from sse_sim.analytic import mm1k_mean_number
from sse_sim.tables import check_frame


@pytest.fixture(scope="module")
def storm():
    return simulate(SCENARIOS / "deploy_storm.yaml", seed=1)


@pytest.fixture(scope="module")
def mobile():
    sc = load_scenario(SCENARIOS / "slow_mobile.yaml").with_overrides({"duration_s": 300})
    return simulate(sc, seed=2)


def _records(rows: list[tuple[int, float, float]]) -> pd.DataFrame:
    """Minimal records: (client_id, gateway_at, left_at) per row."""
    c, g, lv = zip(*rows, strict=True)
    return pd.DataFrame(
        {"client_id": np.array(c, np.int32), "gateway_at": np.array(g, float), "left_at": np.array(lv, float), "published_at": np.array(g, float)}
    )


def test_occupancy_by_hand():
    # client 0 holds [0, 2) and [1, 3): two at once during [1, 2); client 1 holds [0.5, 1.5);
    # a dropped row (left_at NaN) and one that never got there (gateway_at NaN) hold nothing
    rec = _records([(0, 0.0, 2.0), (0, 1.0, 3.0), (1, 0.5, 1.5), (1, 1.0, np.nan), (0, np.nan, np.nan)])
    occ = occupancy(rec, 1.0, duration_s=4.0)
    check_frame(occ, "occupancy")
    assert occ["held_mean"].tolist() == pytest.approx([1.5, 2.5, 1.0, 0.0])
    assert occ["held_max"].tolist() == [1, 2, 1, 0]
    one = occupancy(rec, 1.0, duration_s=4.0, client_id=1)
    assert one["held_mean"].tolist() == pytest.approx([0.5, 0.5, 0, 0])
    assert one["held_max"].tolist() == [1, 1, 0, 0]


def test_departure_and_arrival_at_the_same_instant_do_not_overlap():
    rec = _records([(0, 0.0, 1.0), (0, 1.0, 2.0)])
    assert occupancy(rec, 2.0, duration_s=2.0)["held_max"].tolist() == [1]


@pytest.mark.slow
def test_mm1k_time_averaged_occupancy_matches_closed_form(scenarios_dir):
    sc = load_scenario(scenarios_dir / "mm1k.yaml").with_overrides({"duration_s": 8000})
    r = simulate(sc, seed=5)
    occ = occupancy(r.records, 200.0, duration_s=sc.duration_s)
    K = sc.gateway.buffer_size + 1
    assert occ["held_max"].max() == K
    # batch means over 40 bins of 200 s (long against the busy periods)
    x = occ["held_mean"].to_numpy()[1:]
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert abs(x.mean() - mm1k_mean_number(0.9, K)) <= 4 * se, (x.mean(), se)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "disconnect"])
def test_no_connection_ever_holds_more_than_k(scenarios_dir, policy):
    sc = load_scenario(scenarios_dir / "slow_mobile.yaml").with_overrides(
        {"duration_s": 300, "gateway.overflow_policy": policy, "gateway.buffer_size": 20, "clients.socket_buffer_events": 3}
    )
    occ = occupancy(simulate(sc, seed=0).records, 5.0, duration_s=300)
    assert occ["held_max"].max() == 20 + 1 + 3


def test_latency_percentiles_match_numpy(mobile):
    lt = latency_percentiles_over_time(mobile.records, 30.0, duration_s=mobile.duration_s)
    check_frame(lt, "latency_over_time")
    rec = mobile.records[mobile.records["latency_s"].notna()]
    b = (rec["published_at"] // 30.0).astype(int)
    for i, g in rec.groupby(b):
        row = lt.iloc[i]
        assert row["delivered_n"] == len(g)
        q = np.quantile(g["latency_s"], [0.5, 0.95, 0.99])
        assert [row["latency_p50_s"], row["latency_p95_s"], row["latency_p99_s"]] == pytest.approx(q)
        assert row["latency_max_s"] == g["latency_s"].max()
    assert lt["delivered_n"].sum() == len(rec)


def test_latency_cdf(mobile):
    cdf = latency_cdf(mobile.records, by="event_type", points=500)
    check_frame(cdf, "latency_cdf")
    assert set(cdf["group"]) == {"notification", "gamification_balance_update"}
    for _, g in cdf.groupby("group"):
        assert np.all(np.diff(g["latency_s"]) >= 0) and np.all(np.diff(g["fraction"]) > 0)
        assert g["fraction"].iloc[-1] == 1.0 and len(g) <= 500
    with pytest.raises(ValueError, match="not a records column"):
        latency_cdf(mobile.records, by="nope")


def test_offline_windows_explain_every_lost_disconnected_row(storm):
    win = offline_windows(storm.workload)
    check_frame(win, "offline_windows")
    lost = storm.records[storm.records["outcome"] == "lost_disconnected"]
    assert len(lost) > 0
    # each such row was published inside one of its client's windows
    m = lost[["client_id", "published_at"]].merge(win, on="client_id")
    end = m["online_at"].fillna(np.inf)
    inside = (m["published_at"] >= m["offline_at"]) & (m["published_at"] < end)
    covered = m[inside].drop_duplicates(["client_id", "published_at"])
    assert len(covered) == len(lost.drop_duplicates(["client_id", "published_at"]))
    # node 0 (a quarter of the clients) went down at 300 s and came back about 3 s later
    storm_w = win[(win["offline_at"] >= 299) & (win["offline_at"] < 301)]
    assert len(storm_w) == 1000 and (storm_w["node"] == 0).all()
    assert storm_w["offline_s"].between(3.0, 3.5).all()


def test_disconnects_over_time_shows_the_storm(storm):
    dt = disconnects_over_time(storm.workload, 1.0)
    check_frame(dt, "disconnects_over_time")
    assert dt.loc[dt["bin_start_at"] == 300, "disconnects_n"].item() == 1000
    assert dt.loc[dt["bin_start_at"] == 303, "reconnects_n"].item() == 1000
    assert dt["reconnects_n"].sum() == 1000
    assert dt.loc[dt["bin_start_at"] == 301, "offline_mean"].item() == pytest.approx(1000)
    # the time-averaged count agrees with the total length of the windows
    win = offline_windows(storm.workload)
    assert dt["offline_mean"].mean() == pytest.approx(win["offline_s"].sum() / storm.duration_s, rel=1e-9)


def test_bad_bins_are_clear_errors(mobile):
    with pytest.raises(ValueError, match="bin_s"):
        occupancy(mobile.records, 0.0)
    with pytest.raises(ValueError, match="bin_s"):
        latency_percentiles_over_time(mobile.records, -1.0)
