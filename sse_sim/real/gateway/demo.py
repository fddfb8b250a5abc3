"""``GET /gateway/demo``: a small page, served by the gateway, that opens a stream and shows every event.

Open ``/gateway/demo?brand=1001&player=12345&token=TOKEN`` (a ``?token=`` from ``sse-sim token
--brand 1001 --player 12345 --query``); ``&lastEventId=ID`` resumes after a stream id on the
first connection (a page cannot set the header then). The page opens
``new EventSource('/gateway/sse/{brand}/stream?token=...')`` on the gateway's own origin and lists
each ``open``, message (with its ``lastEventId``) and ``error``; ``window.sseLog`` holds the same
entries. It has no dependencies and loads nothing else.

A page on an origin given with ``--cors-origin`` may embed it in an iframe and gets every entry
as a ``message`` event (``{"source": "sse-sim-demo", "entry": ...}``, posted to those origins
only: they may read the streams with credentials already). The answer forbids every other
framing, loading, referrer and caching (the URL carries a token).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["DEMO_PATH", "demo_page", "serve_demo"]

DEMO_PATH = "/gateway/demo"

Send = Callable[[dict[str, Any]], Awaitable[None]]

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; max-width: 60em; }
code, li { font-family: ui-monospace, monospace; }
#status { font-weight: bold; }
li { white-space: pre-wrap; word-break: break-all; margin: 0.2em 0; }
.open { color: #2a7; } .error { color: #c33; } .system { color: #777; }
"""

_SCRIPT = """
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const brand = params.get("brand") || "";
  const player = params.get("player") || "";
  const token = params.get("token") || "";
  const resume = params.get("lastEventId");
  const status = document.getElementById("status");
  const list = document.getElementById("log");
  const frames = JSON.parse(document.getElementById("frames").textContent);
  const log = window.sseLog = [];
  const embedded = window.parent !== window;

  function record(entry, css) {
    entry.at = Date.now();
    log.push(entry);
    const item = document.createElement("li");
    item.className = css;
    item.textContent = entry.kind === "message"
      ? (entry.lastEventId ? "[" + entry.lastEventId + "] " : "") + JSON.stringify(entry.data)
      : entry.kind + (entry.readyState === undefined ? "" : " (readyState " + entry.readyState + ")");
    list.appendChild(item);
    // Only to the origins the gateway lets read its streams: postMessage drops it for others.
    if (embedded) for (const origin of frames) window.parent.postMessage({source: "sse-sim-demo", entry}, origin);
  }

  if (!/^[0-9]{1,19}$/.test(brand) || !token) {
    status.textContent = "Give ?brand=&player=&token= in this page's address.";
    document.getElementById("hint").hidden = false;
    return;
  }
  document.getElementById("who").textContent = "brand " + brand + (player ? ", player " + player : "");
  let url = "/gateway/sse/" + brand + "/stream?token=" + encodeURIComponent(token);
  if (resume) url += "&lastEventId=" + encodeURIComponent(resume);
  const source = new EventSource(url);
  status.textContent = "connecting";
  source.onopen = () => { status.textContent = "open"; record({kind: "open"}, "open"); };
  source.onmessage = (event) => {
    let data = event.data;
    try { data = JSON.parse(event.data); } catch (_) { /* shown as text */ }
    const system = data !== null && typeof data === "object" && "type" in data;
    record({kind: "message", lastEventId: event.lastEventId, data}, system ? "system" : "");
  };
  source.onerror = () => {
    // CONNECTING: the browser reconnects by itself (after retry:); CLOSED: it gave up.
    status.textContent = source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
    record({kind: "error", readyState: source.readyState}, "error");
  };
})();
"""

_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sse-sim gateway demo</title>
<style>{style}</style>
<h1>SSE gateway demo <small id="who"></small></h1>
<p>Stream: <span id="status">starting</span></p>
<p id="hint" hidden>Mint a token with <code>sse-sim token --brand 1001 --player 12345 --query</code>
and open <code>/gateway/demo?brand=1001&amp;player=12345&amp;token=TOKEN</code> within 60 s.
Add <code>&amp;lastEventId=ID</code> to resume after a stream id.</p>
<ol id="log"></ol>
<script id="frames" type="application/json">{frames}</script>
<script>{script}</script>
</html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# The page's own script and style only: nothing injected into a token-bearing page can run.
_CSP_BASE = (
    f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)};"
    " connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def demo_page(frame_origins: list[str]) -> tuple[bytes, str]:
    """The page's HTML and its Content-Security-Policy, for a gateway whose pages may come from ``frame_origins``."""
    # JSON inside a script element: no "<" may end it early.
    frames = json.dumps(sorted(frame_origins)).replace("<", "\\u003c")
    html = _PAGE.format(style=_STYLE, script=_SCRIPT, frames=frames)
    ancestors = " ".join(["'self'", *sorted(frame_origins)])
    return html.encode("utf-8"), f"{_CSP_BASE}; frame-ancestors {ancestors}"


async def serve_demo(send: Send, scope: dict[str, Any], cors: Any) -> None:
    """Answer ``GET``/``HEAD /gateway/demo`` with the page (405 for other methods)."""
    method = scope.get("method")
    if method not in ("GET", "HEAD"):
        body = b'{"error": "method not allowed"}'
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"allow", b"GET, HEAD"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    # Named origins only: "*" lets any page read streams without cookies, but a page on the
    # gateway's origin opens them with its cookies, which no unnamed origin may see.
    origins = sorted(o.decode("ascii") for o in cors.origins)
    html, csp = demo_page(origins)
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(html)).encode()),
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", csp.encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": html if method == "GET" else b""})
