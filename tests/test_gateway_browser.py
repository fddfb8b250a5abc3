"""Gateway policy and browser use: no public bind with the development secret, guarded metrics, CORS, refusals a page can read, query-token lifetimes."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from sse_helpers import RawSSE, event, wait_for

from sse_sim.errors import SseSimError
from sse_sim.events.wire import SSEMessage, SSEParser
from sse_sim.real.auth import CLOCK_SKEW_S, QUERY_TOKEN_MAX_TTL_S, mint_token, verify_token
from sse_sim.real.cli_gateway import token_without_typer
from sse_sim.real.gateway import (
    DEV_SECRET,
    create_gateway,
    make_backend,
    run_gateway,
    start_gateway,
)
from sse_sim.real.gateway.admission import Refusal, admit
from sse_sim.real.gateway.backends import is_loopback
from sse_sim.real.gateway.server import GatewayThread

SECRET = b"b" * 32
PATH = "/gateway/sse/1001/stream"
PAGE = "https://casino.example"
METRICS_TOKEN = "metrics-token-0123456789"

# Runs the real entry point with socket.bind refusing every non-loopback address: should the
# check ever fail, the child dies (exit 97) instead of listening beyond this machine.
_BIND_GUARD = """
import os, socket, sys
_bind = socket.socket.bind
def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost"):
        sys.stderr.write(f"TEST GUARD: bind to {address!r} blocked\\n")
        sys.stderr.flush()
        os._exit(97)
    return _bind(self, address)
socket.socket.bind = _guarded
from sse_sim.cli import main
main(sys.argv[1:])
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSE_SIM_SECRET", None)
    env.pop("SSE_SIM_METRICS_TOKEN", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _guarded_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BIND_GUARD, *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )


def _request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request over a real socket: (status, lower-case headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _asgi(
    app: Any, path: str, headers: dict[str, str], client: tuple[str, int]
) -> tuple[int, bytes]:
    """Call the ASGI app directly with a chosen peer address (a remote client on loopback-only hosts)."""
    import asyncio

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client,
        "server": ("10.0.0.1", 8080),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def _sse_messages(body: bytes) -> list[SSEMessage]:
    return [m for m in SSEParser().feed(body) if isinstance(m, SSEMessage)]


# ------------------------------------------------------------------ the development secret


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "", "::", "192.0.2.10", "gateway.example", "127.0.0.1.example"]
)
def test_is_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.4.5.6", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]
)
def test_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "args",
    [
        ["--host", "0.0.0.0"],
        ["--host", "192.0.2.10", "--backend", "redis"],  # refused before a redis-server starts
        ["--host", "0.0.0.0", "--secret", DEV_SECRET.decode()],  # the same secret, spelt out
    ],
)
def test_cli_refuses_the_development_secret_on_a_public_bind(args: list[str]) -> None:
    proc = _guarded_cli("gateway", "--port", "0", *args)
    assert proc.returncode == 2, proc.stderr
    assert "TEST GUARD" not in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("sse-sim: refusing to listen on ")
    assert "development secret" in proc.stderr
    assert "--secret" in proc.stderr and "$SSE_SIM_SECRET" in proc.stderr
    assert proc.stdout == ""


