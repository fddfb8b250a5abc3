"""How many events the kernel's socket buffers hold: the figure behind ``clients.socket_buffer_events``.

The gateway's queue is not the only buffer between a Redis message and a slow client: the
gateway socket's send buffer, the transport's write buffer and the client socket's receive
buffer hold events too, invisible to the queue's bound. Two measurements:

* :func:`loopback_capacity`: a bare loopback TCP pair, the sender writing frames of ``n`` bytes
  to a reader that never reads, until the kernel refuses more;
* :func:`gateway_socket_buffer_events`: the real thing, end to end: a burst of events through
  Redis and the real gateway to a client that reads one event per 10 ms. With ``drop_newest``
  the client gets ``1 + S + buffer_size`` events; ``S`` is the value for
  ``clients.socket_buffer_events``;
* :func:`subscriber_kernel_messages`: the same on the other side of the gateway, between Redis
  and the gateway's rate-capped shared subscriber at the moment Redis closes it for its
  output-buffer limit, the figure behind ``redis.output_buffer.kernel_buffer_bytes``.
"""

from __future__ import annotations

import socket
import time
from functools import lru_cache
from typing import Any

from ..errors import SseSimError

__all__ = ["loopback_capacity", "gateway_socket_buffer_events", "subscriber_kernel_messages"]


