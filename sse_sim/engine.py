"""The simulation engine (the ``sim`` backend): array stages, no wall clock, no I/O.

Each client is an independent queue, so the engine walks one client at a time through its
player's events in publish order (a numba-compiled loop). Per client it models:

* the Redis hop: an event reaches the gateway ``hop_latency`` after publish, never before the
  previous one (one TCP stream per subscriber keeps order);
* optionally the node's shared subscriber and Redis's output-buffer limit (a stage per node
  that runs before the clients);
* subscription gaps and disconnect windows from the workload's sessions;
* the per-connection buffer: ``buffer_size`` events wait, ``1 + socket_buffer_events`` more
  are in flight (being written and held by socket buffers), the client drains them one at a
  time in FIFO order; so K = buffer_size + 1 in M/M/1/K terms when socket buffers are ignored;
* the overflow policies ``drop_newest``, ``drop_oldest`` and ``disconnect``;
* the shared reader's yielding: when several events reach a connection at the same instant
  the writer can take the next one only each ``reader_yield_every`` events.

Random numbers are drawn with numpy from named streams before the loop; the few the loop
needs on the fly (reconnect delays after a slow-client disconnect) come from a counter-based
hash, so the loop has no random state of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from .outcomes import Outcome
from .scenario import OVERFLOW_POLICIES, Scenario
from .workload import Workload, stream_key, stream_rng

DELIVERED = np.int8(Outcome.DELIVERED)
LOST_DISCONNECTED = np.int8(Outcome.LOST_DISCONNECTED)
DROPPED_OVERFLOW = np.int8(Outcome.DROPPED_OVERFLOW)
LOST_IN_BUFFER = np.int8(Outcome.LOST_IN_BUFFER)
DISCONNECTED_SLOW = np.int8(Outcome.DISCONNECTED_SLOW)
LOST_REDIS_OUTPUT_LIMIT = np.int8(Outcome.LOST_REDIS_OUTPUT_LIMIT)

POLICY_CODES = {name: i for i, name in enumerate(OVERFLOW_POLICIES)}

# Size of the table that reconnects after a slow-client disconnect draw their subscribe
# latency from (a bootstrap of the scenario's distribution).
_SUB_TABLE = 4096


@dataclass(frozen=True)
class EngineOutput:
    """Per-row arrays of a run (the engine or real mode); one row per (event, client), client-major."""

    event_id: np.ndarray
    client_id: np.ndarray
    outcome: np.ndarray
    gateway_at: np.ndarray
    left_at: np.ndarray
    received_at: np.ndarray
    session_id: np.ndarray


@numba.njit(cache=True, inline="always")
def _hash_uniform(key, a, b):  # pragma: no cover - jitted
    """Uniform in [0, 1) from (key, a, b) by splitmix64: pure, no state."""
    z = key ^ (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(b) * np.uint64(0xBF58476D1CE4E5B9))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def _row_layout(player_offsets, clients_per_player):  # pragma: no cover - jitted
    """Row ranges per client and the event id and client id of each row (client-major)."""
    n_players = player_offsets.size - 1
    n_clients = n_players * clients_per_player
    row_off = np.zeros(n_clients + 1, np.int64)
    for p in range(n_players):
        n = player_offsets[p + 1] - player_offsets[p]
        for k in range(clients_per_player):
            c = p * clients_per_player + k
            row_off[c + 1] = row_off[c] + n
    total = row_off[n_clients]
    event_id = np.empty(total, np.int64)
    client_id = np.empty(total, np.int32)
    for c in range(n_clients):
        p = c // clients_per_player
        e0 = player_offsets[p]
        r0 = row_off[c]
        for j in range(row_off[c + 1] - r0):
            event_id[r0 + j] = e0 + j
            client_id[r0 + j] = c
    return row_off, event_id, client_id


@numba.njit(cache=True)
def _node_stage(order, published_at, hop, size_bytes, reader_rate, hard, soft, soft_s, resub, overhead):  # pragma: no cover
    """One gateway node's shared subscriber behind Redis's pub/sub output-buffer limit.

    ``order`` lists the node's events in publish order. Returns, per listed event, when the
    gateway has read it, and whether Redis dropped it with the subscriber.
    """
    n = order.size
    read_at = np.empty(n, np.float64)
    lost = np.zeros(n, np.bool_)
    svc = 1.0 / reader_rate
    cum = np.zeros(n + 1, np.float64)
    head = 0  # first event still in the output buffer
    last_done = -np.inf
    soft_since = np.inf
    dead_until = -np.inf
    for i in range(n):
        e = order[i]
        p = published_at[e]
        cum[i + 1] = cum[i] + size_bytes[e] + overhead
        if p < dead_until:
            lost[i] = True
            read_at[i] = np.nan
            head = i + 1
            continue
        # what the reader has taken out of the buffer by now
        while head < i and (lost[head] or read_at[head] - hop[order[head]] <= p):
            head += 1
        done = max(p, last_done) + svc
        last_done = done
        read_at[i] = done + hop[e]
        backlog = cum[i + 1] - cum[head]
        if backlog > soft:
            if soft_since == np.inf:
                soft_since = p
        else:
            soft_since = np.inf
        if backlog > hard or (soft > 0 and p - soft_since >= soft_s and soft_since < np.inf):
            for j in range(head, i + 1):
                lost[j] = True
                read_at[j] = np.nan
            head = i + 1
            dead_until = p + resub
            last_done = -np.inf
            soft_since = np.inf
    return read_at, lost


@numba.njit(cache=True, inline="always")
def _advance(t, flight, enter, wait, f_head, n_flight, w_head, n_wait, head_done, last_recv, drain, net, outcome, left_at, received_at):  # pragma: no cover
    """Deliver every event the client finishes reading by ``t``; the writer refills the flight slots."""
    inflight_cap = flight.size
    buffer_size = wait.size
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
        f_head = (f_head + 1) % inflight_cap
        n_flight -= 1
        while n_flight < inflight_cap and n_wait > 0:
            w = wait[w_head]
            w_head = (w_head + 1) % buffer_size
            n_wait -= 1
            slot = (f_head + n_flight) % inflight_cap
            flight[slot] = w
            enter[slot] = head_done
            n_flight += 1
        if n_flight > 0:
            st = enter[f_head] if enter[f_head] > head_done else head_done
            head_done = st + drain[flight[f_head]]
        else:
            head_done = np.inf
    return f_head, n_flight, w_head, n_wait, head_done, last_recv


@numba.njit(cache=True, inline="always")
def _flush(flight, f_head, n_flight, wait, w_head, n_wait, code, t, outcome, left_at):  # pragma: no cover
    """Everything still held by a connection that closes at ``t`` is lost with cause ``code``."""
    for k in range(n_flight):
        h = flight[(f_head + k) % flight.size]
        outcome[h] = code
        left_at[h] = t
    for k in range(n_wait):
        h = wait[(w_head + k) % wait.size]
        outcome[h] = code
        left_at[h] = t


@numba.njit(cache=True)
def _clients(
    row_off,
    event_id,
    client_node,
    published_at,
    hop,
    node_read_at,
    node_lost,
    sess_off,
    sess_sub,
    sess_dis,
    drain,
    net,
    buffer_size,
    inflight_cap,
    policy,
    yield_every,
    retry_delay,
    retry_jitter,
    sub_table,
    key,
    c_lo,
    c_hi,
    outcome,
    gateway_at,
    left_at,
    received_at,
    session_id,
):  # pragma: no cover - jitted
    """Walk each client's rows in publish order through its connection's buffer.

    Fills outcome, gateway_at (reached the connection), left_at (left buffer or flight:
    drained, evicted or flushed), received_at and session_id (index of the session, -1 if none).
    Returns the greatest number of events held by any connection at once.
    """
    use_node = node_read_at.size > 0
    wait = np.empty(buffer_size, np.int64)
    flight = np.empty(inflight_cap, np.int64)
    enter = np.empty(inflight_cap, np.float64)
    max_held = 0
    n_sub = sub_table.size
    for c in range(c_lo, c_hi):
        r0 = row_off[c]
        r1 = row_off[c + 1]
        if r1 == r0:
            continue
        s = sess_off[c]
        s_end = sess_off[c + 1]
        # arrival instants at the gateway (FIFO per subscriber stream)
        prev = -np.inf
        for r in range(r0, r1):
            e = event_id[r]
            if use_node:
                a = node_read_at[r]
            else:
                a = published_at[e] + hop[e]
            if a < prev:
                a = prev
            if a == a:  # not NaN
                prev = a
            gateway_at[r] = a
        # queue state
        w_head = 0
        n_wait = 0
        f_head = 0
        n_flight = 0
        head_done = np.inf
        last_recv = -np.inf
        conn = -1
        last_sess = -1
        conn_end = np.inf
        down_until = -np.inf  # after a slow-client disconnect: no subscription until then
        n_cuts = 0
        run_pos = 0
        for r in range(r0, r1):
            e = event_id[r]
            p = published_at[e]
            arr = gateway_at[r]
            # 1. the connection holding queued events closed before this arrival: drain what
            #    finishes before the close, flush the rest.
            t_now = arr if arr == arr else p
            if conn >= 0 and conn_end <= t_now:
                f_head, n_flight, w_head, n_wait, head_done, last_recv = _advance(
                    conn_end, flight, enter, wait, f_head, n_flight, w_head, n_wait, head_done,
                    last_recv, drain, net, outcome, left_at, received_at,
                )
                _flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
                n_flight = 0
                n_wait = 0
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
            while s < s_end and sess_dis[s] <= p:
                s += 1
            if s >= s_end or sess_sub[s] > p or p < down_until:
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
            f_head, n_flight, w_head, n_wait, head_done, last_recv = _advance(
                arr, flight, enter, wait, f_head, n_flight, w_head, n_wait, head_done,
                last_recv, drain, net, outcome, left_at, received_at,
            )
            # 5. may the writer take from the queue after this event? (reader yields)
            if r + 1 < r1 and gateway_at[r + 1] == arr:
                run_pos += 1
                can_start = yield_every > 0 and run_pos % yield_every == 0
            else:
                run_pos = 0
                can_start = True
            if yield_every == 1:
                can_start = True
            # 6. enqueue, or apply the overflow policy
            if n_wait < buffer_size:
                wait[(w_head + n_wait) % buffer_size] = r
                n_wait += 1
            elif policy == 0:  # drop_newest
                outcome[r] = DROPPED_OVERFLOW
                left_at[r] = np.nan
            elif policy == 1:  # drop_oldest
                old = wait[w_head]
                outcome[old] = DROPPED_OVERFLOW
                left_at[old] = arr
                w_head = (w_head + 1) % buffer_size
                wait[(w_head + n_wait - 1) % buffer_size] = r
            else:  # disconnect: close the slow connection, the client retries later
                outcome[r] = DISCONNECTED_SLOW
                _flush(flight, f_head, n_flight, wait, w_head, n_wait, DISCONNECTED_SLOW, arr, outcome, left_at)
                n_flight = 0
                n_wait = 0
                head_done = np.inf
                u = _hash_uniform(key, c, 2 * n_cuts)
                j = int(_hash_uniform(key, c, 2 * n_cuts + 1) * n_sub)
                down_until = arr + retry_delay + u * retry_jitter + sub_table[j]
                n_cuts += 1
                conn = -1
                continue
            if can_start:
                while n_flight < inflight_cap and n_wait > 0:
                    w = wait[w_head]
                    w_head = (w_head + 1) % buffer_size
                    n_wait -= 1
                    slot = (f_head + n_flight) % inflight_cap
                    flight[slot] = w
                    enter[slot] = arr
                    n_flight += 1
                    if n_flight == 1:
                        head_done = arr + drain[w]
            held = n_flight + n_wait
            if held > max_held:
                max_held = held
        # end of the run: the last connection stays open unless it was scripted to close
        f_head, n_flight, w_head, n_wait, head_done, last_recv = _advance(
            conn_end, flight, enter, wait, f_head, n_flight, w_head, n_wait, head_done,
            last_recv, drain, net, outcome, left_at, received_at,
        )
        _flush(flight, f_head, n_flight, wait, w_head, n_wait, LOST_IN_BUFFER, conn_end, outcome, left_at)
    return max_held


def _node_arrivals(scenario: Scenario, w: Workload, event_id: np.ndarray, client_id: np.ndarray):
    """Run the node stage for every node; map its results onto rows."""
    ob = scenario.redis.output_buffer
    read_at = np.empty(event_id.size, np.float64)
    lost = np.zeros(event_id.size, np.bool_)
    row_node = w.client_node[client_id]
    for node in range(w.n_nodes):
        rows = np.flatnonzero(row_node == node)
        if rows.size == 0:
            continue
        events, inverse = np.unique(event_id[rows], return_inverse=True)
        order_local = np.argsort(w.published_at[events], kind="stable")
        node_read, node_lost = _node_stage(
            events[order_local],
            w.published_at,
            w.hop_latency_s,
            w.payload_bytes,
            float(ob.reader_rate_per_s),
            float(ob.hard_limit_bytes),
            float(ob.soft_limit_bytes),
            float(ob.soft_seconds),
            float(ob.resubscribe_s),
            float(ob.overhead_bytes),
        )
        back = np.empty_like(order_local)
        back[order_local] = np.arange(order_local.size)
        read_at[rows] = node_read[back[inverse]]
        lost[rows] = node_lost[back[inverse]]
    return read_at, lost


def sample_row_times(scenario: Scenario, seed: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Drain time and network latency of every (event, client) row, from their own streams.

    Drawn as float32: at ten million rows generating them is a third of the run, and seven
    significant digits of a latency are plenty.
    """
    drain = scenario.clients.drain_time.sample(stream_rng(seed, "drain"), n_rows, np.float32)
    net = scenario.clients.network_latency.sample(stream_rng(seed, "network"), n_rows, np.float32)
    return drain, net


