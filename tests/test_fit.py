"""Fitting scenarios to traces: parameters of a known scenario recovered from its own events; replay exact; the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sse_sim import build_workload, load_scenario
from sse_sim.cli import app
from sse_sim.fit import FitError, fit_trace, replay_trace
from sse_sim.scenario import scenario_from_dict

KNOWN = {
    "duration_s": 3600,
    "population": {"brand_ids": [1001, 1002], "players_per_brand": 300},
    "publishers": [
        {"kind": "poisson", "event_type": "gamification_balance_update", "rate_per_player_per_s": 0.02, "activity_sigma": 1.0, "payload_bytes": 130},
        {"kind": "burst", "event_type": "notification", "size": 20, "every_s": 600, "spacing_s": 0.0005,
         "payload_bytes": {"kind": "lognormal", "median": 400, "p99": 1500}},
    ],
}


def as_trace(spec: dict, seed: int = 0) -> pd.DataFrame:
    """A known scenario's events in the shape sse-sim capture writes."""
    w = build_workload(scenario_from_dict(spec), seed)
    return pd.DataFrame(
        {
            "received_at": w.published_at,
            "brand_id": w.player_brand_ids()[w.player],
            "player_id": w.player_ids[w.player],
            "event_type": np.array(w.event_types)[w.event_type_code],
            "payload_bytes": w.payload_bytes,
            "message_id": None,
        }
    )


@pytest.fixture(scope="module")
def known_trace() -> pd.DataFrame:
    return as_trace(KNOWN)


def test_the_known_scenario_is_recovered(known_trace):
    fitted = fit_trace(known_trace)
    pubs = {p["kind"]: p for p in fitted.scenario["publishers"]}
    assert fitted.scenario["population"]["brand_ids"] == [1001, 1002]
    assert fitted.scenario["population"]["players_per_brand"] == 300
    poisson, burst = pubs["poisson"], pubs["burst"]
    assert poisson["event_type"] == "gamification_balance_update"
    assert poisson["rate_per_player_per_s"] == pytest.approx(0.02, rel=0.1)
    assert poisson["activity_sigma"] == pytest.approx(1.0, abs=0.3)  # heavy tails make the moments noisy
    assert "diurnal" not in poisson and any("too short" in n for n in fitted.notes)
    assert burst["event_type"] == "notification" and burst["size"] == 20
    assert burst["every_s"] == pytest.approx(600, rel=0.01) and burst["spacing_s"] == pytest.approx(0.0005, rel=0.01)
    report = fitted.report.set_index("event_type")
    assert report.loc["gamification_balance_update", "gaps_ks_vs_exponential"] < 0.03
    assert report.loc["notification", "payload_bytes_median"] == pytest.approx(400, rel=0.05)
    sizes = fitted.files["payload_notification.csv"]["payload_bytes"]
    assert sorted(sizes) == sorted(known_trace.loc[known_trace["event_type"] == "notification", "payload_bytes"])


def test_a_daily_cycle_is_found_in_a_long_trace():
    spec = {
        "duration_s": 3 * 86400,
        "population": {"players_per_brand": 40},
        "publishers": [{"kind": "poisson", "rate_per_player_per_s": 0.01, "diurnal": {"amplitude": 0.6, "peak_at_s": 20 * 3600}}],
    }
    fitted = fit_trace(as_trace(spec))
    d = fitted.scenario["publishers"][0]["diurnal"]
    assert d["amplitude"] == pytest.approx(0.6, abs=0.1)
    assert abs(d["peak_at_s"] - 20 * 3600) < 1800


def test_the_fitted_scenario_loads_and_runs(known_trace, tmp_path):
    trace = tmp_path / "trace.parquet"
    known_trace.to_parquet(trace)
    out = tmp_path / "fitted" / "prod.yaml"
    result = CliRunner().invoke(app, ["fit", str(trace), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "activity_sigma" in result.output and "wrote" in result.output
    sc = load_scenario(out)
    w = build_workload(sc, 1)
    assert w.n_events == pytest.approx(len(known_trace), rel=0.05)


def test_replay_reproduces_the_trace_exactly(known_trace, tmp_path):
    trace = tmp_path / "trace.parquet"
    known_trace.to_parquet(trace)
    out = tmp_path / "replay.yaml"
    result = CliRunner().invoke(app, ["fit", str(trace), "--out", str(out), "--replay"])
    assert result.exit_code == 0, result.output
    w = build_workload(load_scenario(out), 0)
    replayed = pd.DataFrame({"t": w.published_at, "type": np.array(w.event_types)[w.event_type_code], "size": w.payload_bytes})
    original = known_trace.rename(columns={"received_at": "t", "event_type": "type", "payload_bytes": "size"})
    key = ["t", "type", "size"]
    assert replayed.sort_values(key).reset_index(drop=True).equals(original[key].sort_values(key).reset_index(drop=True))
    assert replay_trace(known_trace).scenario["population"]["players_per_brand"] == 300


def test_bad_traces_and_options_are_clear(tmp_path, known_trace):
    with pytest.raises(FitError, match="lacks column"):
        fit_trace(pd.DataFrame({"received_at": [1.0]}))
    with pytest.raises(FitError, match="no events"):
        fit_trace(known_trace.iloc[:0])
    with pytest.raises(FitError, match="fewer than"):
        fit_trace(known_trace, players=10)
    bad = tmp_path / "not.parquet"
    bad.write_text("hello")
    result = CliRunner().invoke(app, ["fit", str(bad), "--out", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "cannot read the trace" in result.output
    result = CliRunner().invoke(app, ["fit", str(bad), "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and "*.yaml" in result.output
