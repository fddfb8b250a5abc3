"""The walk under ``stream`` and ``latest`` delivery: what a reconnecting client is sent, and conflation.

The pub/sub walk in :mod:`sse_sim.engine` can decide each row when it reaches it. Here a
(re)subscription is an event of its own: at that instant the gateway sends, before any live
event, what the client missed:

* ``stream`` event types: the client's ``Last-Event-ID`` is the last stream event it read; the
  entries after it that the player's history still holds (``history_size`` newest entries
  published so far, and not older than ``history_ttl_s``) are replayed oldest first, at most
  the ``max_replay`` newest of them. The others of the gap are ``lost_history_expired``. A client
  that never read a stream event sends no ``Last-Event-ID`` and gets no replay, as a browser's
  EventSource does.
* ``latest`` event types: the newest value of each type published before the subscription,
  from the cache key, unless the client already read it; the older values it missed are
  ``superseded``.

A replay is written straight to the connection, as Mercure and Centrifugo do: it is not held
to ``buffer_size`` (a replay of 300 would otherwise overflow a 50-event queue at once), and the
live events that arrive meanwhile queue behind it. Live ``latest`` events replace a pending
value of the same type in the queue, in its place, and the replaced one is ``superseded``.

With every event type under ``pubsub`` this walk gives the engine's pub/sub walk, row for row
(a test checks it on every shipped scenario), byte caps included: a replay is not held to
``gateway.buffer_bytes`` either, but its events count against ``clients.socket_buffer_bytes``
once the writer takes them.
"""

from __future__ import annotations

import numba
import numpy as np

from .outcomes import Outcome
from .walk_steps import (
    DELIVERED,
    DISCONNECTED_SLOW,
    LOST_DISCONNECTED,
    LOST_IN_BUFFER,
    LOST_REDIS_OUTPUT_LIMIT,
    arrival_instants,
    fits_in_flight,
    flush,
    framed,
    overflow,
    queue_accepts,
    reconnect_at,
    refill,
    wrap,
    writer_may_take,
)

#: Delivery mode codes per event, as the walk reads them.
PUBSUB, STREAM, LATEST = 0, 1, 2
MODE_CODES = {"pubsub": PUBSUB, "stream": STREAM, "latest": LATEST}

LOST_HISTORY_EXPIRED = np.int8(Outcome.LOST_HISTORY_EXPIRED)
SUPERSEDED = np.int8(Outcome.SUPERSEDED)


@numba.njit(cache=True, inline="always")
def _refill(t, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap):  # pragma: no cover
    """The writer takes into the free flight slots at ``t``: the replay first, then the queue (:func:`~sse_sim.walk_steps.refill`)."""
    inflight_cap = flight.size
    # one way out of the loop (no break), as in refill
    fits = True
    while fits and n_flight < inflight_cap and n_rep > 0:
        w = rep[p_head]
        if use_bytes:
            b = framed(nbytes, event_id, w)
            fits = fits_in_flight(use_bytes, n_flight, fl_bytes, b, sock_cap)
            if fits and n_flight > 0:
                fl_bytes += b
        if fits:
            p_head += 1
            n_rep -= 1
            slot = wrap(f_head + n_flight, inflight_cap)
            flight[slot] = w
            enter[slot] = t
            n_flight += 1
    if n_rep == 0:
        n_flight, w_head, n_wait, fl_bytes, q_bytes = refill(
            t, flight, enter, wait, f_head, n_flight, w_head, n_wait, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap
        )
    return n_flight, w_head, n_wait, p_head, n_rep, fl_bytes, q_bytes


