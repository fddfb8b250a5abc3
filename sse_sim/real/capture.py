"""Capturing live traffic: every event published to the SSE channels, as a Parquet trace to fit scenarios from.

``capture(redis_url, out)`` pattern-subscribes (``SSE::*`` by default) and writes one row per
message it receives: when (seconds since the capture started), brand, player, event type,
payload bytes and the notification's message id. Rows are written in row groups as they come,
so memory stays bounded whatever the duration; the file is closed properly when the duration
ends, on Ctrl-C, and when the Redis connection drops (which is reported, never silent).

A pub/sub subscriber sees what Redis delivers to it, no more: it does not see events published
before it subscribed, nor, if it falls behind past Redis's output-buffer limit, the backlog
Redis drops with it (that too ends the capture with an error).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import SseSimError
from ..events.channel import InvalidChannelError, parse_channel
from ..events.publisher import decode_stream_message

#: Rows buffered before they are written as one Parquet row group.
ROW_GROUP = 50_000

TRACE_COLUMNS = ("received_at", "brand_id", "player_id", "event_type", "payload_bytes", "message_id")


class CaptureError(SseSimError):
    """The capture could not start, or its Redis connection dropped (what was captured is kept)."""


@dataclass
class CaptureSummary:
    """What one capture wrote."""

    path: Path
    events: int
    duration_s: float
    skipped: int
    """Messages on matching channels that were not SSE events (bad channel name or JSON)."""
    stopped_by: str
    """"duration", "interrupt" or "redis" (the connection dropped)."""


def player_hasher(salt: bytes) -> Callable[[int], int]:
    """A keyed hash of player ids to positive 63-bit ints: the same player keeps one id, unknowable without the salt."""

    def hashed(player_id: int) -> int:
        digest = hmac.new(salt, str(player_id).encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") >> 1 or 1

    return hashed


def _event_fields(data: bytes) -> tuple[str, str | None] | None:
    """(event_type, message id) of a message's envelope (plain or stream-wrapped); None if it is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.startswith('{"id":'):
        try:
            _, text = decode_stream_message(text)
        except ValueError:
            pass
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("event_type"), str):
        return None
    event_data = doc.get("event_data")
    message_id = event_data.get("message_id") if isinstance(event_data, dict) else None
    return doc["event_type"], message_id if isinstance(message_id, str) else None


class _TraceWriter:
    """Rows to a Parquet file in row groups; ``close`` leaves a valid file whatever happened before."""

    def __init__(self, path: Path, metadata: dict[str, str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self.schema = pa.schema(
            [
                ("received_at", pa.float64()),
                ("brand_id", pa.int64()),
                ("player_id", pa.int64()),
                ("event_type", pa.string()),
                ("payload_bytes", pa.int32()),
                ("message_id", pa.string()),
            ],
            metadata={k.encode(): v.encode() for k, v in metadata.items()},
        )
        self._writer = pq.ParquetWriter(str(path), self.schema)
        self.rows: dict[str, list[Any]] = {name: [] for name in TRACE_COLUMNS}
        self.written = 0

    def add(self, received_at: float, brand: int, player: int, event_type: str, size: int, message_id: str | None) -> None:
        rows = self.rows
        rows["received_at"].append(received_at)
        rows["brand_id"].append(brand)
        rows["player_id"].append(player)
        rows["event_type"].append(event_type)
        rows["payload_bytes"].append(size)
        rows["message_id"].append(message_id)
        if len(rows["received_at"]) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        n = len(self.rows["received_at"])
        if n:
            self._writer.write_table(self._pa.Table.from_pydict(self.rows, schema=self.schema))
            self.written += n
            self.rows = {name: [] for name in TRACE_COLUMNS}

    def close(self) -> None:
        self.flush()
        self._writer.close()


def capture(
    redis_url: str,
    out: str | Path,
    *,
    pattern: str = "SSE::*",
    duration_s: float | None = None,
    hash_players: bool = False,
    salt: bytes | None = None,
    progress: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CaptureSummary:
    """Record every SSE event published on channels matching ``pattern`` into the Parquet trace ``out``.

    Runs for ``duration_s`` seconds (None: until interrupted). ``hash_players`` replaces player
    ids with a keyed hash (``salt``, random by default and not stored). ``progress(events,
    elapsed_s)`` is called about once a second; ``should_stop()`` is polled as often (for a
    caller's own stop condition). Ctrl-C ends the capture and keeps the trace. A dropped Redis
    connection ends it too: the trace is closed and :class:`CaptureError` raised, naming how
    many events were kept.
    """
    import redis as redis_lib
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    path = Path(out)
    if duration_s is not None and not duration_s > 0:
        raise CaptureError(f"duration must be a positive number of seconds, got {duration_s!r}")
    try:
        # no silent retry: a dropped connection must end the capture, not hide a gap in it
        client = redis_lib.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5)
        pubsub = client.pubsub()
        pubsub.psubscribe(pattern)
        confirm = pubsub.get_message(timeout=5)
    except (redis_lib.RedisError, ValueError) as exc:
        raise CaptureError(f"cannot subscribe to {pattern!r} at {redis_url}: {exc}") from None
    if confirm is None or confirm.get("type") != "psubscribe":
        raise CaptureError(f"Redis at {redis_url} did not confirm the subscription to {pattern!r}")
    hasher = player_hasher(salt or secrets.token_bytes(32)) if hash_players else None
    started = datetime.now(UTC)
    t0 = time.monotonic()
    writer = _TraceWriter(
        path,
        {
            "sse_sim.capture.started_at": started.isoformat(),
            "sse_sim.capture.pattern": pattern,
            "sse_sim.capture.redis": redis_url.split("@")[-1],  # never the password
            "sse_sim.capture.players_hashed": str(hash_players).lower(),
        },
    )
    events = skipped = 0
    stopped_by = "duration"
    next_tick = t0 + 1.0
    failure: Exception | None = None
    try:
        while True:
            now = time.monotonic()
            if duration_s is not None and now - t0 >= duration_s:
                break
            if now >= next_tick:
                next_tick = now + 1.0
                if progress is not None:
                    progress(events, now - t0)
                if should_stop is not None and should_stop():
                    stopped_by = "interrupt"
                    break
            try:
                msg = pubsub.get_message(timeout=0.2)
            except (redis_lib.ConnectionError, redis_lib.TimeoutError, OSError) as exc:
                failure = exc
                stopped_by = "redis"
                break
            if msg is None or msg.get("type") != "pmessage":
                continue
            received_at = time.monotonic() - t0
            data = msg["data"]
            fields = _event_fields(data)
            try:
                brand, player = parse_channel(msg["channel"])
            except InvalidChannelError:
                fields = None
            if fields is None:
                skipped += 1
                continue
            if hasher is not None:
                player = hasher(player)
            writer.add(received_at, brand, player, fields[0], len(data), fields[1])
            events += 1
    except KeyboardInterrupt:
        stopped_by = "interrupt"
    finally:
        writer.close()
        for close in (pubsub.close, client.close):
            try:
                close()
            except redis_lib.RedisError:
                pass
    elapsed = time.monotonic() - t0
    if failure is not None:
        raise CaptureError(
            f"the Redis connection dropped {elapsed:.1f} s into the capture ({failure}); "
            f"{path} holds the {events} event(s) captured before it"
        )
    return CaptureSummary(path=path, events=events, duration_s=elapsed, skipped=skipped, stopped_by=stopped_by)


__all__ = ["capture", "CaptureError", "CaptureSummary", "player_hasher", "TRACE_COLUMNS", "ROW_GROUP"]
