"""What pages in a browser need from the gateway: CORS answers, preflights, and refusals they can read.

A page on another origin may read a response only when the gateway names that origin in
``Access-Control-Allow-Origin``; an ``EventSource`` opened ``{withCredentials: true}`` (to send
the ``sse_token`` cookie) also needs ``Access-Control-Allow-Credentials: true``, which browsers
refuse beside a ``*``. A fetch-based client sending ``x-auth-token`` is preflighted first with
``OPTIONS``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ...errors import SseSimError
from ...events.wire import error_frame
from .admission import Refusal, request_header, respond_json

__all__ = ["REFUSED_EVENT_ID", "Cors", "answer_refusal"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

REFUSED_EVENT_ID = b"refused"
"""The ``id:`` of a refusal's ``error`` event; an EventSource sends it back when it reconnects."""

_ORIGIN_RE = re.compile(
    r"https?://(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?"
)
_ALLOWED_METHODS = b"GET, HEAD"
# The request headers a page may send: the token header (fetch-based clients), the Bearer
# metrics token, and what an EventSource adds on a reconnect.
_ALLOWED_HEADERS = b"x-auth-token, authorization, last-event-id, cache-control, accept"
_PREFLIGHT_MAX_AGE_S = b"600"
_GATEWAY_PATHS = re.compile(r"/gateway/sse/[^/]*/stream|/gateway/metrics|/healthz")
_STATUS_WORDS = {400: "bad request", 401: "unauthorized", 403: "forbidden"}


class Cors:
    """The origins whose pages may read the gateway's answers, and the headers that tell the browser.

    An origin is ``scheme://host[:port]`` exactly as a browser sends it (no path, no trailing
    slash); ``*`` lets every origin read, but without cookies.
    """

    def __init__(self, origins: Iterable[str] = ()) -> None:
        if isinstance(origins, str):
            origins = [origins]
        named: set[bytes] = set()
        self.any_origin = False
        for origin in origins:
            if origin == "*":
                self.any_origin = True
                continue
            text = origin.strip().lower() if isinstance(origin, str) else ""
            if not _ORIGIN_RE.fullmatch(text):
                raise SseSimError(
                    f"--cors-origin {origin!r}: an origin is scheme://host[:port] with no path"
                    " or trailing slash, as in https://casino.example, or * for every origin"
                )
            named.add(text.encode("ascii"))
        self.origins = frozenset(named)
        self.enabled = self.any_origin or bool(self.origins)

    def headers(self, scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to this request (none without configured origins)."""
        if not self.enabled:
            return []
        origin = request_header(scope, b"origin")
        if origin is not None and origin.lower() in self.origins:
            # Echo the one origin (a list is not allowed) and say the answer depends on it.
            return [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"origin"),
            ]
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"vary", b"origin")] if self.origins else []

    async def preflight(self, send: Send, scope: dict[str, Any]) -> None:
        """Answer an ``OPTIONS`` request: 204 with the allowed methods and headers, or why not."""
        if not _GATEWAY_PATHS.fullmatch(scope["path"]):
            await respond_json(send, 404, {"error": "not found"}, scope)
            return
        allow = [(b"allow", b"GET, HEAD, OPTIONS")]
        method = request_header(scope, b"access-control-request-method")
        if method is None:  # a plain OPTIONS, not a browser's preflight
            await _empty(send, 204, allow)
            return
        cors = self.headers(scope)
        if not any(name == b"access-control-allow-origin" for name, _ in cors):
            reason = "this origin may not" if self.enabled else "no origin may (see --cors-origin)"
            await respond_json(
                send, 403, {"error": f"{reason} read the gateway from a page"}, scope, cors
            )
            return
        if method.upper() not in (b"GET", b"HEAD"):
            await respond_json(send, 405, {"error": "method not allowed"}, scope, cors + allow)
            return
        await _empty(
            send,
            204,
            cors
            + [
                (b"access-control-allow-methods", _ALLOWED_METHODS),
                (b"access-control-allow-headers", _ALLOWED_HEADERS),
                (b"access-control-max-age", _PREFLIGHT_MAX_AGE_S),
            ],
        )


async def answer_refusal(
    send: Send, scope: dict[str, Any], refusal: Refusal, cors: list[tuple[bytes, bytes]]
) -> None:
    """Answer a refused stream request: JSON with its status, or, for ``?token=``, an SSE ``error``.

    A ``?token=`` is what a page's EventSource uses, and an EventSource cannot read a 4xx: it
    only fires a bare ``error`` event and stops, so the page cannot tell an expired token from
    a wrong brand, nor from a network fault. Such a request therefore gets 200
    ``text/event-stream`` with one documented ``error`` system event
    (``{"type":"error","message":"unauthorized: token expired"}``) and the stream ends. The
    event carries ``id: refused``: an EventSource reconnects after a stream ends and sends that
    id back as ``Last-Event-ID``, and that request gets 204 No Content, which tells it to stop
    for good, so a page that ignores the event costs one extra request, not a reconnect loop.
    Clients that send the header or the cookie can read statuses, and get the JSON answer.
    """
    if not refusal.query:
        await respond_json(
            send, refusal.status, refusal.payload, scope, (refusal.headers or []) + cors
        )
        return
    if request_header(scope, b"last-event-id") == REFUSED_EVENT_ID:
        await _empty(send, 204, [(b"cache-control", b"no-cache"), *cors])
        return
    word = _STATUS_WORDS.get(refusal.status, "refused")
    body = b"id: " + REFUSED_EVENT_ID + b"\n" + error_frame(f"{word}: {refusal.payload['error']}")
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-cache"),
        *cors,
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _empty(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