def test_run_gateway_and_gateway_threads_refuse_before_binding(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    binds: list[object] = []

    def record_bind(self: socket.socket, address: object) -> None:
        binds.append(address)
        raise AssertionError(f"bound to {address!r}")

    monkeypatch.setattr(socket.socket, "bind", record_bind)
    backend = make_backend("fakeredis")
    gateway = create_gateway(redis_client_factory=backend.factory, secret=DEV_SECRET)
    with pytest.raises(SseSimError, match="development secret.*--secret or \\$SSE_SIM_SECRET"):
        run_gateway("0.0.0.0", 0, gateway=gateway)
    with pytest.raises(SseSimError, match="development secret"):
        GatewayThread(gateway, backend, host="192.0.2.10")
    with pytest.raises(SseSimError):
        start_gateway(host="0.0.0.0", secret=DEV_SECRET)
    assert binds == []
    monkeypatch.undo()
    # Loopback with the development secret stays allowed (for demos and tests).
    with start_gateway(host="127.0.0.1", secret=DEV_SECRET) as gw:
        token = mint_token(DEV_SECRET, 1001, 7)
        with RawSSE(gw.port, PATH, headers={"x-auth-token": token}) as client:
            assert client.connected()


def test_cli_serves_loopback_with_the_development_secret_and_says_so() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sse_sim.cli", "gateway", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        # Start-up imports uvicorn and fakeredis: generous on a busy 2-core machine.
        deadline = time.monotonic() + 60
        while not any("tokens:" in line for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, (seen, proc.stderr.read() if proc.stderr else "")
            seen.append(line)
        found = re.search(r"http://127\.0\.0\.1:(\d+)", "".join(seen))
        assert found, seen
        port = int(found.group(1))
        notice = next(line for line in seen if "tokens:" in line)
        assert "development secret" in notice and "--secret" in notice
        assert not any("metrics:" in line and "loopback clients only" in line for line in seen)
        token = mint_token(DEV_SECRET, 1001, 7)
        with RawSSE(port, PATH, headers={"x-auth-token": token}) as client:
            assert client.connected()
        assert _request(port, "GET", "/gateway/metrics")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)  # by PID: this test started it
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gateway", "--port", "0", "--metrics-token", "short"], "metrics token"),
        (["gateway", "--port", "0", "--cors-origin", "https://casino.example/"], "--cors-origin"),
        (["gateway", "--port", "0", "--cors-origin", "casino.example"], "scheme://host[:port]"),
        (["token", "--brand", "1001", "--player", "7", "--query", "--ttl", "61"], "at most 60 s"),
        (["token", "--brand", "1001", "--player", "7", "--query", "--ttl", "3600"], "--ttl 3600"),
    ],
)
def test_browser_option_mistakes_are_one_line(args: list[str], message: str) -> None:
    proc = _guarded_cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------------ metrics


def test_metrics_token_is_required_when_set() -> None:
    with start_gateway(secret=SECRET, metrics_token=METRICS_TOKEN) as gw:
        status, headers, _ = _request(gw.port, "GET", "/gateway/metrics")
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        wrong = {"authorization": "Bearer " + METRICS_TOKEN[:-1] + "x"}
        assert _request(gw.port, "GET", "/gateway/metrics", wrong)[0] == 401
        assert (
            _request(gw.port, "GET", "/gateway/metrics", {"authorization": METRICS_TOKEN})[0] == 401
        )
        for scheme in ("Bearer", "bearer"):
            ok = {"authorization": f"{scheme} {METRICS_TOKEN}"}
            status, _, body = _request(gw.port, "GET", "/gateway/metrics", ok)
            assert status == 200 and json.loads(body)["connections_open"] == 0
        assert _request(gw.port, "GET", "/healthz")[0] == 200  # health checks need no token
        remote = ("203.0.113.7", 40000)
        assert _asgi(gw.gateway, "/gateway/metrics", {}, remote)[0] == 401
        ok = {"authorization": f"Bearer {METRICS_TOKEN}"}
        assert _asgi(gw.gateway, "/gateway/metrics", ok, remote)[0] == 200


def test_metrics_without_a_token_are_for_loopback_clients_only() -> None:
    with start_gateway(secret=SECRET) as gw:
        assert _request(gw.port, "GET", "/gateway/metrics")[0] == 200
        status, body = _asgi(gw.gateway, "/gateway/metrics", {}, ("203.0.113.7", 40000))
        assert status == 403 and b"--metrics-token" in body
        assert b"connections_open" not in body
        assert _asgi(gw.gateway, "/gateway/metrics", {}, ("127.0.0.1", 40000))[0] == 200


def test_a_short_metrics_token_is_refused() -> None:
    backend = make_backend("fakeredis")
    with pytest.raises(SseSimError, match="metrics token"):
        create_gateway(redis_client_factory=backend.factory, secret=SECRET, metrics_token="x" * 15)


# ------------------------------------------------------------------ CORS


