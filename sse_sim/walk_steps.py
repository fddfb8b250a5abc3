"""The compiled steps one connection's walk is made of, shared by the pub/sub walk and the replay walk.

Each step works on one connection's ring buffers: ``wait`` (events queued, at most
``buffer_size``) and ``flight`` (events the writer took, ``1 + socket_buffer_events``), whose
heads and counts the caller keeps and passes in. See :mod:`sse_sim.engine` for the model.

Byte caps (``clients.socket_buffer_bytes``, ``gateway.buffer_bytes``): the steps that move
events take ``use_bytes`` and, with it, the payload bytes per event (``nbytes``, indexed by
``event_id[row]``; :func:`framed` adds the SSE framing), the bytes in flight beyond the event
being read (``fl_bytes``), the bytes queued (``q_bytes``) and the two caps. Each walk is
compiled twice, with ``use_bytes`` a constant: the walk without byte caps never reads those
arguments and LLVM drops them, so it runs as fast as before they existed.
"""

from __future__ import annotations

import numba
import numpy as np

from .outcomes import Outcome
from .scenario import OVERFLOW_POLICIES
from .workload import SSE_FRAME_BYTES

DELIVERED = np.int8(Outcome.DELIVERED)
LOST_DISCONNECTED = np.int8(Outcome.LOST_DISCONNECTED)
DROPPED_OVERFLOW = np.int8(Outcome.DROPPED_OVERFLOW)
LOST_IN_BUFFER = np.int8(Outcome.LOST_IN_BUFFER)
DISCONNECTED_SLOW = np.int8(Outcome.DISCONNECTED_SLOW)
LOST_REDIS_OUTPUT_LIMIT = np.int8(Outcome.LOST_REDIS_OUTPUT_LIMIT)
LOST_CONNECTION_LIMIT = np.int8(Outcome.LOST_CONNECTION_LIMIT)

POLICY_CODES = {name: i for i, name in enumerate(OVERFLOW_POLICIES)}
_DROP_NEWEST = POLICY_CODES["drop_newest"]
_DROP_OLDEST = POLICY_CODES["drop_oldest"]


@numba.njit(cache=True, inline="always")
def hash_uniform(key, a, b):  # pragma: no cover - jitted
    """Uniform in [0, 1) from (key, a, b) by splitmix64: pure, no state."""
    z = key ^ (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(b) * np.uint64(0xBF58476D1CE4E5B9))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def wrap(i, size):  # pragma: no cover - jitted
    """Index ``i`` of a ring of ``size`` slots, for ``0 <= i < 2 * size``.

    A compare instead of ``i % size``: the sizes are only known at run time, so ``%`` is an
    integer division, several per row on the queue's hot path.
    """
    return i - size if i >= size else i


# Why the walk unpacks its structures once and its helpers take plain arrays and scalars:
# numba copies each argument of an inlined function into a variable of its own and counts a
# reference to every array it holds (an atomic increment, later a decrement), as it does for
# each array taken out of a tuple. Its pruning pass drops those pairs for a helper whose body
# is a loop with one way out (``advance``, ``session_at``), not for one that branches to
# several ends. Measured on bench_10m: structures handed to the per-row helpers made the walk
# 2 to 7 times slower, one branching helper over arrays 1.3 to 1.5 times, unpacking per client
# 3 % slower, inlining the per-client arrival pass 2 %. So per-row helpers take scalars or are
# such loops, branching helpers over arrays run only on the rare overflow and cut paths, and
# the replay walk's per-client arrival pass is a plain call (a called function borrows its
# arguments).
#
# What made the pub/sub walk faster since, measured on the walk alone against the one before,
# in the same process (bench_10m / mm1k, the walk's time before over after): the ring buffers'
# ``%`` replaced by ``wrap`` 1.09 / 1.12; the arrival pass folded into the walk, one row ahead,
# instead of a pass of its own over the client's rows 1.19 / 1.19 in all; a row that finds the
# queue empty and the writer free handed to the writer without passing through the queue
# 1.40 / 1.20 in all (most rows of bench_10m do). Tried and dropped, no gain measured: a
# writer step specialised for one in-flight slot (mm1k), ``flush`` and ``overflow`` as calls
# rather than inlined, and outputs left uninitialised with the walk writing NaN (the walk then
# pays the page faults ``np.full`` paid).
#
# In the pub/sub walk alone (the replay walk keeps :func:`refill` and signed indices), the same
# measure (bench_10m / mm1k, the walk's time before over after, in the same process):
# no per-slot record of when an event entered flight (:func:`take_queued`, :func:`advance`)
# and the rings holding rows as uint64, 1.15 / 1.15; the row offsets and event ids read as
# uint64 and the rings indexed by ``np.uint64`` positions, 1.19 / 1.12 (numba indexes with an
# unsigned integer as it is; a signed one first gets Python's wrap-around for a negative
# index, a compare and a select per access, and keeps each array's length live for it); a
# row that finds its connection open past it skipping the session steps, 1.31 / 1.08. All
# together 1.80 / 1.38.
#
# Byte caps: each walk is compiled twice, ``use_bytes`` a constant in each, so the walk without
# them is the walk from before them: bench_10m / mm1k, the walk's speed over the plain M/M/1/K
# loop in the same run, 0.82 / 0.65 before, 0.86 / 0.66 after. With them the walk reads the
# workload's own int32 payloads and adds the framing itself (:func:`framed`): 0.95 of the walk
# without on bench_10m; an int64 array of framed sizes made for the run took 0.22 of it.


