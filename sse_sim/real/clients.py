"""Real SSE clients for a replay: raw-socket readers that follow the workload's sessions and pace their reads.

One process runs every client of a replay on one asyncio loop (:func:`client_process_main`),
apart from the gateway's process so their CPU time does not delay the gateway's writes.

How a client reads, and why:

* a plain non-blocking TCP socket with a small ``SO_RCVBUF`` (set before ``connect`` so the TCP
  window is negotiated small): kernel buffering is part of what is measured, so it must be
  bounded and known;
* it takes **one HTTP chunk at a time** off the socket (``MSG_PEEK`` finds where the chunk ends,
  then exactly those bytes are consumed): everything else stays in the kernel, where the
  gateway's writer sees it as back-pressure. A reader that pulled 64 KiB at a time would hide a
  hundred events in user space;
* after taking an event it spends the row's drain time (``drain[row] * time_scale``), the same
  sample the simulator draws for that (event, client) row, before reading on: the emulated slow
  device. An event whose first bytes were waiting when the previous drain ended is drained from
  that planned end, so oversleeping one event (or the gateway refilling the socket late with
  the rest of a big one) does not shift every later one; the drain never ends before the
  event's last byte was read. An event the client had to wait for is drained from when it had
  it all. Each receipt keeps the planned and actual instants (see ``RECEIPT_COLUMNS``);
* the event counts as received the row's network latency after its drain ended (again the
  simulator's sample; loopback has none of its own), never before the previous one (TCP order);
* sessions: the first connection of a client is opened and confirmed (``connected``) before the
  replay starts; later ones open at ``connect_at`` and close at ``disconnect_at``, both scaled.
  When the gateway closes a stream itself (policy ``disconnect``) the client retries after
  ``retry_delay_s`` (+ uniform jitter), like an EventSource. A reset that comes while an event
  is being drained loses that event: the drain is the slow link it was still crossing (the
  simulator flushes it with the connection too). A client that is not ``active``
  never opens a stream (a tab past the browser's HTTP/1.1 cap, or a follower tab under
  ``tab_sharing: leader``);
* replay (``stream`` / ``latest`` delivery): like one EventSource across all of a client's
  connections, a reconnect sends ``Last-Event-ID``, the id of the last event read that carried
  an ``id:`` field (none until one was read). The gateway's ``recovery`` system event says how
  many of the data events after it are replayed; the client marks those receipts ``replayed``.
  It keeps the first receipt of each message id (the workload event id in the payload): a
  cached ``latest`` value it already read can come again, and is skipped without a drain.

All instants are ``time.time()`` in the client process; the runner turns them into replay time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..events.wire import SSEMessage, SSEParser
from .payloads import event_id_of

__all__ = ["ClientPlan", "client_process_main", "run_clients", "RECEIPT_COLUMNS", "CONNECTION_COLUMNS"]

_HEADER_LIMIT = 16384
_TCP_CLOSE = 7  # tcpi_state of a connection the peer reset (Linux include/net/tcp_states.h)

#: Columns of the receipts array the client process returns (one row per message read).
#: ``read``: when the client had the whole message; ``done``: when its drain ended;
#: ``received``: when the loop delivered it. The plan it was following, for measuring how late
#: it was: ``ready``, when it turned to the socket for the message (the previous drain was
#: over); ``due``, the drain end it aimed for; ``received_due``, when the network latency should
#: have delivered it. ``done - due`` and ``received - received_due`` are the client's own timer
#: lateness; with the gateway's log they give the drain slip (:func:`sse_sim.real.classify.jitter`).
RECEIPT_COLUMNS = ("client", "event", "connection", "read", "done", "received", "replayed", "ready", "due", "received_due")
#: Columns of the connections array (one row per stream opened). ``last_event`` is the workload
#: event whose id went out as ``Last-Event-ID`` (-1: none sent); ``replay_n`` the ``replayed``
#: count of the gateway's ``recovery`` event (-1: none came).
CONNECTION_COLUMNS = ("client", "session", "port", "open", "connected", "closed", "by_server", "last_event", "replay_n")
_RECEIVED = RECEIPT_COLUMNS.index("received")


@dataclass
class ClientPlan:
    """Everything the client process needs: where to connect, who each client is, when, and how slowly to read."""

    host: str
    node_ports: list[int]
    brand_path: list[int]  # brand id of each client (the URL path)
    tokens: list[str]
    client_node: np.ndarray
    session_offsets: np.ndarray
    connect_at: np.ndarray
    disconnect_at: np.ndarray
    row_off: np.ndarray  # first row of each client (client-major, as the engine lays rows out)
    player_first_event: np.ndarray  # first event id of each client's player
    player_n_events: np.ndarray  # events of each client's player
    drain_s: np.ndarray  # per row
    net_s: np.ndarray  # per row
    time_scale: float = 1.0
    rcvbuf_bytes: int | None = 8192
    retry_delay_s: np.ndarray | float = 3.0  # per client (or one for all): reconnect delay after a close
    retry_jitter_s: float = 0.0
    quiet_s: float = 0.4
    max_tail_s: float = 60.0
    connect_timeout_s: float = 10.0
    seed: int = 0
    active: np.ndarray | None = None  # per client: opens streams at all (None: every client)


@dataclass
class _Results:
    """What the clients saw; lists of plain tuples turned into arrays at the end."""

    receipts: list[list[float]] = field(default_factory=list)  # RECEIPT_COLUMNS
    connections: list[list[float]] = field(default_factory=list)  # CONNECTION_COLUMNS
    errors: list[str] = field(default_factory=list)


class _ConnectionClosed(Exception):
    """The stream ended (EOF or reset)."""


class _Stream:
    """One HTTP/1.1 SSE response read a chunk at a time from a non-blocking socket."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.chunked = True
        self.parser = SSEParser()
        # whether the last chunk's first byte had to be waited for: the event was not there
        # yet when the client turned to it (waits for its later bytes do not count)
        self.waited = False
        self.started = False  # whether a byte of the current chunk has been seen
        # messages of a chunk not handled yet: the first read stops at `connected`, and the
        # same gateway write may carry the `recovery` event and replayed frames after it
        self.pending: list[SSEMessage] = []
        self.replay_left = 0  # data events still to come from the last `recovery`
        self.prev_id: str | None = None  # the parser's last event id before the current message

    def reset(self) -> bool:
        """Whether the gateway has reset the connection (an abort, not an orderly end of the response).

        Read from the TCP state, not from ``recv``: bytes of the next frame may still wait in the
        receive buffer after a reset, and reading them would hide it. An orderly close (FIN)
        leaves the socket in CLOSE_WAIT, a reset in CLOSE.
        """
        tcp_info = getattr(socket, "TCP_INFO", None)
        if tcp_info is None:  # not Linux: a reset shows at the next read instead
            return False
        try:
            state = self.sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0]
        except OSError:
            return True
        return state == _TCP_CLOSE

    async def _readable(self) -> None:
        fut = self.loop.create_future()
        fd = self.sock.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        self.loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            self.loop.remove_reader(fd)

    async def _recv(self, n: int, peek: bool = False) -> bytes:
        for _ in range(10**9):  # bounded: each turn either returns or waits for the socket
            try:
                data = self.sock.recv(n, socket.MSG_PEEK if peek else 0)
            except BlockingIOError:
                if not self.started:
                    self.waited = True
                await self._readable()
                continue
            except OSError:
                data = b""
            if not data:
                raise _ConnectionClosed()
            self.started = True
            return data
        raise _ConnectionClosed()

    async def _recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += await self._recv(n - len(out))
        return bytes(out)

    async def read_head(self) -> int:
        """Consume the response head; return the status code."""
        head = bytearray()
        while True:
            peek = await self._recv(4096, peek=True)
            joined = bytes(head) + peek
            end = joined.find(b"\r\n\r\n")
            if end >= 0:
                head += await self._recv_exact(end + 4 - len(head))
                break
            head += await self._recv_exact(len(peek))
            if len(head) > _HEADER_LIMIT:
                raise _ConnectionClosed()
        lines = bytes(head).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip().lower() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        self.chunked = headers.get("transfer-encoding") == "chunked"
        return status

    async def next_messages(self) -> list[SSEMessage]:
        """Take one chunk (one gateway write) off the socket; the SSE messages it completes."""
        self.started = False
        if self.chunked:
            line = bytearray()
            while True:
                peek = await self._recv(64, peek=True)
                end = peek.find(b"\r\n")
                if end >= 0:
                    line += await self._recv_exact(end + 2)
                    break
                line += await self._recv_exact(len(peek))
            size = int(bytes(line).strip().split(b";")[0] or b"0", 16)
            if size == 0:
                raise _ConnectionClosed()
            data = (await self._recv_exact(size + 2))[:-2]
        else:
            peek = await self._recv(65536, peek=True)
            end = peek.find(b"\n\n")
            data = await self._recv_exact(end + 2 if end >= 0 else len(peek))
        return [m for m in self.parser.feed(data) if isinstance(m, SSEMessage)]


