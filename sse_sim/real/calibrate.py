"""Measure this host's socket buffering and the real gateway's per-event costs, for a scenario.

``sse-sim calibrate`` (:mod:`sse_sim.real.cli_calibrate`) prints what it measures here as a
scenario fragment to paste:

* **socket buffering** (:func:`socket_holding`): a loopback TCP pair, the reader stopped, the
  writer writing the gateway's own frames (an SSE ``data:`` event in an HTTP/1.1 chunk) of a
  payload size until the kernel refuses more. Done twice per size: with the real runner's
  socket options (writer ``SO_SNDBUF`` at the kernel minimum, reader ``SO_RCVBUF`` 8 kB, the
  options ``send_buffer_bytes=1`` / ``recv_buffer_bytes=8192`` of
  :func:`~sse_sim.real.runner.run_real`) and with the kernel's defaults (autotuned, as a
  production gateway has them). The bytes held, in whole frames, are what
  ``clients.socket_buffer_events`` stands for; on a real network the bandwidth-delay product
  of the path adds to them.
* **gateway costs** (:func:`gateway_costs`): the real gateway on fakeredis or a given Redis, one
  client that reads as fast as it can, and events published one at a time, each once the
  previous one was read (low load): the time from publish to the gateway's reader (the Redis
  hop), from there to the socket (the gateway's per-event cost), and from publish to the
  client's read, as medians and 99th percentiles. Then the same events in one pipeline: the
  gap between the client's reads is the gateway's per-event cost under load, the least a
  client can take per event here (a floor for ``clients.drain_time``).

Every server is on 127.0.0.1 and stopped before the functions return.
"""

from __future__ import annotations

import contextlib
import math
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import SseSimError

__all__ = [
    "SocketHolding",
    "GatewayCosts",
    "Calibration",
    "socket_holding",
    "gateway_costs",
    "calibrate",
    "sse_frame_bytes",
    "RUNNER_SNDBUF",
    "RUNNER_RCVBUF",
    "DEFAULT_PAYLOADS",
]

#: The real runner's socket options (run_real's send_buffer_bytes / recv_buffer_bytes defaults).
RUNNER_SNDBUF = 1
RUNNER_RCVBUF = 8192
#: Payload sizes measured when none are given: a balance update, a notification, a big event.
DEFAULT_PAYLOADS = (130, 450, 20000)

_MAX_HELD_BYTES = 256 << 20  # a writer that is never refused stops here (no kernel holds this)
_SETTLE_S = 0.05  # loopback delivers asynchronously: a refused write is retried after this
_MAX_PAYLOAD = 1 << 20
_MAX_EVENTS = 100_000


def sse_frame_bytes(payload_bytes: int) -> bytes:
    """The bytes the gateway writes for one event of ``payload_bytes``: ``data: ...`` in an HTTP/1.1 chunk."""
    from .gateway.compat import chunk

    return chunk(b"data: " + b"x" * payload_bytes + b"\n\n")


@dataclass(frozen=True)
class SocketHolding:
    """What one loopback TCP connection held for a reader that stopped reading."""

    payload_bytes: int
    frame_bytes: int
    """Bytes on the wire per event (SSE framing and the HTTP chunk header included)."""
    setting: str
    """``runner`` (the real runner's small buffers) or ``defaults`` (the kernel's)."""
    held_bytes: int
    """Bytes the writer handed to the kernel before it refused more."""
    sndbuf_bytes: int
    rcvbuf_bytes: int
    """The effective ``SO_SNDBUF`` / ``SO_RCVBUF`` the kernel reported (it doubles what is asked)."""
    send_queue_bytes: int
    recv_queue_bytes: int
    """Where the bytes were: the writer's send queue (SIOCOUTQ) and the reader's receive queue (SIOCINQ)."""

    @property
    def events(self) -> int:
        """Whole events the sockets held (``clients.socket_buffer_events``)."""
        return self.held_bytes // self.frame_bytes


@dataclass(frozen=True)
class GatewayCosts:
    """The real gateway's per-event times at low load and under a burst, in seconds."""

    backend: str
    events: int
    payload_bytes: int
    hop_p50_s: float
    hop_p99_s: float
    """Publish to the gateway's reader taking the message off Redis."""
    gateway_p50_s: float
    gateway_p99_s: float
    """The gateway's reader to the frame written to the client's socket."""
    end_to_end_p50_s: float
    end_to_end_p99_s: float
    """Publish to the client's read."""
    burst_per_event_s: float
    """Mean gap between the client's reads when the events come in one pipeline."""


