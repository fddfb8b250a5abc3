"""``sse-sim capture``: live traffic to a Parquet trace, against real redis-servers the tests start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis as redis_lib

from sse_sim.events.publisher import publish_delivery
from sse_sim.real.capture import CaptureError, capture, player_hasher
from sse_sim.real.redis_server import RedisServer

pytestmark = pytest.mark.redis

BALANCE = {"balance": 1, "total_received": 1, "total_redeemed": 0}
NOTE = {
    "message_id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
    "event": "deposit_success",
    "title": "Deposit",
    "description": "ok",
    "event_details": {},
    "is_read": False,
    "time": "2025-10-22 14:30:45",
}


def wait_for(condition, deadline_s: float = 20.0, what: str = "condition") -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def patterns(client: redis_lib.Redis) -> int:
    return int(client.execute_command("PUBSUB", "NUMPAT"))


def subscribed(client: redis_lib.Redis, before: int = 0) -> bool:
    """Whether the capture's pattern subscription is in: more patterns than ``before`` (the
    session's Redis may still hold another test's)."""
    return patterns(client) > before


def test_capture_records_every_event_with_its_fields(redis_url, tmp_path):
    out = tmp_path / "trace.parquet"
    client = redis_lib.Redis.from_url(redis_url)
    done = threading.Event()
    before = patterns(client)

    def publish_all() -> None:
        wait_for(lambda: subscribed(client, before), what="the capture's subscription")
        for i in range(300):
            publish_delivery(client, 1001, 1 + i % 7, "gamification_balance_update", BALANCE)
        for _ in range(20):
            publish_delivery(client, 1002, 9, "notification", NOTE, delivery="stream")
        client.publish("SSE::1001::1", b"not json")  # skipped, counted
        client.publish("SSE::oops", b"{}")  # not an SSE channel: skipped
        done.set()

    threading.Thread(target=publish_all, daemon=True).start()
    # stop once everything is published and the capture has had a moment to read it all
    published_at: list[float] = []
    summary = capture(
        redis_url, out, duration_s=60,
        should_stop=lambda: done.is_set() and (published_at or published_at.append(time.monotonic())) and time.monotonic() - published_at[0] > 1.0,
    )
    client.close()
    trace = pd.read_parquet(out)
    assert list(trace.columns) == ["received_at", "brand_id", "player_id", "event_type", "payload_bytes", "message_id"]
    assert summary.events == len(trace) == 320 and summary.skipped == 2 and summary.stopped_by == "interrupt"
    assert trace["received_at"].is_monotonic_increasing and (trace["received_at"] >= 0).all()
    balances = trace[trace["event_type"] == "gamification_balance_update"]
    assert sorted(balances["player_id"].unique()) == list(range(1, 8)) and balances["message_id"].isna().all()
    notes = trace[trace["event_type"] == "notification"]
    # a stream-delivery message is unwrapped: the envelope's notification and its message id
    assert (notes["brand_id"] == 1002).all() and (notes["message_id"] == NOTE["message_id"]).all()
    assert (notes["payload_bytes"] > balances["payload_bytes"].max()).all()
    meta = pq.read_schema(out).metadata
    assert meta[b"sse_sim.capture.pattern"] == b"SSE::*" and meta[b"sse_sim.capture.players_hashed"] == b"false"


def test_player_ids_can_be_hashed():
    h = player_hasher(b"k" * 32)
    assert h(12345) == h(12345) != h(12346) and h(12345) > 0
    assert player_hasher(b"x" * 32)(12345) != h(12345)


def run_cli(redis_url: str, out, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sse_sim.cli", "capture", "--redis-url", redis_url, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_ctrl_c_keeps_a_valid_trace_and_hashes_on_request(redis_url, tmp_path):
    out = tmp_path / "trace.parquet"
    client = redis_lib.Redis.from_url(redis_url)
    before = patterns(client)
    proc = run_cli(redis_url, out, "--hash-players")
    try:
        wait_for(lambda: subscribed(client, before), what="the capture's subscription")
        for _ in range(50):
            publish_delivery(client, 1001, 42, "gamification_balance_update", BALANCE)
        wait_for(lambda: out.exists(), what="the trace file")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()
    assert proc.returncode == 0, stderr
    assert "stopped on Ctrl-C" in stdout and "Traceback" not in stderr
    trace = pd.read_parquet(out)
    assert len(trace) <= 50 and trace["player_id"].nunique() <= 1
    assert (trace["player_id"] != 42).all()
    assert pq.read_schema(out).metadata[b"sse_sim.capture.players_hashed"] == b"true"


def test_a_dropped_redis_connection_is_reported_and_the_trace_kept(tmp_path):
    out = tmp_path / "trace.parquet"
    server = RedisServer()
    try:
        client = redis_lib.Redis.from_url(server.url)
        proc = run_cli(server.url, out, "--duration", "120")
        wait_for(lambda: subscribed(client), what="the capture's subscription")
        for _ in range(10):
            publish_delivery(client, 1001, 7, "gamification_balance_update", BALANCE)
        # CLIENT KILL ends the capture's connection the way a Redis restart or a network cut does
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        client.close()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        server.stop()
    assert proc.returncode == 1, (stdout, stderr)
    assert "Redis connection dropped" in stderr and "Traceback" not in stderr
    assert len(pd.read_parquet(out)) <= 10  # a valid file with what was captured before


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--out", "trace.csv"], "*.parquet"),
        (["--out", "/no/such/folder/t.parquet"], "does not exist"),
        (["--out", "t.parquet", "--duration", "0"], "--duration"),
    ],
)
def test_usage_errors_exit_2(args, says, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "capture", "--redis-url", "redis://127.0.0.1:1/0", *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_redis_exits_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "capture", "--redis-url", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "t.parquet")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1 and "cannot subscribe" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(CaptureError, match="duration"):
        capture("redis://127.0.0.1:1/0", tmp_path / "x.parquet", duration_s=0)
