"""Clients in bytes: ``clients.socket_buffer_bytes`` and ``gateway.buffer_bytes``.

Hand-checked bursts of mixed sizes (20 kB notifications and 130 B balance updates) meeting a
slow reader, the caps in bytes against the caps in events, the walks without byte caps against
their output before byte caps existed, and the scenario errors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import small_scenarios
from test_scenario_errors import VALID, error_of

from sse_sim import build_workload, load_scenario
from sse_sim.engine import gateway_params, run_engine
from sse_sim.outcomes import Outcome
from sse_sim.records import row_layout
from sse_sim.scenario import scenario_from_dict
from sse_sim.workload import SSE_FRAME_BYTES

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"
FIELDS = ("outcome", "gateway_at", "left_at", "received_at", "session_id")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BIG, SMALL = 20_000, 130  # payloads; framed: 20,008 and 138 bytes
# The burst every hand-checked case sends, one event each 0.1 ms from t = 0: all of it reaches
# the gateway (hop 0) within 2.4 ms, long before the client finishes reading the first event
# (50 ms each). Indices are event ids:
#   e0, e1, e2: 20 kB;  e3..e12: 130 B;  e13: 20 kB;  e14..e23: 130 B
BURST = [BIG] * 3 + [SMALL] * 10 + [BIG] + [SMALL] * 10


def same_rows(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=getattr(a, f).dtype.kind == "f") for f in FIELDS)


def burst(tmp_path: Path, gateway: dict, clients: dict, sizes=BURST) -> dict[str, list[int]]:
    """Event ids per outcome of ``sizes`` sent to one client; both walks must agree on every row."""
    trace = tmp_path / "burst.csv"
    trace.write_text("published_at,payload_bytes\n" + "".join(f"{i * 0.0001:.4f},{b}\n" for i, b in enumerate(sizes)))
    sc = scenario_from_dict(
        {
            "duration_s": 5,
            "population": {"players_per_brand": 1},
            "publishers": [{"kind": "trace", "file": "burst.csv"}],
            "redis": {"hop_latency": 0, "subscribe_latency": 0},
            "gateway": {"overflow_policy": "drop_newest", **gateway},
            "clients": {"drain_time": 0.05, "network_latency": 0, **clients},
            "disconnects": {"retry_delay_s": 3.0},
        },
        base_dir=tmp_path,
    )
    w = build_workload(sc, 1)
    rows = run_engine(sc, w)
    assert same_rows(rows, run_engine(sc, w, walk="replay"))
    assert rows.event_id.tolist() == list(range(len(sizes)))
    return {o.name.lower(): np.flatnonzero(rows.outcome == o).tolist() for o in Outcome if (rows.outcome == o).any()}


def test_socket_bytes_hold_many_small_events_and_few_big_ones(tmp_path):
    out = burst(tmp_path, {"buffer_size": 3}, {"socket_buffer_bytes": 41_000})
    # e0 is read at once (always one slot). Beyond it, in the socket buffers:
    #   e1, e2: 2 x 20,008 = 40,016;  e3..e9: + 7 x 138 = 40,982 <= 41,000;  e10: 41,120 > 41,000
    # so e10, e11, e12 wait in the queue (buffer_size 3) and e13..e23 find it full.
    assert out == {"delivered": list(range(13)), "dropped_overflow": list(range(13, 24))}
    # In events, the same sockets measured as "2 events" (two 20 kB ones) hold 2 of anything:
    # in flight e0 + e1, e2; queued e3, e4, e5; the rest dropped.
    out = burst(tmp_path, {"buffer_size": 3}, {"socket_buffer_events": 2})
    assert out == {"delivered": list(range(6)), "dropped_overflow": list(range(6, 24))}


def test_with_both_socket_caps_the_first_reached_wins(tmp_path):
    # events first: e1..e5 are 5 events (40,430 bytes, under 41,000); e6, e7, e8 queue
    out = burst(tmp_path, {"buffer_size": 3}, {"socket_buffer_bytes": 41_000, "socket_buffer_events": 5})
    assert out == {"delivered": list(range(9)), "dropped_overflow": list(range(9, 24))}
    # bytes first: as with the bytes alone
    out = burst(tmp_path, {"buffer_size": 3}, {"socket_buffer_bytes": 41_000, "socket_buffer_events": 20})
    assert out == {"delivered": list(range(13)), "dropped_overflow": list(range(13, 24))}


def test_a_big_event_that_does_not_fit_holds_back_the_small_ones_behind_it(tmp_path):
    # 21,000 bytes: e1 (20,008) fits beside e0; e2 does not (40,016), and the queue is FIFO, so
    # the small ones behind it wait too, although seven of them would fit beside e1
    # (20,008 + 7 x 138 = 20,974): e2..e4 queue, e5.. are dropped
    out = burst(tmp_path, {"buffer_size": 3}, {"socket_buffer_bytes": 21_000})
    assert out == {"delivered": list(range(5)), "dropped_overflow": list(range(5, 24))}


def test_queue_byte_cap_drop_newest(tmp_path):
    # no socket buffering: e0 is read, the rest queue. buffer_bytes 40,500:
    #   e1 (an empty queue takes any event) 20,008;  e2 40,016;  e3..e5 + 3 x 138 = 40,430;
    #   e6: 40,568 > 40,500, dropped; every later event is bigger than the 70 bytes left
    out = burst(tmp_path, {"buffer_size": 50, "buffer_bytes": 40_500}, {})
    assert out == {"delivered": list(range(6)), "dropped_overflow": list(range(6, 24))}


def test_queue_byte_cap_takes_any_one_event_when_empty(tmp_path):
    # 1,000 bytes is less than a 20 kB event: the queue holds one at a time, as the real
    # gateway's (its cap would otherwise starve big events). e1 queues; e2.. find it not empty
    # and over the cap.
    out = burst(tmp_path, {"buffer_size": 50, "buffer_bytes": 1_000}, {}, sizes=[BIG] * 6)
    assert out == {"delivered": [0, 1], "dropped_overflow": [2, 3, 4, 5]}


def test_queue_byte_cap_drop_oldest_evicts_small_ones_to_fit_a_big_one(tmp_path):
    out = burst(tmp_path, {"buffer_size": 50, "buffer_bytes": 20_500, "overflow_policy": "drop_oldest"}, {})
    # queue after each arrival (e0 is being read):
    #   e1: [e1] 20,008;  e2: 40,016 > 20,500, evict e1: [e2] 20,008
    #   e3..e5: [e2..e5] 20,422;  e6: 20,560, evict e2: [e3..e6] 552;  e7..e12: [e3..e12] 1,380
    #   e13 (20,008): evict e3..e9, one at a time, until 414 + 20,008 = 20,422 fits: [e10..e13]
    #   e14, e15, e16: each evicts the oldest small one: [e13..e16] 20,422
    #   e17: 20,560, evicts e13, the big one: [e14..e17] 552;  e18..e23 fit: [e14..e23]
    assert out == {"delivered": [0, *range(14, 24)], "dropped_overflow": list(range(1, 14))}


def test_queue_byte_cap_disconnect(tmp_path):
    out = burst(tmp_path, {"buffer_size": 50, "buffer_bytes": 40_500, "overflow_policy": "disconnect"}, {})
    # as under drop_newest, e6 is the first not to fit: the connection is closed with e0..e6;
    # the rest are published after the close, and the client is back only 3 s later
    assert out == {"disconnected_slow": list(range(7)), "lost_disconnected": list(range(7, 24))}


def test_both_byte_caps(tmp_path):
    # sockets: e1, e2 (40,016 of 41,000); e3..e9 fit too (40,982); e10: 41,120 > 41,000
    # queue (300 bytes): e10, e11 (276); e12: 414 > 300 dropped, and so are e13..e23
    out = burst(tmp_path, {"buffer_size": 50, "buffer_bytes": 300}, {"socket_buffer_bytes": 41_000})
    assert out == {"delivered": list(range(12)), "dropped_overflow": list(range(12, 24))}


def test_the_flight_ring_is_sized_from_the_smallest_event(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("published_at,payload_bytes\n0,130\n0.1,20000\n0.2,500\n")
    spec = {
        "duration_s": 1,
        "population": {"players_per_brand": 1},
        "publishers": [{"kind": "trace", "file": "t.csv"}],
        "clients": {"socket_buffer_bytes": 1_000},
    }
    sc = scenario_from_dict(spec, base_dir=tmp_path)
    w = build_workload(sc, 1)
    row_off, _, _ = row_layout(w.player_offsets, w.clients_per_player)
    # 1 read + 1,000 // 138 = 7, but the client has 3 rows
    assert gateway_params(sc, w, row_off).inflight_cap == 1 + 3
    sc = sc.with_overrides({"clients.socket_buffer_bytes": 300})
    assert gateway_params(sc, w, row_off).inflight_cap == 1 + 300 // (130 + SSE_FRAME_BYTES)
    sc = sc.with_overrides({"clients.socket_buffer_events": 1})
    assert gateway_params(sc, w, row_off).inflight_cap == 2


def _constant_payload(spec: dict, payload: int) -> dict:
    for pub in spec["publishers"]:
        pub["payload_bytes"] = payload
    return spec


@SETTINGS
@given(small_scenarios(), st.integers(0, 2**32))
def test_socket_bytes_large_enough_is_socket_events_large_enough(spec, seed):
    # mixed sizes (300 and 600 B): neither cap ever binds, and a queue byte cap that never
    # binds changes nothing either
    events = scenario_from_dict(spec).with_overrides({"clients.socket_buffer_events": 100_000})
    w = build_workload(events, seed)
    by_bytes = events.with_overrides({"clients.socket_buffer_events": 0, "clients.socket_buffer_bytes": 10**12, "gateway.buffer_bytes": 10**12})
    assert same_rows(run_engine(events, w), run_engine(by_bytes, w))


@SETTINGS
@given(
    small_scenarios(),
    st.integers(0, 2**32),
    st.sampled_from([130, 450, 20_000]),
    st.integers(0, 4),
    st.integers(1, 6),
    st.sampled_from(["pubsub", "stream", "latest"]),
)
def test_bytes_are_events_when_every_event_has_the_same_size(spec, seed, payload, k, m, mode):
    """With one payload size F framed, k*F socket bytes hold k events, and m*F queue bytes m events."""
    spec = _constant_payload(spec, payload)
    spec["delivery"] = {"mode": mode, "history_size": 20, "max_replay": 5}
    framed = payload + SSE_FRAME_BYTES
    slack = seed % framed  # less than one more event
    base = scenario_from_dict(spec)
    buffer_size = base.gateway.buffer_size
    in_events = base.with_overrides(
        {"clients.socket_buffer_events": k, "gateway.buffer_size": min(buffer_size, m)}
    )
    in_bytes = base.with_overrides(
        {
            "clients.socket_buffer_events": 0,
            "clients.socket_buffer_bytes": k * framed + slack,
            "gateway.buffer_bytes": m * framed + slack,
        }
    )
    w = build_workload(base, seed)
    a = run_engine(in_events, w)
    b = run_engine(in_bytes, w)
    assert same_rows(a, b)
    if a.replayed is not None:
        assert np.array_equal(a.replayed, b.replayed)


@SETTINGS
@given(small_scenarios(), st.integers(0, 2**32), st.sampled_from([None, 0, 700, 3_000]), st.sampled_from([None, 1, 900, 2_000]))
def test_the_replay_walk_under_pubsub_is_the_pubsub_walk_with_byte_caps(spec, seed, socket_bytes, queue_bytes):
    spec["clients"]["socket_buffer_events"] = 0 if socket_bytes == 0 else spec["clients"]["socket_buffer_events"]
    spec["clients"]["socket_buffer_bytes"] = socket_bytes
    spec["gateway"]["buffer_bytes"] = queue_bytes
    sc = scenario_from_dict(spec)
    w = build_workload(sc, seed)
    assert same_rows(run_engine(sc, w), run_engine(sc, w, walk="replay"))


def _digest(rows) -> str:
    h = hashlib.sha256()
    for f in FIELDS:
        a = np.ascontiguousarray(getattr(rows, f))
        if a.dtype.kind == "f":
            a = np.where(np.isnan(a), np.nan, a)  # one NaN bit pattern
        h.update(a.tobytes())
    if rows.replayed is not None:
        h.update(np.ascontiguousarray(rows.replayed).tobytes())
    return h.hexdigest()[:16]


# Digests of run_engine's rows (seed 11), the plain walk and the replay walk, taken with the
# engine as it was before byte caps existed (commit d8602a8).
BEFORE_BYTE_CAPS = [
    ("real_burst_exact.yaml", {}, "a409558a628a65e3", "6830067ac9fdbeae"),
    ("real_burst_drop_oldest.yaml", {}, "a71fd1f6cad9ee6b", "7486d9037075ce1b"),
    ("real_burst_disconnect.yaml", {}, "89c9faf7418a1f87", "8e1482cd75ad7eee"),
    ("slow_mobile.yaml", {"duration_s": 300, "population.players_per_brand": 50}, "65a7df0180e38ee8", "b9f9d30d7f1ece21"),
    (
        "slow_mobile.yaml",
        {"duration_s": 300, "population.players_per_brand": 50, "gateway.overflow_policy": "disconnect", "clients.socket_buffer_events": 3},
        "f0e763df44bc611d",
        "b1c8433d530a77fe",
    ),
    ("baseline.yaml", {"duration_s": 120, "population.players_per_brand": 100}, "a70fba0a452a25bb", "aff7e11f6d118287"),
    ("storm_replay.yaml", {"duration_s": 120, "population.players_per_brand": 300}, "a7776d994827c2c9", "a7776d994827c2c9"),
]


@pytest.mark.parametrize(("name", "overrides", "plain", "replay"), BEFORE_BYTE_CAPS)
def test_without_byte_caps_the_rows_are_those_from_before_byte_caps(name, overrides, plain, replay):
    sc = load_scenario(SCENARIOS / name).with_overrides(overrides)
    assert sc.clients.socket_buffer_bytes is None and sc.gateway.buffer_bytes is None
    w = build_workload(sc, 11)
    assert (_digest(run_engine(sc, w)), _digest(run_engine(sc, w, walk="replay"))) == (plain, replay)


def test_scenario_errors_name_the_key_and_what_is_allowed(tmp_path):
    msg = error_of(tmp_path, VALID + "gateway: {buffer_bytes: 0}\nclients: {socket_buffer_bytes: -1}\n")
    assert msg.splitlines() == [
        f"{tmp_path / 's.yaml'}: invalid scenario",
        "  gateway.buffer_bytes: expected a number of at least 1, got integer 0",
        "  clients.socket_buffer_bytes: expected a number of at least 0, got integer -1",
    ]
    msg = error_of(tmp_path, VALID + "gateway: {buffer_bytes: 1.5}\nclients: {socket_buffer_bytes: lots}\n")
    assert "gateway.buffer_bytes: expected a valid integer, got number 1.5" in msg
    assert "clients.socket_buffer_bytes: expected a valid integer, got string 'lots'" in msg
    msg = error_of(tmp_path, VALID + "clients: {socket_buffer_bytes: 0, socket_buffer_events: 3}\n")
    assert msg == (
        f"{tmp_path / 's.yaml'}: clients.socket_buffer_bytes: 0 leaves no room for the 3 events of "
        "clients.socket_buffer_events (allowed: more than 0 to cap those events in bytes as well, or null to "
        "count in events alone)"
    )
    msg = error_of(tmp_path, VALID + "clients: {socket_buffer_byte: 1000}\n")
    assert "clients.socket_buffer_byte: unknown key" in msg and "socket_buffer_bytes" in msg


def test_valid_byte_caps(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(VALID + "gateway: {buffer_bytes: 1048576}\nclients: {socket_buffer_bytes: 0}\n")
    sc = load_scenario(p)
    assert sc.gateway.buffer_bytes == 1_048_576 and sc.clients.socket_buffer_bytes == 0
    assert sc.clients.socket_buffer_events == 0
    assert load_scenario(SCENARIOS / "baseline.yaml").clients.socket_buffer_bytes is None
