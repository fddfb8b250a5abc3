"""From a real run's logs to one outcome per (event, client) row, by the simulator's definitions.

The runner hands over what each side saw: the clients' receipts and connections (see
:data:`~sse_sim.real.clients.RECEIPT_COLUMNS` and :data:`~sse_sim.real.clients.CONNECTION_COLUMNS`),
the gateway's event log per node, and the shared subscribers' reconnects. :func:`classify` turns
them into :class:`~sse_sim.records.DeliveryRows`:

* the client read it: ``delivered`` (``replayed`` when it came among the frames a ``recovery``
  event announced);
* the gateway logged it on one of the client's connections: ``dropped_overflow`` (dropped or
  evicted), ``lost_in_buffer`` (queued when the connection went, or written to the socket and
  never read because the client closed first), ``disconnected_slow``, ``superseded`` (a newer
  value of its ``latest`` type took its place in the queue);
* frames written to a stream the gateway then cut for being slow (policy ``disconnect``) and
  never read: ``disconnected_slow`` (the cut resets the connection, which discards what the
  sockets held, like the simulator's in-flight events);
* the gateway never had it for the client: ``lost_disconnected`` when the client had no
  confirmed stream at publish time (no connection, or before its ``connected`` event, or
  after the gateway cut it for being slow); ``lost_in_buffer`` when it was published before
  such a cut and was on its way to the gateway;
  ``lost_redis_output_limit`` when it did but the shared subscriber reconnected after the
  publish (Redis closed it), or when the node's subscription was down at publish time (the
  client's stream, ended by the gateway's loss notice, may not have been back either); ``lost_in_buffer`` when the stream closed before the event could
  reach the gateway. Anything else is counted as unexplained.

Then, at each connection's subscription (its ``connected`` instant), in order, what the
simulator's replay walk (:mod:`sse_sim.replay_walk`) decides there:

* ``stream`` rows after the event the client's ``Last-Event-ID`` named, published before the
  subscription and not read: if the gateway sent them on this connection or a later one their
  fate there stands, else they were not replayed: ``lost_history_expired``;
* ``latest`` rows published before the subscription, newer than the last value of their type
  the client had read: the newest is the cached value the gateway sends; the older ones are
  ``superseded``.

Last, the browser's part: under ``tab_sharing: leader`` every tab gets the leader tab's rows; over
HTTP/1.1 a tab past the sixth is ``lost_connection_limit`` (the runner never opened its stream).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import SseSimError
from ..outcomes import Outcome
from ..records import DeliveryRows
from ..scenario import HTTP1_CONNECTIONS_PER_ORIGIN, Scenario
from ..workload import SSE_FRAME_BYTES, Workload
from .clients import RECEIPT_COLUMNS
from .payloads import event_id_of

__all__ = ["classify", "jitter", "JITTER_KEYS", "socket_held", "log_event_ids", "active_clients", "delivery_modes", "PUBSUB", "STREAM", "LATEST"]

#: Delivery mode codes per event (the replay walk's, kept here: real mode never imports the engine).
PUBSUB, STREAM, LATEST = 0, 1, 2
_MODE_CODES = {"pubsub": PUBSUB, "stream": STREAM, "latest": LATEST}

# How long after publishing an event a connection that closed is still "racing" it: a close in
# that window explains an event the gateway never queued (it was on its way from Redis).
_CLOSE_RACE_S = 0.05

_FATES = {
    "sent": Outcome.LOST_IN_BUFFER,  # written to the socket, never read: the client closed first
    "dropped_overflow": Outcome.DROPPED_OVERFLOW,
    "evicted": Outcome.DROPPED_OVERFLOW,
    "lost_in_buffer": Outcome.LOST_IN_BUFFER,
    "disconnected_slow": Outcome.DISCONNECTED_SLOW,
    "superseded": Outcome.SUPERSEDED,
}

# columns of the clients' arrays (see sse_sim.real.clients)
_C_CLIENT, _C_SESSION, _C_PORT, _C_OPEN, _C_CONNECTED, _C_CLOSED, _C_BY_SERVER, _C_LAST_EVENT = range(8)


def delivery_modes(sc: Scenario, w: Workload) -> np.ndarray:
    """Per event, the delivery mode code (PUBSUB, STREAM, LATEST) of its event type."""
    modes = np.array([_MODE_CODES[sc.delivery.mode_of(t)] for t in w.event_types] or [PUBSUB], np.int8)
    return modes[w.event_type_code]


def active_clients(sc: Scenario, w: Workload) -> np.ndarray:
    """Per client, whether its browser opens a stream for it: not a follower tab, not past the HTTP/1.1 cap."""
    cpp = w.clients_per_player
    tab = np.arange(w.n_clients) % cpp
    if cpp > 1 and sc.clients.tab_sharing == "leader":
        return tab == 0
    if cpp > 1 and sc.clients.http_version == "1.1":
        return tab < HTTP1_CONNECTIONS_PER_ORIGIN
    return np.ones(w.n_clients, bool)


def log_event_ids(raw: dict[str, Any]) -> list[list[int | None]]:
    """The workload event id of each entry of each gateway node's fate log (None: a message carrying none).

    Parsed once per run: :func:`classify` and :func:`socket_held` both walk the logs, and a
    large run's logs hold millions of JSON messages.
    """
    return [[event_id_of(entry.raw_message) for entry in log] for log in raw["event_logs"]]


def classify(
    sc: Scenario,
    w: Workload,
    raw: dict[str, Any],
    row_off: np.ndarray,
    event_id: np.ndarray,
    client_id: np.ndarray,
    scale: float,
    ids: list[list[int | None]] | None = None,
) -> tuple[DeliveryRows, np.ndarray, int]:
    """Per-row outcome, instants and replayed flag of a real run, in replay time; also the publish instants and the unexplained count.

    ``ids``: :func:`log_event_ids` of ``raw``, when the caller already has them.
    """
    if ids is None:
        ids = log_event_ids(raw)
    t0 = raw["t0"]
    cpp = w.clients_per_player
    first_event = w.player_offsets[np.arange(w.n_clients) // cpp]
    n_rows = event_id.size
    published = (np.asarray(raw["published_wall"], dtype=np.float64) - t0) / scale
    if np.isnan(published).any():
        raise SseSimError("real run: some events were never published")
    outcome = np.full(n_rows, -1, np.int8)
    gateway_at = np.full(n_rows, np.nan)
    left_at = np.full(n_rows, np.nan)
    received_at = np.full(n_rows, np.nan)
    session_id = np.full(n_rows, -1, np.int32)
    replayed = np.zeros(n_rows, np.bool_)
    # per row: the connection (index into conns) that read it, and the last one the gateway
    # logged a fate for it on (-1: none); connections are numbered in the order they opened
    recv_conn = np.full(n_rows, -1, np.int64)
    fate_conn = np.full(n_rows, -1, np.int64)

    conns = raw["connections"]
    conn_client = conns[:, _C_CLIENT].astype(np.int64)
    conn_session = conns[:, _C_SESSION].astype(np.int32)
    conn_connected = (conns[:, _C_CONNECTED] - t0) / scale
    conn_closed = (conns[:, _C_CLOSED] - t0) / scale
    conn_closed = np.where(np.isnan(conn_closed), np.inf, conn_closed)

    def row_of(c: int, e: int) -> int:
        return int(row_off[c] + e - first_event[c])

    # 1. receipts
    for c, e, k, _read, done, recv, rep in np.asarray(raw["receipts"], dtype=np.float64)[:, :7]:
        r = row_of(int(c), int(e))
        outcome[r] = Outcome.DELIVERED
        left_at[r] = (done - t0) / scale
        received_at[r] = (recv - t0) / scale
        session_id[r] = conn_session[int(k)]
        replayed[r] = bool(rep)
        recv_conn[r] = int(k)

    # 2. the gateway's fates, per connection
    by_port: dict[int, list[int]] = {}
    for k in range(conns.shape[0]):
        by_port.setdefault(int(conns[k, _C_PORT]), []).append(k)
    # per client connection the gateway cut for being slow (policy disconnect): when it did
    cut_at = np.full(conns.shape[0], np.inf)
    unread_sent: list[tuple[int, int]] = []  # (row, connection) of frames written and never read
    for node, log in enumerate(raw["event_logs"]):
        peers = raw["peers"][node]
        conn_of: dict[int, int] = {}
        for entry, e in zip(log, ids[node], strict=True):
            k = conn_of.get(entry.connection_id)
            if k is None:
                k = _match_connection(peers.get(entry.connection_id), by_port, conns, w.client_node, node)
                conn_of[entry.connection_id] = k
            if k < 0:
                continue
            c = int(conn_client[k])
            if e is None:
                continue
            r = row_of(c, e)
            if np.isnan(gateway_at[r]) or k >= fate_conn[r]:
                gateway_at[r] = (entry.gateway_at - t0) / scale
            fate_conn[r] = max(fate_conn[r], k)
            if outcome[r] == Outcome.DELIVERED:
                continue
            outcome[r] = _FATES[entry.fate]
            session_id[r] = conn_session[k]
            if entry.fate == "dropped_overflow":
                left_at[r] = np.nan
            elif entry.fate == "sent":
                left_at[r] = conn_closed[k]
                unread_sent.append((r, k))
            else:
                left_at[r] = (entry.left_at - t0) / scale if entry.left_at is not None else np.nan
            if entry.fate == "disconnected_slow" and entry.left_at is not None:
                cut_at[k] = min(cut_at[k], (entry.left_at - t0) / scale)
    # Frames written to a stream the gateway then cut for being slow, never read: they were in
    # the sockets, which the cut (a reset) discards, so they went with the connection as the
    # simulator's in-flight events do.
    for r, k in unread_sent:
        if outcome[r] == Outcome.LOST_IN_BUFFER and np.isfinite(cut_at[k]):
            outcome[r] = Outcome.DISCONNECTED_SLOW
            left_at[r] = cut_at[k]

    # 3. rows the gateway never had for the client
    reconnects = sorted(t / scale for log in raw["subscriber_log"] for t, what in log if what == "reconnected")
    outages = [_outages(log, scale) for log in raw["subscriber_log"]]
    losses = [[a for a, _ in node_outages] for node_outages in outages]
    unexplained = 0
    missing = np.flatnonzero(outcome < 0)
    per_client = {c: np.flatnonzero(conn_client == c) for c in np.unique(client_id[missing])}
    for r in missing:
        c = int(client_id[r])
        p = published[int(event_id[r])]
        ks = per_client[c]
        live = ks[(conn_connected[ks] <= p) & (conn_closed[ks] > p)]
        node = int(w.client_node[c])
        node_down = node < len(outages) and any(a <= p < b for a, b in outages[node])
        if live.size == 0:
            if node_down:
                # published while the node's subscription was down (Redis had closed it): lost
                # with it, whether or not the client's stream, ended by the loss notice, was back
                outcome[r] = Outcome.LOST_REDIS_OUTPUT_LIMIT
            else:
                outcome[r] = Outcome.LOST_DISCONNECTED
            continue
        k = int(live[0])
        session_id[r] = conn_session[k]
        if np.isfinite(cut_at[k]):
            # the gateway had cut this stream for being slow and the client had not seen it yet:
            # on its way when the cut came, the event went with the connection; published
            # after it, there was no subscription for it (the simulator's rules at a cut)
            if p <= cut_at[k]:
                outcome[r] = Outcome.LOST_IN_BUFFER
                left_at[r] = cut_at[k]
            else:
                outcome[r] = Outcome.LOST_DISCONNECTED
                session_id[r] = -1
        elif node_down or (node < len(losses) and any(p <= a <= conn_closed[k] for a in losses[node])):
            # the node's subscription was down at the publish, or lost after it while this
            # stream was open: Redis had closed it before the event could be sent (the gateway
            # sees the close only once it has read what the sockets held). The stream ends with
            # the loss notice a moment after the gateway sees the close, so an event published
            # in that moment finds the stream still open and the subscription already gone.
            outcome[r] = Outcome.LOST_REDIS_OUTPUT_LIMIT
            session_id[r] = -1
        elif conn_closed[k] <= p + _CLOSE_RACE_S:
            outcome[r] = Outcome.LOST_IN_BUFFER
            left_at[r] = conn_closed[k]
        elif any(t >= p for t in reconnects):
            outcome[r] = Outcome.LOST_REDIS_OUTPUT_LIMIT
            session_id[r] = -1
        else:
            outcome[r] = Outcome.LOST_IN_BUFFER
            left_at[r] = conn_closed[k]
            unexplained += 1

    # 4. what each (re)subscription sent first, under stream and latest delivery
    ev_mode = delivery_modes(sc, w)
    if (ev_mode != PUBSUB).any():
        _resubscriptions(w, conns, conn_connected, row_off, first_event, published, ev_mode, outcome, recv_conn, fate_conn)

    out = DeliveryRows(event_id, client_id, outcome, gateway_at, left_at, received_at, session_id, replayed)
    _browser_tabs(sc, w, row_off, client_id, out)
    return out, published, unexplained


def _outages(log: list[tuple[float, str]], scale: float) -> list[tuple[float, float]]:
    """A node's subscription outages in replay time: from each loss to the resubscription after it (inf: never back)."""
    out = []
    lost_at = None
    for t, what in log:
        if what.startswith("lost") and lost_at is None:
            lost_at = t / scale
        elif what == "reconnected" and lost_at is not None:
            out.append((lost_at, t / scale))
            lost_at = None
    if lost_at is not None:
        out.append((lost_at, math.inf))
    return out


