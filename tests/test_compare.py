"""sse-sim compare: simulator against real mode on the shipped scenarios, exactly or within tolerance."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from sse_sim.compare import compare, comparison_table, pool_jitter, queue_depth, reader_rate
from sse_sim.outcomes import LOSS_CAUSES
from sse_sim.tables import TABLES, check_frame

BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)]

# Slices that take seconds: (scenario, compare() keyword arguments)
SHIPPED = [
    ("baseline", {"duration_s": 10, "max_players": 300}),
    # at rho = 0.9 a queue amplifies any per-event overhead of the real client and gateway (a
    # 0.5 ms scheduling delay is 5 % more service time); replaying twice as slowly halves it
    ("mm1k", {"duration_s": 10, "time_scale": 2.0}),
    ("deploy_storm", {"start_s": 297, "duration_s": 8, "max_players": 400}),
    ("slow_mobile", {"duration_s": 10, "max_players": 100}),
]


def _redis(backend: str, request: pytest.FixtureRequest) -> dict:
    return {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}


def test_comparison_table_is_registered_and_documented() -> None:
    assert [c.name for c in TABLES["comparison"]] == ["metric", "sim", "real", "diff", "tolerance", "within"]


def test_tolerance_rule_flags_a_real_difference() -> None:
    from sse_sim.simulation import simulate

    sim = simulate({"duration_s": 2, "population": {"players_per_brand": 5},
                    "publishers": [{"kind": "poisson", "rate_per_player_per_s": 50}]}, 0).records
    real = sim.copy()
    drop = np.zeros(len(real), bool)
    drop[::10] = True  # 10 % of the attempts lost in the "real" run
    codes = real["outcome"].cat.codes.to_numpy().copy()
    codes[drop] = 2
    real["outcome"] = pd.Categorical.from_codes(codes, real["outcome"].cat.categories)
    real.loc[drop, "latency_s"] = np.nan
    table = comparison_table(sim, real)
    check_frame(table, "comparison")
    row = table.set_index("metric").loc["loss_rate_dropped_overflow"]
    assert not row["within"] and row["diff"] == pytest.approx(drop.mean())
    same = comparison_table(sim, sim.copy())
    assert same["within"].all() and (same["diff"].fillna(0) == 0).all()


def test_socket_hold_allows_for_the_measured_variation_not_for_a_wrong_setting(scenarios_dir) -> None:
    from types import SimpleNamespace

    from sse_sim.compare import _socket_hold
    from sse_sim.scenario import load_scenario
    from sse_sim.simulation import simulate

    sc = load_scenario(scenarios_dir / "real_burst_exact.yaml")  # sockets hold 2 events of the 100
    assert sc.clients.socket_buffer_events == 2
    frame = simulate(sc, 0).records.assign(_seed=0)

    def reals(*held: float, peak: tuple[float, ...] | None = None) -> list:
        peak = held if peak is None else peak
        return [
            SimpleNamespace(
                metadata={
                    "socket_held": {
                        "events": list(held),
                        "bytes": [h * 1000 for h in held],
                        "peak_events": list(peak),
                        "peak_bytes": [h * 1000 for h in peak],
                    }
                }
            )
        ]

    # real sockets held 2 to 4 (mean 3): the simulator at 3 keeps one more event, so the
    # overflow rate's tolerance widens by one attempt in 100
    hold, rate = _socket_hold(sc, [0], frame, reals(2, 3, 4))
    assert hold is not None and hold["events"] == 3 and hold["sim_events"] == 2 and hold["allowed"] == 1
    assert rate["loss_rate_dropped_overflow"] == pytest.approx(0.01)
    # 5 to 7: the simulator's 2 is outside anything measured, a wrong setting: no allowance
    hold, rate = _socket_hold(sc, [0], frame, reals(5, 6, 7))
    assert hold is not None and hold["allowed"] == 0 and rate == {}
    # the mean is what the simulator holds: nothing to allow; no overflow measured: no figures
    assert _socket_hold(sc, [0], frame, reals(1, 2, 3))[1] == {}
    # 2 at every last overflow, but the windows grew to 3 and 5 before the clients read again:
    # the simulator at the mean of those, 4, keeps two more events in 100
    hold, rate = _socket_hold(sc, [0], frame, reals(2, 2, peak=(3, 5)))
    assert hold is not None and hold["peak_events"] == 4 and hold["max_events"] == 5 and hold["allowed"] == 1
    assert rate["loss_rate_dropped_overflow"] == pytest.approx(0.02)
    assert _socket_hold(sc, [0], frame, reals()) == (None, {})


def test_slip_rate_replays_the_real_clients_lateness_in_the_simulator() -> None:
    from types import SimpleNamespace

    from sse_sim.compare import _slip_rate
    from sse_sim.scenario import scenario_from_dict
    from sse_sim.simulation import simulate

    # one client reading 100 events/s at half its speed: nothing is lost on time
    sc = scenario_from_dict({
        "duration_s": 2, "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 1, "every_s": 0.01, "aligned": True}],
        "gateway": {"buffer_size": 5}, "clients": {"drain_time": 0.005, "network_latency": 0},
    })
    sim = simulate(sc, 0)
    frame = sim.records.assign(_seed=0)
    assert (sim.records["outcome"] == "delivered").all() and len(frame) == 200
    slips = np.full(len(frame), np.nan)
    # the real client drained row 10 0.2 s late (a scheduler stall): 20 arrivals meet a queue of 5
    slips[10] = 0.2
    rate = _slip_rate(sc, [sim], [SimpleNamespace(metadata={"drain_slip_by_row": slips})], frame)
    assert rate["loss_rate"] == rate["loss_rate_dropped_overflow"] == pytest.approx(14 / 200, abs=1.5 / 200)
    # on time (slips of a few microseconds either way): nothing moves
    on_time = np.where(np.arange(len(frame)) % 2 == 0, 1e-6, -1e-6)
    assert _slip_rate(sc, [sim], [SimpleNamespace(metadata={"drain_slip_by_row": on_time})], frame) == {}


def test_arrival_rate_replays_when_the_real_gateway_had_each_event() -> None:
    from types import SimpleNamespace

    from sse_sim.compare import _arrival_rate
    from sse_sim.scenario import scenario_from_dict
    from sse_sim.simulation import simulate

    # ten events at once to a client draining 50 ms each through a 5-event queue: 4 dropped
    sc = scenario_from_dict({
        "duration_s": 2, "population": {"players_per_brand": 1},
        "publishers": [{"kind": "burst", "size": 10, "every_s": 100, "spacing_s": 0, "aligned": True}],
        "gateway": {"buffer_size": 5}, "clients": {"drain_time": 0.05, "network_latency": 0},
    })
    sim = simulate(sc, 0)
    frame = sim.records.assign(_seed=0)
    assert (sim.records["outcome"] == "dropped_overflow").sum() == 4
    # the real gateway read them 60 ms apart (a loaded reader): the client kept up, none lost
    real = sim.records.copy()
    real["gateway_at"] = real["published_at"] + 0.06 * np.arange(len(real))
    rate = _arrival_rate(sc, [sim], [SimpleNamespace(records=real)], frame)
    assert rate["loss_rate"] == rate["loss_rate_dropped_overflow"] == pytest.approx(0.4)
    # read on time: nothing moves
    assert _arrival_rate(sc, [sim], [SimpleNamespace(records=sim.records)], frame) == {}


def _jitter(slip_mean: float, slip_sd: float, reader_p99: float = 0.0, late_p99: float = 0.0, n: int = 53) -> dict:
    def dist(mean: float, sd: float, p99: float) -> dict:
        return {"n": n, "mean": mean, "sd": sd, "p50": mean, "p90": p99, "p99": p99, "max": p99}

    return {
        "drain_slip_s": dist(slip_mean, slip_sd, slip_mean + 3 * slip_sd),
        "timer_late_s": dist(0.0, 0.0, 0.0),
        "receive_late_s": dist(late_p99, 0.0, late_p99),
        "reader_delay_s": dist(reader_p99, 0.0, reader_p99),
    }


def _late_burst(sim: pd.DataFrame, per_event_s: float, once_s: float = 0.0) -> pd.DataFrame:
    """The burst's records with each delivered event i finishing (i + 1) * per_event_s + once_s later."""
    real = sim.copy()
    delivered = real["outcome"] == "delivered"
    shift = (real.loc[delivered, "event_id"] + 1) * per_event_s + once_s
    for col in ("left_at", "received_at", "latency_s"):
        real.loc[delivered, col] += shift
    return real


