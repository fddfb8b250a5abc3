"""Capture, then fit: a known workload published to a real redis-server comes back as its own scenario.

A publisher process sends a known workload (Poisson balance updates per player plus bursts of
notifications with lognormal sizes) in real time, each event built and encoded by the project's
publisher (:func:`sse_sim.real.payloads.build_payload`, the gateway's envelope). Once it is
publishing, :func:`~sse_sim.real.capture.capture` records a window of that traffic, as one would
on a production Redis that is already busy, and :func:`~sse_sim.fit.fit_trace` fits a scenario
to the trace. The fitted scenario must give the known rates, burst size and payload sizes back,
and the simulator must lose and delay events the same under both.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from sse_sim import build_workload, simulate
from sse_sim.compare import comparison_table
from sse_sim.fit import fit_trace
from sse_sim.real.capture import capture
from sse_sim.real.redis_server import RedisServer
from sse_sim.scenario import scenario_from_dict

pytestmark = pytest.mark.redis

PLAYERS = 400
RATE = 0.75  # balance updates per player per second
BURST, EVERY_S, SPACING_S = 8, 10.0, 0.001
MEDIAN = 400  # notification bytes, lognormal
CAPTURE_S = 20.0
# The delivery side both scenarios are simulated with: bursts of 8 into a 4-event queue.
DELIVERY = {
    "gateway": {"buffer_size": 4, "overflow_policy": "drop_newest"},
    "clients": {"drain_time": 0.01, "network_latency": {"kind": "lognormal", "median": 0.05, "p99": 0.3}},
}


def known(duration_s: float) -> dict:
    return {
        "duration_s": duration_s,
        "population": {"brand_ids": [1001], "players_per_brand": PLAYERS},
        "publishers": [
            {"kind": "poisson", "event_type": "gamification_balance_update", "rate_per_player_per_s": RATE, "payload_bytes": 130},
            {"kind": "burst", "event_type": "notification", "size": BURST, "every_s": EVERY_S, "spacing_s": SPACING_S,
             "payload_bytes": {"kind": "lognormal", "median": MEDIAN, "p99": 1500}},
        ],
    }


# Publishes the workload saved in ARRAYS at its instants; prints "publishing" once it has begun.
PUBLISHER = """
import sys, time
import numpy as np, redis
from sse_sim.real.payloads import build_payload
url, arrays = sys.argv[1], np.load(sys.argv[2])
types = [str(t) for t in arrays["types"]]
client = redis.Redis.from_url(url)
messages = [build_payload(1001, int(p), types[k], int(e), 0, int(b))
            for p, k, e, b in zip(arrays["player"], arrays["type"], arrays["event"], arrays["size"])]
t0 = time.monotonic()
print("publishing", flush=True)
for t, (channel, text) in zip(arrays["t"], messages):
    delay = t0 + t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    client.publish(channel, text)
"""


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory) -> tuple[pd.DataFrame, object]:  # type: ignore[no-untyped-def]
    """The captured trace and its fit."""
    work = tmp_path_factory.mktemp("capture_fit")
    # the publisher runs longer than the capture, which starts once traffic flows
    w = build_workload(scenario_from_dict(known(CAPTURE_S + 15)), 0)
    order = np.argsort(w.published_at, kind="stable")  # the workload is laid out player by player
    np.savez(
        work / "workload.npz", t=w.published_at[order], player=w.player_ids[w.player][order], type=w.event_type_code[order],
        event=order, size=w.payload_bytes[order], types=np.array(w.event_types),
    )
    (work / "publisher.py").write_text(PUBLISHER)
    with RedisServer() as server:
        proc = subprocess.Popen(
            [sys.executable, str(work / "publisher.py"), server.url, str(work / "workload.npz")],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "publishing"
            time.sleep(1.0)  # into the publisher's steady state: a capture of a busy Redis
            summary = capture(server.url, work / "trace.parquet", duration_s=CAPTURE_S)
            assert proc.poll() is None, "the publisher stopped before the capture ended"
        finally:
            proc.kill()
            proc.wait(timeout=30)
    trace = pd.read_parquet(work / "trace.parquet")
    assert summary.events == len(trace) > 10_000 and summary.skipped == 0
    return trace, fit_trace(trace, name="fitted", players=PLAYERS)


def test_the_fit_gives_the_published_workload_back(round_trip) -> None:  # type: ignore[no-untyped-def]
    trace, fitted = round_trip
    print(fitted.scenario["publishers"], fitted.report.T, sep="\n")
    pubs = {(p["kind"], p["event_type"]): p for p in fitted.scenario["publishers"]}
    assert fitted.scenario["population"]["players_per_brand"] == PLAYERS
    assert fitted.scenario["duration_s"] == pytest.approx(CAPTURE_S, rel=0.02)
    # rates within 5 %: balance updates per player, bursts per player
    assert pubs["poisson", "gamification_balance_update"]["rate_per_player_per_s"] == pytest.approx(RATE, rel=0.05)
    burst = pubs["burst", "notification"]
    assert 1 / burst["every_s"] == pytest.approx(1 / EVERY_S, rel=0.05)
    # the burst size exactly
    assert burst["size"] == BURST
    # notifications come in bursts only: no Poisson stream of them worth the name
    stray = pubs.get(("poisson", "notification"), {}).get("rate_per_player_per_s", 0.0)
    assert stray < 0.05 * BURST / EVERY_S
    # payload sizes: the lognormal's median within 10 %, and the fitted sizes are the trace's
    report = fitted.report.set_index("event_type")
    assert report.loc["notification", "payload_bytes_median"] == pytest.approx(MEDIAN, rel=0.10)
    captured = trace.loc[trace["event_type"] == "notification", "payload_bytes"]
    assert sorted(fitted.files["payload_notification.csv"]["payload_bytes"]) == sorted(captured)


def test_the_fitted_scenario_loses_and_delays_like_the_original(round_trip, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, fitted = round_trip
    for rel, frame in fitted.files.items():
        frame.to_csv(tmp_path / rel, index=False)
    original = scenario_from_dict({**known(CAPTURE_S), **DELIVERY})
    model = scenario_from_dict({**fitted.scenario, **DELIVERY}, base_dir=tmp_path)
    a, b = simulate(original, 0).records, simulate(model, 1).records
    table = comparison_table(a, b).set_index("metric")
    print(table)
    # the bursts overflow the 4-event queue on both sides, and every metric agrees
    assert 0.05 < table.loc["loss_rate", "sim"] < 0.5 and table.loc["loss_rate", "real"] > 0.05
    assert table["within"].all(), table
