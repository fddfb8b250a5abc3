"""The workload: publishers, population layout, sessions and distributions."""

from __future__ import annotations

import numpy as np
import pytest

from sse_sim import build_workload
from sse_sim.distributions import Constant, Exponential, LogNormal
from sse_sim.scenario import scenario_from_dict
from sse_sim.workload import stream_rng


def scenario(**overrides):
    base = {
        "duration_s": 100,
        "population": {"brand_ids": [1001, 1002], "players_per_brand": 50, "first_player_id": 7},
        "publishers": [{"kind": "poisson", "rate_per_player_per_s": 2}],
    }
    base.update(overrides)
    return scenario_from_dict(base)


def test_poisson_counts_and_layout():
    w = build_workload(scenario(), seed=1)
    assert w.n_players == 100 and w.n_clients == 100
    # 100 players * 2/s * 100 s = 20,000 expected; Poisson sd ~141
    assert abs(w.n_events - 20_000) < 5 * 141
    # player-major, time-sorted within a player
    assert np.all(np.diff(w.player) >= 0)
    for p in (0, 57, 99):
        seg = w.published_at[w.player_offsets[p] : w.player_offsets[p + 1]]
        assert np.all(np.diff(seg) >= 0) and seg.min() >= 0 and seg.max() < 100
    ev = w.events_frame()
    assert set(ev["brand_id"]) == {1001, 1002}
    assert ev["player_id"].min() == 7 and ev["player_id"].max() == 56


def test_inter_arrival_times_are_exponential():
    w = build_workload(scenario(population={"players_per_brand": 1}, publishers=[
        {"kind": "poisson", "rate_per_player_per_s": 50}], duration_s=2000), seed=3)
    gaps = np.diff(w.published_at)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.02)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.03)


def test_diurnal_modulation_shapes_the_rate():
    sc = scenario(publishers=[{"kind": "poisson", "rate_per_player_per_s": 1,
                               "diurnal": {"amplitude": 0.8, "period_s": 100, "peak_at_s": 25}}])
    w = build_workload(sc, seed=2)
    counts, _ = np.histogram(w.published_at, bins=4, range=(0, 100))
    # peak quarter around t=25, trough quarter around t=75
    # mean rate over a quarter: 1 + 0.8 * 2/pi = 1.51 near the peak, 0.49 near the trough
    assert counts[0] > 2 * counts[2] and counts[1] > 2 * counts[3]
    assert abs(w.n_events - 10_000) < 5 * 100


def test_bursts_are_periodic_with_spacing():
    sc = scenario(publishers=[{"kind": "burst", "size": 4, "every_s": 30, "spacing_s": 0.01, "aligned": True}])
    w = build_workload(sc, seed=0)
    first = w.published_at[w.player_offsets[0] : w.player_offsets[1]]
    np.testing.assert_allclose(first, [0, 0.01, 0.02, 0.03, 30, 30.01, 30.02, 30.03,
                                       60, 60.01, 60.02, 60.03, 90, 90.01, 90.02, 90.03])
    unaligned = build_workload(scenario(publishers=[{"kind": "burst", "size": 1, "every_s": 30}]), seed=0)
    starts = unaligned.published_at[unaligned.player_offsets[:-1]]
    assert starts.std() > 5  # random phases in [0, 30)


def test_several_publishers_merge_in_time_order_per_player():
    sc = scenario(publishers=[
        {"kind": "poisson", "rate_per_player_per_s": 1, "event_type": "a"},
        {"kind": "burst", "size": 3, "every_s": 10, "event_type": "b"},
    ])
    w = build_workload(sc, seed=4)
    for p in range(w.n_players):
        seg = w.published_at[w.player_offsets[p] : w.player_offsets[p + 1]]
        assert np.all(np.diff(seg) >= 0)
    assert w.event_types == ("a", "b")
    assert np.bincount(w.event_type_code).tolist()[1] == 100 * 10 * 3


def test_sessions_merge_overlapping_outages():
    sc = scenario(disconnects={"windows": [{"start_s": 10, "end_s": 20, "clients": [0]},
                                           {"start_s": 15, "end_s": 30, "clients": [0]},
                                           {"start_s": 50, "end_s": 60, "clients": [0, 1]}]},
                  redis={"subscribe_latency": 0.5})
    w = build_workload(sc, seed=0)
    s = w.sessions_frame()
    c0 = s[s.client_id == 0]
    assert c0["connect_at"].tolist() == [0, 30, 60]
    assert c0["disconnect_at"].tolist() == [10, 50, np.inf]
    assert c0["subscribed_at"].tolist() == [0, 30.5, 60.5]
    assert len(s[s.client_id == 1]) == 2 and len(s[s.client_id == 2]) == 1


@pytest.mark.parametrize(
    "dist",
    [Constant(value=0.3), Exponential(kind="exponential", mean=0.3), LogNormal(kind="lognormal", median=0.02, p99=0.2)],
)
def test_distributions_sample_what_they_promise(dist):
    x = dist.sample(stream_rng(0, "t"), 200_000)
    assert x.mean() == pytest.approx(dist.mean, rel=0.02)
    if isinstance(dist, LogNormal):
        assert np.median(x) == pytest.approx(0.02, rel=0.02)
        assert np.quantile(x, 0.99) == pytest.approx(0.2, rel=0.05)


def test_message_id_is_one_rule_for_the_workload_and_the_payloads():
    import json
    import uuid

    from sse_sim.real.payloads import build_payload, event_id_of
    from sse_sim.workload import event_id_of_message_id, message_id

    w = build_workload(scenario(duration_s=1), seed=2**64 + 5)
    mid = message_id(2**64 + 5, 41)
    assert w.message_id(41) == mid and uuid.UUID(mid).version == 4
    assert event_id_of_message_id(mid) == 41 and message_id(5, 41) == mid  # the seed is taken mod 2**64
    assert message_id(6, 41) != mid
    _, text = build_payload(1001, 7, "notification", 41, 2**64 + 5, 400)
    assert json.loads(text)["event_data"]["message_id"] == mid and event_id_of(text) == 41
