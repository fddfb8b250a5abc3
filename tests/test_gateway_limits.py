"""HTTP-level hardening of the gateway: each attack found on loopback, reproduced, and held.

Header floods (431, memory flat), pipelining ghosts, idle-socket lockouts (header timeout and
connection caps, 503 + Retry-After), chunked replies to HTTP/1.0, slow SIGTERM with stalled
clients, and ``--workers``. Real sockets on 127.0.0.x; subprocess gateways are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sse_helpers import RawSSE, event, wait_for

from sse_sim.errors import SseSimError
from sse_sim.events.wire import SSEMessage, SSEParser
from sse_sim.real.auth import mint_token
from sse_sim.real.gateway import create_gateway, start_gateway
from sse_sim.real.gateway.backends import DEV_SECRET
from sse_sim.real.gateway.limits import RETRY_AFTER_S, HttpLimits

PATH = "/gateway/sse/1001/stream"
SECRET = b"h" * 32
IMPLS = ["httptools", "h11"]

# A gateway in a subprocess that prints its URL when it listens (for a parser the CLI does not
# choose: the command line always serves httptools).
RUNNER = """
import sys, fakeredis
from sse_sim.real.gateway import fakeredis_factory, run_gateway
run_gateway("127.0.0.1", 0, http=sys.argv[1], secret=b"h" * 32,
            redis_client_factory=fakeredis_factory(fakeredis.FakeServer()),
            on_ready=lambda url: print("gateway on", url, flush=True))
