"""The simulation engine (the ``sim`` backend): array stages, no wall clock, no I/O.

Each client is an independent queue, so the engine walks one client at a time through its
player's events in publish order (a numba-compiled loop). Per client it models:

* the Redis hop: an event reaches the gateway ``hop_latency`` after publish, never before the
  previous one (one TCP stream per subscriber keeps order);
* optionally the node's shared subscriber and Redis's output-buffer limit (a stage per node
  that runs before the clients, in :mod:`sse_sim.node_stage`);
* subscription gaps and disconnect windows from the workload's sessions;
* the per-connection buffer: ``buffer_size`` events wait, ``1 + socket_buffer_events`` more
  are in flight (being written and held by socket buffers), the client drains them one at a
  time in FIFO order; so K = buffer_size + 1 in M/M/1/K terms when socket buffers are ignored;
* optionally the same in bytes: the socket buffers hold ``socket_buffer_bytes`` of framed
  events beyond the one being read, the queue ``gateway.buffer_bytes`` (see
  :func:`gateway_params` for how they combine with the caps in events);
* the overflow policies ``drop_newest``, ``drop_oldest`` and ``disconnect``;
* the shared reader's yielding: when several events reach a connection at the same instant
  the writer can take the next one only each ``reader_yield_every`` events.

The walk takes three structures: :class:`WalkInputs` (the arrays it reads),
:class:`GatewayParams` (the scalars of the gateway model) and :class:`WalkOutputs` (the
per-row arrays it fills). Random numbers are drawn with numpy from named streams before the
loop; the few the loop needs on the fly (reconnect delays after a slow-client disconnect) come
from a counter-based hash, so the loop has no random state of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numba
import numpy as np

from .node_stage import node_arrivals
from .records import DeliveryRows, row_layout
from .replay_walk import LATEST, MODE_CODES, PUBSUB, STREAM, walk_replay, walk_replay_bytes
from .scenario import HTTP1_CONNECTIONS_PER_ORIGIN, Scenario
from .walk_steps import (
    DISCONNECTED_SLOW,
    LOST_CONNECTION_LIMIT,
    LOST_DISCONNECTED,
    LOST_IN_BUFFER,
    LOST_REDIS_OUTPUT_LIMIT,
    POLICY_CODES,
    advance,
    fits_in_flight,
    flush,
    framed,
    overflow,
    queue_accepts,
    reconnect_at,
    session_at,
    take_queued,
    wrap,
    writer_may_take,
)
from .workload import (
    SSE_FRAME_BYTES,
    Workload,
    sample_row_times,
    slow_client_retry_s,
    stream_key,
    stream_rng,
)

# Size of the table that reconnects after a slow-client disconnect draw their subscribe
# latency from (a bootstrap of the scenario's distribution).
_SUB_TABLE = 4096

# A byte cap that is not set: larger than any sum of framed bytes, and no int64 overflow when
# one event's bytes are added to it.
NO_BYTE_CAP = 2**62


class WalkInputs(NamedTuple):
    """The arrays the walk reads: row layout, workload events and sessions, per-row samples."""

    row_off: np.ndarray  # rows of client c are row_off[c]:row_off[c + 1], in publish order
    event_id: np.ndarray  # per row: the event it carries
    published_at: np.ndarray  # per event
    hop: np.ndarray  # per event: Redis to gateway latency
    node_read_at: np.ndarray  # per row: read by the node's subscriber (empty: no node stage)
    node_lost: np.ndarray  # per row: Redis dropped it with the node's subscriber
    sess_off: np.ndarray  # sessions of client c are sess_off[c]:sess_off[c + 1]
    sess_sub: np.ndarray  # per session: subscription active from
    sess_dis: np.ndarray  # per session: connection closed at (inf: stays open)
    drain: np.ndarray  # per row: time the client takes to read it
    net: np.ndarray  # per row: network latency from gateway to client
    sub_table: np.ndarray  # subscribe latencies for reconnects after a slow-client cut
    client_retry: np.ndarray  # per client: reconnect delay after a slow-client cut
    payload_bytes: np.ndarray  # per event: JSON payload, without the SSE framing (read only under a byte cap)


class GatewayParams(NamedTuple):
    """The scalars of the gateway model the walk applies to every connection."""

    buffer_size: int  # events waiting in the per-connection queue
    inflight_cap: int  # 1 + socket_buffer_events: taken by the writer, not yet read (see gateway_params)
    policy: int  # overflow policy, a value of POLICY_CODES
    yield_every: int  # reader_yield_every (0: the writer waits for the end of a same-instant run)
    retry_jitter_s: float  # uniform jitter added to it
    reconnect_key: np.uint64  # counter-based random key for those reconnects
    client_base: int  # global index of the walk's first client: keys those draws to the client, not the block
    socket_buffer_bytes: int  # framed bytes in flight beyond the event being read (NO_BYTE_CAP: none)
    buffer_bytes: int  # framed bytes queued per connection (NO_BYTE_CAP: none)

    @property
    def use_bytes(self) -> bool:
        """Whether a byte cap applies, so the walks account bytes (their second compiled form)."""
        return self.socket_buffer_bytes < NO_BYTE_CAP or self.buffer_bytes < NO_BYTE_CAP


class ReplayParams(NamedTuple):
    """What the walk needs under ``stream`` or ``latest`` delivery (see :mod:`sse_sim.replay_walk`)."""

    ev_mode: np.ndarray  # per event: PUBSUB, STREAM or LATEST of its event type
    ev_type: np.ndarray  # per event: event type code
    ev_scount: np.ndarray  # per event: stream entries of its player up to and including it
    has_stream: bool  # some event type is under stream delivery
    n_latest: int  # event types under latest delivery
    n_types: int  # event types in the workload
    history_size: int  # entries kept per player stream
    history_ttl_s: float  # entries older than this are trimmed (inf: no TTL)
    max_replay: int  # most entries replayed on one reconnect
    end_s: float  # end of the run: no (re)subscription is served after it
    replayed: np.ndarray  # per row, filled: sent on a reconnect rather than live


class WalkOutputs(NamedTuple):
    """The per-row arrays the walk fills (see :class:`~sse_sim.records.DeliveryRows`)."""

    outcome: np.ndarray  # Outcome code
    gateway_at: np.ndarray  # reached the connection (NaN if it never did)
    left_at: np.ndarray  # left buffer or flight: drained, evicted or flushed
    received_at: np.ndarray  # read by the client
    session_id: np.ndarray  # index of the session, -1 if none


@numba.njit(cache=True, inline="always")
def _walk_clients(inp, gw, out, c_lo, c_hi, use_bytes):  # pragma: no cover - jitted
    """Walk clients ``c_lo:c_hi``, each through its rows in publish order and its connection's buffer.

    Fills ``out`` (a :class:`WalkOutputs`) for those clients' rows: outcome, gateway_at
    (reached the connection), left_at (left buffer or flight: drained, evicted or flushed),
    received_at and session_id (index of the session, -1 if none). Returns the greatest number
    of events held by any connection at once. ``use_bytes`` is a constant of each compiled
    form (:func:`_walk`, :func:`_walk_bytes`): with it the byte caps apply.
    """
    # unpacked once per call, not per client or row (see the note above the helpers); row and
    # event indices read as unsigned: numba indexes with them directly, without the check for a
    # negative index (Python's wrap-around) it adds for a signed one
    row_off = inp.row_off.view(np.uint64)
    event_id = inp.event_id.view(np.uint64)
    published_at = inp.published_at
    hop = inp.hop
    node_read_at = inp.node_read_at
    node_lost = inp.node_lost
    sess_off = inp.sess_off
    sess_sub = inp.sess_sub
    sess_dis = inp.sess_dis
    drain = inp.drain
    net = inp.net
    sub_table = inp.sub_table
    nbytes = inp.payload_bytes
    outcome = out.outcome
    gateway_at = out.gateway_at
    left_at = out.left_at
    received_at = out.received_at
    session_id = out.session_id
    buffer_size = gw.buffer_size
    inflight_cap = gw.inflight_cap
    policy = gw.policy
    yield_every = gw.yield_every
    sock_cap = gw.socket_buffer_bytes
    q_cap = gw.buffer_bytes
    use_node = node_read_at.size > 0
    # one connection's ring buffers, reused from client to client; rows as unsigned indices too
    wait = np.empty(buffer_size, np.uint64)  # rows queued
    flight = np.empty(inflight_cap, np.uint64)  # rows taken by the writer
    max_held = 0
    for c in range(c_lo, c_hi):
        r0 = row_off[c]
        r1 = row_off[c + 1]
        if r1 == r0:
            continue
        # when rows reach the gateway is worked out one row ahead, in this loop rather than a
        # pass of its own: the writer looks at the next row's instant (step 5)
        p_next = published_at[event_id[r0]]
        if use_node:
            arr_next = node_read_at[r0]
        else:
            arr_next = p_next + hop[event_id[r0]]
        prev_arr = arr_next if arr_next == arr_next else -np.inf
        s = sess_off[c]
        s_end = sess_off[c + 1]
        w_head = 0
        n_wait = 0
        f_head = 0
        n_flight = 0
        head_done = np.inf
        last_recv = -np.inf
        fl_bytes = 0  # framed bytes in flight beyond the event being read
        q_bytes = 0  # framed bytes queued
        conn = -1
        last_sess = -1
        conn_end = np.inf
        down_until = -np.inf  # after a slow-client disconnect: no subscription until then
        cut_at = -np.inf  # when the gateway last closed this client for being slow
        n_cuts = 0
        run_pos = 0
        for r in range(r0, r1):
            p = p_next
            arr = arr_next
            gateway_at[r] = arr
            r_next = r + np.uint64(1)
            if r_next < r1:
                e_next = event_id[r_next]
                p_next = published_at[e_next]
                if use_node:
                    arr_next = node_read_at[r_next]
                else:
                    arr_next = p_next + hop[e_next]
                # one TCP stream per subscriber keeps order; an event lost at the node (NaN)
                # holds nothing back
                if arr_next < prev_arr:
                    arr_next = prev_arr
                if arr_next == arr_next:
                    prev_arr = arr_next
            else:
                arr_next = np.nan
            if conn >= 0 and arr < conn_end and p < conn_end and not (use_node and node_lost[r]):
                # the connection is open and stays open past this row's arrival, and the row was
                # published no earlier than the one that opened it (rows come in publish order),
                # so while subscribed: steps 1 to 3 come to this (most rows)
                session_id[r] = conn
            else:
                # 1. the connection holding queued events closed before this arrival: drain what
                #    finishes before the close, flush the rest.
                t_now = arr if arr == arr else p
                if conn >= 0 and conn_end <= t_now:
                    f_head, n_flight, w_head, n_wait, head_done, last_recv, fl_bytes, q_bytes = advance(
                        conn_end, flight, wait, f_head, n_flight, w_head, n_wait, head_done,
                        last_recv, drain, net, outcome, left_at, received_at,
                        use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
                    )
                    flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
                    n_flight = 0
                    n_wait = 0
                    fl_bytes = 0
                    q_bytes = 0
                    head_done = np.inf
                    conn = -1
                    last_recv = -np.inf
                # 2. Redis dropped it with the node's subscriber
                if use_node and node_lost[r]:
                    outcome[r] = LOST_REDIS_OUTPUT_LIMIT
                    gateway_at[r] = np.nan
                    session_id[r] = -1
                    continue
                # 3. subscription active at publish time?
                s = session_at(sess_dis, s, s_end, p)
                if s >= s_end or sess_sub[s] > p or p < down_until:
                    if p <= cut_at and s < s_end and sess_sub[s] <= p:
                        # published while subscribed, still on its way when the gateway closed the
                        # slow connection: lost with the connection, not for want of a subscription
                        outcome[r] = LOST_IN_BUFFER
                        session_id[r] = s
                        continue
                    outcome[r] = LOST_DISCONNECTED
                    gateway_at[r] = np.nan
                    session_id[r] = -1
                    continue
                if conn != s:
                    # a new session is a new TCP stream; after a slow-client cut the client reconnects
                    # only once it has read the close, i.e. after everything sent before it
                    if s != last_sess:
                        last_recv = -np.inf
                    conn = s
                    last_sess = s
                    conn_end = sess_dis[s]
                session_id[r] = s
                if conn_end <= arr:
                    # subscribed at publish, but the connection closed before the event got there
                    outcome[r] = LOST_IN_BUFFER
                    continue
            # 4. deliver everything the client finished reading by now
            f_head, n_flight, w_head, n_wait, head_done, last_recv, fl_bytes, q_bytes = advance(
                arr, flight, wait, f_head, n_flight, w_head, n_wait, head_done,
                last_recv, drain, net, outcome, left_at, received_at,
                use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
            )
            # 5. may the writer take from the queue after this event? (reader yields)
            can_start, run_pos = writer_may_take(arr_next == arr, run_pos, yield_every)
            # 6. enqueue, or apply the overflow policy
            b = framed(nbytes, event_id, r) if use_bytes else 0
            if can_start and n_wait == 0 and n_flight < inflight_cap and fits_in_flight(use_bytes, n_flight, fl_bytes, b, sock_cap):
                # nothing queued and a free slot: the writer takes it at once (most rows)
                flight[np.uint64(wrap(f_head + n_flight, inflight_cap))] = r
                n_flight += 1
                if n_flight == 1:
                    head_done = arr + drain[r]
                elif use_bytes:
                    fl_bytes += b
            elif queue_accepts(use_bytes, n_wait, buffer_size, q_bytes, b, q_cap):
                wait[np.uint64(wrap(w_head + n_wait, buffer_size))] = r
                n_wait += 1
                q_bytes += b
            else:
                w_head, n_wait, q_bytes, cut = overflow(
                    r, arr, wait, w_head, n_wait, policy, outcome, left_at, use_bytes, nbytes, event_id, q_bytes, q_cap
                )
                if cut:
                    flush(flight, f_head, n_flight, wait, w_head, n_wait, DISCONNECTED_SLOW, arr, outcome, left_at)
                    n_flight = 0
                    n_wait = 0
                    fl_bytes = 0
                    q_bytes = 0
                    head_done = np.inf
                    down_until = reconnect_at(arr, gw.client_base + c, n_cuts, inp.client_retry[c], sub_table, gw)
                    cut_at = arr
                    n_cuts += 1
                    conn = -1
                    continue
            if can_start:
                idle = n_flight == 0
                n_flight, w_head, n_wait, fl_bytes, q_bytes = take_queued(
                    flight, wait, f_head, n_flight, w_head, n_wait,
                    use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
                )
                if idle and n_flight > 0:
                    head_done = arr + drain[flight[f_head]]
            held = n_flight + n_wait
            if held > max_held:
                max_held = held
        # end of the run: the last connection stays open unless it was scripted to close
        f_head, n_flight, w_head, n_wait, head_done, last_recv, fl_bytes, q_bytes = advance(
            conn_end, flight, wait, f_head, n_flight, w_head, n_wait, head_done,
            last_recv, drain, net, outcome, left_at, received_at,
            use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
        )
        flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
    return max_held


@numba.njit(cache=True)
def _walk(inp, gw, out, c_lo, c_hi):  # pragma: no cover - jitted
    """The pub/sub walk without byte caps (see :func:`_walk_clients`): no byte is counted."""
    return _walk_clients(inp, gw, out, c_lo, c_hi, False)


@numba.njit(cache=True)
def _walk_bytes(inp, gw, out, c_lo, c_hi):  # pragma: no cover - jitted
    """The pub/sub walk under ``socket_buffer_bytes`` or ``gateway.buffer_bytes`` (see :func:`_walk_clients`)."""
    return _walk_clients(inp, gw, out, c_lo, c_hi, True)


def run_engine(
    scenario: Scenario,
    w: Workload,
    progress: Callable[[int], None] | None = None,
    *,
    walk: Literal["auto", "replay"] = "auto",
    node_reads: tuple[np.ndarray, np.ndarray] | None = None,
    drain_extra: np.ndarray | None = None,
) -> DeliveryRows:
    """Simulate every (event, client) delivery attempt of a workload under a scenario's gateway.

    ``progress``, if given, is called with the number of rows just simulated, in chunks of
    clients (for a progress bar); the result does not depend on it. ``walk="replay"`` takes the
    stream/latest walk even when every event type is under pub/sub, where it gives the same
    rows as the plain walk (a test checks it). ``node_reads`` gives, per row, when the node's
    subscriber read the event and whether Redis dropped it, for a block of a larger run whose
    node stage ran over the whole run (:mod:`sse_sim.blocks`); without it the stage runs here.
    ``drain_extra`` adds, per row, seconds to the client's drain (``compare`` replays a real
    run's measured drain slips with it).
    """
    row_off, event_id, client_id = row_layout(w.player_offsets, w.clients_per_player)
    n_rows = event_id.size
    drain, net = sample_row_times(scenario, w, row_off, event_id, client_id)
    if drain_extra is not None:
        drain = np.maximum(drain + drain_extra, 0.0).astype(drain.dtype)
    if node_reads is not None:
        node_read_at, node_lost = node_reads
    elif scenario.redis.output_buffer is not None:
        node_read_at, node_lost = node_arrivals(scenario, w, event_id, client_id)
    else:
        node_read_at = np.empty(0, np.float64)
        node_lost = np.empty(0, np.bool_)
    sub_table = scenario.redis.subscribe_latency.sample(stream_rng(w.seed, "reconnect"), _SUB_TABLE)
    inp = WalkInputs(
        row_off=row_off,
        event_id=event_id,
        published_at=w.published_at,
        hop=w.hop_latency_s,
        node_read_at=node_read_at,
        node_lost=node_lost,
        sess_off=w.session_offsets,
        sess_sub=w.subscribed_at,
        sess_dis=w.disconnect_at,
        drain=drain,
        net=net,
        sub_table=sub_table,
        client_retry=slow_client_retry_s(scenario, w),
        payload_bytes=w.payload_bytes,
    )
    gw = gateway_params(scenario, w, row_off)
    out = WalkOutputs(
        outcome=np.empty(n_rows, np.int8),
        gateway_at=np.empty(n_rows, np.float64),
        left_at=np.full(n_rows, np.nan),
        received_at=np.full(n_rows, np.nan),
        session_id=np.empty(n_rows, np.int32),
    )
    rp = replay_params(scenario, w, n_rows, always=walk == "replay")
    n_clients = w.n_clients
    step = n_clients if progress is None else max(n_clients // 50, 1)
    for c_lo in range(0, n_clients, step):
        c_hi = min(c_lo + step, n_clients)
        if rp is None:
            (_walk_bytes if gw.use_bytes else _walk)(inp, gw, out, c_lo, c_hi)
        else:
            (walk_replay_bytes if gw.use_bytes else walk_replay)(inp, gw, rp, out, c_lo, c_hi)
        if progress is not None:
            progress(int(row_off[c_hi] - row_off[c_lo]))
    _browser_connections(scenario, w, row_off, client_id, out, None if rp is None else rp.replayed)
    return DeliveryRows(
        event_id=event_id,
        client_id=client_id,
        outcome=out.outcome,
        gateway_at=out.gateway_at,
        left_at=out.left_at,
        received_at=out.received_at,
        session_id=out.session_id,
        replayed=None if rp is None else rp.replayed,
    )


def gateway_params(scenario: Scenario, w: Workload, row_off: np.ndarray) -> GatewayParams:
    """The gateway model's scalars for a workload, with the caps in events and in bytes combined.

    In flight: the event being read always takes one slot. Beyond it the socket buffers hold
    ``clients.socket_buffer_events`` events, or with ``clients.socket_buffer_bytes`` the events
    whose framed bytes fit in it; with both, both apply and the writer stops at whichever it
    reaches first. ``socket_buffer_events: 0`` (its default) with ``socket_buffer_bytes`` means
    no cap in events: the bytes alone decide. The queue: ``gateway.buffer_size`` events and,
    with ``gateway.buffer_bytes``, at most that many framed bytes (an empty queue takes any one
    event), as the real gateway's ``max_queue_bytes``.
    """
    g = scenario.gateway
    cl = scenario.clients
    inflight_cap = 1 + int(cl.socket_buffer_events)
    if cl.socket_buffer_bytes is not None:
        # the flight ring's size: as many events as the bytes can hold, at the workload's
        # smallest, and never more than a client has rows
        smallest = int(w.payload_bytes.min()) + SSE_FRAME_BYTES if w.payload_bytes.size else 1
        most_rows = int(np.diff(row_off).max()) if row_off.size > 1 else 0
        by_bytes = 1 + min(int(cl.socket_buffer_bytes) // smallest, most_rows)
        inflight_cap = by_bytes if cl.socket_buffer_events == 0 else min(inflight_cap, by_bytes)
    return GatewayParams(
        buffer_size=int(g.buffer_size),
        inflight_cap=inflight_cap,
        policy=int(POLICY_CODES[g.overflow_policy]),
        yield_every=int(g.reader_yield_every),
        retry_jitter_s=float(scenario.disconnects.retry_jitter_s),
        reconnect_key=stream_key(w.seed, "reconnect_delay"),
        client_base=int(w.client_base),
        socket_buffer_bytes=NO_BYTE_CAP if cl.socket_buffer_bytes is None else int(cl.socket_buffer_bytes),
        buffer_bytes=NO_BYTE_CAP if g.buffer_bytes is None else int(g.buffer_bytes),
    )


def _browser_connections(scenario: Scenario, w: Workload, row_off, client_id, out: WalkOutputs, replayed) -> None:
    """Apply how a player's tabs reach the gateway: one shared connection, or the HTTP/1.1 cap.

    With ``tab_sharing: leader`` the first tab's connection serves them all (a leader tab fans
    events out to the others by BroadcastChannel), so every tab gets what the leader got, when
    it got it, and the other tabs' own sessions play no part. Without it, over HTTP/1.1 a
    browser opens at most six connections to the origin: a seventh tab's stream never opens and
    its events are ``lost_connection_limit``.
    """
    cpp = w.clients_per_player
    cl = scenario.clients
    if cpp == 1:
        return
    tab = client_id % cpp
    if cl.tab_sharing == "leader":
        rows = np.flatnonzero(tab > 0)
        cid = client_id[rows]
        leader = rows - tab[rows] * (row_off[cid + 1] - row_off[cid])
        for arr in (*out, replayed):
            if arr is not None:
                arr[rows] = arr[leader]
    elif cl.http_version == "1.1" and cpp > HTTP1_CONNECTIONS_PER_ORIGIN:
        rows = tab >= HTTP1_CONNECTIONS_PER_ORIGIN
        out.outcome[rows] = LOST_CONNECTION_LIMIT
        out.gateway_at[rows] = np.nan
        out.left_at[rows] = np.nan
        out.received_at[rows] = np.nan
        out.session_id[rows] = -1
        if replayed is not None:
            replayed[rows] = False


def replay_params(scenario: Scenario, w: Workload, n_rows: int, always: bool = False) -> ReplayParams | None:
    """The replay walk's inputs, or None when every event type is under pub/sub (the plain walk) unless ``always``."""
    d = scenario.delivery
    modes = np.array([MODE_CODES[d.mode_of(t)] for t in w.event_types] or [PUBSUB], np.int8)
    if not always and not (modes != PUBSUB).any():
        return None
    ev_mode = modes[w.event_type_code]
    is_stream = (ev_mode == STREAM).astype(np.int64)
    cum = np.cumsum(is_stream)
    # entries of the player's stream up to and including each event (events are grouped by player)
    before = np.concatenate(([0], cum))[w.player_offsets[:-1]]
    ev_scount = cum - np.repeat(before, np.diff(w.player_offsets))
    return ReplayParams(
        ev_mode=ev_mode,
        ev_type=w.event_type_code.astype(np.int64),
        ev_scount=ev_scount,
        has_stream=bool(is_stream.any()),
        n_latest=int((modes == LATEST).sum()),
        n_types=int(modes.size),
        history_size=int(d.history_size),
        history_ttl_s=float(d.history_ttl_s) if d.history_ttl_s is not None else np.inf,
        max_replay=int(d.max_replay),
        end_s=float(w.duration_s),
        replayed=np.zeros(n_rows, np.bool_),
    )


__all__ = ["run_engine", "replay_params", "gateway_params", "NO_BYTE_CAP", "POLICY_CODES", "WalkInputs", "GatewayParams", "WalkOutputs", "ReplayParams"]