@numba.njit(cache=True)
def arrival_instants(event_id, published_at, hop, node_read_at, gateway_at, r0, r1):  # pragma: no cover
    """Fill when each of one client's rows reaches the gateway, never before the previous one (the replay walk's pass)."""
    use_node = node_read_at.size > 0
    prev = -np.inf
    for r in range(r0, r1):
        e = event_id[r]
        if use_node:
            a = node_read_at[r]
        else:
            a = published_at[e] + hop[e]
        # one TCP stream per subscriber keeps order
        if a < prev:
            a = prev
        if a == a:  # an event lost at the node (NaN) holds nothing back
            prev = a
        gateway_at[r] = a


@numba.njit(cache=True, inline="always")
def session_at(sess_dis, s, s_end, p):  # pragma: no cover - jitted
    """The client's first session, from ``s`` on, whose connection is still open at ``p`` (``s_end`` if none)."""
    while s < s_end and sess_dis[s] <= p:
        s += 1
    return s


@numba.njit(cache=True, inline="always")
def framed(nbytes, event_id, r):  # pragma: no cover - jitted
    """The bytes row ``r``'s event takes on the wire: its payload and the SSE framing."""
    return np.int64(nbytes[event_id[r]]) + SSE_FRAME_BYTES


@numba.njit(cache=True, inline="always")
def fits_in_flight(use_bytes, n_flight, fl_bytes, b, sock_cap):  # pragma: no cover - jitted
    """Whether an event of ``b`` framed bytes fits in flight by bytes, a free slot granted.

    The event that becomes the one being read always fits; the others count against
    ``sock_cap`` with those already in flight beyond the one being read.
    """
    return not use_bytes or n_flight == 0 or fl_bytes + b <= sock_cap


@numba.njit(cache=True, inline="always")
def queue_accepts(use_bytes, n_wait, buffer_size, q_bytes, b, q_cap):  # pragma: no cover - jitted
    """Whether the queue takes an arriving event of ``b`` framed bytes.

    Both caps apply, as in the real gateway; an event always fits an empty queue (else one
    larger than ``gateway.buffer_bytes`` could reach nobody).
    """
    if n_wait >= buffer_size:
        return False
    return not use_bytes or n_wait == 0 or q_bytes + b <= q_cap


@numba.njit(cache=True, inline="always")
def take_queued(flight, wait, f_head, n_flight, w_head, n_wait, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap):  # pragma: no cover
    """The writer takes queued events into the free flight slots, oldest first.

    With byte caps an event goes into flight only if the bytes in flight beyond the one being
    read, plus its own, fit ``sock_cap``; the event that becomes the one read always does. The
    queue is FIFO: an event that does not fit holds back those behind it. Positions are
    unsigned (see the note above), whatever the rings' own integer type.
    """
    inflight_cap = flight.size
    buffer_size = wait.size
    # one way out of the loop (no break): see the note on reference counting above
    fits = True
    while fits and n_flight < inflight_cap and n_wait > 0:
        w = wait[np.uint64(w_head)]
        if use_bytes:
            b = framed(nbytes, event_id, w)
            fits = fits_in_flight(use_bytes, n_flight, fl_bytes, b, sock_cap)
            if fits:
                if n_flight > 0:
                    fl_bytes += b
                q_bytes -= b
        if fits:
            w_head = wrap(w_head + 1, buffer_size)
            n_wait -= 1
            flight[np.uint64(wrap(f_head + n_flight, inflight_cap))] = w
            n_flight += 1
    return n_flight, w_head, n_wait, fl_bytes, q_bytes


@numba.njit(cache=True, inline="always")
def refill(t, flight, enter, wait, f_head, n_flight, w_head, n_wait, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap):  # pragma: no cover
    """:func:`take_queued`, noting in ``enter`` that each event taken entered flight at ``t``.

    The replay walk needs those instants; the pub/sub walk does not (see :func:`advance`).
    """
    before = n_flight
    n_flight, w_head, n_wait, fl_bytes, q_bytes = take_queued(
        flight, wait, f_head, n_flight, w_head, n_wait, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap
    )
    for k in range(before, n_flight):
        enter[wrap(f_head + k, flight.size)] = t
    return n_flight, w_head, n_wait, fl_bytes, q_bytes


