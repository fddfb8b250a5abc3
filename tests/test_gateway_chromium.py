"""A real browser through a dropped stream: headless Chromium's own EventSource, the demo page, a real redis-server.

The gateway serves ``/gateway/demo``; a page on another origin (listed with ``cors_origins``)
embeds it in an iframe and posts every entry the demo page reports to a small loopback server,
numbered, so the test reads what the page saw in order. The gateway ends the stream mid-way
(:meth:`Gateway.drop_connections`), events are published while the page is away, and the
browser reconnects by itself after ``retry:`` (500 ms), sending ``Last-Event-ID``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import threading
from typing import Any

import pytest
from sse_helpers import wait_for

from sse_sim.events.publisher import publish_delivery
from sse_sim.real.auth import mint_token
from sse_sim.real.gateway import start_gateway

SECRET = b"c" * 32
BRAND = 1001
PLAYER = 4242
KIND = "game_result"

_PAGE = """<!doctype html><meta charset="utf-8"><script>
let n = 0;
addEventListener("message", (e) => {
  if (e.origin !== GATEWAY || !e.data || e.data.source !== "sse-sim-demo") return;
  fetch("/report", {method: "POST", body: JSON.stringify({n: n++, entry: e.data.entry})});
});
</script><iframe src="DEMO"></iframe>"""


class _Site:
    """The embedding page's origin: serves the page, collects the entries it reports."""

    def __init__(self) -> None:
        self.page = b""
        self.entries: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(site.page)

            def do_POST(self) -> None:  # noqa: N802
                report = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with site.lock:
                    site.entries[report["n"]] = report["entry"]
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[dict[str, Any]]:
        """The page's entries in the order it saw them (those reported so far, without holes)."""
        with self.lock:
            out = []
            for n in range(len(self.entries)):
                if n not in self.entries:
                    break
                out.append(self.entries[n])
            return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _data(entries: list[dict[str, Any]]) -> list[Any]:
    return [e["data"] for e in entries if e["kind"] == "message"]


def _seqs(entries: list[dict[str, Any]]) -> list[int]:
    return [d["event_data"]["seq"] for d in _data(entries) if isinstance(d, dict) and "event_data" in d]


@pytest.mark.redis
@pytest.mark.parametrize("delivery", ["stream", "pubsub"])
def test_a_browser_reconnects_through_a_dropped_stream(tmp_path, chromium, redis_url, delivery) -> None:  # type: ignore[no-untyped-def]
    import redis

    site = _Site()
    pub = redis.Redis.from_url(redis_url)
    pub.delete(f"SSE::{BRAND}::{PLAYER}")
    ids: dict[int, str] = {}

    def publish(*seqs: int) -> None:
        for i in seqs:
            done = publish_delivery(pub, BRAND, PLAYER, KIND, {"seq": i}, delivery=delivery)
            if done.entry_id is not None:
                ids[i] = done.entry_id

    browser = None
    try:
        with start_gateway(
            backend="redis",
            redis_url=redis_url,
            secret=SECRET,
            delivery=delivery,
            retry_ms=500,
            cors_origins=[site.origin],
        ) as gw:
            metrics = gw.gateway.metrics
            token = mint_token(SECRET, BRAND, PLAYER, 60)  # a ?token= lives at most 60 s
            demo = f"{gw.url}/gateway/demo?brand={BRAND}&player={PLAYER}&token={token}"
            site.page = _PAGE.replace("GATEWAY", json.dumps(gw.url)).replace("DEMO", demo).encode()
            browser = subprocess.Popen(
                [
                    chromium,
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    site.origin + "/",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its helpers share its process group, ended below
            )
            # `connected` comes once Redis confirmed the page's channel: publish only then
            assert wait_for(lambda: _last_system(site).get("type") == "connected", 60)
            publish(*range(1, 11))
            assert wait_for(lambda: _seqs(site.seen()) == list(range(1, 11)), 60)

            assert gw.gateway.drop_connections(BRAND, PLAYER) == 1
            assert wait_for(lambda: metrics()["connections_open"] == 0, 60)
            publish(*range(11, 21))  # while the page is away
            # the page had not come back while they were published (its retry is 500 ms)
            assert metrics()["connections_total"] == 1, "the page reconnected before 11-20 were out"

            assert wait_for(lambda: metrics()["connections_connected"] == 2, 60)
            if delivery == "stream":
                assert wait_for(lambda: _seqs(site.seen())[-1:] == [20], 60)
            publish(*range(21, 31))
            assert wait_for(lambda: _seqs(site.seen())[-1:] == [30], 60)
            seen = site.seen()
            final = metrics()
    finally:
        if browser is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGKILL)  # the group this test started
            browser.wait(timeout=30)
        site.close()
        pub.close()

    kinds = [e["kind"] for e in seen]
    # open, events, the drop (CONNECTING: the browser retries by itself), open again, events
    assert kinds.count("open") == 2 and kinds.count("error") == 1, kinds
    assert next(e for e in seen if e["kind"] == "error")["readyState"] == 0
    recoveries = [d for d in _data(seen) if isinstance(d, dict) and d.get("type") == "recovery"]
    if delivery == "stream":
        # every event exactly once, in order, through the browser's own Last-Event-ID reconnect
        assert _seqs(seen) == list(range(1, 31))
        assert recoveries == [{"type": "recovery", "recovered": True, "replayed": 10}]
        messages = [e for e in seen if e["kind"] == "message" and "event_data" in e["data"]]
        assert [e["lastEventId"] for e in messages] == [ids[i] for i in range(1, 31)]
        assert final["replayed_entries"] == 10 and final["recoveries_true"] == 1
    else:
        # exactly the events published while it was away are lost
        assert _seqs(seen) == [*range(1, 11), *range(21, 31)]
        assert recoveries == []
        assert final["xrange_calls"] == 0


def _last_system(site: _Site) -> dict[str, Any]:
    """The last system event the page saw ({} if none yet)."""
    for data in reversed(_data(site.seen())):
        if isinstance(data, dict) and "type" in data:
            return data
    return {}