def test_cors_headers_on_streams_refusals_metrics_and_health() -> None:
    with start_gateway(secret=SECRET, cors_origins=[PAGE, "http://localhost:3000"]) as gw:
        token = mint_token(SECRET, 1001, 7, 30)
        with RawSSE(gw.port, f"{PATH}?token={token}", headers={"origin": PAGE}) as client:
            assert client.response() == 200 and client.connected()
            assert client.headers["access-control-allow-origin"] == PAGE
            assert client.headers["access-control-allow-credentials"] == "true"
            assert client.headers["vary"].lower() == "origin"
        # Another origin's page still gets its stream (the token is the authority), but
        # without the headers its browser will not let it read a byte.
        with RawSSE(
            gw.port, PATH, headers={"origin": "https://evil.example", "x-auth-token": token}
        ) as client:
            assert client.response() == 200
            assert "access-control-allow-origin" not in client.headers
        for path, headers in [
            ("/gateway/metrics", {}),
            ("/healthz", {}),
            (PATH, {}),  # a 401 a fetch-based client can read
        ]:
            status, got, _ = _request(
                gw.port, "GET", path, {"origin": "http://localhost:3000", **headers}
            )
            assert got["access-control-allow-origin"] == "http://localhost:3000", (path, status)


def test_cors_preflight() -> None:
    with start_gateway(secret=SECRET, cors_origins=[PAGE]) as gw:
        ask = {
            "origin": PAGE,
            "access-control-request-method": "GET",
            "access-control-request-headers": "x-auth-token",
        }
        status, headers, body = _request(gw.port, "OPTIONS", PATH, ask)
        assert status == 204 and body == b""
        assert headers["access-control-allow-origin"] == PAGE
        assert headers["access-control-allow-credentials"] == "true"
        assert "GET" in headers["access-control-allow-methods"]
        allowed = headers["access-control-allow-headers"].split(", ")
        assert {"x-auth-token", "last-event-id", "authorization"} <= set(allowed)
        assert int(headers["access-control-max-age"]) > 0
        evil = {**ask, "origin": "https://evil.example"}
        status, headers, _ = _request(gw.port, "OPTIONS", PATH, evil)
        assert status == 403 and "access-control-allow-origin" not in headers
        status, _, _ = _request(
            gw.port, "OPTIONS", PATH, {**ask, "access-control-request-method": "POST"}
        )
        assert status == 405
        assert _request(gw.port, "OPTIONS", "/elsewhere", ask)[0] == 404
        assert _request(gw.port, "OPTIONS", "/gateway/metrics", ask)[0] == 204
        # A preflight never reaches admission: no refusal counted, nothing subscribed.
        assert gw.gateway.metrics()["refused_unauthorized"] == 0
    with start_gateway(secret=SECRET) as gw:  # no --cors-origin: no page elsewhere may read
        status, headers, body = _request(gw.port, "OPTIONS", PATH, ask)
        assert status == 403 and b"--cors-origin" in body
        assert "access-control-allow-origin" not in headers


def test_cors_wildcard_allows_any_origin_without_cookies() -> None:
    with start_gateway(secret=SECRET, cors_origins=["*"]) as gw:
        _, headers, _ = _request(gw.port, "GET", "/healthz", {"origin": "https://any.example"})
        assert headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://casino.example/",
        "casino.example",
        "ftp://casino.example",
        "https://casino.example/app",
        "",
    ],
)
def test_bad_cors_origins_are_refused(origin: str) -> None:
    backend = make_backend("fakeredis")
    with pytest.raises(SseSimError, match="--cors-origin"):
        create_gateway(redis_client_factory=backend.factory, secret=SECRET, cors_origins=[origin])


# ------------------------------------------------------------------ refusals a page can see


@pytest.mark.parametrize(
    ("brand", "minted_ago_s", "message"),
    [
        (1001, 120, "unauthorized: token expired"),
        (1002, 0, "forbidden: token is for another brand"),
    ],
)
def test_a_refused_query_token_reaches_the_page_as_an_error_event(
    brand: int, minted_ago_s: float, message: str
) -> None:
    with start_gateway(secret=SECRET, cors_origins=[PAGE]) as gw:
        token = mint_token(SECRET, brand, 7, 60, now=time.time() - minted_ago_s)
        # What an EventSource sends; http.client reads the whole (fixed-length) answer.
        browser = {"origin": PAGE, "accept": "text/event-stream", "cache-control": "no-cache"}
        status, headers, body = _request(gw.port, "GET", f"{PATH}?token={token}", browser)
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["access-control-allow-origin"] == PAGE
        [event] = _sse_messages(body)
        assert event.event == "message" and event.id == "refused"
        assert json.loads(event.data) == {"type": "error", "message": message}  # documented format
        assert token.encode() not in body
        # Left alone, the EventSource reconnects with Last-Event-ID: refused; 204 stops it.
        again = {**browser, "last-event-id": "refused"}
        status, headers, body = _request(gw.port, "GET", f"{PATH}?token={token}", again)
        assert status == 204 and body == b""
        assert headers["access-control-allow-origin"] == PAGE
        m = gw.gateway.metrics()
        assert m["refused_unauthorized"] + m["refused_forbidden"] == 2
        assert m["connections_total"] == 0 and gw.gateway.subscribed_channels() == []