"""


# ---------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _subprocess_gateway(argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a gateway process, yield it and its URL once it listens; stop it by PID at the end."""
    # stderr to a file: a pipe nobody reads while the test runs could fill and block the gateway
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True, env=_env())
    proc.stderr = errors  # read back with _stderr()
    try:
        line = _read_line(proc, 60)
        match = re.search(r"gateway on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"no URL in {line!r}; stderr: {_stderr(proc)}"
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
        errors.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSE_SIM_SECRET", None)
    env.pop("SSE_SIM_METRICS_TOKEN", None)
    return env


def _cli(*args: str, nofile: int | None = None) -> list[str]:
    """``sse-sim gateway ARGS`` (on a free port), optionally with a lower open-file limit."""
    if nofile is None:
        return [sys.executable, "-m", "sse_sim.cli", "gateway", "--port", "0", *args]
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
        "from sse_sim.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    return [sys.executable, "-c", code, "gateway", "--port", "0", *args]


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        assert sel.select(timeout), f"the gateway printed nothing in {timeout} s"
    finally:
        sel.close()
    return proc.stdout.readline()


def _stderr(proc: subprocess.Popen[str]) -> str:
    """What the gateway process wrote to stderr so far."""
    assert proc.stderr is not None
    proc.stderr.flush()
    proc.stderr.seek(0)
    return proc.stderr.read()


def _metrics(url: str) -> dict[str, Any]:
    """``/gateway/metrics`` over one fresh connection (so ``--workers`` may answer from any process)."""
    host, port = url.removeprefix("http://").split(":")
    status, head, body = _request(int(port), b"GET /gateway/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, (status, head, body)
    return json.loads(body)  # type: ignore[no-any-return]


def _request(
    port: int, raw: bytes, *, source: str | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection and read one answer to the server's close: (status, headers, body)."""
    with _connect(port, source, timeout) as sock:
        sock.sendall(raw)
        data = _read_to_close(sock, timeout)
    return _parse(data)


def _connect(port: int, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _read_to_close(sock: socket.socket, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        if sep and length and len(body) >= int(length.group(1)):
            break
    return data


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _stream_request(token: str, version: str = "1.1") -> bytes:
    return f"GET {PATH} HTTP/{version}\r\nHost: x\r\nx-auth-token: {token}\r\n\r\n".encode()


def _publish(gw: Any, player: int, i: int) -> None:
    pub = gw.publisher()
    try:
        pub.publish(f"SSE::1001::{player}", event(i, player=player))
    finally:
        pub.close()


# ---------------------------------------------------------------------- (a) header size


@pytest.mark.parametrize("impl", IMPLS)
def test_a_1mb_header_gets_431_and_the_connection_closes(impl: str) -> None:
    with start_gateway(secret=SECRET, http=impl) as gw:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        with _connect(gw.port) as sock:
            sock.sendall(big)  # the gateway keeps reading (and dropping) until we close
            data = _read_to_close(sock, 10)
            status, headers, body = _parse(data)
            assert status == 431, data[:200]
            assert headers["connection"] == "close"
            assert json.loads(body)["max_header_bytes"] == 64 * 1024
            # then the gateway's end of the connection: EOF
            assert sock.recv(1) == b""
        # a head just under the cap is still served
        ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
        assert _request(gw.port, ok)[0] == 200
        assert gw.gateway.metrics()["refused_header_too_large"] == 1
        assert wait_for(lambda: gw.gateway.metrics()["http_connections_open"] == 0)


def _flood_headers(port: int, megabytes: int) -> None:
    """Send one request head of up to ``megabytes`` MB until the gateway stops taking it."""
    block = b"a" * (1 << 20)
    with contextlib.suppress(OSError), _connect(port, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        for _ in range(megabytes):
            sock.sendall(block)


@pytest.mark.parametrize("impl", IMPLS)
def test_header_floods_do_not_grow_the_gateway_process(impl: str) -> None:
    """The finding: 4 unauthenticated connections with 300 MB of headers took it from 535 to 1,925 MB."""
    with _subprocess_gateway([sys.executable, "-c", RUNNER, impl]) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        # warm up: a request and a refusal, so that lazy imports and buffers are in the baseline
        assert _request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        _flood_headers(port, 1)
        assert wait_for(lambda: _metrics(url)["refused_header_too_large"] == 1)
        before = _rss_bytes(proc.pid)
        floods = [threading.Thread(target=_flood_headers, args=(port, 32)) for _ in range(4)]
        for t in floods:
            t.start()
        for t in floods:
            t.join(120)
        assert wait_for(lambda: _metrics(url)["refused_header_too_large"] == 5)
        # only the connection asking for the metrics is left
        assert wait_for(lambda: _metrics(url)["http_connections_open"] == 1)
        grown = _rss_bytes(proc.pid) - before
        # 128 MB were offered; a parser buffering them would hold at least that. The tolerance
        # covers the allocator's noise, not a buffered head.
        assert grown < 32 << 20, f"RSS grew by {grown / 2**20:.1f} MB"


# ---------------------------------------------------------------------- (b) pipelining


@pytest.mark.parametrize("impl", IMPLS)
def test_pipelining_and_early_closes_leave_no_ghost(impl: str) -> None:
    with start_gateway(secret=SECRET, http=impl, keepalive_interval_s=0.05) as gw:
        # 1. the stream request and a second one in one write, then a close
        with _connect(gw.port) as sock:
            sock.sendall(_stream_request(gw.token(1)) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            status, headers, _ = _parse(head)
            assert status == 200
            if impl == "httptools":  # h11 closes the connection without announcing it
                assert headers["connection"].lower() == "close"
        # 2. a second request on a stream that is already flowing, then a close
        c = RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(2)})
        assert c.connected()
        c.sock.sendall(b"GET /gateway/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_for(lambda: gw.gateway.metrics()["refused_pipelined"] == 2)
        _publish(gw, 2, 1)  # the stream goes on for its client meanwhile
        assert c.read_until(lambda c: len(c.app_events()) == 1)
        c.close()
        # 3. a half-close right after the request
        with _connect(gw.port) as sock:
            sock.sendall(_stream_request(gw.token(3)))
            sock.shutdown(socket.SHUT_WR)
        # 4. a close before the answer
        with _connect(gw.port) as sock:
            sock.sendall(_stream_request(gw.token(4)))
        assert wait_for(lambda: gw.gateway.metrics()["connections_total"] == 4)
        m = lambda: gw.gateway.metrics()  # noqa: E731
        assert wait_for(lambda: m()["connections_open"] == 0, 20)
        assert wait_for(lambda: m()["http_connections_open"] == 0, 20)
        assert wait_for(lambda: gw.gateway.subscribed_channels() == [], 20)
        # no subscription is left behind for a dead socket: Redis has no one to deliver to
        pub = gw.publisher()
        try:
            assert [pub.publish(f"SSE::1001::{i}", event(i, player=i)) for i in range(1, 5)] == [0] * 4
        finally:
            pub.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_keep_alive_serves_requests_in_turn_and_answers_a_pipeline_once(impl: str) -> None:
    with start_gateway(secret=SECRET, http=impl) as gw:
        with _connect(gw.port) as sock:
            for _ in range(3):  # one after another: each answered, the connection kept
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"}"):
                    data += sock.recv(65536)
                assert _parse(data)[0] == 200
        with _connect(gw.port) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            data = _read_to_close(sock, 10)
            status, headers, body = _parse(data)
            assert status == 200 and json.loads(body) == {"status": "ok"}
            if impl == "httptools":  # h11 closes the connection without announcing it
                assert headers["connection"].lower() == "close"
            assert sock.recv(65536) == b""  # the second is not answered: the connection closed


# ---------------------------------------------------------------------- (c) idle sockets and caps


@pytest.mark.redis
def test_idle_sockets_cannot_lock_out_a_real_client(redis_url: str) -> None:
    """The finding: 400 idle sockets locked real clients out of a gateway with 256 descriptors."""
    argv = _cli("--backend", "redis", "--redis-url", redis_url, "--header-timeout", "1", nofile=256)
    with _subprocess_gateway(argv) as (_proc, url):
        port = int(url.rsplit(":", 1)[1])
        idle = [_connect(port) for _ in range(400)]
        try:
            token = mint_token(DEV_SECRET, 1001, 424242, 3600)
            streams: list[RawSSE] = []

            def real_client_streams() -> bool:
                # Retried on 503 or silence, as a client honouring Retry-After would (sooner).
                try:
                    c = RawSSE(port, PATH, headers={"x-auth-token": token}, timeout=5)
                except OSError:
                    return False
                try:
                    ok = c.response(5) == 200 and c.connected(5)
                except (AssertionError, OSError):
                    ok = False
                if ok:
                    streams.append(c)
                else:
                    c.close()
                return ok

            assert wait_for(real_client_streams, 90, interval=0.2)
            client = streams[0]
            try:
                pub = redis.Redis.from_url(redis_url)
                try:
                    pub.publish("SSE::1001::424242", event(1, player=424242))
                finally:
                    pub.close()
                assert client.read_until(lambda c: len(c.app_events()) == 1, 10)
            finally:
                client.close()
            # every idle socket was closed by the gateway (the header timeout, or a 503)
            assert wait_for(lambda: _all_closed(idle), 90)
            m = _metrics(url)
            assert m["closed_header_timeout"] > 0
            assert m["max_connections"] == 256 - 64
        finally:
            for sock in idle:
                sock.close()


def _all_closed(socks: list[socket.socket]) -> bool:
    for sock in socks:
        if sock.fileno() == -1:
            continue
        sock.setblocking(False)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data or data.startswith(b"HTTP/1.1 503"):
            sock.close()
        else:
            return False
    return True


@pytest.mark.parametrize("impl", IMPLS)
def test_connection_caps_answer_503_with_retry_after(impl: str) -> None:
    with start_gateway(
        secret=SECRET, http=impl, max_connections=6, max_connections_per_ip=3, header_timeout_s=60
    ) as gw:
        m = lambda: gw.gateway.metrics()  # noqa: E731
        per_ip = [_connect(gw.port, "127.0.0.2") for _ in range(3)]
        assert wait_for(lambda: m()["http_connections_open"] == 3)
        status, headers, body = _request(
            gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.2"
        )
        assert (status, headers["retry-after"]) == (503, str(RETRY_AFTER_S))
        assert json.loads(body)["error"] == "too many connections from this address"
        # another address is still served, stream included
        with RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(9)}) as c:
            assert c.connected()
            _publish(gw, 9, 1)
            assert c.read_until(lambda c: len(c.app_events()) == 1)
        others = [_connect(gw.port, f"127.0.0.{3 + i}") for i in range(3)]
        assert wait_for(lambda: m()["http_connections_open"] == 6)
        status, headers, body = _request(
            gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.9"
        )
        assert (status, headers["retry-after"]) == (503, str(RETRY_AFTER_S))
        assert json.loads(body)["error"] == "too many connections"
        for sock in per_ip + others:
            sock.close()
        assert wait_for(lambda: m()["http_connections_open"] == 0)
        assert _request(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
        assert m()["refused_connection_limit_ip"] == 1 and m()["refused_connection_limit"] == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_header_and_idle_timeouts_close_sockets(impl: str) -> None:
    with start_gateway(
        secret=SECRET,
        http=impl,
        header_timeout_s=0.5,
        idle_timeout_s=0.5,
        keepalive_interval_s=0.2,
    ) as gw:
        with _connect(gw.port) as silent, _connect(gw.port) as slow, _connect(gw.port) as kept:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # part of a head, never finished
            kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_to_close(silent, 30) == b""  # nothing sent: closed without an answer
            assert _parse(_read_to_close(slow, 30))[0] == 408
            answered = _read_to_close(kept, 30)
            assert _parse(answered)[0] == 200
            assert kept.recv(1) == b""  # then closed as idle
        assert gw.gateway.metrics()["closed_header_timeout"] == 2
        # an open stream is never idle, nor past its header deadline: it outlives both
        with RawSSE(gw.port, PATH, headers={"x-auth-token": gw.token(3)}) as c:
            assert c.connected()
            keepalives = lambda c: sum(p.get("type") == "keepalive" for p in c.payloads())  # noqa: E731
            assert c.read_until(lambda c: keepalives(c) >= 6, 30)  # >= 1.2 s
            _publish(gw, 3, 1)
            assert c.read_until(lambda c: len(c.app_events()) == 1)
            assert not c.eof


def test_limits_are_checked_up_front() -> None:
    for bad in (
        {"max_header_bytes": 10},
        {"header_timeout_s": 0},
        {"idle_timeout_s": -1},
        {"max_connections": 0},
        {"max_connections_per_ip": -1},
    ):
        with pytest.raises(SseSimError):
            HttpLimits(**bad)
    gw = create_gateway(redis_client_factory=lambda: None, secret=SECRET, max_connections=7)
    assert gw.http_limits.max_connections == 7
    assert HttpLimits().max_connections >= 1
    with pytest.raises(SseSimError, match="http must be one of"):
        start_gateway(secret=SECRET, http="h2")


# ---------------------------------------------------------------------- (d) HTTP/1.0


@pytest.mark.parametrize("impl", IMPLS)
def test_http10_gets_no_chunked_encoding(impl: str) -> None:
    with start_gateway(secret=SECRET, http=impl) as gw:
        with _connect(gw.port) as sock:
            sock.sendall(_stream_request(gw.token(5), "1.0"))
            data = b""
            while b'"connected"' not in data:
                data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            assert b"transfer-encoding" not in head.lower()
            assert b"connection: close" in head.lower()
            _publish(gw, 5, 1)
            parser = SSEParser()
            messages = [m for m in parser.feed(body) if isinstance(m, SSEMessage)]
            while not any("notification" in m.data for m in messages):
                messages += [m for m in parser.feed(sock.recv(65536)) if isinstance(m, SSEMessage)]
            # the body is the frames themselves: no chunk sizes between them
            assert [json.loads(m.data).get("type") for m in messages][0] == "connected"
            assert json.loads(messages[-1].data)["event_data"]["seq"] == 1
        status, headers, body = _request(gw.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert status == 200 and "transfer-encoding" not in headers
        assert int(headers["content-length"]) == len(body)


# ---------------------------------------------------------------------- (e) SIGTERM


@pytest.mark.redis
def test_sigterm_with_stalled_clients_exits_promptly_without_tracebacks(redis_url: str) -> None:
    # A graceful timeout far above the wait below: only cutting the stalled clients can pass.
    argv = _cli("--backend", "redis", "--redis-url", redis_url, "--graceful-timeout", "120")
    with _subprocess_gateway(argv) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        players = [515151 + i for i in range(3)]
        stalled = [
            RawSSE(
                port,
                PATH,
                headers={"x-auth-token": mint_token(DEV_SECRET, 1001, p, 3600)},
                rcvbuf=4096,
            )
            for p in players
        ]
        try:
            assert all(c.connected() for c in stalled)
            pub = redis.Redis.from_url(redis_url)
            try:
                pipe = pub.pipeline(transaction=False)
                for i in range(2000):
                    for p in players:
                        pipe.publish(f"SSE::1001::{p}", event(i, player=p, pad=3000))
                pipe.execute()
            finally:
                pub.close()
            # the clients read nothing: their queues overflow while their writers wait on the socket
            assert wait_for(lambda: _metrics(url)["events_in"] == 6000, 60)
            assert _metrics(url)["dropped_overflow"] > 0
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(60)
            assert proc.returncode == 0
            err = _stderr(proc)
            assert "Traceback" not in err and "CancelledError" not in err, err
        finally:
            for c in stalled:
                c.close()


# ---------------------------------------------------------------------- (f) --workers


@pytest.mark.redis
def test_workers_serve_from_two_processes_and_each_delivers(redis_url: str) -> None:
    argv = _cli("--backend", "redis", "--redis-url", redis_url, "--workers", "2")
    with _subprocess_gateway(argv) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        # The kernel spreads connections by their address hash: with 24 streams both workers
        # serve some unless 1 in 8 million.
        players = [616161 + i for i in range(24)]
        clients = [
            RawSSE(port, PATH, headers={"x-auth-token": mint_token(DEV_SECRET, 1001, p, 3600)})
            for p in players
        ]
        try:
            assert all(c.connected() for c in clients)
            pub = redis.Redis.from_url(redis_url)
            try:
                for p in players:
                    pub.publish(f"SSE::1001::{p}", event(p, player=p))
            finally:
                pub.close()
            for c, p in zip(clients, players, strict=True):
                assert c.read_until(lambda c: len(c.app_events()) == 1, 10), p
            seen: dict[int, dict[str, Any]] = {}

            def both_workers_answered() -> bool:
                m = _metrics(url)
                seen[m["pid"]] = m
                return len(seen) == 2

            assert wait_for(both_workers_answered, 60)
            assert proc.pid not in seen
            assert all(m["events_out"] >= 1 and m["connections_open"] >= 1 for m in seen.values())
            assert sum(m["events_out"] for m in seen.values()) == len(players)
        finally:
            for c in clients:
                c.close()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
        assert proc.returncode == 0
        for pid in seen:
            assert wait_for(lambda pid=pid: not _alive(pid), 30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_need_a_shared_redis() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sse_sim.cli", "gateway", "--workers", "2", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == 2
    assert "--workers needs --backend redis" in proc.stderr
    assert "Traceback" not in proc.stderr
