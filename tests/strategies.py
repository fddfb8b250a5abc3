"""Hypothesis strategies for scenarios, kept in one place."""

from __future__ import annotations

from hypothesis import strategies as st

durations = st.sampled_from([0.0, 0.001, 0.01, 0.05])


@st.composite
def dist(draw, values=durations):
    """A small distribution spec: constant, exponential or lognormal."""
    kind = draw(st.sampled_from(["constant", "exponential", "lognormal"]))
    v = draw(values)
    if kind == "constant" or v == 0:
        return v
    if kind == "exponential":
        return {"kind": "exponential", "mean": v}
    return {"kind": "lognormal", "median": v, "p99": v * draw(st.sampled_from([2, 10]))}


@st.composite
def small_scenarios(draw):
    """Small scenarios that exercise every engine rule: bursts, flaps, windows, policies, yields."""
    duration = draw(st.sampled_from([2.0, 5.0]))
    publishers = [
        {"kind": "poisson", "rate_per_player_per_s": draw(st.sampled_from([5.0, 50.0, 300.0]))},
    ]
    if draw(st.booleans()):
        publishers.append(
            {
                "kind": "burst",
                "event_type": "burst",
                "size": draw(st.integers(1, 40)),
                "every_s": draw(st.sampled_from([0.5, 1.0])),
                "spacing_s": draw(st.sampled_from([0.0, 0.001])),
                "aligned": draw(st.booleans()),
            }
        )
    disconnects: dict = {"retry_delay_s": draw(st.sampled_from([0.0, 0.2, 1.0])), "retry_jitter_s": 0.1}
    if draw(st.booleans()):
        disconnects["flaps"] = {"rate_per_client_per_s": 0.5, "offline": draw(dist(st.sampled_from([0.1, 0.5])))}
    if draw(st.booleans()):
        start = draw(st.sampled_from([0.0, 0.5, 1.0]))
        disconnects["windows"] = [{"start_s": start, "end_s": start + 0.7, "fraction": 0.5}]
    if draw(st.booleans()):
        disconnects["mass_drops"] = [{"at_s": 1.0, "node": "all", "retry_delay_s": 0.3, "jitter_s": 0.2}]
    return {
        "duration_s": duration,
        "population": {
            "brand_ids": [1001, 1002][: draw(st.integers(1, 2))],
            "players_per_brand": draw(st.integers(1, 3)),
            "clients_per_player": draw(st.integers(1, 2)),
        },
        "publishers": publishers,
        "redis": {"hop_latency": draw(dist()), "subscribe_latency": draw(dist())},
        "gateway": {
            "nodes": draw(st.integers(1, 2)),
            "buffer_size": draw(st.integers(1, 6)),
            "overflow_policy": draw(st.sampled_from(["drop_newest", "drop_oldest", "disconnect"])),
            "reader_yield_every": draw(st.integers(0, 3)),
        },
        "clients": {
            "drain_time": draw(dist()),
            "network_latency": draw(dist()),
            "socket_buffer_events": draw(st.integers(0, 2)),
        },
        "disconnects": disconnects,
    }