def test_header_and_cookie_refusals_keep_their_status() -> None:
    with start_gateway(secret=SECRET) as gw:
        expired = mint_token(SECRET, 1001, 7, 10, now=time.time() - 60)
        for headers in ({"x-auth-token": expired}, {"cookie": f"sse_token={expired}"}):
            status, _, body = _request(gw.port, "GET", PATH, headers)
            assert status == 401 and json.loads(body)["reason"] == "expired"


# ------------------------------------------------------------------ query-token lifetime


def _scope(token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": PATH,
        "query_string": f"token={token}".encode(),
        "headers": [],
    }


def _accepted_window(token: str, start: float, end: float, step: float = 0.25) -> list[float]:
    times = [start + i * step for i in range(int((end - start) / step) + 1)]
    accepted = []
    for now in times:
        target = admit(
            _scope(token), secret=SECRET, query_token_max_ttl_s=QUERY_TOKEN_MAX_TTL_S, now=now
        )
        if not isinstance(target, Refusal):
            accepted.append(now)
    return accepted


@pytest.mark.parametrize("ahead_s", [0.0, 5.0, 30.0, CLOCK_SKEW_S])
def test_a_query_token_lives_no_longer_than_the_cap_whatever_the_clock_skew(ahead_s: float) -> None:
    now = 1_760_000_000.0
    # Minted by a host whose clock runs ahead_s seconds ahead of the gateway's.
    token = mint_token(SECRET, 1001, 7, QUERY_TOKEN_MAX_TTL_S, now=now + ahead_s)
    accepted = _accepted_window(token, now - 10, now + 200)
    assert accepted, "never accepted"
    assert accepted[-1] - accepted[0] <= QUERY_TOKEN_MAX_TTL_S
    assert accepted[0] == pytest.approx(now + ahead_s, abs=0.25)
    # The same token in a header keeps the skew allowance: that transport has no cap.
    header_scope = {
        **_scope(token),
        "query_string": b"",
        "headers": [(b"x-auth-token", token.encode())],
    }
    assert not isinstance(
        admit(header_scope, secret=SECRET, query_token_max_ttl_s=60, now=now), Refusal
    )


def test_a_query_token_dated_ahead_is_refused_as_not_yet_valid() -> None:
    now = 1_760_000_000.0
    token = mint_token(SECRET, 1001, 7, QUERY_TOKEN_MAX_TTL_S, now=now + 30)
    target = admit(_scope(token), secret=SECRET, query_token_max_ttl_s=60, now=now)
    assert isinstance(target, Refusal)
    assert target.status == 401 and target.payload["reason"] == "not_yet_valid"
    assert target.query


# ------------------------------------------------------------------ sse-sim token --query


def test_token_query_mints_within_the_cap_and_opens_a_stream() -> None:
    def mint(*extra: str) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sse_sim.cli",
                "token",
                "--brand",
                "1001",
                "--player",
                "7",
                *extra,
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    default = verify_token(DEV_SECRET, mint("--query"), max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
    assert default.ttl_s == pytest.approx(QUERY_TOKEN_MAX_TTL_S)
    assert verify_token(DEV_SECRET, mint("--query", "--ttl", "20")).ttl_s == pytest.approx(20)
    assert verify_token(DEV_SECRET, mint()).ttl_s == pytest.approx(3600)
    token = mint("--query")
    with start_gateway(secret=DEV_SECRET) as gw, RawSSE(gw.port, f"{PATH}?token={token}") as client:
        assert client.response() == 200 and client.connected()
        assert wait_for(lambda: gw.gateway.subscribed_channels() == ["SSE::1001::7"])


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--help"],
        ["token", "--brand", "1001"],
        ["token", "--brand", "x", "--player", "7"],
        ["token", "--brand", "1001", "--player", "7", "--bogus"],
        ["token", "--brand", "1001", "--brand", "1002", "--player", "7"],
        ["token", "--brand", "1001", "--player", "7", "--ttl"],
        ["token", "--brand", "1001", "--player", "7", "--ttl", "soon"],
        ["gateway", "--port", "0"],
    ],
)
def test_token_fast_path_leaves_help_and_mistakes_to_typer(argv: list[str]) -> None:
    assert token_without_typer(argv) is None