@numba.njit(cache=True, inline="always")
def _advance_replay(t, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep, head_done, last_recv, drain, net, outcome, left_at, received_at, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap):  # pragma: no cover
    """Deliver every event the client finishes reading by ``t``; the writer refills from the replay, then the queue."""
    inflight_cap = flight.size
    while n_flight > 0 and head_done <= t:
        h = flight[f_head]
        outcome[h] = DELIVERED
        left_at[h] = head_done
        # TCP keeps order: an event never overtakes the one before it on the same connection
        rv = head_done + net[h]
        if rv < last_recv:
            rv = last_recv
        received_at[h] = rv
        last_recv = rv
        f_head = wrap(f_head + 1, inflight_cap)
        n_flight -= 1
        if use_bytes and n_flight > 0:
            # the next one is being read now: its bytes leave the socket buffers' count
            fl_bytes -= framed(nbytes, event_id, flight[f_head])
        n_flight, w_head, n_wait, p_head, n_rep, fl_bytes, q_bytes = _refill(
            head_done, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
            use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
        )
        if n_flight > 0:
            st = enter[f_head] if enter[f_head] > head_done else head_done
            head_done = st + drain[flight[f_head]]
        else:
            head_done = np.inf
    return f_head, n_flight, w_head, n_wait, p_head, n_rep, head_done, last_recv, fl_bytes, q_bytes


@numba.njit(cache=True)
def _missed(r0, r, ts, session, event_id, published_at, ev_mode, ev_type, ev_scount, has_stream, n_latest, history_size, ttl, max_replay, outcome, gateway_at, left_at, received_at, session_id, replayed, rep, type_state):  # pragma: no cover
    """What a client subscribing at ``ts`` is sent first: fill ``rep`` with those rows in order, return how many.

    Rows ``r0:r`` are the client's rows published before ``ts``, every one with its outcome
    decided. Marks the gap's rows that are not sent ``lost_history_expired`` (stream) or
    ``superseded`` (latest).
    """
    n = 0
    if has_stream:
        # Last-Event-ID: the last stream event the client read
        last_id = -1
        j = r - 1
        while j >= r0:
            if ev_mode[event_id[j]] == STREAM and outcome[j] == DELIVERED:
                last_id = j
                break
            j -= 1
        if last_id >= 0:
            entries_now = ev_scount[event_id[r - 1]]
            n_stream = 0
            # newest first: once an entry is trimmed, every older one is too
            for j in range(r - 1, last_id, -1):
                e = event_id[j]
                if ev_mode[e] != STREAM or outcome[j] == DELIVERED:
                    continue
                kept = entries_now - ev_scount[e] < history_size and published_at[e] > ts - ttl
                if kept and n_stream < max_replay:
                    rep[n] = j
                    n += 1
                    n_stream += 1
                else:
                    outcome[j] = LOST_HISTORY_EXPIRED
    if n_latest > 0:
        type_state[:] = 0  # 0: newest not met yet, 1: newest met, 2: the client has read one
        done = 0
        j = r - 1
        while j >= r0 and done < n_latest:
            e = event_id[j]
            if ev_mode[e] == LATEST:
                k = ev_type[e]
                if type_state[k] != 2:
                    if outcome[j] == DELIVERED:
                        type_state[k] = 2
                        done += 1
                    elif type_state[k] == 0:
                        rep[n] = j  # the cached value
                        n += 1
                        type_state[k] = 1
                    else:
                        outcome[j] = SUPERSEDED
            j -= 1
    if n > 1:
        rep[:n] = np.sort(rep[:n])
    for k in range(n):
        j = rep[k]
        gateway_at[j] = ts
        left_at[j] = np.nan
        received_at[j] = np.nan
        session_id[j] = session
        replayed[j] = True
    return n


@numba.njit(cache=True)
def _conflate(r, arr, ev_type, event_id, wait, w_head, n_wait, outcome, left_at):  # pragma: no cover
    """A live ``latest`` row takes the place of a pending value of its type; the row it replaced, or -1."""
    k = ev_type[event_id[r]]
    for i in range(n_wait):
        slot = wrap(w_head + i, wait.size)
        old = wait[slot]
        if ev_type[event_id[old]] == k:
            outcome[old] = SUPERSEDED
            left_at[old] = arr
            wait[slot] = r
            return old
    return -1