@dataclass
class Calibration:
    """Everything ``sse-sim calibrate`` measured, and the scenario fragment made of it."""

    holdings: list[SocketHolding] = field(default_factory=list)
    costs: GatewayCosts | None = None

    def holding(self, payload_bytes: int, setting: str) -> SocketHolding:
        """The measurement for one payload size and setting."""
        for h in self.holdings:
            if h.payload_bytes == payload_bytes and h.setting == setting:
                return h
        raise KeyError((payload_bytes, setting))

    def fragment(self) -> str:
        """A scenario fragment (YAML) of the measurements, the figures behind each value in comments."""
        sizes = sorted({h.payload_bytes for h in self.holdings})
        lines = [f"# sse-sim calibrate on {socket.gethostname()}, {time.strftime('%Y-%m-%d %H:%M')}"]
        if self.costs is not None:
            c = self.costs
            lines += [
                f"# gateway ({c.backend}, {c.events} events of {c.payload_bytes} B, one at a time):",
                f"#   publish -> gateway reader  p50 {_ms(c.hop_p50_s)}, p99 {_ms(c.hop_p99_s)}",
                f"#   gateway reader -> socket   p50 {_ms(c.gateway_p50_s)}, p99 {_ms(c.gateway_p99_s)}",
                f"#   publish -> client read     p50 {_ms(c.end_to_end_p50_s)}, p99 {_ms(c.end_to_end_p99_s)}",
                f"#   in one pipeline: {_ms(c.burst_per_event_s)} per event "
                f"({1 / c.burst_per_event_s:,.0f} events/s to one client)" if c.burst_per_event_s > 0 else
                "#   in one pipeline: too fast to time",
                "redis:",
                f"  hop_latency: {c.hop_p50_s:.6f}        # median publish -> gateway reader",
            ]
        lines.append("clients:")
        if self.costs is not None:
            lines.append(
                f"  # drain_time below {self.costs.burst_per_event_s:.6f} s per event is faster than this "
                "gateway writes to one client"
            )
        if sizes:
            lines.append("  # events the kernel's socket buffers hold for a client that stopped reading:")
            for size in sizes:
                parts = []
                for setting in ("defaults", "runner"):
                    with contextlib.suppress(KeyError):
                        h = self.holding(size, setting)
                        parts.append(
                            f"{setting} {h.events:,} ({h.held_bytes:,} B: send queue {h.send_queue_bytes:,}, "
                            f"receive queue {h.recv_queue_bytes:,})"
                        )
                lines.append(f"  #   {size} B payload: " + "; ".join(parts))
            main = sizes[0] if len(sizes) == 1 else min(sizes, key=lambda s: abs(s - 450))
            with contextlib.suppress(KeyError):
                runner = self.holding(main, "runner")
                lines.append(
                    f"  #   the real runner's buffers (sndbuf {runner.sndbuf_bytes:,} B, rcvbuf "
                    f"{runner.rcvbuf_bytes:,} B) hold {runner.events} of {main} B; its gateway's transport "
                    "adds up to one more, which compare measures end to end"
                )
            try:
                chosen = self.holding(main, "defaults")
            except KeyError:
                chosen = self.holding(main, "runner")
            lines.append(
                f"  socket_buffer_events: {chosen.events}   # {main} B payloads, kernel {chosen.setting}"
            )
        return "\n".join(lines) + "\n"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _queue_bytes(sock: socket.socket, request: int) -> int:
    """SIOCOUTQ / SIOCINQ of a socket (0 where the platform has no such ioctl)."""
    import fcntl
    import struct

    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def socket_holding(payload_bytes: int, setting: str = "runner", *, max_bytes: int = _MAX_HELD_BYTES) -> SocketHolding:
    """Write SSE frames of ``payload_bytes`` over loopback to a reader that never reads, until the kernel refuses more.

    ``setting`` is ``runner`` (writer ``SO_SNDBUF`` 1, i.e. the kernel's minimum, reader
    ``SO_RCVBUF`` 8 kB, set before connecting as the runner's clients do) or ``defaults``.
    """
    if setting not in ("runner", "defaults"):
        raise SseSimError(f"setting must be 'runner' or 'defaults', got {setting!r}")
    if not 1 <= payload_bytes <= _MAX_PAYLOAD:
        raise SseSimError(f"payload size must be 1 .. {_MAX_PAYLOAD} bytes, got {payload_bytes}")
    frame = sse_frame_bytes(payload_bytes)
    listener = socket.socket()
    reader = socket.socket()
    writer: socket.socket | None = None
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        if setting == "runner":
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RUNNER_RCVBUF)
        reader.connect(listener.getsockname())
        writer, _ = listener.accept()
        if setting == "runner":
            writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RUNNER_SNDBUF)
        writer.setblocking(False)
        held = 0
        pending = frame
        while held < max_bytes:
            try:
                sent = writer.send(pending)
            except BlockingIOError:
                # Refused: the kernel may still be moving bytes from the send queue to the
                # receive queue; it holds what it holds once a retry after a pause is refused too.
                time.sleep(_SETTLE_S)
                try:
                    sent = writer.send(pending)
                except BlockingIOError:
                    break
            held += sent
            pending = pending[sent:] or frame
        siocoutq = 0x5411  # TIOCOUTQ == SIOCOUTQ on Linux
        siocinq = 0x541B  # FIONREAD == SIOCINQ
        return SocketHolding(
            payload_bytes=payload_bytes,
            frame_bytes=len(frame),
            setting=setting,
            held_bytes=held,
            sndbuf_bytes=writer.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
            rcvbuf_bytes=reader.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            send_queue_bytes=_queue_bytes(writer, siocoutq),
            recv_queue_bytes=_queue_bytes(reader, siocinq),
        )
    finally:
        for s in (writer, reader, listener):
            if s is not None:
                s.close()