def test_token_fast_path_mints_what_typer_would(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SSE_SIM_SECRET", raising=False)
    query = token_without_typer(["token", "--brand=1001", "--player", "7", "--query"])
    assert query is not None
    claims = verify_token(DEV_SECRET, query, max_ttl_s=QUERY_TOKEN_MAX_TTL_S)
    assert (claims.brand_id, claims.player_id) == (1001, 7)
    assert claims.ttl_s == pytest.approx(QUERY_TOKEN_MAX_TTL_S)
    monkeypatch.setenv("SSE_SIM_SECRET", SECRET.decode())
    header = token_without_typer(["token", "--player", "7", "--brand", "1001", "--ttl", "90"])
    assert header is not None and verify_token(SECRET, header).ttl_s == pytest.approx(90)
    with pytest.raises(SseSimError, match="at most 60 s"):
        token_without_typer(["token", "--brand", "1001", "--player", "7", "--query", "--ttl=61"])


# ------------------------------------------------------------------ a real browser (optional)

_PAGE = """<!doctype html><meta charset="utf-8"><script>
const out = [];
const report = () => fetch("/report", {method: "POST", body: JSON.stringify(out)});
const stream = (token) => new EventSource(GATEWAY + "/gateway/sse/1001/stream?token=" + token);
const good = stream(GOOD);
good.onmessage = (e) => {
  const data = JSON.parse(e.data);
  out.push(["good", data.type || data.event_type]);
  if (data.event_type) { good.close(); refused(); }
};
good.onerror = () => { out.push(["good-error", good.readyState]); report(); };
function refused() {
  const bad = stream(EXPIRED);
  bad.onmessage = (e) => out.push(["bad", JSON.parse(e.data), e.lastEventId]);
  bad.onerror = () => {
    out.push(["bad-error", bad.readyState]);
    if (bad.readyState === EventSource.CLOSED) report();
  };
}
</script>"""


def test_a_page_on_another_origin_in_headless_chromium(tmp_path, chromium) -> None:  # type: ignore[no-untyped-def]
    reports: queue.Queue[list[Any]] = queue.Queue()
    page: dict[str, bytes] = {}

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(page["html"])

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["content-length"]))
            reports.put(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{site.server_address[1]}"  # another port: another origin
    browser = None
    try:
        with start_gateway(secret=SECRET, cors_origins=[origin]) as gw:
            good = mint_token(SECRET, 1001, 7, 60)
            expired = mint_token(SECRET, 1001, 7, 60, now=time.time() - 120)
            settings = f"const GATEWAY = {gw.url!r}, GOOD = {good!r}, EXPIRED = {expired!r};"
            page["html"] = _PAGE.replace("<script>", "<script>" + settings, 1).encode()
            browser = subprocess.Popen(
                [
                    chromium,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    origin + "/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its helpers share its process group, ended below
            )
            # Publish only once Redis confirmed the page's channel (the gateway then sends
            # `connected`): an event published before that reaches nobody.
            assert wait_for(lambda: gw.gateway.metrics()["connections_connected"] == 1, 60)
            pub = gw.publisher()
            try:
                pub.publish("SSE::1001::7", event(1, player=7))
            finally:
                pub.close()
            # The refused EventSource reconnects once (3 s in Chromium) before it reports.
            seen = reports.get(timeout=60)
    finally:
        if browser is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)  # the group this test started
            browser.wait(timeout=30)
        site.shutdown()
        site.server_close()
    assert seen[:2] == [["good", "connected"], ["good", "notification"]], seen
    bad = [entry for entry in seen if entry[0] == "bad"]
    message = {"type": "error", "message": "unauthorized: token expired"}
    assert bad == [["bad", message, "refused"]], seen
    # The stream ended (CONNECTING: it reconnects), then the 204 closed it (CLOSED).
    assert [e for e in seen if e[0] == "bad-error"] == [["bad-error", 0], ["bad-error", 2]], seen