@numba.njit(cache=True, inline="always")
def _next_subscription(sess_sub, sess_dis, nxt, s_end, down_until):  # pragma: no cover - jitted
    """The client's next (re)subscription from session ``nxt`` on: (instant, session, next to look at); (inf, -1, ...) if none.

    A session subscribes at its own instant, or once a slow-client close's reconnect delay is
    over, if that comes before the session ends.
    """
    while nxt < s_end:
        st = sess_sub[nxt] if sess_sub[nxt] > down_until else down_until
        if st < sess_dis[nxt]:
            return st, nxt, nxt + 1
        nxt += 1
    return np.inf, -1, nxt


@numba.njit(cache=True, inline="always")
def _walk_replay_clients(inp, gw, rp, out, c_lo, c_hi, use_bytes):  # pragma: no cover - jitted
    """Walk clients ``c_lo:c_hi`` under stream/latest delivery; fills ``out`` like the pub/sub walk.

    ``rp`` is a :class:`~sse_sim.engine.ReplayParams`. Returns the greatest number of events
    held by any connection at once (queue, flight and replay). ``use_bytes`` is a constant of
    each compiled form (:func:`walk_replay`, :func:`walk_replay_bytes`): with it the byte caps
    apply.
    """
    row_off = inp.row_off
    event_id = inp.event_id
    published_at = inp.published_at
    node_read_at = inp.node_read_at
    node_lost = inp.node_lost
    sess_off = inp.sess_off
    sess_sub = inp.sess_sub
    sess_dis = inp.sess_dis
    drain = inp.drain
    net = inp.net
    nbytes = inp.payload_bytes
    outcome = out.outcome
    gateway_at = out.gateway_at
    left_at = out.left_at
    received_at = out.received_at
    session_id = out.session_id
    replayed = rp.replayed
    ev_mode = rp.ev_mode
    ev_type = rp.ev_type
    buffer_size = gw.buffer_size
    inflight_cap = gw.inflight_cap
    policy = gw.policy
    yield_every = gw.yield_every
    sock_cap = gw.socket_buffer_bytes
    q_cap = gw.buffer_bytes
    use_node = node_read_at.size > 0
    wait = np.empty(buffer_size, np.int64)
    flight = np.empty(inflight_cap, np.int64)
    enter = np.empty(inflight_cap, np.float64)
    rep = np.empty(rp.max_replay + rp.n_types + 1, np.int64)
    type_state = np.zeros(rp.n_types, np.int8)
    max_held = 0
    for c in range(c_lo, c_hi):
        r0 = row_off[c]
        r1 = row_off[c + 1]
        if r1 == r0:
            continue
        arrival_instants(event_id, published_at, inp.hop, node_read_at, gateway_at, r0, r1)
        s_end = sess_off[c + 1]
        # the next (re)subscription: its instant and session
        pend_t, pend_s, nxt = _next_subscription(sess_sub, sess_dis, sess_off[c], s_end, -np.inf)
        conn = -1  # the session whose connection is open (subscribed), -1 if none
        conn_from = np.inf  # when it subscribed
        conn_end = np.inf
        prev_s = -1  # the last connection closed: its session, subscription and close instants
        prev_from = np.inf
        prev_end = -np.inf
        cut_s = -1  # the last connection the gateway closed for being slow: session, subscription, cut
        cut_from = np.inf
        cut_at = -np.inf
        last_sess = -1
        down_until = -np.inf
        n_cuts = 0
        w_head = 0
        n_wait = 0
        f_head = 0
        n_flight = 0
        p_head = 0
        n_rep = 0
        fl_bytes = 0  # framed bytes in flight beyond the event being read
        q_bytes = 0  # framed bytes queued
        head_done = np.inf
        last_recv = -np.inf
        run_pos = 0
        r = r0
        while True:
            if r < r1:
                p = published_at[event_id[r]]
                arr = gateway_at[r]
                t_now = arr if arr == arr else p
            else:
                p = np.inf
                arr = np.inf
                t_now = np.inf
            # 1. the open connection closed before this arrival (or before the next subscription):
            #    drain what finishes before the close, flush the rest
            t_close = t_now if t_now < pend_t else pend_t
            if conn >= 0 and conn_end <= t_close:
                f_head, n_flight, w_head, n_wait, p_head, n_rep, head_done, last_recv, fl_bytes, q_bytes = _advance_replay(
                    conn_end, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
                    head_done, last_recv, drain, net, outcome, left_at, received_at,
                    use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
                )
                flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
                for k in range(n_rep):
                    outcome[rep[p_head + k]] = LOST_IN_BUFFER
                    left_at[rep[p_head + k]] = conn_end
                n_flight = 0
                n_wait = 0
                n_rep = 0
                fl_bytes = 0
                q_bytes = 0
                head_done = np.inf
                prev_s = conn
                prev_from = conn_from
                prev_end = conn_end
                conn = -1
            # 2. a (re)subscription at or before this publish: send what the client missed first
            if pend_t <= p and (r < r1 or pend_t < rp.end_s):
                ts = pend_t
                s = pend_s
                if conn >= 0:
                    # sessions do not overlap; should one start before the last closed, the
                    # old connection's events are lost with it
                    flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, ts, outcome, left_at)
                    for k in range(n_rep):
                        outcome[rep[p_head + k]] = LOST_IN_BUFFER
                        left_at[rep[p_head + k]] = ts
                if s != last_sess:
                    last_recv = -np.inf  # a new TCP stream
                conn = s
                conn_from = ts
                last_sess = s
                conn_end = sess_dis[s]
                w_head = 0
                n_wait = 0
                f_head = 0
                n_flight = 0
                fl_bytes = 0
                q_bytes = 0
                n_rep = _missed(
                    r0, r, ts, s, event_id, published_at, ev_mode, ev_type, rp.ev_scount, rp.has_stream,
                    rp.n_latest, rp.history_size, rp.history_ttl_s, rp.max_replay, outcome, gateway_at,
                    left_at, received_at, session_id, replayed, rep, type_state,
                )
                p_head = 0
                n_flight, w_head, n_wait, p_head, n_rep, fl_bytes, q_bytes = _refill(
                    ts, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
                    use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
                )
                head_done = ts + drain[flight[f_head]] if n_flight > 0 else np.inf
                if n_flight + n_rep > max_held:
                    max_held = n_flight + n_rep
                # the next subscription: the following session with one
                pend_t, pend_s, nxt = _next_subscription(sess_sub, sess_dis, nxt, s_end, down_until)
                continue
            if r >= r1:
                break
            # 3. Redis dropped it with the node's subscriber
            if use_node and node_lost[r]:
                outcome[r] = LOST_REDIS_OUTPUT_LIMIT
                gateway_at[r] = np.nan
                session_id[r] = -1
                r += 1
                continue
            # 4. subscription active at publish time?
            if conn < 0 and cut_s >= 0 and cut_from <= p <= cut_at:
                # published while subscribed, still on its way when the gateway closed the slow
                # connection: lost with the connection, not for want of a subscription
                session_id[r] = cut_s
                outcome[r] = LOST_IN_BUFFER
                r += 1
                continue
            if conn < 0 and prev_s >= 0 and prev_from <= p < prev_end:
                # subscribed at publish, but the connection closed before the event got there
                session_id[r] = prev_s
                outcome[r] = LOST_IN_BUFFER
                r += 1
                continue
            if conn < 0 or p >= conn_end:
                outcome[r] = LOST_DISCONNECTED
                gateway_at[r] = np.nan
                session_id[r] = -1
                r += 1
                continue
            session_id[r] = conn
            if conn_end <= arr:
                # subscribed at publish, but the connection closed before the event got there
                outcome[r] = LOST_IN_BUFFER
                r += 1
                continue
            # 5. deliver everything the client finished reading by now
            f_head, n_flight, w_head, n_wait, p_head, n_rep, head_done, last_recv, fl_bytes, q_bytes = _advance_replay(
                arr, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
                head_done, last_recv, drain, net, outcome, left_at, received_at,
                use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
            )
            same_instant = r + 1 < r1 and gateway_at[r + 1] == arr
            can_start, run_pos = writer_may_take(same_instant, run_pos, yield_every)
            # 6. conflate, enqueue, or apply the overflow policy
            b = framed(nbytes, event_id, r) if use_bytes else 0
            replaced = -1
            if ev_mode[event_id[r]] == LATEST and n_wait > 0:
                replaced = _conflate(r, arr, ev_type, event_id, wait, w_head, n_wait, outcome, left_at)
            if replaced >= 0:
                # in its place, whatever its size, as the real gateway does
                if use_bytes:
                    q_bytes += b - framed(nbytes, event_id, replaced)
            elif queue_accepts(use_bytes, n_wait, buffer_size, q_bytes, b, q_cap):
                wait[wrap(w_head + n_wait, buffer_size)] = r
                n_wait += 1
                q_bytes += b
            else:
                w_head, n_wait, q_bytes, cut = overflow(
                    r, arr, wait, w_head, n_wait, policy, outcome, left_at, use_bytes, nbytes, event_id, q_bytes, q_cap
                )
                if cut:
                    flush(flight, f_head, n_flight, wait, w_head, n_wait, DISCONNECTED_SLOW, arr, outcome, left_at)
                    for k in range(n_rep):
                        outcome[rep[p_head + k]] = DISCONNECTED_SLOW
                        left_at[rep[p_head + k]] = arr
                    n_flight = 0
                    n_wait = 0
                    n_rep = 0
                    fl_bytes = 0
                    q_bytes = 0
                    head_done = np.inf
                    down_until = reconnect_at(arr, gw.client_base + c, n_cuts, inp.client_retry[c], inp.sub_table, gw)
                    cut_s = conn
                    cut_from = conn_from
                    cut_at = arr
                    n_cuts += 1
                    # the client comes back within this session if it is still open then,
                    # otherwise with the next session that outlasts the delay
                    pend_t, pend_s, nxt = _next_subscription(sess_sub, sess_dis, conn, s_end, down_until)
                    conn = -1
                    r += 1
                    continue
            if can_start:
                idle = n_flight == 0
                n_flight, w_head, n_wait, p_head, n_rep, fl_bytes, q_bytes = _refill(
                    arr, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
                    use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
                )
                if idle and n_flight > 0:
                    head_done = arr + drain[flight[f_head]]
            held = n_flight + n_wait + n_rep
            if held > max_held:
                max_held = held
            r += 1
        # end of the run: the last connection stays open unless it was scripted to close
        if conn >= 0:
            f_head, n_flight, w_head, n_wait, p_head, n_rep, head_done, last_recv, fl_bytes, q_bytes = _advance_replay(
                conn_end, flight, enter, wait, rep, f_head, n_flight, w_head, n_wait, p_head, n_rep,
                head_done, last_recv, drain, net, outcome, left_at, received_at,
                use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
            )
            flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
            for k in range(n_rep):
                outcome[rep[p_head + k]] = LOST_IN_BUFFER
                left_at[rep[p_head + k]] = conn_end
    return max_held


@numba.njit(cache=True)
def walk_replay(inp, gw, rp, out, c_lo, c_hi):  # pragma: no cover - jitted
    """The stream/latest walk without byte caps (see :func:`_walk_replay_clients`): no byte is counted."""
    return _walk_replay_clients(inp, gw, rp, out, c_lo, c_hi, False)


@numba.njit(cache=True)
def walk_replay_bytes(inp, gw, rp, out, c_lo, c_hi):  # pragma: no cover - jitted
    """The stream/latest walk under ``socket_buffer_bytes`` or ``gateway.buffer_bytes`` (see :func:`_walk_replay_clients`)."""
    return _walk_replay_clients(inp, gw, rp, out, c_lo, c_hi, True)


__all__ = ["walk_replay", "walk_replay_bytes", "MODE_CODES", "PUBSUB", "STREAM", "LATEST"]