class _Replay:
    """All clients of one replay on one event loop."""

    def __init__(self, plan: ClientPlan, results: _Results) -> None:
        self.plan = plan
        self.results = results
        self.loop = asyncio.get_running_loop()
        self.t0 = math.inf
        self.busy = 0
        self.pending_receipts = 0
        self.last_activity = time.time()
        self.rng = random.Random(plan.seed)
        # per client, across its connections (one EventSource): the Last-Event-ID to send and
        # the workload event that carried it, and the events read (message ids, for dedupe)
        self.last_id: dict[int, str] = {}
        self.last_event: dict[int, int] = {}
        self.seen: dict[int, set[int]] = {}

    # -------------------------------------------------------------- connections

    async def open(self, c: int, s: int) -> tuple[_Stream, int]:
        """Open a stream for client ``c`` in session ``s``; returns it and its connection index."""
        p = self.plan
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if p.rcvbuf_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(p.rcvbuf_bytes))
        sock.setblocking(False)
        last_id = self.last_id.get(c)
        record = [float(c), float(s), -1.0, time.time(), math.nan, math.nan, 0.0, float(self.last_event.get(c, -1)), -1.0]
        self.results.connections.append(record)
        index = len(self.results.connections) - 1
        stream = _Stream(sock, self.loop)
        port = p.node_ports[int(p.client_node[c])]
        try:
            await asyncio.wait_for(self.loop.sock_connect(sock, (p.host, port)), p.connect_timeout_s)
            record[2] = float(sock.getsockname()[1])
            resume = f"Last-Event-ID: {last_id}\r\n" if last_id is not None else ""
            request = (
                f"GET /gateway/sse/{p.brand_path[c]}/stream HTTP/1.1\r\n"
                f"Host: {p.host}:{port}\r\nAccept: text/event-stream\r\n"
                f"x-auth-token: {p.tokens[c]}\r\n{resume}\r\n"
            ).encode("latin-1")
            await self.loop.sock_sendall(sock, request)
            status = await asyncio.wait_for(stream.read_head(), p.connect_timeout_s)
        except (OSError, TimeoutError, _ConnectionClosed) as exc:
            sock.close()
            record[5] = time.time()
            self.results.errors.append(f"client {c}: cannot open a stream: {exc!r}")
            raise _ConnectionClosed() from None
        if status != 200:
            sock.close()
            record[5] = time.time()
            self.results.errors.append(f"client {c}: the gateway answered HTTP {status}")
            raise _ConnectionClosed()
        return stream, index

    def close(self, stream: _Stream, index: int, by_server: bool) -> None:
        record = self.results.connections[index]
        if math.isnan(record[5]):
            record[5] = time.time()
            record[6] = 1.0 if by_server else 0.0
        with contextlib.suppress(OSError):
            # RST rather than FIN: like a browser tab that goes away, and no TIME_WAIT pile-up.
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        stream.sock.close()

    # -------------------------------------------------------------- reading

    async def read(self, c: int, stream: _Stream, index: int, until_connected: bool = False) -> None:
        """Read and pace events until the stream ends (raises _ConnectionClosed) or is cancelled."""
        p = self.plan
        scale = p.time_scale
        row0 = int(p.row_off[c])
        first = int(p.player_first_event[c])
        n_events = int(p.player_n_events[c])
        record = self.results.connections[index]
        seen = self.seen.setdefault(c, set())
        drain_end = 0.0
        last_due = 0.0
        while True:
            ready = time.time()
            stream.waited = False
            if stream.pending:
                messages, stream.pending = stream.pending, []
            else:
                messages = await stream.next_messages()
            arrived_late = stream.waited
            for i, m in enumerate(messages):
                # a message carried an `id:` field when the id in force changed with it
                carried_id = m.id is not None and m.id != stream.prev_id
                stream.prev_id = m.id
                data = m.data
                if data.startswith('{"type"'):
                    system = json.loads(data)
                    kind = system.get("type")
                    if kind == "connected":
                        record[4] = time.time()
                        if until_connected:
                            stream.pending = messages[i + 1 :]
                            return
                    elif kind == "recovery":
                        stream.replay_left = int(system.get("replayed") or 0)
                        record[8] = float(stream.replay_left)
                    elif kind == "error":
                        self.results.errors.append(f"client {c}: gateway error event {data}")
                    continue
                replayed = stream.replay_left > 0
                if replayed:
                    stream.replay_left -= 1
                eid = event_id_of(data)
                if eid is None or not first <= eid < first + n_events:
                    self.results.errors.append(f"client {c}: a message for someone else: {data[:120]}")
                    continue
                if eid in seen:
                    continue  # read before (a cached latest value sent again): no drain, no receipt
                row = row0 + eid - first
                t_read = time.time()
                self.busy += 1
                self.last_activity = t_read
                try:
                    # An event whose first bytes were already waiting is taken when the previous
                    # drain ended, not when the loop got round to it: timer overshoot must not
                    # slow the client. Nor must the gateway's refills of a socket smaller than
                    # the event: on a slow link its later bytes arrive during its drain, and
                    # the drain still ends no earlier than its last byte (t_read).
                    start = t_read if arrived_late or drain_end == 0.0 else min(t_read, drain_end)
                    arrived_late = False
                    drain_end = max(start, drain_end) + float(p.drain_s[row]) * scale
                    delay = drain_end - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if stream.reset():
                        # the gateway cut this stream (policy disconnect) before the drain
                        # ended: the event never got through the slow link, as in the simulator
                        raise _ConnectionClosed()
                finally:
                    self.busy -= 1
                done = time.time()
                self.last_activity = done
                seen.add(eid)
                if carried_id:
                    # read to the end: from now on a reconnect resumes after it
                    self.last_id[c] = str(m.id)
                    self.last_event[c] = eid
                due = max(done + float(p.net_s[row]) * scale, last_due)
                last_due = due
                receipt = [float(c), float(eid), float(index), t_read, done, math.nan, 1.0 if replayed else 0.0, ready, drain_end, due]
                self.results.receipts.append(receipt)
                # the next message of this chunk is taken as soon as this drain is over
                ready = done
                self.pending_receipts += 1
                self.loop.call_at(self.loop.time() + (due - time.time()), self._received, receipt)

    def _received(self, receipt: list[float]) -> None:
        receipt[_RECEIVED] = time.time()
        self.pending_receipts -= 1
        self.last_activity = receipt[_RECEIVED]

    # -------------------------------------------------------------- one client's life

    async def client(self, c: int, first: tuple[_Stream, int] | None) -> None:
        """Follow client ``c``'s sessions: connect, read, close, retry after a server close."""
        p = self.plan
        scale = p.time_scale
        retry_s = float(p.retry_delay_s[c]) if np.ndim(p.retry_delay_s) else float(p.retry_delay_s)
        for s in range(int(p.session_offsets[c]), int(p.session_offsets[c + 1])):
            end_at = float(p.disconnect_at[s])
            end_wall = self.t0 + end_at * scale if math.isfinite(end_at) else math.inf
            opened = first if s == int(p.session_offsets[c]) else None
            open_wall = self.t0 + float(p.connect_at[s]) * scale
            for _attempt in range(100_000):  # bounded: each turn waits at least the retry delay
                if opened is None:
                    await _sleep_until(open_wall)
                    if time.time() >= end_wall:
                        break
                    try:
                        opened = await self.open(c, s)
                    except _ConnectionClosed:
                        opened = None
                        open_wall = time.time() + retry_s * scale
                        continue
                stream, index = opened
                opened = None
                try:
                    timeout = None if not math.isfinite(end_wall) else max(end_wall - time.time(), 0.0)
                    await asyncio.wait_for(self.read(c, stream, index), timeout)
                except TimeoutError:
                    self.close(stream, index, by_server=False)
                    break
                except _ConnectionClosed:
                    self.close(stream, index, by_server=True)
                    delay = retry_s + self.rng.random() * p.retry_jitter_s
                    open_wall = time.time() + delay * scale
                    continue
                except asyncio.CancelledError:
                    self.close(stream, index, by_server=False)
                    raise
            first = None

    async def wait_quiet(self, publishing_done_at: float) -> None:
        """Return once publishing is over and no client has read or received anything for ``quiet_s``."""
        p = self.plan
        deadline = publishing_done_at + p.max_tail_s
        while time.time() < deadline:
            now = time.time()
            if (
                now >= publishing_done_at
                and self.busy == 0
                and self.pending_receipts == 0
                and now - max(self.last_activity, publishing_done_at) >= p.quiet_s
            ):
                return
            await asyncio.sleep(0.05)
        self.results.errors.append(f"the clients were still busy {p.max_tail_s:g} s after publishing ended")