def test_queue_depth_counts_the_drains_a_row_waited_for(scenarios_dir) -> None:
    from sse_sim.simulation import simulate

    burst = simulate(scenarios_dir / "real_burst_exact.yaml", 0).records
    depth = queue_depth(burst)
    # the whole burst reached the gateway before the first read ended: event i waited for i drains
    assert depth[:53].tolist() == list(range(1, 54))
    assert np.isnan(depth[53:]).all()  # dropped: no latency
    sparse = simulate({"duration_s": 5, "population": {"players_per_brand": 3},
                       "publishers": [{"kind": "poisson", "rate_per_player_per_s": 2}]}, 0).records
    assert (queue_depth(sparse) == 1).all()  # 2 events/s against 1 ms drains: never a queue


def test_pool_jitter_pools_counts_means_and_deviations() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.001, 0.0005, 40), rng.normal(0.004, 0.002, 60)

    def summary(x: np.ndarray) -> dict:
        return {"n": x.size, "mean": x.mean(), "sd": x.std(ddof=1), "p50": np.median(x),
                "p90": np.quantile(x, 0.9), "p99": np.quantile(x, 0.99), "max": x.max()}

    pooled = pool_jitter([{"drain_slip_s": summary(a)}, {"drain_slip_s": summary(b)}])["drain_slip_s"]
    both = np.concatenate([a, b])
    assert pooled["n"] == 100
    assert pooled["mean"] == pytest.approx(both.mean())
    assert pooled["sd"] == pytest.approx(both.std(ddof=1))
    assert pooled["p99"] == max(np.quantile(a, 0.99), np.quantile(b, 0.99))


