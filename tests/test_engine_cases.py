"""Hand-checkable engine cases: a burst into one client, subscription gaps, disconnects, yielding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sse_sim import simulate
from sse_sim.scenario import scenario_from_dict


def burst_scenario(policy: str, **gateway) -> dict:
    """100 events at t=0 to one always-connected client that reads one per 10 ms."""
    return {
        "duration_s": 5,
        "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 100, "every_s": 100, "aligned": True}],
        "redis": {"hop_latency": 0, "subscribe_latency": 0},
        "gateway": {"overflow_policy": policy, **gateway},
        "clients": {"drain_time": 0.01, "network_latency": 0},
    }


def by_outcome(records: pd.DataFrame) -> dict[str, list[int]]:
    return {k: sorted(g["event_id"].tolist()) for k, g in records.groupby("outcome", observed=True)}


def test_drop_newest_delivers_51_and_drops_the_last_49():
    rec = simulate(burst_scenario("drop_newest"), seed=3).records
    out = by_outcome(rec)
    assert out["delivered"] == list(range(51))
    assert out["dropped_overflow"] == list(range(51, 100))
    delivered = rec[rec.outcome == "delivered"].sort_values("event_id")
    # event i is read at (i + 1) * 10 ms: one in flight, fifty waiting
    np.testing.assert_allclose(delivered["received_at"], (np.arange(51) + 1) * 0.01)
    np.testing.assert_allclose(delivered["latency_s"], (np.arange(51) + 1) * 0.01)


def test_drop_oldest_keeps_the_first_in_flight_and_the_newest_fifty():
    out = by_outcome(simulate(burst_scenario("drop_oldest"), seed=3).records)
    assert out["delivered"] == [0, *range(50, 100)]
    assert out["dropped_overflow"] == list(range(1, 50))


def test_disconnect_policy_cuts_the_client_and_counts_what_it_lost():
    sc = burst_scenario("disconnect")
    sc["disconnects"] = {"retry_delay_s": 3.0}
    out = by_outcome(simulate(sc, seed=3).records)
    # the 52nd event finds the connection full: it and the 51 held are lost with the connection
    assert out["disconnected_slow"] == list(range(52))
    # the rest were published (at t = 0) while it was subscribed, and were on their way from
    # Redis when the gateway closed it: lost with the connection, not for want of a subscription
    assert out["lost_in_buffer"] == list(range(52, 100))
    assert "delivered" not in out and "lost_disconnected" not in out


def test_disconnect_policy_client_comes_back_after_the_retry_delay():
    sc = burst_scenario("disconnect")
    sc["publishers"].append({"kind": "burst", "size": 1, "every_s": 1.0, "aligned": True, "event_type": "late"})
    sc["disconnects"] = {"retry_delay_s": 3.0}
    rec = simulate(sc, seed=3).records
    late = rec[rec.event_type == "late"].set_index("published_at")["outcome"].astype(str)
    # published at 0..4 s: cut at t=0, back (subscribed) at 3 s
    assert late.loc[1.0] == "lost_disconnected" and late.loc[2.0] == "lost_disconnected"
    assert late.loc[3.0] == "delivered" and late.loc[4.0] == "delivered"


def test_reader_that_never_yields_drops_a_burst_even_for_a_fast_client():
    fast = burst_scenario("drop_newest")
    fast["clients"]["drain_time"] = 0
    assert (simulate(fast, seed=1).records.outcome == "delivered").all()
    stuck = burst_scenario("drop_newest", reader_yield_every=0)
    stuck["clients"]["drain_time"] = 0
    out = by_outcome(simulate(stuck, seed=1).records)
    # the writer cannot take anything before the reader yields: only the queue's 50 survive
    assert out["delivered"] == list(range(50))
    yielding = burst_scenario("drop_newest", reader_yield_every=16)
    yielding["clients"]["drain_time"] = 0
    assert (simulate(yielding, seed=1).records.outcome == "delivered").all()


def test_socket_buffer_events_add_to_capacity():
    sc = burst_scenario("drop_newest")
    sc["clients"]["socket_buffer_events"] = 9
    out = by_outcome(simulate(sc, seed=1).records)
    assert out["delivered"] == list(range(60))


def test_subscription_gap_after_reconnect_loses_events():
    sc = {
        "duration_s": 10,
        "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 1, "every_s": 0.25, "aligned": True}],
        "redis": {"hop_latency": 0, "subscribe_latency": 0.6},
        "clients": {"drain_time": 0, "network_latency": 0.05},
        "disconnects": {"windows": [{"start_s": 2.0, "end_s": 4.0}]},
    }
    rec = simulate(sc, seed=0).records.set_index("published_at")
    status = rec["outcome"].astype(str)
    assert status.loc[1.75] == "delivered"
    # offline from 2.0 to 4.0, then 0.6 s before the subscription is active
    for t in (2.0, 3.0, 4.0, 4.5):
        assert status.loc[t] == "lost_disconnected", t
    assert status.loc[4.75] == "delivered"
    sessions = simulate(sc, seed=0).workload.sessions_frame()
    assert sessions["connect_at"].tolist() == [0.0, 4.0]
    assert sessions["subscribed_at"].tolist() == pytest.approx([0.0, 4.6])


def test_events_queued_when_the_connection_drops_are_lost_in_buffer():
    sc = burst_scenario("drop_newest")
    sc["publishers"][0]["size"] = 20
    sc["disconnects"] = {"windows": [{"start_s": 0.055, "end_s": 1.0}]}
    out = by_outcome(simulate(sc, seed=0).records)
    # 10 ms per event: events 0..4 are read by 50 ms, the rest are held when the stream closes
    assert out["delivered"] == list(range(5))
    assert out["lost_in_buffer"] == list(range(5, 20))


def test_several_clients_per_player_each_get_a_copy():
    sc = burst_scenario("drop_newest")
    sc["population"]["clients_per_player"] = 3
    sc["publishers"][0]["size"] = 10
    rec = simulate(sc, seed=0).records
    assert len(rec) == 30
    assert rec.groupby("client_id").size().tolist() == [10, 10, 10]
    assert (rec.outcome == "delivered").all()


def test_mass_drop_loses_the_retry_window_only_on_that_node():
    sc = scenario_from_dict(
        {
            "duration_s": 20,
            "population": {"players_per_brand": 4},
            "publishers": [{"kind": "burst", "size": 1, "every_s": 0.5, "aligned": True}],
            "redis": {"hop_latency": 0, "subscribe_latency": 0},
            "gateway": {"nodes": 2},
            "clients": {"drain_time": 0, "network_latency": 0},
            "disconnects": {"mass_drops": [{"at_s": 10.0, "node": 0, "retry_delay_s": 3.0}]},
        }
    )
    rec = simulate(sc, seed=0).records
    lost = rec[rec.outcome == "lost_disconnected"]
    assert set(lost["node"]) == {0}
    assert sorted(set(lost["published_at"])) == [10.0, 10.5, 11.0, 11.5, 12.0, 12.5]
    assert (rec[rec.node == 1].outcome == "delivered").all()


def test_redis_output_limit_kills_the_backlog_of_a_slow_node_reader():
    sc = {
        "duration_s": 4,
        "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 2000, "every_s": 100, "spacing_s": 0.0001, "aligned": True,
                         "payload_bytes": 1000}],
        "redis": {
            "hop_latency": 0,
            "subscribe_latency": 0,
            "output_buffer": {"reader_rate_per_s": 1000, "hard_limit_bytes": 200_000, "soft_limit_bytes": 0,
                              "resubscribe_s": 0.05, "overhead_bytes": 0},
        },
        "gateway": {"buffer_size": 5000},
        "clients": {"drain_time": 0, "network_latency": 0},
    }
    rec = simulate(sc, seed=0).records
    counts = rec.outcome.value_counts()
    assert counts["lost_redis_output_limit"] > 0
    # the reader takes 1 event/ms while 10 arrive: the backlog passes 200 kB when event ~222 is
    # published, by which time the reader has taken ~22; everything from there on is lost, and so
    # is what is published in the 50 ms before the node has resubscribed (events up to ~722)
    lost_ids = rec[rec.outcome == "lost_redis_output_limit"]["event_id"]
    assert 18 <= lost_ids.min() <= 26
    assert set(range(lost_ids.min(), 700)) <= set(lost_ids)
    delivered_ids = rec[rec.outcome == "delivered"]["event_id"]
    assert delivered_ids.min() == 0 and delivered_ids.max() > 730
    assert counts["delivered"] + counts["lost_redis_output_limit"] == 2000


def test_events_on_their_way_when_the_gateway_closes_a_slow_client_are_lost_in_buffer():
    # a 5 ms Redis hop: the burst's last events are published before the 52nd reaches the
    # gateway and closes the connection, and arrive after it; a later event finds no subscription
    sc = burst_scenario("disconnect")
    sc["redis"]["hop_latency"] = 0.005
    sc["publishers"][0]["spacing_s"] = 0.0001
    sc["publishers"].append({"kind": "burst", "size": 1, "every_s": 1.0, "aligned": True, "event_type": "late"})
    sc["disconnects"] = {"retry_delay_s": 3.0}
    rec = simulate(sc, seed=3).records
    # the connection holds 51 (the late event published at t = 0 among them); the 52nd closes it
    cut_at = rec.loc[rec.outcome == "disconnected_slow", "gateway_at"].max()
    assert (rec.outcome == "disconnected_slow").sum() == 52
    burst = rec[rec.event_type != "late"]
    on_their_way = burst[burst.outcome != "disconnected_slow"]
    assert len(on_their_way) == 49 and (on_their_way["published_at"] < cut_at).all()
    assert (on_their_way["gateway_at"] > cut_at).all()
    assert (on_their_way.outcome == "lost_in_buffer").all() and (on_their_way.session_id == 0).all()
    late = rec[rec.event_type == "late"].set_index("published_at")["outcome"].astype(str)
    # back 3 s after the cut at 10 ms: 3.0 s is still inside the reconnect, 4.0 s is not
    assert late.loc[1.0] == "lost_disconnected" and late.loc[3.0] == "lost_disconnected" and late.loc[4.0] == "delivered"


def test_bandwidth_makes_big_events_drain_slower():
    # 10 kB/s: a 19,992-byte event (20,000 framed) takes 2 s on top of the 1 ms per event; a
    # 92-byte one 10 ms
    sc = burst_scenario("drop_newest")
    sc["publishers"] = [
        {"kind": "burst", "size": 2, "every_s": 100, "aligned": True, "payload_bytes": 19992},
        {"kind": "burst", "size": 1, "every_s": 100, "aligned": True, "event_type": "small", "payload_bytes": 92},
    ]
    sc["clients"] = {"drain_time": 0.001, "network_latency": 0, "bandwidth_bytes_per_s": 10000}
    rec = simulate(sc, seed=1).records.sort_values("left_at")
    assert rec["left_at"].tolist() == pytest.approx([2.001, 4.002, 4.013])
    # a spread of bandwidths: one draw per client, the same for all its events
    sc["population"]["players_per_brand"] = 20
    sc["clients"]["bandwidth_bytes_per_s"] = {"kind": "lognormal", "median": 20000, "p99": 200000}
    rec = simulate(sc, seed=1).records
    first = rec[rec.event_type != "small"].groupby("client_id")["left_at"].min()
    assert first.nunique() == 20
