"""Delivery modes in the simulator: replay from history (stream), conflation (latest), by hand and by property."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SCENARIOS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import small_scenarios

from sse_sim import build_workload, load_scenario, simulate
from sse_sim.costs import DELIVERY_COSTS
from sse_sim.engine import run_engine
from sse_sim.errors import ScenarioError
from sse_sim.scenario import scenario_from_dict
from sse_sim.tables import check_frame

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_client(**delivery) -> pd.DataFrame:
    """One client; events 1..100 published 10 ms apart; drain 1 ms; offline from 0.195 s to 0.695 s."""
    return one_client_run(**delivery).records.assign(n=lambda r: r["event_id"] + 1)


def one_client_run(**delivery):
    """The run behind :func:`one_client`, records numbered 1..100 in column ``n``."""
    sc = scenario_from_dict(
        {
            "duration_s": 1.5,
            "population": {"players_per_brand": 1},
            "publishers": [
                {
                    "kind": "burst",
                    "event_type": "gamification_balance_update",
                    "size": 100,
                    "every_s": 100,
                    "spacing_s": 0.01,
                    "aligned": True,
                }
            ],
            "redis": {"hop_latency": 0, "subscribe_latency": 0},
            "clients": {"drain_time": 0.001, "network_latency": 0},
            "disconnects": {"windows": [{"start_s": 0.195, "end_s": 0.695}]},
            "delivery": delivery,
        }
    )
    res = simulate(sc, seed=0)
    check_frame(res.records, "records")
    assert np.allclose(res.records["published_at"], res.records["event_id"] * 0.01)
    return res


def numbers(rec: pd.DataFrame, outcome: str, replayed: bool | None = None) -> list[int]:
    sel = rec["outcome"] == outcome
    if replayed is not None:
        sel &= rec["replayed"] == replayed
    return sorted(rec.loc[sel, "n"].tolist())


def in_order(rec: pd.DataFrame) -> bool:
    got = rec[rec["outcome"] == "delivered"].sort_values("received_at", kind="stable")["n"].to_numpy()
    return bool(np.all(np.diff(got) > 0))


def span(a: int, b: int) -> list[int]:
    return list(range(a, b + 1))


def test_pubsub_loses_what_was_published_while_away():
    rec = one_client()
    assert numbers(rec, "lost_disconnected") == span(21, 70)
    assert numbers(rec, "delivered") == span(1, 20) + span(71, 100)
    assert not rec["replayed"].any()


def test_stream_with_enough_history_delivers_everything_in_order():
    rec = one_client(mode="stream", history_size=50)
    assert numbers(rec, "delivered") == span(1, 100)
    assert numbers(rec, "delivered", replayed=True) == span(21, 70)
    assert in_order(rec)
    # the replay is sent at the resubscription, before any live event; latency includes the outage
    replay = rec[rec["replayed"]]
    assert replay["gateway_at"].to_numpy() == pytest.approx(np.full(50, 0.695))
    assert replay["received_at"].max() < rec.loc[rec["n"] == 71, "received_at"].iloc[0]
    assert replay.loc[replay["n"] == 21, "latency_s"].iloc[0] == pytest.approx(0.695 - 0.20 + 0.001)


def test_stream_history_10_replays_the_newest_ten():
    rec = one_client(mode="stream", history_size=10)
    assert numbers(rec, "delivered", replayed=True) == span(61, 70)
    assert numbers(rec, "lost_history_expired") == span(21, 60)
    assert in_order(rec)


def test_stream_ttl_trims_what_is_older_than_it():
    rec = one_client(mode="stream", history_ttl_s=0.3)
    assert numbers(rec, "delivered", replayed=True) == span(41, 70)
    assert numbers(rec, "lost_history_expired") == span(21, 40)


def test_stream_max_replay_sends_at_most_that_many_once_each():
    rec = one_client(mode="stream", max_replay=5)
    replayed = numbers(rec, "delivered", replayed=True)
    assert len(replayed) == 5 and replayed == span(66, 70)  # the newest of the gap
    assert numbers(rec, "lost_history_expired") == span(21, 65)
    assert rec["event_id"].is_unique and in_order(rec)


def test_latest_sends_the_newest_value_at_reconnect_and_supersedes_the_rest():
    rec = one_client(mode="latest")
    assert numbers(rec, "delivered") == span(1, 20) + [70] + span(71, 100)
    assert numbers(rec, "delivered", replayed=True) == [70]
    assert numbers(rec, "superseded") == span(21, 69)
    s = one_client_run(mode="latest").summary()
    # superseded is counted apart: it is not a loss
    assert s["superseded_n"] == 49 and s["lost_n"] == 0 and s["loss_rate"] == 0 and s["replayed_n"] == 1


def test_latest_replaces_a_pending_value_in_the_queue():
    # a slow client: balance updates every 1 ms, read every 10 ms; queued values are replaced,
    # so the queue never holds more than one and nothing overflows
    sc = scenario_from_dict(
        {
            "duration_s": 1.0,
            "population": {"players_per_brand": 1},
            "publishers": [{"kind": "burst", "event_type": "gamification_balance_update", "size": 200, "every_s": 100, "spacing_s": 0.001, "aligned": True}],
            "redis": {"hop_latency": 0, "subscribe_latency": 0},
            "clients": {"drain_time": 0.01, "network_latency": 0},
            "gateway": {"buffer_size": 5},
            "delivery": {"event_types": {"gamification_balance_update": "latest"}},
        }
    )
    rec = simulate(sc, seed=0).records
    assert set(rec["outcome"].astype(str)) == {"delivered", "superseded"}
    assert rec["outcome"].iloc[-1] == "delivered"  # the newest value always reaches the client
    got = rec[rec["outcome"] == "delivered"].sort_values("received_at")["event_id"].to_numpy()
    assert np.all(np.diff(got) > 0)
    # pub/sub would have dropped most of them
    pubsub = simulate(sc.with_overrides({"delivery.event_types": {}}), seed=0).records
    assert (pubsub["outcome"] == "dropped_overflow").sum() > 100


def test_an_unknown_event_type_override_is_a_scenario_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "duration_s: 10\npublishers: [{kind: poisson, rate_per_player_per_s: 1}]\n"
        "delivery: {event_types: {balance: latest}}\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "bad.yaml" in str(err.value) and "balance" in str(err.value) and "notification" in str(err.value)
    path.write_text("duration_s: 10\npublishers: [{kind: poisson, rate_per_player_per_s: 1}]\ndelivery: {mode: replay}\n")
    with pytest.raises(ScenarioError, match="delivery.mode"):
        load_scenario(path)


FIELDS = ("outcome", "gateway_at", "left_at", "received_at", "session_id")


def same_rows(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=getattr(a, f).dtype.kind == "f") for f in FIELDS)


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("baseline.yaml", {}),
        ("deploy_storm.yaml", {"duration_s": 600}),
        ("deploy_storm.yaml", {"duration_s": 600, "redis.output_buffer": {"reader_rate_per_s": 2000, "hard_limit_bytes": 200000, "soft_limit_bytes": 0}}),
        ("slow_mobile.yaml", {"gateway.overflow_policy": "drop_oldest", "duration_s": 600}),
        ("slow_mobile.yaml", {"gateway.overflow_policy": "disconnect", "duration_s": 600, "clients.socket_buffer_events": 3}),
        ("mm1k.yaml", {"duration_s": 2000, "gateway.reader_yield_every": 0}),
    ],
)
def test_the_replay_walk_under_pubsub_is_the_pubsub_walk(name, overrides):
    sc = load_scenario(SCENARIOS / name).with_overrides(overrides)
    w = build_workload(sc, 5)
    assert same_rows(run_engine(sc, w), run_engine(sc, w, walk="replay"))


@SETTINGS
@given(small_scenarios(), st.integers(0, 2**32))
def test_the_replay_walk_under_pubsub_is_the_pubsub_walk_on_random_scenarios(spec, seed):
    sc = scenario_from_dict(spec)
    w = build_workload(sc, seed)
    assert same_rows(run_engine(sc, w), run_engine(sc, w, walk="replay"))


@st.composite
def delivery(draw):
    return {
        "mode": draw(st.sampled_from(["stream", "latest", "pubsub"])),
        "history_size": draw(st.sampled_from([1, 3, 20, 1000])),
        "history_ttl_s": draw(st.sampled_from([None, 0.2, 1.0])),
        "max_replay": draw(st.sampled_from([1, 4, 300])),
        "event_types": draw(st.sampled_from([{}, {"burst": "latest"}, {"burst": "stream"}, {"notification": "pubsub"}])),
    }


@SETTINGS
@given(small_scenarios(), delivery(), st.integers(0, 2**32))
def test_replay_properties(spec, dlv, seed):
    if "burst" in dlv["event_types"] and not any(p.get("event_type") == "burst" for p in spec["publishers"]):
        dlv["event_types"] = {}
    sc = scenario_from_dict({**spec, "delivery": dlv})
    res = simulate(sc, seed=seed)
    rec = res.records
    check_frame(rec, "records")
    modes = rec["event_type"].astype(str).map(sc.delivery.mode_of)
    delivered = rec["outcome"] == "delivered"
    # one row per (event, client): nothing is delivered twice
    assert not rec.duplicated(["event_id", "client_id"]).any()
    # only stream rows expire, only latest rows are superseded, only they are replayed
    assert (modes[rec["outcome"] == "lost_history_expired"] == "stream").all()
    assert (modes[rec["outcome"] == "superseded"] == "latest").all()
    assert (modes[rec["replayed"]] != "pubsub").all()
    # a replay is sent at a (re)subscription, after the event was published
    rp = rec[rec["replayed"] & delivered]
    assert (rp["gateway_at"] >= rp["published_at"]).all()
    # replayed stream entries were retained: younger than the TTL when replayed
    ttl = sc.delivery.history_ttl_s
    rs = rp[modes[rp.index] == "stream"]
    if ttl is not None:
        assert (rs["gateway_at"] - rs["published_at"] < ttl + 1e-9).all()
    # and at most history_size entries back: fewer than history_size stream events of the player
    # were published between an entry and its replay
    for (client, at), group in rs.groupby(["client_id", "gateway_at"]):
        mine = rec[(rec["client_id"] == client) & (modes == "stream")]
        newer = (mine["published_at"] > group["published_at"].min()) & (mine["published_at"] < at)
        assert newer.sum() < sc.delivery.history_size
        assert len(group) <= sc.delivery.max_replay
    # each client reads stream events in publish order (ids increase per channel); left_at is
    # when it read them (received_at adds the network, which a new connection may outrun)
    sd = rec[delivered & (modes == "stream")].sort_values(["client_id", "left_at"], kind="stable")
    for _, g in sd.groupby("client_id"):
        assert np.all(np.diff(g["event_id"].to_numpy()) > 0)
    # the summary's counts add up: delivered + superseded + lost = attempts
    s = res.summary()
    assert s["delivered_n"] + s["superseded_n"] + s["lost_n"] == s["attempts_n"]
    assert s["replayed_n"] == int((rec["replayed"] & delivered).sum())


def tabs(**clients) -> pd.DataFrame:
    """Eight tabs of one player, each event 10 ms apart, with a window on the first tab."""
    sc = scenario_from_dict(
        {
            "duration_s": 1.0,
            "population": {"players_per_brand": 1, "clients_per_player": 8},
            "publishers": [{"kind": "burst", "size": 50, "every_s": 100, "spacing_s": 0.01, "aligned": True}],
            "redis": {"hop_latency": 0, "subscribe_latency": 0},
            "clients": {"drain_time": 0.001, "network_latency": 0, **clients},
            "disconnects": {"windows": [{"start_s": 0.1, "end_s": 0.2, "clients": [0]}]},
        }
    )
    return simulate(sc, seed=0).records


def test_a_seventh_tab_over_http_1_1_never_opens():
    rec = tabs()
    lost = rec[rec["outcome"] == "lost_connection_limit"]
    assert sorted(lost["client_id"].unique()) == [6, 7] and len(lost) == 100
    assert lost["session_id"].eq(-1).all() and lost["gateway_at"].isna().all()
    assert (rec.loc[rec["client_id"].between(1, 5), "outcome"] == "delivered").all()
    # HTTP/2 multiplexes the streams: no cap
    assert not (tabs(http_version="2")["outcome"] == "lost_connection_limit").any()


def test_leader_tab_sharing_gives_every_tab_what_the_leader_got():
    rec = tabs(tab_sharing="leader")
    assert not (rec["outcome"] == "lost_connection_limit").any()
    leader = rec[rec["client_id"] == 0].reset_index(drop=True)
    assert (leader["outcome"] == "lost_disconnected").sum() == 10  # the window on the leader
    for c in range(1, 8):
        tab = rec[rec["client_id"] == c].reset_index(drop=True)
        assert tab["outcome"].equals(leader["outcome"])
        assert np.array_equal(tab["received_at"], leader["received_at"], equal_nan=True)


def drop_delays(**extra) -> np.ndarray:
    """Reconnect delays after a mass drop at 10 s: each client's first gap."""
    spec = {
        "duration_s": 30,
        "population": {"players_per_brand": 400},
        "publishers": [{"kind": "poisson", "rate_per_player_per_s": 0.1}],
        "redis": {"subscribe_latency": 0},
        "disconnects": {"mass_drops": [{"at_s": 10, "node": 0}]},
    }
    for key, value in extra.items():
        section, name = key.split("__")
        spec.setdefault(section, {})[name] = value
    w = build_workload(scenario_from_dict(spec), 1)
    return w.connect_at[w.connect_at > 0] - 10


