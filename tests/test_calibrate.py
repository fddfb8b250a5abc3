"""sse-sim calibrate: socket buffering on loopback and the real gateway's per-event costs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sse_sim.real.calibrate import gateway_costs, socket_holding, sse_frame_bytes
from sse_sim.real.gateway.compat import chunk
from sse_sim.real.gateway.replay import frame_of
from sse_sim.scenario import scenario_from_dict


def _exe() -> str:
    exe = shutil.which("sse-sim", path=str(Path(sys.executable).parent))
    assert exe is not None
    return exe


def test_frames_are_the_gateways_bytes() -> None:
    payload = b"x" * 450
    assert sse_frame_bytes(450) == chunk(frame_of(payload))


@pytest.mark.parametrize("size", [130, 450, 20000])
def test_runner_buffers_hold_little_and_defaults_hold_megabytes(size: int) -> None:
    small = socket_holding(size, "runner")
    big = socket_holding(size, "defaults")
    frame = len(sse_frame_bytes(size))
    assert small.frame_bytes == big.frame_bytes == frame
    # the runner's minimum send buffer and 8 kB receive buffer: tens of kB whatever the size
    assert 4096 <= small.held_bytes <= 64 * 1024
    assert small.events == small.held_bytes // frame
    # autotuned defaults on loopback hold megabytes: thousands of small events
    assert big.held_bytes > 20 * small.held_bytes
    assert big.sndbuf_bytes > small.sndbuf_bytes and big.rcvbuf_bytes > small.rcvbuf_bytes
    # the bytes are in the two queues (the kernel reports where)
    assert big.send_queue_bytes + big.recv_queue_bytes >= big.held_bytes // 2


def _check_costs(costs) -> None:  # type: ignore[no-untyped-def]
    assert costs.events == 30
    assert 0 < costs.hop_p50_s <= costs.hop_p99_s
    assert 0 <= costs.gateway_p50_s <= costs.gateway_p99_s
    assert costs.hop_p50_s < costs.end_to_end_p50_s <= costs.end_to_end_p99_s
    assert costs.burst_per_event_s > 0


def test_gateway_costs_on_fakeredis() -> None:
    costs = gateway_costs(events=30, payload_bytes=450)
    assert costs.backend == "fakeredis"
    _check_costs(costs)


@pytest.mark.redis
def test_gateway_costs_on_real_redis(redis_url: str) -> None:
    costs = gateway_costs(events=30, payload_bytes=450, redis_url=redis_url)
    assert costs.backend == "redis"
    _check_costs(costs)


def test_cli_prints_and_writes_a_fragment_that_a_scenario_takes(tmp_path: Path) -> None:
    out = tmp_path / "host.yaml"
    run = subprocess.run(
        [_exe(), "calibrate", "--events", "30", "--payload-bytes", "450", "--payload-bytes", "130", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "socket_buffer_events:" in run.stdout and f"wrote {out}" in run.stdout
    fragment = yaml.safe_load(out.read_text())
    assert fragment["clients"]["socket_buffer_events"] > 100  # kernel defaults, 450 B
    assert 0 < fragment["redis"]["hop_latency"] < 1
    sc = scenario_from_dict({"duration_s": 1, "publishers": [{"kind": "poisson", "rate_per_player_per_s": 1}], **fragment})
    assert sc.clients.socket_buffer_events == fragment["clients"]["socket_buffer_events"]
    text = out.read_text()
    assert "130 B payload: defaults" in text and "450 B payload: defaults" in text and "runner" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload-bytes", "0"], "--payload-bytes"),
        (["--events", "3"], "--events"),
        (["--redis-url", "redis://127.0.0.1:1/0"], "no Redis answers"),
        (["--redis-url", "http://example"], "--redis-url"),
        (["--out", "/nonexistent/folder/x.yaml"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line(args: list[str], message: str) -> None:
    run = subprocess.run([_exe(), "calibrate", "--payload-bytes", "130", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in run.stderr, run.stderr