def test_latency_tolerance_allows_the_measured_slip_and_no_more(scenarios_dir) -> None:
    from sse_sim.simulation import simulate

    sim = simulate(scenarios_dir / "real_burst_exact.yaml", 0).records
    # A loaded run: every drain 4 ms late, the first read 15 ms late. Event 52 arrives 227 ms
    # after the simulator's, outside the fixed floor's tolerance (about 130 ms at p99) ...
    loaded = _late_burst(sim, 0.004, 0.015)
    fixed = comparison_table(sim, loaded).set_index("metric")
    assert not fixed.loc["latency_p99_s", "within"]
    # ... and within it once the run's measured lateness is accounted for
    measured = comparison_table(sim, loaded, jitter=_jitter(0.004, 0.001, reader_p99=0.015)).set_index("metric")
    assert measured["within"].all(), measured
    # A real difference: drains 10 % slower than the model (5 ms per event) while the run
    # measured itself on time (idle slips of 0.2 ms): still flagged at p99 (53 latencies 50 ms
    # apart leave p50 and p95 a wide order-statistic tolerance either way)
    slower = _late_burst(sim, 0.005)
    idle = comparison_table(sim, slower, jitter=_jitter(0.0002, 0.0002, reader_p99=0.001)).set_index("metric")
    assert not idle.loc["latency_p99_s", "within"], idle
    # the allowance is what the slip adds up to along the queue, not a blanket one: with the
    # same measured slip the p99 tolerance grows by about 53 drains' worth, plus the largest
    # slip once (0.8 ms here)
    grown = idle.loc["latency_p99_s", "tolerance"] - fixed.loc["latency_p99_s", "tolerance"]
    assert 53 * 0.0002 < grown < 53 * 0.0002 + 3.29 * 0.0002 * np.sqrt(53) + 0.0008 + 0.002


