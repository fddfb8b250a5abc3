"""The engine agrees row for row with the same model written plainly in SimPy (bench/simpy_model.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import ROOT

from sse_sim import build_workload
from sse_sim.engine import run_engine
from sse_sim.scenario import scenario_from_dict

sys.path.insert(0, str(ROOT / "bench"))
from simpy_model import simpy_outcomes  # noqa: E402


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
@pytest.mark.parametrize("seed", [1, 2])
def test_engine_equals_simpy(policy, seed):
    sc = scenario_from_dict(
        {
            "duration_s": 60,
            "population": {"brand_ids": [1001, 1002], "players_per_brand": 5, "clients_per_player": 2},
            "publishers": [
                {"kind": "poisson", "rate_per_player_per_s": 40},
                {"kind": "burst", "event_type": "bonus", "size": 30, "every_s": 7, "spacing_s": 0.0003},
            ],
            "redis": {"hop_latency": {"kind": "exponential", "mean": 0.0005},
                      "subscribe_latency": {"kind": "lognormal", "median": 0.05, "p99": 0.5}},
            "gateway": {"buffer_size": 8, "overflow_policy": policy},
            "clients": {"drain_time": {"kind": "exponential", "mean": 0.02},
                        "network_latency": {"kind": "lognormal", "median": 0.02, "p99": 0.2}},
            "disconnects": {
                "flaps": {"rate_per_client_per_s": 0.05, "offline": {"kind": "exponential", "mean": 2}},
                "windows": [{"start_s": 20, "end_s": 25, "fraction": 0.5}],
            },
        }
    )
    w = build_workload(sc, seed)
    engine = run_engine(sc, w)
    ref = simpy_outcomes(sc, w)
    np.testing.assert_array_equal(engine.event_id, ref["event_id"])
    np.testing.assert_array_equal(engine.outcome, ref["outcome"])
    np.testing.assert_allclose(engine.received_at, ref["received_at"], rtol=0, atol=1e-9)
    # the scenario is rich enough that every covered cause occurs
    assert set(np.unique(engine.outcome)) == {0, 1, 2, 3}