def test_browsers_set_reconnect_delays_and_retry_ms_overrides_them():
    assert set(np.round(drop_delays(), 6)) == {3.0}
    mixed = drop_delays(clients__browsers={"chromium": 0.5, "firefox": 0.5})
    assert set(np.round(mixed, 6)) == {3.0, 5.0}
    assert 0.35 < np.mean(mixed == 5.0) < 0.65  # about half the players run Firefox
    assert set(np.round(drop_delays(clients__browsers={"firefox": 1.0}, delivery__retry_ms=1500), 6)) == {1.5}
    with pytest.raises(ScenarioError, match="add up to 1"):
        scenario_from_dict({"duration_s": 1, "publishers": [{"kind": "poisson", "rate_per_player_per_s": 1}], "clients": {"browsers": {"chromium": 0.5}}})


def test_deploy_storm_with_a_history_larger_than_the_outage_loses_nothing():
    # deploy_storm's only loss is the 3 s its node's clients are away (lost_disconnected); with
    # a history that holds the whole gap every reconnecting client sends Last-Event-ID (each had
    # read events before the drop) and gets the gap replayed, so no loss remains
    sc = load_scenario(SCENARIOS / "deploy_storm.yaml")
    before = simulate(sc, seed=1).summary()
    assert before["loss_rate_lost_disconnected"] > 0 and before["loss_rate"] == before["loss_rate_lost_disconnected"]
    res = simulate(sc.with_overrides({"delivery.mode": "stream", "delivery.history_size": 1000}), seed=1)
    s = res.summary()
    assert s["lost_n"] == 0 and s["replayed_n"] == before["lost_n"]
    costs = res.delivery_costs()
    assert list(costs.index) == [c.name for c in DELIVERY_COSTS]
    assert costs["reconnects_n"] == 1000  # node 0's quarter of 4,000 clients
    assert costs["replay_burst_max_per_s"] == s["replayed_n"]  # all replayed in the same second
    assert costs["replayed_per_reconnect_mean"] == pytest.approx(s["replayed_n"] / 1000)


