"""The gateway's HTTP-level limits: request head size and deadline, idle keep-alive, connection caps.

One :class:`HttpLimits` per gateway process holds the settings, the connections open per client
address and the refusal counters. It knows nothing of uvicorn: :mod:`.compat`'s protocols ask it
whether to admit a connection and what to answer when a limit is hit, and close the connection
after that answer.

With ``--workers N`` every worker process has its own limits, so the caps hold per process.
"""

from __future__ import annotations

import collections
import http
import json
from typing import Any

from ...errors import SseSimError

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS_PER_IP",
    "DEFAULT_MAX_HEADER_BYTES",
    "RETRY_AFTER_S",
    "HttpLimits",
    "default_max_connections",
]

DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 5.0
DEFAULT_MAX_CONNECTIONS_PER_IP = 1024
RETRY_AFTER_S = 5
"""``Retry-After`` on a 503 for a full gateway: long enough for idle sockets to be reaped."""

# File descriptors kept apart from client connections: Redis, the listening socket, logs, and
# the short-lived sockets of refused connections (each is held until its 503 has been read).
_FD_RESERVE_MIN = 64


def default_max_connections() -> int:
    """The cap on open connections when none is given: three quarters of the open-file limit.

    The rest (at least 64 descriptors) stays free for Redis, logs and refused connections, so a
    flood of sockets meets a 503 instead of ``accept()`` failing for everyone.
    """
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        infinite = soft == resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):
        soft, infinite = 1024, False
    if infinite or soft <= 0:
        soft = 1 << 20
    return max(1, soft - max(_FD_RESERVE_MIN, soft // 4))


def _answer(status: int, payload: dict[str, Any], retry_after_s: int | None = None) -> bytes:
    """A complete ``Connection: close`` JSON answer, written by the protocol outside any ASGI cycle."""
    body = json.dumps(payload).encode()
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "cache-control: no-cache",
        "connection: close",
    ]
    if retry_after_s is not None:
        lines.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


class HttpLimits:
    """The limits of one gateway process and their bookkeeping (read in its event loop only).

    - ``max_header_bytes``: the bytes of a request head (request line and headers), counted as
      they arrive; beyond it the answer is 431 and the connection closes;
    - ``header_timeout_s``: a client must finish its request head this long after connecting (or
      after the first byte of a later request on a kept-alive connection); else 408 (or a plain
      close if it sent nothing) and the connection closes;
    - ``idle_timeout_s``: a kept-alive connection with no request in progress closes after this;
      open streams are not idle;
    - ``max_connections`` (default: :func:`default_max_connections`) and
      ``max_connections_per_ip`` (0 = no per-address cap): a connection beyond either cap is
      answered 503 with ``Retry-After`` and closed. Behind a proxy every client has the proxy's
      address: raise or disable the per-address cap there.
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_connections: int | None = None,
        max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP,
    ) -> None:
        if not isinstance(max_header_bytes, int) or max_header_bytes < 1024:
            raise SseSimError(f"max_header_bytes must be an integer >= 1024, got {max_header_bytes!r}")
        for name, value in (("header_timeout_s", header_timeout_s), ("idle_timeout_s", idle_timeout_s)):
            if not isinstance(value, int | float) or not value > 0:
                raise SseSimError(f"{name} must be a positive number of seconds, got {value!r}")
        if max_connections is not None and (
            not isinstance(max_connections, int) or max_connections < 1
        ):
            raise SseSimError(f"max_connections must be a positive integer, got {max_connections!r}")
        if not isinstance(max_connections_per_ip, int) or max_connections_per_ip < 0:
            raise SseSimError(
                f"max_connections_per_ip must be an integer >= 0 (0 = no cap), got {max_connections_per_ip!r}"
            )
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = float(header_timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_connections = (
            max_connections if max_connections is not None else default_max_connections()
        )
        self.max_connections_per_ip = max_connections_per_ip
        self.open = 0
        self._per_ip: dict[str, int] = {}
        self._counts: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ asked by the protocols

    def admit(self, ip: str) -> bytes | None:
        """Take a slot for a new connection from ``ip``: None if admitted, else the 503 to answer."""
        if self.open >= self.max_connections:
            self._counts["refused_connection_limit"] += 1
            return _answer(503, {"error": "too many connections"}, RETRY_AFTER_S)
        held = self._per_ip.get(ip, 0)
        if self.max_connections_per_ip and held >= self.max_connections_per_ip:
            self._counts["refused_connection_limit_ip"] += 1
            return _answer(503, {"error": "too many connections from this address"}, RETRY_AFTER_S)
        self.open += 1
        self._per_ip[ip] = held + 1
        return None

    def release(self, ip: str) -> None:
        """Give back the slot of an admitted connection that closed."""
        self.open -= 1
        held = self._per_ip.get(ip, 0) - 1
        if held > 0:
            self._per_ip[ip] = held
        else:
            self._per_ip.pop(ip, None)

    def head_too_large(self) -> bytes:
        """Count a request head over ``max_header_bytes``; the 431 to answer."""
        self._counts["refused_header_too_large"] += 1
        return _answer(
            431,
            {
                "error": "request header fields too large",
                "max_header_bytes": self.max_header_bytes,
            },
        )

    def head_timed_out(self, partial: bool) -> bytes | None:
        """Count a request head not finished in time; the 408 to answer if part of it came, else None."""
        self._counts["closed_header_timeout"] += 1
        return _answer(408, {"error": "request header timeout"}) if partial else None

    def pipelined(self) -> None:
        """Count a request that came before the previous response ended (it is not served)."""
        self._counts["refused_pipelined"] += 1

    # ------------------------------------------------------------------ reported

    def metrics(self) -> dict[str, int]:
        """Counters for ``/gateway/metrics``."""
        c = self._counts
        return {
            "http_connections_open": self.open,
            "max_connections": self.max_connections,
            "refused_connection_limit": c["refused_connection_limit"],
            "refused_connection_limit_ip": c["refused_connection_limit_ip"],
            "refused_header_too_large": c["refused_header_too_large"],
            "closed_header_timeout": c["closed_header_timeout"],
            "refused_pipelined": c["refused_pipelined"],
        }
