"""slow_mobile_bytes: bandwidth-bound clients, mixed payload sizes, socket buffers counted in bytes.

The simulator holds ``clients.socket_buffer_bytes`` of framed events in the sockets (what the
real runner's sockets hold behind the real gateway, measured end to end); ``compare`` runs the
real gateway, Redis and clients on a slice. See the scenario's comments for the numbers.
"""

from __future__ import annotations

import pytest

from sse_sim.compare import compare
from sse_sim.scenario import load_scenario
from sse_sim.simulation import simulate

# Three bursts (t = 0, 10, 20 s) to 20 clients: about 7,200 attempts, ~35 s per real run.
SLICE = {"duration_s": 30, "max_players": 20}


def _loss(result) -> float:  # type: ignore[no-untyped-def]
    return float((result.records["outcome"] != "delivered").mean())


def test_the_bytes_matter(scenarios_dir) -> None:
    sc = load_scenario(scenarios_dir / "slow_mobile_bytes.yaml")
    assert sc.clients.socket_buffer_bytes is not None and sc.clients.socket_buffer_events > 0
    sliced = sc.with_overrides({"duration_s": SLICE["duration_s"], "population.players_per_brand": SLICE["max_players"]})
    with_bytes = _loss(simulate(sliced, 0))
    # the pure M/M/1/K reading: no socket buffering at all
    no_sockets = _loss(simulate(sliced.with_overrides({"clients.socket_buffer_bytes": None, "clients.socket_buffer_events": 0}), 0))
    # the writer takes 29 notifications of 450 B (458 framed) into 13,312 B: ~29 fewer losses per burst
    assert with_bytes > 0.05 and no_sockets > with_bytes + 0.2


def _band(scenarios_dir, held: int) -> float:
    """The simulator's loss on the slice when the sockets hold ``held`` events of 450 B (458 framed)."""
    sc = load_scenario(scenarios_dir / "slow_mobile_bytes.yaml").with_overrides(
        {"duration_s": SLICE["duration_s"], "population.players_per_brand": SLICE["max_players"], "clients.socket_buffer_bytes": held * 458}
    )
    return _loss(simulate(sc, 0))


def _check(result, scenarios_dir) -> None:  # type: ignore[no-untyped-def]
    print(result.format())
    t = result.table.set_index("metric")
    assert result.real.metadata["unexplained_n"] == 0
    assert len(result.real.records) == len(result.sim.records) > 5000
    # bandwidth-bound and lossy on both sides, and the losses are overflow
    assert t.loc["loss_rate", "real"] >= 0.01 and t.loc["loss_rate", "sim"] >= 0.01
    assert t.loc["loss_rate_dropped_overflow", "real"] == t.loc["loss_rate", "real"]
    # the scenario's socket_buffer_events (large) is used as is: compare adds no event cap of its own
    assert result.socket_buffer_events == 1000
    # What the real sockets hold varies from run to run and burst to burst (11 to 44 events of
    # 450 B beyond the queue and the one being read, mostly alike for all clients within a
    # burst: Linux sizes a receive window by the recent segments, and right after connecting it
    # is still small): real loss 13.5-22.3 % over fifteen runs against the simulator's 18.8 %.
    # So the loss is checked against the byte model's band, not the statistical tolerance: the
    # real run must lose what the simulator loses with the sockets holding, on average over the
    # bursts, 45 to 20 events (5.5 % to 26.3 %; the lossiest run so far averaged ~23).
    real = t.loc["loss_rate", "real"]
    assert _band(scenarios_dir, 45) <= real <= _band(scenarios_dir, 20), result.format()
    # the latencies agree within compare's tolerance
    for metric in ("latency_p50_s", "latency_p95_s", "latency_p99_s"):
        assert t.loc[metric, "within"], result.format()


def test_compare_agrees_on_fakeredis(scenarios_dir) -> None:
    _check(compare(scenarios_dir / "slow_mobile_bytes.yaml", backend="fakeredis", **SLICE), scenarios_dir)


@pytest.mark.redis
def test_compare_agrees_on_redis(scenarios_dir, redis_url) -> None:
    _check(compare(scenarios_dir / "slow_mobile_bytes.yaml", backend="redis", redis_url=redis_url, **SLICE), scenarios_dir)