def _resubscriptions(w: Workload, conns: np.ndarray, conn_connected: np.ndarray, row_off: np.ndarray, first_event: np.ndarray, published: np.ndarray, ev_mode: np.ndarray, outcome: np.ndarray, recv_conn: np.ndarray, fate_conn: np.ndarray) -> None:
    """Mark what the gateway did not send at each connection's subscription: ``lost_history_expired`` and ``superseded`` rows."""
    last_event = conns[:, _C_LAST_EVENT].astype(np.int64)
    type_code = w.event_type_code
    for c in np.unique(conns[:, _C_CLIENT].astype(np.int64)):
        r0, r1 = int(row_off[c]), int(row_off[c + 1])
        if r1 == r0:
            continue
        e0 = int(first_event[c])
        events = np.arange(e0, e0 + r1 - r0)
        modes = ev_mode[events]
        pub = published[events]
        for k in np.flatnonzero(conns[:, _C_CLIENT] == c):
            ts = conn_connected[k]
            if math.isnan(ts):
                continue  # never subscribed: the gateway sent nothing on it
            before = pub < ts
            # stream: the gap after Last-Event-ID; what the gateway did not send here or later
            if last_event[k] >= 0:
                gap = np.flatnonzero(before & (modes == STREAM) & (events > last_event[k]))
                rows = r0 + gap
                unsent = rows[(outcome[rows] != Outcome.DELIVERED) & (fate_conn[rows] < k)]
                outcome[unsent] = Outcome.LOST_HISTORY_EXPIRED
            # latest: per type, the values missed since the last one read; the newest is the
            # cached value sent now, the older ones are superseded
            for t in np.unique(type_code[events[before & (modes == LATEST)]]):
                idx = np.flatnonzero(before & (modes == LATEST) & (type_code[events] == t))
                rows = r0 + idx
                read_before = np.flatnonzero((recv_conn[rows] >= 0) & (recv_conn[rows] < k))
                if read_before.size:
                    rows = rows[read_before[-1] + 1 :]
                older = rows[:-1]
                outcome[older[outcome[older] != Outcome.DELIVERED]] = Outcome.SUPERSEDED