@numba.njit(cache=True, inline="always")
def advance(t, flight, wait, f_head, n_flight, w_head, n_wait, head_done, last_recv, drain, net, outcome, left_at, received_at, use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap):  # pragma: no cover
    """Deliver every event the client finishes reading by ``t``; the writer refills the flight slots.

    The next event in flight starts being read the instant the one before it is done: it
    entered flight no later than that. The walk moves an event into flight only at the instant
    it has advanced to, once it has delivered what was done by then, so the event being read,
    if any, finishes at that instant or later.
    """
    inflight_cap = flight.size
    while n_flight > 0 and head_done <= t:
        h = flight[np.uint64(f_head)]
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
            fl_bytes -= framed(nbytes, event_id, flight[np.uint64(f_head)])
        n_flight, w_head, n_wait, fl_bytes, q_bytes = take_queued(
            flight, wait, f_head, n_flight, w_head, n_wait,
            use_bytes, nbytes, event_id, fl_bytes, q_bytes, sock_cap,
        )
        if n_flight > 0:
            head_done = head_done + drain[flight[np.uint64(f_head)]]
        else:
            head_done = np.inf
    return f_head, n_flight, w_head, n_wait, head_done, last_recv, fl_bytes, q_bytes


@numba.njit(cache=True, inline="always")
def flush(flight, f_head, n_flight, wait, w_head, n_wait, code, t, outcome, left_at):  # pragma: no cover - jitted
    """Everything still held by a connection that closes at ``t`` is lost with cause ``code``."""
    for k in range(n_flight):
        h = flight[wrap(f_head + k, flight.size)]
        outcome[h] = code
        left_at[h] = t
    for k in range(n_wait):
        h = wait[wrap(w_head + k, wait.size)]
        outcome[h] = code
        left_at[h] = t


@numba.njit(cache=True, inline="always")
def writer_may_take(same_instant, run_pos, yield_every):  # pragma: no cover - jitted
    """Whether the writer may take from the queue after this event, and its position in a same-instant run.

    ``same_instant``: the next event reaches the connection at the same instant, so the shared
    reader is still handing a run over and yields only each ``yield_every`` events (0: at the
    end of the run).
    """
    if same_instant:
        run_pos += 1
        can_start = yield_every > 0 and run_pos % yield_every == 0
    else:
        run_pos = 0
        can_start = True
    if yield_every == 1:
        can_start = True
    return can_start, run_pos


@numba.njit(cache=True, inline="always")
def overflow(r, arr, wait, w_head, n_wait, policy, outcome, left_at, use_bytes, nbytes, event_id, q_bytes, q_cap):  # pragma: no cover
    """Row ``r`` meets a full queue at ``arr``: apply the overflow policy; True when it cuts the connection.

    ``drop_oldest`` evicts as many of the oldest as it takes for ``r`` to fit both caps (with a
    byte cap, several small ones may make room for one big one), as the real gateway does.
    """
    cut = False
    if policy == _DROP_NEWEST:
        outcome[r] = DROPPED_OVERFLOW
        left_at[r] = np.nan
    elif policy == _DROP_OLDEST:
        b = framed(nbytes, event_id, r) if use_bytes else 0
        while n_wait > 0 and (n_wait >= wait.size or (use_bytes and q_bytes + b > q_cap)):
            old = wait[w_head]
            outcome[old] = DROPPED_OVERFLOW
            left_at[old] = arr
            if use_bytes:
                q_bytes -= framed(nbytes, event_id, old)
            w_head = wrap(w_head + 1, wait.size)
            n_wait -= 1
        wait[wrap(w_head + n_wait, wait.size)] = r
        n_wait += 1
        q_bytes += b
    else:  # disconnect: close the slow connection, the client retries later
        outcome[r] = DISCONNECTED_SLOW
        cut = True
    return w_head, n_wait, q_bytes, cut


@numba.njit(cache=True, inline="always")
def reconnect_at(t, c, n_cuts, retry_s, sub_table, gw):  # pragma: no cover - jitted
    """When client ``c``, cut for the ``n_cuts``-th time at ``t``, is subscribed again."""
    u = hash_uniform(gw.reconnect_key, c, 2 * n_cuts)
    j = int(hash_uniform(gw.reconnect_key, c, 2 * n_cuts + 1) * sub_table.size)
    return t + retry_s + u * gw.retry_jitter_s + sub_table[j]
