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
* :func:`subscriber_kernel_bytes`: the same on the other side of the gateway, between Redis and
  the gateway's shared subscriber, the figure behind ``redis.output_buffer.kernel_buffer_bytes``.
"""

from __future__ import annotations

import socket
import time
from functools import lru_cache
from typing import Any

from ..errors import SseSimError

__all__ = ["loopback_capacity", "gateway_socket_buffer_events", "subscriber_kernel_bytes"]


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
def _measure_subscriber(payload_bytes: int, redis_url: str | None, max_messages: int) -> tuple[int, int]:
    import redis

    from .calibrate import _FastClient
    from .gateway import start_gateway
    from .payloads import build_payload
    from .redis_server import RedisServer

    server = RedisServer() if redis_url is None else None
    url = server.url if server is not None else redis_url
    assert url is not None
    gt = None
    client = None
    try:
        # capped like the runner's subscriber (the cap fixes its receive buffer); it is stalled anyway
        gt = start_gateway(backend="redis", redis_url=url, buffer_size=max_messages + 1, max_queue_bytes=None, reader_rate_per_s=1e9)
        client = _FastClient("127.0.0.1", gt.port, gt.token(1), 10.0)
        if not client.connected.wait(10.0):
            raise SseSimError("measuring the subscriber's socket buffers: the stream did not start")
        subscriber = gt.gateway._subscriber
        subscriber.stall(60.0)
        channel, text = build_payload(1001, 1, "notification", 0, 0, payload_bytes)
        with redis.Redis.from_url(url) as r:
            sub_name = None
            for c in r.client_list():
                if c.get("cmd") in ("subscribe", "psubscribe") or c.get("sub", "0") != "0":
                    sub_name = c["id"]
            if sub_name is None:
                raise SseSimError("measuring the subscriber's socket buffers: no subscriber in CLIENT LIST")

            def omem() -> int:
                found = [c for c in r.client_list() if c["id"] == sub_name]
                return int(found[0]["omem"]) if found else -1

            # publish until Redis's buffer for the subscriber has grown by several messages
            # past the point where the sockets refused more; what Redis does not hold then is
            # in the sockets (and the subscriber's read buffer)
            sent = 0
            points: list[tuple[int, int]] = []
            batch = max(1, 65536 // (payload_bytes + 64))
            while sent < max_messages:
                pipe = r.pipeline(transaction=False)
                for _ in range(batch):
                    pipe.publish(channel, text)
                pipe.execute()
                sent += batch
                time.sleep(0.02)  # loopback moves what the windows allow
                held = omem()
                if held > 0:
                    points.append((sent, held))
                if len(points) >= 4 and held > 8 * (payload_bytes + 64):
                    break
            if len(points) < 2:
                raise SseSimError(f"measuring the subscriber's socket buffers: Redis held nothing after {sent} messages")
            (n0, m0), (n1, m1) = points[0], points[-1]
            per_message = max(payload_bytes, round((m1 - m0) / (n1 - n0)))
            return max(0, n1 * per_message - m1), per_message
    finally:
        if client is not None:
            client.close()
        if gt is not None:
            gt.stop()
        if server is not None:
            server.stop()


def subscriber_kernel_bytes(payload_bytes: int, *, redis_url: str | None = None, max_messages: int = 20_000) -> tuple[int, int]:
    """Bytes the sockets between Redis and the gateway's subscriber hold for a stalled subscriber, and Redis's bytes per message.

    A real gateway on ``redis_url`` (None: a throwaway redis-server) subscribes for one client,
    its reader stops, and messages of ``payload_bytes`` are published until Redis's output
    buffer for it (``omem`` in ``CLIENT LIST``) grows: from then on each message adds its size
    in Redis (the second figure, RESP framing included), and what was published but is not in
    Redis is in the sockets (the first). Cached per arguments for the process.
    """
    return _measure_subscriber(int(payload_bytes), redis_url, int(max_messages))