def _reads_during_burst(real) -> int:  # type: ignore[no-untyped-def]
    """How many events the client finished reading before the burst's last event reached the gateway."""
    rec = real.records
    return int(((rec["outcome"] == "delivered") & (rec["left_at"] < rec["gateway_at"].max())).sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_burst_agrees_exactly(backend: str, request, scenarios_dir) -> None:
    result = compare(scenarios_dir / "real_burst_exact.yaml", backend=backend, **_redis(backend, request))
    check_frame(result.table, "comparison")
    assert result.ok, result.format()
    losses = result.table[result.table["metric"].str.startswith("loss_rate")]
    # A deterministic scenario agrees to one attempt: the sockets hold 2 events of 20 kB on
    # most runs and 1 when the client's first read races the gateway's writes. On a loaded
    # machine the burst may take longer to arrive than a drain: each read the client finishes
    # before the last event reaches the gateway frees room for one more (once in 10 loaded runs).
    extra = _reads_during_burst(result.real) / 100
    assert (losses["diff"].abs() <= 0.01 + extra + 1e-9).all(), result.format()  # 0.48 - 0.47 > 0.01 in floating point
    overflow = result.table.set_index("metric").loc["loss_rate_dropped_overflow", "real"]
    assert 0.47 - extra - 1e-9 <= overflow <= 0.48 + 1e-9, (overflow, extra)
    assert result.socket_buffer_events == 2
    assert len(losses) == 1 + len(LOSS_CAUSES)
    # the real run measured its own lateness, per event read, and the tolerance used it
    jitter = result.real.metadata["jitter"]
    assert jitter["drain_slip_s"]["n"] == (result.real.records["outcome"] == "delivered").sum()
    assert result.jitter == pool_jitter([jitter])
    assert "real-run jitter: drain slip" in result.format()


def _ids(result, outcome: str) -> list[int]:
    records = result.records
    return sorted(records.loc[records["outcome"] == outcome, "event_id"].tolist())


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_oldest_burst_agrees_event_by_event(backend: str, request, scenarios_dir) -> None:
    result = compare(scenarios_dir / "real_burst_drop_oldest.yaml", backend=backend, **_redis(backend, request))
    assert result.ok, result.format()
    assert result.real.metadata["unexplained_n"] == 0
    # the first three (being read + 2 in the sockets) and the newest 50 reach the client; the
    # queue evicted 3..49. When the sockets held 1 event (a race), event 2 was evicted too. On a
    # loaded machine the burst takes longer to arrive than a 50 ms drain: each read the client
    # finishes before the last event reaches the gateway lets the writer refill the sockets with
    # the oldest event queued then, a later one of 2..49.
    delivered = _ids(result.real, "delivered")
    assert delivered[:2] == [0, 1] and delivered[-50:] == list(range(50, 100)), delivered
    reads_during_burst = _reads_during_burst(result.real)
    between = delivered[2:-50]
    assert len(between) <= 1 + reads_during_burst and all(2 <= e < 50 for e in between), (delivered, reads_during_burst)
    assert _ids(result.real, "dropped_overflow") == [e for e in range(100) if e not in delivered]
    assert _ids(result.sim, "delivered") == [0, 1, 2, *range(50, 100)]
    assert result.real.metadata["gateway_metrics"][0]["dropped_overflow"] == 100 - len(delivered)


@pytest.mark.parametrize("backend", BACKENDS)
def test_disconnect_burst_agrees_event_by_event(backend: str, request, scenarios_dir) -> None:
    result = compare(scenarios_dir / "real_burst_disconnect.yaml", backend=backend, **_redis(backend, request))
    assert result.ok, result.format()
    real = result.real
    assert real.metadata["unexplained_n"] == 0
    # the cut: everything held for the stream (being read, the sockets, the queue) and the
    # event that found the queue full; 54 events when the sockets held 2, 53 when they held 1
    slow = _ids(real, "disconnected_slow")
    assert slow in (list(range(54)), list(range(53))), slow
    assert _ids(real, "lost_in_buffer") == [*range(len(slow), 100), 100]
    # published while the client waited out its retry, then read on its second connection
    assert _ids(real, "lost_disconnected") == [101, 102, 103, 104]
    assert _ids(real, "delivered") == [105, 106, 107, 108, 109]
    assert real.metadata["connections_n"] == 2
    metrics = real.metadata["gateway_metrics"][0]
    assert metrics["connections_disconnected_slow"] == 1
    assert _ids(result.sim, "disconnected_slow") == list(range(54))
    delivered = real.records[real.records["outcome"] == "delivered"]
    assert (delivered["session_id"] == delivered["session_id"].iloc[0]).all()


@pytest.mark.redis
@pytest.mark.parametrize("name", ["real_burst_drop_oldest", "real_burst_disconnect", "real_output_limit"])
def test_cli_compare_on_real_redis_exits_0(name: str, redis_url: str, scenarios_dir) -> None:
    exe = shutil.which("sse-sim", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None
    out = subprocess.run(
        [exe, "compare", str(scenarios_dir / f"{name}.yaml"), "--redis-url", redis_url],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "AGREE" in out.stdout


@pytest.mark.parametrize("rate", [1000, 640])
def test_reader_rate_reads_the_subscribers_rate_off_the_records(rate: int, scenarios_dir) -> None:
    from sse_sim import load_scenario, simulate

    sc = load_scenario(scenarios_dir / "real_output_limit.yaml").with_overrides(
        {"redis.output_buffer.kernel_buffer_bytes": 2_900_000, "redis.output_buffer.reader_rate_per_s": rate}
    )
    records = simulate(sc, 0).records
    measured, n = reader_rate(records)
    # the simulated reader takes one message every 1/rate s while it is behind
    assert n > 1000 and measured == pytest.approx(rate, rel=1e-9)
    # events read without a backlog do not count: one event every 10 ms gives nothing to read
    idle = sc.with_overrides({"publishers.0.size": 1})
    assert reader_rate(simulate(idle, 0).records)[1] == 0


@pytest.mark.redis
def test_output_limit_losses_on_real_redis(redis_server, redis_url: str, scenarios_dir) -> None:
    # Only real Redis enforces client-output-buffer-limit: this runs with the redis marker only.
    from sse_sim.real import sockbuf

    kills_before = redis_server.log_text().count("output buffer limits")
    probes_before = sockbuf._measure_subscriber.cache_info().misses
    result = compare(scenarios_dir / "real_output_limit.yaml", backend="redis", redis_url=redis_url)
    real, sim = result.real, result.sim
    assert real.metadata["unexplained_n"] == 0
    # Redis closed the capped subscriber once in the run (and once in the measurement of the
    # sockets, unless this process had measured it already); the gateway resubscribed after
    # its back-off
    probes = sockbuf._measure_subscriber.cache_info().misses - probes_before
    assert redis_server.log_text().count("output buffer limits") == kills_before + probes + 1
    outages = [o for m in real.metadata["gateway_metrics"] for o in m["outages"]]
    assert len(outages) == 1 and 0.05 <= outages[0]["duration_s"] < 0.2
    assert real.metadata["gateway_metrics"][0]["reader_rate_per_s"] == 1000
    # the sockets between Redis and the gateway hold megabytes outside Redis's limit when it
    # closes the subscriber (measured in flow: ~2.9 MB of 10 kB messages here)
    assert 1 << 20 < result.kernel_buffer_bytes < 16 << 20
    table = result.table.set_index("metric")
    lost = table.loc["loss_rate_lost_redis_output_limit"]
    # one contiguous run of events lost on each side, about three in eight
    for r in (real, sim):
        ids = r.records.loc[r.records["outcome"] == "lost_redis_output_limit", "event_id"].to_numpy()
        assert ids.size and (ids.max() - ids.min() + 1 - ids.size) <= 25
    assert 0.3 < lost["sim"] < 0.45 and 0.3 < lost["real"] < 0.45
    # compare agrees on every metric, latency within the measured jitter's allowance. Its loss
    # tolerance is wide here (one client's losses are one cluster), so the amount is held to a
    # tighter bound: 2 points (idle, the simulator and real runs agree within 1.2: 36.7 %
    # against 37.2-37.9 %), plus what the real subscriber's measured lag moves the simulator's
    # loss by (a loaded machine's reader falls behind its 1,000/s and loses 40-41 %)
    assert result.ok, result.format()
    lag = result.reader_lag
    assert lag is not None and 0.5 * 1000 < lag["reader_rate_per_s"] <= 1.02 * 1000 and lag["resubscribe_s"] >= 0.05
    allowance = result.lag_rate.get("loss_rate_lost_redis_output_limit", 0.0)
    assert allowance < 0.1, result.format()
    assert abs(lost["real"] - lost["sim"]) < 0.02 + allowance, result.format()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("name", "kwargs"), SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_scenarios_agree_within_tolerance(name: str, kwargs: dict, backend: str, request, scenarios_dir) -> None:
    result = compare(scenarios_dir / f"{name}.yaml", backend=backend, **_redis(backend, request), **kwargs)
    assert result.ok, result.format()
    assert result.real.metadata["unexplained_n"] == 0
    assert result.real.backend == backend and result.sim.backend == "sim"
    assert len(result.real.records) == len(result.sim.records) > 50
    if name == "deploy_storm":
        # the drop of node 0 is really observed: its clients lose what is published while away
        lost = result.table.set_index("metric").loc["loss_rate_lost_disconnected"]
        assert lost["real"] > 0.02 and lost["sim"] > 0.02


def test_cli_compare_exits_1_naming_the_metric(tmp_path, scenarios_dir) -> None:
    exe = shutil.which("sse-sim", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert exe is not None
    ok = subprocess.run([exe, "compare", str(scenarios_dir / "real_burst_exact.yaml")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "AGREE" in ok.stdout
    # A model with the wrong socket buffering keeps 51 + 8 = 59 events where the real system
    # keeps 52 or 53. (The pure model, 0, keeps 51: one attempt from the 52 of the run in five
    # where the client's first read races the gateway's writes, which the tolerance allows.)
    text = (scenarios_dir / "real_burst_exact.yaml").read_text().replace("socket_buffer_events: 2", "socket_buffer_events: 8")
    bad = tmp_path / "no_socket_buffers.yaml"
    bad.write_text(text)
    out = subprocess.run([exe, "compare", str(bad), "--no-calibrate"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "loss_rate_dropped_overflow" in out.stderr