def test_storm_replay_shows_every_fate_of_a_replay_window():
    res = simulate(load_scenario(SCENARIOS / "storm_replay.yaml"), seed=0)
    rec = res.records
    fates = set(rec.loc[rec["replayed"], "outcome"].astype(str)) | set(rec["outcome"].astype(str))
    assert {"delivered", "lost_history_expired"} <= fates and rec["replayed"].any()
    expired = rec[rec["outcome"] == "lost_history_expired"]
    # clients resubscribe 3 s after the drop plus a subscribe latency: the 2 s TTL trims what was
    # published more than 2 s before that, i.e. in about the outage's first second
    w = res.workload
    back = pd.Series(w.subscribed_at, index=np.repeat(np.arange(w.n_clients), np.diff(w.session_offsets)))
    back = back[back > 300].groupby(level=0).min()
    assert (expired["published_at"].to_numpy() < back[expired["client_id"]].to_numpy() - 2.0).all()
    replayed = rec[rec["replayed"] & (rec["outcome"] == "delivered")]
    assert (replayed["published_at"].to_numpy() > back[replayed["client_id"]].to_numpy() - 2.0).all()
    assert np.array_equal(replayed["gateway_at"].to_numpy(), back[replayed["client_id"]].to_numpy())


def test_history_memory_and_commands_by_hand():
    # one player, 100 balance updates of 130 B over 1 s; history 10 without TTL holds the newest 10
    sc = scenario_from_dict(
        {
            "duration_s": 2.0,
            "population": {"players_per_brand": 1},
            "publishers": [{"kind": "burst", "event_type": "gamification_balance_update", "size": 100, "every_s": 100, "spacing_s": 0.01, "aligned": True, "payload_bytes": 130}],
            "delivery": {"mode": "stream", "history_size": 10},
        }
    )
    costs = simulate(sc, seed=0).delivery_costs()
    assert costs["history_memory_bytes"] == 10 * (130 + 32)
    assert costs["extra_redis_commands_per_s"] == pytest.approx(100 / 2.0)  # one XADD per event, no reconnect
    assert costs["reconnects_n"] == 0 and costs["replay_burst_max_per_s"] == 0