def _browser_tabs(sc: Scenario, w: Workload, row_off: np.ndarray, client_id: np.ndarray, out: DeliveryRows) -> None:
    """Apply the tabs' sharing of one connection, or the HTTP/1.1 cap, as the simulator does."""
    cpp = w.clients_per_player
    if cpp == 1:
        return
    tab = client_id % cpp
    arrays = (out.outcome, out.gateway_at, out.left_at, out.received_at, out.session_id, out.replayed)
    if sc.clients.tab_sharing == "leader":
        # the leader tab fans its events out (BroadcastChannel): each tab gets them as it did
        rows = np.flatnonzero(tab > 0)
        cid = client_id[rows]
        leader = rows - tab[rows] * (row_off[cid + 1] - row_off[cid])
        for arr in arrays:
            arr[rows] = arr[leader]
    elif sc.clients.http_version == "1.1" and cpp > HTTP1_CONNECTIONS_PER_ORIGIN:
        rows = tab >= HTTP1_CONNECTIONS_PER_ORIGIN
        out.outcome[rows] = Outcome.LOST_CONNECTION_LIMIT
        for arr in (out.gateway_at, out.left_at, out.received_at):
            arr[rows] = np.nan
        out.session_id[rows] = -1
        out.replayed[rows] = False


def _match_connection(peer: tuple[int, float] | None, by_port: dict[int, list[int]], conns: np.ndarray, client_node: np.ndarray, node: int) -> int:
    """The client connection (row of ``conns``) a gateway connection belongs to; -1 if none."""
    if peer is None:
        return -1
    port, registered = peer
    best = -1
    for k in by_port.get(port, []):
        if client_node[int(conns[k, _C_CLIENT])] != node:
            continue
        closed = conns[k, _C_CLOSED] if not math.isnan(conns[k, _C_CLOSED]) else math.inf
        if conns[k, _C_OPEN] - 1.0 <= registered <= closed + 1.0:
            best = k
    return best