async def _sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_clients(plan: ClientPlan, control: Any) -> _Results:
    """Run every client: connect the first sessions, report ready, replay from t0, stop when quiet.

    ``control`` is the runner's end of a pipe: it receives ``("ready", n)``, then sends
    ``t0`` (wall time of replay time 0) and later the wall time publishing ended.
    """
    results = _Results()
    replay = _Replay(plan, results)
    loop = asyncio.get_running_loop()
    n_clients = int(plan.client_node.size)
    first: dict[int, tuple[_Stream, int]] = {}
    gate = asyncio.Semaphore(64)  # bound the connect burst: the gateway's accept queue is finite

    active = np.ones(n_clients, bool) if plan.active is None else np.asarray(plan.active, bool)

    async def preconnect(c: int) -> None:
        s = int(plan.session_offsets[c])
        if float(plan.connect_at[s]) > 0 or not active[c]:
            return
        async with gate:
            try:
                stream, index = await replay.open(c, s)
                await asyncio.wait_for(replay.read(c, stream, index, until_connected=True), plan.connect_timeout_s)
                first[c] = (stream, index)
            except (_ConnectionClosed, TimeoutError):
                results.errors.append(f"client {c}: no connected event before the start")

    await asyncio.gather(*(preconnect(c) for c in range(n_clients)))
    control.send(("ready", len(first), list(results.errors)))
    t0 = await loop.run_in_executor(None, control.recv)
    if t0 is None:  # the runner gave up
        for stream, index in first.values():
            replay.close(stream, index, by_server=False)
        return results
    replay.t0 = float(t0)
    tasks = [loop.create_task(replay.client(c, first.get(c))) for c in range(n_clients) if active[c]]
    publishing_done_at = await loop.run_in_executor(None, control.recv)
    await replay.wait_quiet(float(publishing_done_at))
    for task in tasks:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for c, out in zip(np.flatnonzero(active), outcomes, strict=True):
        if isinstance(out, BaseException) and not isinstance(out, asyncio.CancelledError):
            results.errors.append(f"client {c}: {out!r}")
    return results


def client_process_main(plan: ClientPlan, control: Any) -> None:
    """Entry point of the client process: run the replay, send the results back as arrays."""
    try:
        results = asyncio.run(run_clients(plan, control))
        control.send(
            (
                "done",
                np.asarray(results.receipts, dtype=np.float64).reshape(-1, len(RECEIPT_COLUMNS)),
                np.asarray(results.connections, dtype=np.float64).reshape(-1, len(CONNECTION_COLUMNS)),
                results.errors,
            )
        )
    except BaseException as exc:  # reported to the runner, which raises it
        with contextlib.suppress(Exception):
            control.send(("failed", repr(exc)))
        raise
    finally:
        control.close()
