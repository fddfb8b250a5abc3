"""``sse-sim publish``: one event published the way the gateway expects it, against a real redis-server."""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_lib
from typer.testing import CliRunner

from sse_sim.cli import app
from sse_sim.events.publisher import (
    decode_stream_message,
    encode_stream_message,
    latest_key,
    publish_delivery,
)

pytestmark = pytest.mark.redis

BALANCE = json.dumps({"balance": 1500, "total_received": 5000, "total_redeemed": 3500})


def publish(redis_url: str, *extra: str, data: str = BALANCE, player: str = "7"):
    args = ["publish", "--redis-url", redis_url, "--brand", "1001", "--player", player, "--type", "gamification_balance_update", "--data", data, *extra]
    return CliRunner().invoke(app, args)


@pytest.fixture
def client(redis_url):
    c = redis_lib.Redis.from_url(redis_url)
    yield c
    c.close()


def next_message(pubsub, deadline_s: float = 10.0) -> dict:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            return msg
    raise AssertionError("no message arrived")


def test_pubsub_publishes_the_envelope(redis_url, client):
    sub = client.pubsub()
    sub.subscribe("SSE::1001::7")
    next_message_ready = sub.get_message(timeout=5)  # the subscribe confirmation
    assert next_message_ready["type"] == "subscribe"
    result = publish(redis_url)
    assert result.exit_code == 0, result.output
    assert "1 subscriber(s)" in result.output
    got = json.loads(next_message(sub)["data"])
    assert got == {"brand_id": 1001, "player_id": 7, "event_type": "gamification_balance_update", "event_data": json.loads(BALANCE)}
    sub.close()


def test_stream_keeps_a_bounded_history_and_publishes_the_entry_id(redis_url, client):
    client.delete("SSE::1001::8")
    sub = client.pubsub()
    sub.subscribe("SSE::1001::8")
    sub.get_message(timeout=5)
    for i in range(250):
        data = {"balance": i, "total_received": i, "total_redeemed": 0}
        if i < 249:
            publish_delivery(client, 1001, 8, "gamification_balance_update", data, delivery="stream", history_size=10)
        else:
            result = publish(redis_url, "--delivery", "stream", "--history-size", "10", player="8", data=json.dumps(data))
            assert result.exit_code == 0, result.output
    entries = client.xrange("SSE::1001::8")
    # MAXLEN ~ trims whole stream nodes (100 entries each): at least the newest 10 stay, and the
    # stream stays bounded; the gateway replays only the newest history_size of them
    assert 10 <= len(entries) <= 110
    newest = json.loads(entries[-1][1][b"envelope"])
    assert newest["event_data"]["balance"] == 249
    # the first message carries the first entry's id (since trimmed) and its envelope
    entry_id, envelope = decode_stream_message(next_message(sub)["data"])
    assert json.loads(envelope)["event_data"]["balance"] == 0
    assert entry_id.count("-") == 1 and entry_id < entries[0][0].decode()
    assert "stream entry" in result.output
    sub.close()


def test_latest_caches_the_newest_value(redis_url, client):
    for balance in (1, 2, 3):
        result = publish(redis_url, "--delivery", "latest", player="9", data=json.dumps({"balance": balance, "total_received": 0, "total_redeemed": 0}))
        assert result.exit_code == 0, result.output
    cached = json.loads(client.get(latest_key("SSE::1001::9", "gamification_balance_update")))
    assert cached["event_data"]["balance"] == 3


def test_stream_messages_round_trip():
    msg = encode_stream_message("1700000000000-3", '{"a":1}')
    assert decode_stream_message(msg) == ("1700000000000-3", '{"a":1}')
    with pytest.raises(ValueError, match="not a stream message"):
        decode_stream_message('{"brand_id": 1}')


def test_an_invalid_event_exits_1_naming_the_path(redis_url):
    result = publish(redis_url, data=json.dumps({"balance": "lots"}))
    assert result.exit_code == 1
    assert "event_data.balance" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("extra", "data", "says"),
    [
        (("--delivery", "carrier-pigeon"), BALANCE, "--delivery"),
        ((), "{not json", "--data is not JSON"),
        (("--history-size", "0"), BALANCE, "--history-size"),
    ],
)
def test_usage_errors_exit_2(redis_url, extra, data, says):
    result = publish(redis_url, *extra, data=data)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_an_unreachable_redis_exits_1_in_one_line():
    result = CliRunner().invoke(app, ["publish", "--redis-url", "redis://127.0.0.1:1/0", "--brand", "1", "--player", "1", "--type", "gamification_balance_update", "--data", BALANCE])
    assert result.exit_code == 1
    assert "Redis at redis://127.0.0.1:1/0" in result.output and "Traceback" not in result.output