def socket_held(w: Workload, raw: dict[str, Any], scale: float = 1.0, ids: list[list[int | None]] | None = None) -> dict[str, list[float]]:
    """What the sockets between the gateway and each client held at overflow: per overflow episode, events and framed bytes.

    The simulator's sockets hold a fixed ``clients.socket_buffer_bytes`` (or events); real TCP
    holds what its windows allow, which Linux sizes by the segments seen so far, so it varies
    from connection to connection and burst to burst. It is measured here as the gateway and
    the client saw it: at an overflow instant (a ``dropped_overflow`` or ``evicted`` fate, or the
    ``disconnected_slow`` cut), the events the gateway had written to that connection (fate
    ``sent``) and the client had not yet taken off its socket (its receipt's ``read``). The
    event a client is draining was taken off, as in the simulator. An episode is the overflow
    instants between two reads of the client (until it reads again the sockets only fill); it
    counts what they held at its last one, when the gateway's latest write to the connection
    came after the client's latest read, and what they came to hold before the client read
    again: a window that grows after the last overflow takes more of what arrives later (on a
    loaded machine, where the publisher and the gateway's reader spread a burst out, by up to
    ten events of 450 B), so the overflows were lost at the first holding and the later
    arrivals kept by the second. A simulator's fixed holding between the two accounts for the
    episode's loss.

    Returns ``at_s`` (when the episode began, replay time), ``client``, ``events`` and ``bytes``
    (framed: payload + ``SSE_FRAME_BYTES``) at the last overflow, and ``peak_events`` and
    ``peak_bytes`` before the client's next read (to the end of the run if it never read
    again), one entry per episode; all empty without overflow.
    ``ids``: :func:`log_event_ids` of ``raw``, when the caller already has them.
    """
    if ids is None:
        ids = log_event_ids(raw)
    conns = raw["connections"]
    by_port: dict[int, list[int]] = {}
    for k in range(conns.shape[0]):
        by_port.setdefault(int(conns[k, _C_PORT]), []).append(k)
    rec = np.asarray(raw["receipts"], dtype=np.float64).reshape(-1, len(RECEIPT_COLUMNS))
    read_col, conn_col, event_col = (RECEIPT_COLUMNS.index(c) for c in ("read", "connection", "event"))
    # per client connection: when it took each event off its socket
    reads: dict[int, dict[int, float]] = {}
    for k, e, t in zip(rec[:, conn_col].astype(np.int64), rec[:, event_col].astype(np.int64), rec[:, read_col], strict=True):
        reads.setdefault(int(k), {})[int(e)] = float(t)
    held_at: list[float] = []
    held_client: list[float] = []
    held_events: list[float] = []
    held_bytes: list[float] = []
    peak_events: list[float] = []
    peak_bytes: list[float] = []
    for node, log in enumerate(raw["event_logs"]):
        peers = raw["peers"][node]
        per_conn: dict[int, list[tuple[Any, int | None]]] = {}
        for entry, e in zip(log, ids[node], strict=True):
            per_conn.setdefault(entry.connection_id, []).append((entry, e))
        for cid, entries in per_conn.items():
            k = _match_connection(peers.get(cid), by_port, conns, w.client_node, node)
            if k < 0:
                continue
            got = reads.get(k, {})
            written, taken, size, overflow = [], [], [], []
            for entry, e in entries:
                if e is None:
                    continue
                if entry.fate == "sent" and entry.left_at is not None:
                    written.append(entry.left_at)
                    taken.append(got.get(e, math.inf))
                    size.append(float(w.payload_bytes[e]) + SSE_FRAME_BYTES)
                elif entry.fate == "dropped_overflow":
                    overflow.append(entry.gateway_at)
                elif entry.fate in ("evicted", "disconnected_slow") and entry.left_at is not None:
                    overflow.append(entry.left_at)
            if not overflow or not written:
                continue
            w_t, t_t, sz = np.asarray(written), np.asarray(taken), np.asarray(size)
            by_w, by_t = np.argsort(w_t, kind="stable"), np.argsort(t_t, kind="stable")
            w_sorted, t_sorted = w_t[by_w], t_t[by_t]
            w_cum = np.concatenate([[0.0], np.cumsum(sz[by_w])])
            t_cum = np.concatenate([[0.0], np.cumsum(sz[by_t])])
            all_reads = np.sort(np.fromiter(got.values(), dtype=np.float64, count=len(got)))
            o = np.sort(np.asarray(overflow, dtype=np.float64))
            # an episode: the overflow instants between two of the client's reads (or before any)
            since = np.searchsorted(all_reads, o, "right")
            begins = o[np.concatenate([[True], since[1:] != since[:-1]])]
            last = np.concatenate([since[1:] != since[:-1], [True]])
            # Between reads the sockets only fill (TCP may take more as the episode goes on, when
            # its window grows): what they hold at the episode's last overflow is what it came to.
            o, since = o[last], since[last]
            # Only overflows at a full socket: the gateway wrote to it after the client's latest
            # read. Once the client reads again TCP reopens the window only after a segment's
            # worth is free (receiver silly-window avoidance), so overflows in between find the
            # sockets short of what they hold and say nothing of their capacity.
            last_read = np.concatenate([[-math.inf], all_reads])[since]
            n_w, n_t = np.searchsorted(w_sorted, o, "right"), np.searchsorted(t_sorted, o, "right")
            last_write = np.concatenate([[-math.inf], w_sorted])[n_w]
            full = last_write > last_read
            n_w, n_t = n_w[full], n_t[full]
            # held at t: written by t and not taken by t (a client reads an event after it is written)
            held_at.extend(((begins[full] - raw["t0"]) / scale).tolist())
            held_client.extend([float(conns[k, _C_CLIENT])] * int(full.sum()))
            held_events.extend((n_w - n_t).astype(np.float64).tolist())
            held_bytes.extend((w_cum[n_w] - t_cum[n_t]).tolist())
            # and just before the client's next read: written before it, not taken before it
            next_read = np.concatenate([all_reads, [math.inf]])[since[full]]
            p_w, p_t = np.searchsorted(w_sorted, next_read, "left"), np.searchsorted(t_sorted, next_read, "left")
            peak_events.extend((p_w - p_t).astype(np.float64).tolist())
            peak_bytes.extend((w_cum[p_w] - t_cum[p_t]).tolist())
    return {
        "at_s": held_at,
        "client": held_client,
        "events": held_events,
        "bytes": held_bytes,
        "peak_events": peak_events,
        "peak_bytes": peak_bytes,
    }