def loopback_capacity(frame_bytes: int, *, sndbuf: int | None = None, rcvbuf: int | None = None, max_frames: int = 200_000) -> dict[str, int]:
    """Frames of ``frame_bytes`` a loopback TCP connection holds when the reader never reads.

    ``sndbuf`` / ``rcvbuf`` set ``SO_SNDBUF`` / ``SO_RCVBUF`` (None: the kernel's autotuned
    defaults). Returns the whole frames accepted and the effective buffer sizes the kernel chose.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    reader = socket.socket()
    if rcvbuf is not None:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    reader.connect(listener.getsockname())
    writer, _ = listener.accept()
    try:
        if sndbuf is not None:
            writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        writer.setblocking(False)
        frame = b"x" * frame_bytes
        frames = 0
        for _ in range(max_frames):
            try:
                sent = writer.send(frame)
            except BlockingIOError:
                # Loopback delivery is asynchronous: give the receiver a moment, then try once more.
                time.sleep(0.02)
                try:
                    sent = writer.send(frame)
                except BlockingIOError:
                    break
            if sent < frame_bytes:
                break
            frames += 1
        return {
            "frames": frames,
            "frame_bytes": frame_bytes,
            "sndbuf_effective": writer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            "rcvbuf_effective": reader.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        }
    finally:
        for s in (writer, reader, listener):
            s.close()


@lru_cache(maxsize=64)
def _measure(payload_bytes: int, backend: str, redis_url: str | None, send_buffer_bytes: int | None, recv_buffer_bytes: int | None, buffer_size: int) -> int:
    from .runner import run_real

    burst = buffer_size + 150
    scenario: dict[str, Any] = {
        "name": "socket_buffer_probe",
        "duration_s": 1.0,
        "population": {"brand_ids": [1001], "players_per_brand": 1, "clients_per_player": 1},
        "publishers": [
            {"kind": "burst", "event_type": "notification", "size": burst, "every_s": 1000,
             "spacing_s": 0, "aligned": True, "payload_bytes": payload_bytes}
        ],
        "redis": {"hop_latency": 0, "subscribe_latency": 0},
        "gateway": {"buffer_size": buffer_size, "overflow_policy": "drop_newest", "reader_yield_every": 1},
        "clients": {"drain_time": 0.01, "network_latency": 0},
    }
    result = run_real(
        scenario, 0, backend=backend, redis_url=redis_url,
        send_buffer_bytes=send_buffer_bytes, recv_buffer_bytes=recv_buffer_bytes,
    )
    delivered = int((result.records["outcome"] == "delivered").sum())
    return delivered - 1 - buffer_size


def gateway_socket_buffer_events(
    payload_bytes: int,
    *,
    backend: str = "fakeredis",
    redis_url: str | None = None,
    send_buffer_bytes: int | None = 1,
    recv_buffer_bytes: int | None = 8192,
    buffer_size: int = 50,
) -> int:
    """Events of ``payload_bytes`` held beyond the gateway queue and the one being read, end to end.

    Runs a real burst (about two seconds); the answer is cached per arguments for the process.
    """
    return _measure(int(payload_bytes), backend, redis_url, send_buffer_bytes, recv_buffer_bytes, int(buffer_size))


@lru_cache(maxsize=16)
def _measure_subscriber(payload_bytes: int, reader_rate_per_s: float, hard_limit_bytes: int, redis_url: str | None, timeout_s: float) -> int:
    import redis

    from .calibrate import _FastClient
    from .gateway import start_gateway
    from .payloads import build_payload
    from .redis_server import RedisServer

    limit = f"pubsub {hard_limit_bytes} 0 0"
    server = RedisServer(config={"client-output-buffer-limit": limit}) if redis_url is None else None
    url = server.url if server is not None else redis_url
    assert url is not None
    gt = None
    client = None
    restore = None
    admin = redis.Redis.from_url(url)
    try:
        if server is None:
            restore = str(next(iter(admin.config_get("client-output-buffer-limit").values())))
            admin.config_set("client-output-buffer-limit", limit)
        # capped and with its receive buffer fixed exactly like the runner's subscriber
        gt = start_gateway(backend="redis", redis_url=url, buffer_size=1_000_000, max_queue_bytes=None, reader_rate_per_s=reader_rate_per_s)
        client = _FastClient("127.0.0.1", gt.port, gt.token(1), 10.0)
        if not client.connected.wait(10.0):
            raise SseSimError("measuring the subscriber's socket buffers: the stream did not start")
        # Publish at twice the reader's rate, every 5 ms, until PUBLISH finds no subscriber:
        # Redis has closed it for its limit. What the client reads after that instant had left
        # Redis already: the sockets (and the subscriber's read buffer) held it.
        step_s = 0.005
        per_step = max(1, round(2 * reader_rate_per_s * step_s))
        deadline = time.monotonic() + timeout_s
        eid = 0
        closed_at = None
        due = time.monotonic()
        while closed_at is None:
            if time.monotonic() > deadline:
                raise SseSimError(
                    f"measuring the subscriber's socket buffers: Redis did not close the subscriber within {timeout_s:.0f} s "
                    f"(limit {hard_limit_bytes:,} B, {payload_bytes:,} B messages at {2 * reader_rate_per_s:,.0f}/s)"
                )
            pipe = admin.pipeline(transaction=False)
            for _ in range(per_step):
                channel, text = build_payload(1001, 1, "notification", eid, 0, payload_bytes)
                pipe.publish(channel, text)
                eid += 1
            started = time.time()
            if 0 in pipe.execute():
                closed_at = started
            due += step_s
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        # wait until the gateway has read what the sockets held and seen the close
        while not any(what.startswith("lost") for _, what in gt.gateway.subscriber_log()):
            if time.monotonic() > deadline:
                raise SseSimError("measuring the subscriber's socket buffers: the gateway never saw Redis close its subscriber")
            time.sleep(0.01)
        with client.cond:
            return sum(1 for t in client.read_at.values() if t > closed_at)
    finally:
        if client is not None:
            client.close()
        if gt is not None:
            gt.stop()
        if restore is not None:
            admin.config_set("client-output-buffer-limit", restore)
        admin.close()
        if server is not None:
            server.stop()


def subscriber_kernel_messages(
    payload_bytes: int,
    reader_rate_per_s: float,
    hard_limit_bytes: int,
    *,
    redis_url: str | None = None,
    timeout_s: float = 60.0,
) -> int:
    """Messages of ``payload_bytes`` the sockets between Redis and a lagging subscriber hold when Redis closes it.

    A real gateway on ``redis_url`` (None: a throwaway redis-server) subscribes for one client;
    its subscriber reads ``reader_rate_per_s`` messages a second, as the runner's does, while
    messages are published at twice that rate with Redis's pub/sub limit set to
    ``hard_limit_bytes`` (restored afterwards on a given Redis). When PUBLISH first finds no
    subscriber, Redis has closed it; the messages the gateway still reads after that instant
    are what the sockets held, the figure behind ``redis.output_buffer.kernel_buffer_bytes``.

    It is measured while data flows because that is when Redis closes a subscriber, and Linux
    sizes Redis's send buffer by the traffic: on one loopback host the sockets held ~3.1 MB of
    10 kB messages at the close, against ~4.2 MB for a subscriber that had stopped reading.
    Cached per arguments for the process.
    """
    return _measure_subscriber(int(payload_bytes), float(reader_rate_per_s), int(hard_limit_bytes), redis_url, float(timeout_s))
