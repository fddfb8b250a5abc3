"""How many events the kernel's socket buffers hold: the figure behind ``clients.socket_buffer_events``.

The gateway's queue is not the only buffer between a Redis message and a slow client: the
gateway socket's send buffer, the transport's write buffer and the client socket's receive
buffer hold events too, invisible to the queue's bound. Two measurements:

* :func:`loopback_capacity`: a bare loopback TCP pair, the sender writing frames of ``n`` bytes
  to a reader that never reads, until the kernel refuses more;
* :func:`gateway_socket_buffer_events`: the real thing, end to end: a burst of events through
  Redis and the real gateway to a client that reads one event per 10 ms. With ``drop_newest``
  the client gets ``1 + S + buffer_size`` events; ``S`` is the value for
  ``clients.socket_buffer_events``.
"""

from __future__ import annotations

import socket
import time
from functools import lru_cache
from typing import Any

__all__ = ["loopback_capacity", "gateway_socket_buffer_events"]


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