#: What :func:`jitter` measures, each a distribution over the rows the clients read (scenario seconds).
JITTER_KEYS = ("drain_slip_s", "timer_late_s", "receive_late_s", "reader_delay_s")


def jitter(w: Workload, raw: dict[str, Any], rows: DeliveryRows, published: np.ndarray, row_off: np.ndarray, drain: np.ndarray, scale: float) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """How late the real run's clients and gateway were against the plan, per read event; in scenario seconds.

    * ``drain_slip_s``: ``done - (max(ready, gateway_at) + drain)``, how much later than planned
      a client finished draining an event: it could start once it was free (``ready``, the
      previous drain over) and the gateway had the event (``gateway_at``), and then needed the
      row's drain time. The gateway's writes into a full socket, the client's reads and its
      sleeps all add to it. A client with events queued behind one starts the next late by as
      much: along a queue the slips add up (a client that finished early makes up for one
      that finished late, so the sum is the queue's real lateness);
    * ``timer_late_s``: ``done - due``, the client's own sleep overshoot (part of the slip);
    * ``receive_late_s``: how much later than its network latency the loop delivered an event;
    * ``reader_delay_s``: ``gateway_at - published_at``, Redis's hop and the gateway's reader
      (the simulator's ``hop_latency``, which the slip does not include).

    Each is summarised as ``n``, ``mean``, ``sd``, ``p50``, ``p90``, ``p99`` and ``max``. Also
    returns, per row, the ``drain_slip_s`` of its read (NaN for rows no client read), which
    ``compare`` replays in the simulator.
    """
    r, samples = _jitter_samples(w, raw, rows, published, row_off, drain, scale)
    slip_by_row = np.full(rows.gateway_at.size, np.nan)
    slip_by_row[r] = samples["drain_slip_s"]
    return {k: _distribution(samples[k]) for k in JITTER_KEYS}, slip_by_row