class _FastClient:
    """One SSE client on a raw socket that reads everything as it comes, stamping each event's read."""

    def __init__(self, host: str, port: int, token: str, timeout_s: float) -> None:
        from ..events.wire import SSEParser

        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.parser = SSEParser()
        self.buffer = bytearray()
        self.read_at: dict[int, float] = {}
        self.connected = threading.Event()
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        request = (
            f"GET /gateway/sse/1001/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\nx-auth-token: {token}\r\n\r\n"
        )
        self.sock.sendall(request.encode("latin-1"))
        self.thread = threading.Thread(target=self._run, name="sse_sim-calibrate-client", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from ..events.wire import SSEMessage
        from .payloads import event_id_of

        try:
            head_done = False
            while True:
                data = self.sock.recv(65536)
                now = time.time()
                if not data:
                    return
                self.buffer += data
                if not head_done:
                    end = self.buffer.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    status = bytes(self.buffer[: self.buffer.find(b"\r\n")])
                    if b" 200 " not in status:
                        raise SseSimError(f"the gateway answered {status.decode('latin-1')}")
                    del self.buffer[: end + 4]
                    head_done = True
                for body in self._chunks():
                    for m in self.parser.feed(body):
                        if not isinstance(m, SSEMessage):
                            continue
                        if m.data.startswith('{"type":"connected"'):
                            self.connected.set()
                            continue
                        e = event_id_of(m.data)
                        if e is not None:
                            with self.cond:
                                self.read_at[e] = now
                                self.cond.notify_all()
        except BaseException as exc:  # handed to the measuring thread, which raises it
            self.error = exc
            self.connected.set()
            with self.cond:
                self.cond.notify_all()

    def _chunks(self) -> list[bytes]:
        out = []
        while True:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return out
            size = int(bytes(self.buffer[:end]).split(b";")[0] or b"0", 16)
            if len(self.buffer) < end + 2 + size + 2:
                return out
            out.append(bytes(self.buffer[end + 2 : end + 2 + size]))
            del self.buffer[: end + 2 + size + 2]

    def wait_for(self, events: set[int], timeout_s: float) -> None:
        """Return once every event in ``events`` was read; raise if the client failed or time ran out."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not events.issubset(self.read_at.keys()):
                if self.error is not None:
                    raise SseSimError(f"calibration client: {self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = len(events - self.read_at.keys())
                    raise SseSimError(f"calibration client: {missing} event(s) not read within {timeout_s:g} s")
                self.cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def gateway_costs(
    *,
    events: int = 500,
    payload_bytes: int = 450,
    redis_url: str | None = None,
    timeout_s: float = 10.0,
) -> GatewayCosts:
    """Per-event times of the real gateway (on fakeredis, or the Redis at ``redis_url``) to one fast client.

    ``events`` are published one at a time, each once the client has read the one before, then
    again in one pipeline. ``timeout_s`` bounds every wait (connecting, each event, the burst).
    """
    from .gateway import start_gateway
    from .payloads import build_payload

    if not 10 <= events <= _MAX_EVENTS:
        raise SseSimError(f"events must be 10 .. {_MAX_EVENTS}, got {events}")
    if not 1 <= payload_bytes <= _MAX_PAYLOAD:
        raise SseSimError(f"payload size must be 1 .. {_MAX_PAYLOAD} bytes, got {payload_bytes}")
    backend = "redis" if redis_url is not None else "fakeredis"
    if redis_url is not None:
        _check_redis(redis_url)
    gt = start_gateway(backend=backend, redis_url=redis_url, record_events=True, buffer_size=max(50, events + 1))
    client: _FastClient | None = None
    publisher: Any = None
    try:
        player = 1
        client = _FastClient("127.0.0.1", gt.port, gt.token(player), timeout_s)
        if not client.connected.wait(timeout_s) or client.error is not None:
            raise SseSimError(f"calibration client: no connected event within {timeout_s:g} s ({client.error or 'no answer'})")
        publisher = gt.publisher()
        messages = [build_payload(1001, player, "notification", e, 0, payload_bytes) for e in range(2 * events)]
        published: dict[int, float] = {}
        for e in range(events):
            channel, text = messages[e]
            published[e] = time.time()
            publisher.publish(channel, text)
            client.wait_for({e}, timeout_s)
        burst = list(range(events, 2 * events))
        pipe = publisher.pipeline(transaction=False)
        for e in burst:
            pipe.publish(*messages[e])
        pipe.execute()
        client.wait_for(set(burst), timeout_s + events * 0.01)
        log = {}
        for fate in gt.gateway.event_log():
            from .payloads import event_id_of

            e = event_id_of(fate.raw_message)
            if e is not None and e < events and fate.fate == "sent":
                log[e] = fate
        hop = [log[e].gateway_at - published[e] for e in log]
        gw = [log[e].left_at - log[e].gateway_at for e in log if log[e].left_at is not None]
        end = [client.read_at[e] - published[e] for e in range(events)]
        reads = sorted(client.read_at[e] for e in burst)
        per_event = (reads[-1] - reads[0]) / (len(reads) - 1)
    finally:
        if client is not None:
            client.close()
        if publisher is not None:
            with contextlib.suppress(Exception):
                publisher.close()
        gt.stop()
    return GatewayCosts(
        backend=backend,
        events=events,
        payload_bytes=payload_bytes,
        hop_p50_s=statistics.median(hop),
        hop_p99_s=_quantile(hop, 0.99),
        gateway_p50_s=statistics.median(gw),
        gateway_p99_s=_quantile(gw, 0.99),
        end_to_end_p50_s=statistics.median(end),
        end_to_end_p99_s=_quantile(end, 0.99),
        burst_per_event_s=per_event,
    )


def _check_redis(redis_url: str) -> None:
    """Fail with one line when ``redis_url`` is not a Redis that answers."""
    import redis

    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3) as r:
            r.ping()
    except ValueError as exc:
        raise SseSimError(f"--redis-url {redis_url!r}: {exc}") from None
    except redis.RedisError as exc:
        raise SseSimError(f"--redis-url {redis_url!r}: no Redis answers there ({exc})") from None


def calibrate(
    payload_sizes: tuple[int, ...] | list[int] = DEFAULT_PAYLOADS,
    *,
    events: int = 500,
    redis_url: str | None = None,
    gateway: bool = True,
    timeout_s: float = 10.0,
) -> Calibration:
    """Measure socket buffering for each payload size (runner's buffers and kernel defaults) and, unless ``gateway`` is False, the gateway's costs."""
    sizes = sorted({int(s) for s in payload_sizes})
    if not sizes:
        raise SseSimError("give at least one payload size")
    for s in sizes:
        if not 1 <= s <= _MAX_PAYLOAD:
            raise SseSimError(f"payload size must be 1 .. {_MAX_PAYLOAD} bytes, got {s}")
    if gateway and redis_url is not None:
        _check_redis(redis_url)  # before the socket measurements: a bad URL fails at once
    result = Calibration()
    for size in sizes:
        for setting in ("runner", "defaults"):
            result.holdings.append(socket_holding(size, setting))
    if gateway:
        main = min(sizes, key=lambda s: abs(s - 450))
        result.costs = gateway_costs(events=events, payload_bytes=main, redis_url=redis_url, timeout_s=timeout_s)
    return result
