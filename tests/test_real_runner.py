"""Real-mode runner: the same workload through the real gateway, Redis (or fakeredis) and SSE clients."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import pytest

from sse_sim.events.validate import validate_event
from sse_sim.real.payloads import build_payload, event_id_of
from sse_sim.real.runner import prepare_scenario, run_real
from sse_sim.real.sockbuf import loopback_capacity
from sse_sim.scenario import load_scenario
from sse_sim.simulation import simulate
from sse_sim.tables import check_frame
from sse_sim.workload import build_workload

EXACT = "real_burst_exact.yaml"


def _backend_args(backend: str, request: pytest.FixtureRequest) -> dict:
    if backend == "redis":
        return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    return {"backend": "fakeredis"}


BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)]


# ---------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize("event_type", ["notification", "gamification_balance_update", "wallet_balance_update"])
@pytest.mark.parametrize("size", [1, 130, 450, 5000])
def test_payload_carries_its_event_id_and_size(event_type: str, size: int) -> None:
    channel, text = build_payload(1001, 7, event_type, 123456, 3, size)
    assert channel == "SSE::1001::7"
    assert event_id_of(text) == 123456
    env = json.loads(text)
    assert env["event_type"] == event_type
    if size > 400:  # every minimal form is shorter than this: padded to the byte
        assert len(text.encode()) == size
    if event_type != "wallet_balance_update":
        validate_event(json.loads(text, parse_float=__import__("decimal").Decimal))


def test_notification_message_id_is_the_workloads(scenarios_dir) -> None:
    w = build_workload(scenarios_dir / EXACT, seed=5)
    _, text = build_payload(1001, 1, "notification", 42, w.seed, 600)
    assert json.loads(text)["event_data"]["message_id"] == w.message_id(42)
    assert uuid.UUID(w.message_id(42)).version == 4


# ---------------------------------------------------------------------------------- slicing


def test_prepare_scenario_slices_scales_and_shifts(scenarios_dir) -> None:
    sc, meta = prepare_scenario(scenarios_dir / "deploy_storm.yaml", start_s=297, duration_s=8, max_players=400)
    assert sc.duration_s == 8
    assert sc.population.n_players == 400
    assert [d.at_s for d in sc.disconnects.mass_drops] == [3.0]
    assert meta["slice"] == {"start_s": 297.0, "duration_s": 8.0, "players": {"from": 4000, "to": 400}}
    same, meta0 = prepare_scenario(scenarios_dir / "mm1k.yaml")
    assert meta0 == {} and same.duration_s == 20000


# ---------------------------------------------------------------------------------- kernel buffers


def test_small_socket_buffers_hold_far_fewer_events_than_defaults() -> None:
    small = loopback_capacity(620, sndbuf=1, rcvbuf=8192)
    default = loopback_capacity(620)
    assert 3 <= small["frames"] <= 60
    assert default["frames"] > 20 * small["frames"]


# ---------------------------------------------------------------------------------- the runner


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_burst_matches_the_simulator_row_by_row(backend: str, request, scenarios_dir) -> None:
    real = run_real(scenarios_dir / EXACT, 0, **_backend_args(backend, request))
    sim = simulate(scenarios_dir / EXACT, 0)
    check_frame(real.records, "records")
    assert real.backend == backend
    assert real.metadata["unexplained_n"] == 0
    counts = real.records["outcome"].value_counts()
    # 1 being read + 50 queued + what the sockets hold: 2 events of 20 kB on most runs, 1 when
    # the client's first read races the gateway's writes (the kernel counts bytes, not events)
    n = int(counts["delivered"])
    assert n in (52, 53) and counts["dropped_overflow"] == 100 - n
    if n != 53:
        sim = simulate(load_scenario(scenarios_dir / EXACT).with_overrides({"clients.socket_buffer_events": n - 51}), 0)
    delivered = real.records[real.records["outcome"] == "delivered"].sort_values("received_at")
    ids = delivered["event_id"].tolist()
    assert ids == sorted(ids)  # read in FIFO order
    if ids == list(range(n)):
        # the same events: the first n of the burst, the rest dropped
        pd.testing.assert_series_equal(real.records["outcome"], sim.records["outcome"])
    else:
        # A slow machine: the gateway's writer refilled the sockets (the client was reading its
        # first 20 kB event) while the burst was still arriving, after the full queue had
        # dropped event k; drop_newest then keeps whichever later event finds the room.
        k = next(i for i, e in enumerate(ids) if e != i)
        gateway_at = real.records.set_index("event_id")["gateway_at"]
        assert (gateway_at.loc[ids[k:]] >= gateway_at.loc[k]).all(), ids
    # read every 50 ms: the last arrives about n - 1 drains after the first
    span = delivered["received_at"].iloc[-1] - delivered["received_at"].iloc[0]
    assert (n - 1) * 0.05 * 0.95 < span < (n - 1) * 0.05 * 1.5
    assert (real.records["published_at"] >= 0).all()


def test_records_schema_is_the_simulators(scenarios_dir) -> None:
    real = run_real(scenarios_dir / "mm1k.yaml", 1, duration_s=1.0)
    sim = simulate(real.scenario, 1)
    check_frame(real.records, "records")
    assert list(real.records.columns) == list(sim.records.columns)
    assert (real.records.dtypes == sim.records.dtypes).all()
    assert real.records["event_id"].tolist() == sim.records["event_id"].tolist()
    assert real.metadata["slice"]["duration_s"] == 1.0
    lat = real.records["latency_s"].dropna()
    assert len(lat) == len(real.records) and (lat > 0).all()


def _window_scenario() -> dict:
    return {
        "name": "window",
        "duration_s": 3.0,
        "population": {"brand_ids": [1001], "players_per_brand": 2, "clients_per_player": 2},
        "publishers": [{"kind": "poisson", "rate_per_player_per_s": 40, "payload_bytes": 300}],
        "redis": {"hop_latency": 0.0003, "subscribe_latency": 0.002},
        "clients": {"drain_time": 0.001, "network_latency": 0.005},
        "disconnects": {"windows": [{"start_s": 1.0, "end_s": 2.0, "clients": [1, 2]}]},
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_disconnect_windows_are_followed(backend: str, request) -> None:
    real = run_real(_window_scenario(), 2, **_backend_args(backend, request))
    df = real.records
    check_frame(df, "records")
    lost = df["outcome"] == "lost_disconnected"
    windowed = df["client_id"].isin([1, 2])
    in_window = windowed & (df["published_at"] >= 1.0) & (df["published_at"] < 2.0)
    # Closing and publishing run in different processes: within a few ms of the edges an event
    # can still race the close (lost_in_buffer or even delivered) or the new subscription.
    edges = windowed & (
        ((df["published_at"] >= 0.99) & (df["published_at"] < 1.02))
        | ((df["published_at"] >= 1.99) & (df["published_at"] < 2.1))
    )
    assert lost[in_window & ~edges].all()
    assert lost[in_window].mean() > 0.9
    assert not (lost & ~in_window & ~edges).any()
    assert (df.loc[~in_window & ~edges, "outcome"] == "delivered").all()
    # the client reconnected: its rows after the window belong to its second session
    w = real.workload
    after = df[(df["client_id"] == 1) & (df["published_at"] > 2.1)]
    assert len(after) > 0
    assert set(after["session_id"]) == {int(w.session_offsets[1]) + 1}
    assert real.metadata["connections_n"] == 6  # 4 first sessions + 2 reconnects


@pytest.mark.redis
def test_redis_output_buffer_kill_is_lost_redis_output_limit(redis_server, redis_url) -> None:
    scenario = {
        "name": "output_limit",
        "duration_s": 1.0,
        "population": {"brand_ids": [1001], "players_per_brand": 1, "clients_per_player": 1},
        "publishers": [{"kind": "burst", "size": 4000, "every_s": 100, "spacing_s": 0, "aligned": True, "payload_bytes": 4000}],
        "redis": {
            "hop_latency": 0.0003,
            "subscribe_latency": 0,
            "output_buffer": {"reader_rate_per_s": 30000, "hard_limit_bytes": 262144, "soft_limit_bytes": 0, "soft_seconds": 0},
        },
        "clients": {"drain_time": 0.0, "network_latency": 0},
    }
    kills_before = redis_server.log_text().count("output buffer limits")
    real = run_real(scenario, 0, backend="redis", redis_url=redis_url)
    sim = simulate(real.scenario, 0)
    df = real.records
    codes = df["outcome"].value_counts()
    assert codes["lost_redis_output_limit"] > 0
    assert sim.records["outcome"].value_counts()["lost_redis_output_limit"] > 0
    # Redis itself closed the subscriber for its output buffer, and the gateway resubscribed.
    assert redis_server.log_text().count("output buffer limits") > kills_before
    reconnects = [
        t for log in real.metadata["subscriber_log"] for t, what in log if what == "reconnected"
    ]
    assert reconnects
    assert real.metadata["unexplained_n"] == 0
    # The rows labelled lost_redis_output_limit are exactly the events the gateway never took
    # off Redis (one client: one row per event): Redis threw them away with the killed
    # connection's backlog, or they were published before the node had resubscribed.
    lost = df[df["outcome"] == "lost_redis_output_limit"]
    events_in = sum(m["events_in"] for m in real.metadata["gateway_metrics"])
    assert len(lost) == len(df) - events_in
    assert lost["gateway_at"].isna().all() and lost["received_at"].isna().all()
    assert (lost["session_id"] == -1).all()  # no stream ever held them
    assert (lost["published_at"] <= max(reconnects)).all()
    # Every event the gateway did take has the fate the gateway gave it, never this label.
    had = df[df["gateway_at"].notna()]
    assert len(had) == events_in
    assert had["outcome"].isin(["delivered", "dropped_overflow"]).all()
    # the limit was restored on the shared server
    import redis

    with redis.Redis.from_url(redis_url) as r:
        assert "pubsub 262144" not in str(r.config_get("client-output-buffer-limit"))
