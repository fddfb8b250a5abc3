"""Who may open a stream or read the metrics: path, method, token and brand checks, and JSON refusals.

The player comes from the signed token alone: no part of the path or the query reaches the
channel name, so no request can read another player's events.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from ...errors import SseSimError
from ...events.channel import InvalidChannelError, channel_name, parse_id
from ..auth import TokenError, verify_token
from .backends import is_loopback

__all__ = [
    "STREAM_PATH",
    "TOKEN_COOKIE",
    "TOKEN_HEADER",
    "Refusal",
    "admit",
    "check_metrics_token",
    "find_token",
    "metrics_refusal",
    "request_header",
    "respond_json",
]

STREAM_PATH = "/gateway/sse/{brand_id}/stream"
TOKEN_HEADER = b"x-auth-token"
TOKEN_COOKIE = "sse_token"
MIN_METRICS_TOKEN_CHARS = 16

_STREAM_RE = re.compile(r"/gateway/sse/([^/]*)/stream")


class Refusal(NamedTuple):
    """Why a stream request is refused: the HTTP answer, and the metric that counts it (if any)."""

    status: int
    payload: dict[str, Any]
    headers: list[tuple[bytes, bytes]] | None = None
    counter: str | None = None
    query: bool = False
    """The request carried ``?token=``: a browser's EventSource, which cannot read a 4xx."""


def admit(
    scope: dict[str, Any],
    *,
    secret: bytes,
    query_token_max_ttl_s: float,
    now: float | None = None,
) -> tuple[int, int, str] | Refusal:
    """The ``(brand_id, player_id, channel)`` a stream request may read, or why it is refused.

    ``now`` (Unix time) replaces the clock when checking the token, for tests.
    """
    match = _STREAM_RE.fullmatch(scope["path"])
    if match is None:
        return Refusal(404, {"error": "not found"})
    if scope["method"] != "GET":
        return Refusal(405, {"error": "method not allowed"}, [(b"allow", b"GET")])
    token, max_ttl = find_token(scope, query_token_max_ttl_s)
    query = max_ttl is not None
    try:
        claims = verify_token(secret, token, now=now, max_ttl_s=max_ttl)
    except TokenError as exc:
        return Refusal(
            401,
            {"error": str(exc), "reason": exc.reason},
            [(b"www-authenticate", b"x-auth-token")],
            "refused_unauthorized",
            query,
        )
    try:
        brand_id = parse_id(match.group(1), "brand_id")
        channel = channel_name(brand_id, claims.player_id)
    except InvalidChannelError as exc:
        return Refusal(400, {"error": str(exc)}, counter="refused_bad_request", query=query)
    if claims.brand_id != brand_id:
        return Refusal(
            403, {"error": "token is for another brand"}, counter="refused_forbidden", query=query
        )
    return brand_id, claims.player_id, channel


def check_metrics_token(token: str | None) -> str | None:
    """``token`` if it can guard the metrics (printable ASCII, no spaces, 16+ characters), else raise."""
    if token is None:
        return None
    if (
        not isinstance(token, str)
        or len(token) < MIN_METRICS_TOKEN_CHARS
        or not all("!" <= c <= "~" for c in token)
    ):
        raise SseSimError(
            f"the metrics token (--metrics-token or $SSE_SIM_METRICS_TOKEN) must be at least"
            f" {MIN_METRICS_TOKEN_CHARS} printable ASCII characters without spaces"
        )
    return token


def metrics_refusal(scope: dict[str, Any], metrics_token: str | None) -> Refusal | None:
    """Why a ``/gateway/metrics`` request is refused, or None to serve it.

    With a metrics token, every request must bring ``Authorization: Bearer <token>``, loopback
    ones too. Without one, only loopback clients are served: the counters tell an outsider how
    many players are connected and how the gateway is configured.
    """
    if metrics_token is not None:
        scheme, _, given = (request_header(scope, b"authorization") or b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
            given.strip(), metrics_token.encode("ascii")
        ):
            return None
        return Refusal(
            401,
            {"error": "the metrics need Authorization: Bearer <metrics token>"},
            [(b"www-authenticate", b'Bearer realm="sse-sim metrics"')],
        )
    client = scope.get("client")
    if client and is_loopback(client[0]):
        return None
    return Refusal(
        403,
        {
            "error": "the metrics are served to loopback clients only; start the gateway"
            " with --metrics-token to serve them to others"
        },
    )


def request_header(scope: dict[str, Any], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower-case bytes) of an ASGI request, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def find_token(scope: dict[str, Any], query_max_ttl_s: float) -> tuple[str | None, float | None]:
    """The token from the header, else the cookie, else ``?token=`` (which must be short-lived)."""
    cookie_header = None
    for name, value in scope["headers"]:
        if name == TOKEN_HEADER:
            return value.decode("latin-1"), None
        if name == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header:
        for part in cookie_header.split(";"):
            key, _, val = part.strip().partition("=")
            if key == TOKEN_COOKIE and val:
                return val, None
    query = scope.get("query_string", b"")
    if query:
        values = parse_qs(query.decode("latin-1"), keep_blank_values=True).get("token")
        if values:
            return values[0], query_max_ttl_s
    return None, None


async def respond_json(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    payload: dict[str, Any],
    scope: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer a request with a small JSON body (none for ``HEAD``)."""
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache"),
    ]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send(
        {"type": "http.response.body", "body": body if scope.get("method") != "HEAD" else b""}
    )