def run_engine(scenario: Scenario, w: Workload, progress: Callable[[int], None] | None = None) -> EngineOutput:
    """Simulate every (event, client) delivery attempt of a workload under a scenario's gateway.

    ``progress``, if given, is called with the number of rows just simulated, in chunks of
    clients (for a progress bar); the result does not depend on it.
    """
    row_off, event_id, client_id = _row_layout(w.player_offsets, w.clients_per_player)
    n_rows = event_id.size
    drain, net = sample_row_times(scenario, w.seed, n_rows)
    if scenario.redis.output_buffer is not None:
        node_read_at, node_lost = _node_arrivals(scenario, w, event_id, client_id)
    else:
        node_read_at = np.empty(0, np.float64)
        node_lost = np.empty(0, np.bool_)
    sub_table = scenario.redis.subscribe_latency.sample(stream_rng(w.seed, "reconnect"), _SUB_TABLE)
    outcome = np.empty(n_rows, np.int8)
    gateway_at = np.empty(n_rows, np.float64)
    left_at = np.full(n_rows, np.nan)
    received_at = np.full(n_rows, np.nan)
    session_id = np.empty(n_rows, np.int32)
    g = scenario.gateway
    key = stream_key(w.seed, "reconnect_delay")
    n_clients = w.n_clients
    step = n_clients if progress is None else max(n_clients // 50, 1)
    for c_lo in range(0, n_clients, step):
        c_hi = min(c_lo + step, n_clients)
        _clients(
            row_off,
            event_id,
            w.client_node,
            w.published_at,
            w.hop_latency_s,
            node_read_at,
            node_lost,
            w.session_offsets,
            w.subscribed_at,
            w.disconnect_at,
            drain,
            net,
            int(g.buffer_size),
            int(1 + scenario.clients.socket_buffer_events),
            int(POLICY_CODES[g.overflow_policy]),
            int(g.reader_yield_every),
            float(scenario.disconnects.retry_delay_s),
            float(scenario.disconnects.retry_jitter_s),
            sub_table,
            key,
            c_lo,
            c_hi,
            outcome,
            gateway_at,
            left_at,
            received_at,
            session_id,
        )
        if progress is not None:
            progress(int(row_off[c_hi] - row_off[c_lo]))
    return EngineOutput(event_id, client_id, outcome, gateway_at, left_at, received_at, session_id)


__all__ = ["run_engine", "sample_row_times", "EngineOutput", "POLICY_CODES"]