def _jitter_samples(
    w: Workload, raw: dict[str, Any], rows: DeliveryRows, published: np.ndarray, row_off: np.ndarray, drain: np.ndarray, scale: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows the clients read and, per read, each of :data:`JITTER_KEYS` (see :func:`jitter`)."""
    rec = np.asarray(raw["receipts"], dtype=np.float64).reshape(-1, len(RECEIPT_COLUMNS))
    col = {name: rec[:, i] for i, name in enumerate(RECEIPT_COLUMNS)}
    first_event = w.player_offsets[np.arange(w.n_clients) // w.clients_per_player]
    c = col["client"].astype(np.int64)
    e = col["event"].astype(np.int64)
    r = (row_off[c] + e - first_event[c]).astype(np.int64)
    ready, due, done, received_due, received = ((col[k] - raw["t0"]) / scale for k in ("ready", "due", "done", "received_due", "received"))
    gateway_at = rows.gateway_at[r]
    start = np.where(np.isnan(gateway_at), ready, np.fmax(ready, gateway_at))
    samples = {
        "drain_slip_s": done - (start + drain[r]),
        "timer_late_s": done - due,
        "receive_late_s": received - received_due,
        "reader_delay_s": gateway_at - published[e],
    }
    return r, samples


def _distribution(x: np.ndarray) -> dict[str, float]:
    """Count, mean, standard deviation, median, 90th and 99th percentile and maximum of the finite values."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n": 0, "mean": 0.0, "sd": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p50, p90, p99 = (float(v) for v in np.quantile(x, [0.5, 0.9, 0.99]))
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": float(x.max()),
    }
