"""Gateway security: refused tokens, impossible channel injection, players isolated from each other."""

from __future__ import annotations

import time

import pytest
from sse_helpers import BACKENDS, RawSSE, event, gateway_kwargs, wait_for

from sse_sim.real.auth import mint_token
from sse_sim.real.gateway import start_gateway

SECRET = b"s" * 32


@pytest.fixture(
    params=[pytest.param(b, marks=[pytest.mark.redis] if b == "redis" else []) for b in BACKENDS]
)
def gw(request):  # type: ignore[no-untyped-def]
    with start_gateway(
        secret=SECRET, keepalive_interval_s=60, **gateway_kwargs(request.param, request)
    ) as thread:
        yield thread


def _status(gw, path: str, headers: dict[str, str] | None = None) -> int:  # type: ignore[no-untyped-def]
    with RawSSE(gw.port, path, headers=headers) as client:
        return client.response()


def _assert_nothing_subscribed(gw) -> None:  # type: ignore[no-untyped-def]
    assert gw.gateway.subscribed_channels() == []
    pub = gw.publisher()
    try:
        assert pub.pubsub_numpat() == 0
        assert pub.pubsub_channels() == []
    finally:
        pub.close()


def test_refusals(gw) -> None:  # type: ignore[no-untyped-def]
    path = "/gateway/sse/1001/stream"
    now = time.time()
    cases = {
        "missing": ({}, 401),
        "garbage": ({"x-auth-token": "not-a-token"}, 401),
        "expired": ({"x-auth-token": mint_token(SECRET, 1001, 7, 10, now=now - 20)}, 401),
        "forged": ({"x-auth-token": mint_token(b"f" * 32, 1001, 7)}, 401),
        "tampered player": (
            {"x-auth-token": mint_token(SECRET, 1001, 7).replace(".7.", ".8.", 1)},
            401,
        ),
        "other brand": ({"x-auth-token": mint_token(SECRET, 1002, 7)}, 403),
        "bad cookie": ({"cookie": "sse_token=nope"}, 401),
    }
    for name, (headers, expected) in cases.items():
        assert _status(gw, path, headers) == expected, name
    # A query token must be short-lived: URLs end up in logs and browser history. It is
    # refused as an SSE error event, which an EventSource can read (test_gateway_browser.py).
    long_lived = mint_token(SECRET, 1001, 7, 3600)
    with RawSSE(gw.port, f"{path}?token={long_lived}") as client:
        assert client.response() == 200
        assert client.read_until(lambda c: c.eof or b"lifetime exceeds" in c.body)
        assert b'"type":"error"' in client.body and b"lifetime exceeds" in client.body
    m = gw.gateway.metrics()
    assert m["refused_unauthorized"] == 7 and m["refused_forbidden"] == 1
    assert m["connections_total"] == 0
    _assert_nothing_subscribed(gw)


@pytest.mark.parametrize("where", ["header", "cookie", "query"])
def test_accepted_token_transports(gw, where: str) -> None:  # type: ignore[no-untyped-def]
    token = mint_token(SECRET, 1001, 7, 30)
    path, headers = "/gateway/sse/1001/stream", {}
    if where == "header":
        headers = {"x-auth-token": token}
    elif where == "cookie":
        headers = {"cookie": f"theme=dark; sse_token={token}"}
    else:
        path += f"?token={token}"
    with RawSSE(gw.port, path, headers=headers) as client:
        assert client.response() == 200
        assert client.headers["content-type"].startswith("text/event-stream")
        assert client.connected()
        assert gw.gateway.subscribed_channels() == ["SSE::1001::7"]


INJECTIONS = [
    "/gateway/sse/1001::*/stream",
    "/gateway/sse/*/stream",
    "/gateway/sse/%2A/stream",
    "/gateway/sse/1001%3A%3A%2A/stream",
    "/gateway/sse/-1/stream",
    "/gateway/sse/0/stream",
    "/gateway/sse/01001/stream",
    "/gateway/sse/+1001/stream",
    "/gateway/sse/1001.0/stream",
    "/gateway/sse/99999999999999999999999999/stream",
    "/gateway/sse/9223372036854775808/stream",
    "/gateway/sse/../../stream",
    "/gateway/sse/1001/../1002/stream",
    "/gateway/sse/1001%2F..%2F1002/stream",
    "/gateway/sse/1001/stream/extra",
    "/gateway/sse//stream",
    "/gateway/sse/%E0%A5%A7/stream",
    "/gateway/sse/1001%00/stream",
    "/gateway/sse/[1-9]/stream",
]


def test_channel_injection_through_the_path(gw) -> None:  # type: ignore[no-untyped-def]
    token = mint_token(SECRET, 1001, 7)
    for path in INJECTIONS:
        status = _status(gw, path, {"x-auth-token": token})
        assert 400 <= status < 500, (path, status)
    _assert_nothing_subscribed(gw)


def test_channel_injection_through_the_token(gw) -> None:  # type: ignore[no-untyped-def]
    valid = mint_token(SECRET, 1001, 7)
    signature = valid.rsplit(".", 1)[1]
    for player in ["*", "7::*", "7*", "[0-9]", "?", "-7", "07"]:
        forged = valid.replace(".7.", f".{player}.", 1)
        assert forged.rsplit(".", 1)[1] == signature
        assert _status(gw, "/gateway/sse/1001/stream", {"x-auth-token": forged}) == 401, player
    _assert_nothing_subscribed(gw)


def test_player_comes_from_the_token_only(gw) -> None:  # type: ignore[no-untyped-def]
    token_a = mint_token(SECRET, 1001, 111)
    token_b = mint_token(SECRET, 1001, 222)
    # Query parameters naming another player or channel are ignored.
    path_a = "/gateway/sse/1001/stream?player_id=222&channel=SSE::1001::222&player=222"
    with (
        RawSSE(gw.port, path_a, headers={"x-auth-token": token_a}) as a,
        RawSSE(gw.port, "/gateway/sse/1001/stream", headers={"x-auth-token": token_b}) as b,
    ):
        assert a.connected() and b.connected()
        assert gw.gateway.subscribed_channels() == ["SSE::1001::111", "SSE::1001::222"]
        pub = gw.publisher()
        try:
            for i in range(20):
                pub.publish("SSE::1001::222", event(i, player=222))
            pub.publish("SSE::1001::111", event(999, player=111))
        finally:
            pub.close()
        assert b.read_until(lambda c: len(c.app_events()) == 20)
        assert a.read_until(lambda c: len(c.app_events()) == 1)
        a.read_for(0.2)
        assert [e["player_id"] for e in a.app_events()] == [111]
        assert {e["player_id"] for e in b.app_events()} == {222}
    assert wait_for(lambda: gw.gateway.metrics()["connections_open"] == 0)


def test_other_endpoints(gw) -> None:  # type: ignore[no-untyped-def]
    assert _status(gw, "/healthz") == 200
    assert _status(gw, "/gateway/metrics") == 200
    assert _status(gw, "/nope") == 404
    with RawSSE(gw.port, "/gateway/metrics") as client:
        client.read_until(lambda c: c.eof or c.body.endswith(b"}"))
        assert b'"connections_open": 0' in client.body
