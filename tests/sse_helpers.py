"""A raw-socket SSE client for the gateway tests: exact request lines, controllable reading."""

from __future__ import annotations

import inspect
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from sse_sim.events.wire import SSEMessage, SSEParser


class RawSSE:
    """One HTTP/1.1 request over a plain socket; decodes a chunked SSE body on demand."""

    def __init__(
        self,
        port: int,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the TCP window is negotiated small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.raw = b""
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""  # de-chunked bytes seen so far
        self.parser = SSEParser()
        self.messages: list[SSEMessage] = []
        self.eof = False
        self._pending = b""

    def _recv(self, timeout: float) -> bool:
        """Read once; False on timeout. Sets eof on a closed or reset connection."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return True
        self._feed(data)
        return True

    def _feed(self, data: bytes) -> None:
        if self.status is None:
            self.raw += data
            if b"\r\n\r\n" not in self.raw:
                return
            head, _, rest = self.raw.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            for line in header_lines:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            data = rest
        if self.headers.get("transfer-encoding") != "chunked":
            self.body += data
            return
        self._pending += data
        while True:
            size_line, sep, rest = self._pending.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line, 16)
            if len(rest) < size + 2:
                return
            chunk = rest[:size]
            self._pending = rest[size + 2 :]
            if size == 0:
                self.eof = True
                return
            self.body += chunk
            self.messages.extend(m for m in self.parser.feed(chunk) if isinstance(m, SSEMessage))

    def response(self, timeout: float = 5.0) -> int:
        """The HTTP status (reads the head if needed)."""
        deadline = time.monotonic() + timeout
        while self.status is None and not self.eof and time.monotonic() < deadline:
            self._recv(max(0.01, deadline - time.monotonic()))
        assert self.status is not None, "no HTTP response"
        return self.status

    def read_until(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Read until ``predicate(self)`` holds, EOF, or ``timeout``; returns whether it held."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.eof or time.monotonic() >= deadline:
                return bool(predicate(self))
            self._recv(min(0.2, max(0.01, deadline - time.monotonic())))
        return True

    def read_for(self, seconds: float) -> None:
        """Read whatever arrives during ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self.eof and time.monotonic() < deadline:
            self._recv(min(0.1, max(0.01, deadline - time.monotonic())))

    def payloads(self) -> list[dict[str, Any]]:
        """Every message's data as JSON."""
        return [json.loads(m.data) for m in self.messages]

    def app_events(self) -> list[dict[str, Any]]:
        """Messages that are not system events."""
        return [
            p for p in self.payloads() if p.get("type") not in ("connected", "keepalive", "error", "recovery")
        ]

    def connected(self, timeout: float = 5.0) -> bool:
        return self.read_until(
            lambda c: any(p.get("type") == "connected" for p in c.payloads()), timeout
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSSE:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    *,
    what: str | None = None,
) -> bool:
    """Poll ``predicate()`` until it is true; raise ``AssertionError`` if ``timeout`` passes first.

    It returns True only so that ``assert wait_for(...)`` call sites keep reading naturally; a
    condition that never comes true fails the test with ``what`` (or the predicate's source
    line) and its last value, instead of returning False for a caller to forget to check. A
    predicate that is never meant to come true is a sleep in disguise: wait on what the sleep
    was waiting for (a counter, a connection count, a received count) instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return True
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"waited {timeout:g} s for {what or _describe(predicate)}; last value: {value!r}"
            )
        time.sleep(interval)


def _describe(predicate: Callable[[], object]) -> str:
    """The predicate's source on one line (a lambda's is its call site), else its repr."""
    try:
        return " ".join(inspect.getsource(predicate).split())
    except (OSError, TypeError):
        return repr(predicate)


BACKENDS = ["fakeredis", "redis"]


def gateway_kwargs(backend: str, request: Any) -> dict[str, Any]:
    """start_gateway arguments for a backend; ``redis`` uses the session's throwaway server."""
    if backend == "redis":
        return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    return {"backend": "fakeredis"}


def event(i: int, player: int = 12345, brand: int = 1001, pad: int = 0) -> str:
    """A documented notification envelope carrying a sequence number."""
    return json.dumps(
        {
            "brand_id": brand,
            "player_id": player,
            "event_type": "notification",
            "event_data": {"message_id": f"m-{i}", "seq": i, "pad": "x" * pad},
        }
    )
