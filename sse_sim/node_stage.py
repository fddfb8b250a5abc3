"""A gateway node's shared Redis subscriber and Redis's pub/sub output-buffer limit (an engine stage).

Each gateway node holds one subscription for all the players it serves, so every event for
those players passes through one Redis output buffer and one reader. The node reads
``reader_rate_per_s`` messages per second; what it has not read yet waits in Redis, counted in
bytes (payload plus ``overhead_bytes`` of RESP framing and channel name). Redis closes the
subscriber when that backlog passes ``hard_limit_bytes``, or stays above ``soft_limit_bytes``
for ``soft_seconds`` (``client-output-buffer-limit pubsub 32mb 8mb 60``): the backlog is lost,
and so is everything published until the node has resubscribed ``resubscribe_s`` later. The
oldest ``kernel_buffer_bytes`` of the backlog are in the sockets, out of Redis: the limit does
not count them, and the node reads them before it sees the close. One
lagging node therefore loses events for every player it serves, which is why this stage runs
per node, before the per-connection walk, and gives each (event, client) row the instant the
node read its event, or marks it lost.
"""

from __future__ import annotations

import numba
import numpy as np

from .scenario import Scenario
from .workload import Workload


@numba.njit(cache=True)
def _node_stage(order, published_at, hop, size_bytes, read_at, lost, reader_rate, hard, soft, soft_s, resub, overhead, kernel):  # pragma: no cover
    """One node's subscriber, its events taken in publish order (``order``): fill each one's read instant and loss.

    ``read_at`` and ``lost`` are indexed like the inputs. ``read_at`` may be ``published_at``
    itself: an event's publish instant is read once, before its read instant replaces it.
    """
    n = order.size
    svc = 1.0 / reader_rate
    head = 0  # position (in publish order) of the first event still in the output buffer
    backlog = 0.0  # bytes of the events from head on: whole numbers, so the sums are exact
    last_done = -np.inf
    soft_since = np.inf
    dead_until = -np.inf
    for i in range(n):
        e = order[i]
        p = published_at[e]
        backlog += size_bytes[e] + overhead
        if p < dead_until:
            lost[e] = True
            read_at[e] = np.nan
            head = i + 1
            backlog = 0.0
            continue
        # what the reader has taken out of the buffer by now
        while head < i:
            h = order[head]
            if not (lost[h] or read_at[h] - hop[h] <= p):
                break
            backlog -= size_bytes[h] + overhead
            head += 1
        done = max(p, last_done) + svc
        last_done = done
        read_at[e] = done + hop[e]
        # the oldest `kernel` bytes of the backlog have left Redis: its limit counts the rest
        counted = backlog - kernel
        if counted > soft:
            if soft_since == np.inf:
                soft_since = p
        else:
            soft_since = np.inf
        if counted > hard or (soft > 0 and p - soft_since >= soft_s and soft_since < np.inf):
            # what the sockets hold is still read; the node sees the close after it
            kept = head
            held = 0.0
            while kept <= i and held + size_bytes[order[kept]] + overhead <= kernel:
                held += size_bytes[order[kept]] + overhead
                kept += 1
            seen_at = p
            if kept > head:
                k = order[kept - 1]
                seen_at = max(p, read_at[k] - hop[k])
            for j in range(kept, i + 1):
                lost[order[j]] = True
                read_at[order[j]] = np.nan
            if kept == head:
                head = i + 1
                backlog = 0.0
            dead_until = seen_at + resub
            last_done = -np.inf
            soft_since = np.inf


@numba.njit(cache=True)
def _time_order(t, lo, width, n_buckets, order):  # pragma: no cover - jitted
    """Fill ``order`` with the stable order of ``t``: a counting sort into buckets, then each bucket sorted in place."""
    n = t.size
    start = np.zeros(n_buckets + 1, np.int64)
    for i in range(n):
        b = min(int((t[i] - lo) / width), n_buckets - 1)
        start[b + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    pos = start[:-1].copy()
    for i in range(n):
        b = min(int((t[i] - lo) / width), n_buckets - 1)
        order[pos[b]] = i
        pos[b] += 1
    for b in range(n_buckets):
        s, e = start[b], start[b + 1]
        if e - s > 32:
            # a crowded bucket (a burst): a stable merge sort of its keys keeps ties in index order
            seg = order[s:e].copy()
            keys = np.empty(e - s, np.float64)
            for k in range(e - s):
                keys[k] = t[seg[k]]
            o = np.argsort(keys, kind="mergesort")
            for k in range(e - s):
                order[s + k] = seg[o[k]]
            continue
        for i in range(s + 1, e):
            x = order[i]
            tx = t[x]
            j = i - 1
            while j >= s and t[order[j]] > tx:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x


def time_order(t: np.ndarray) -> np.ndarray:
    """``np.argsort(t, kind="stable")`` in linear time for times spread over a run (a node's publishes).

    Indices are int32 when they fit (half the memory of a node's order); about eight times per
    bucket keep the buckets' own counts small.
    """
    order = np.empty(t.size, np.int32 if t.size < 2**31 else np.int64)
    if t.size < 2:
        order[:] = np.arange(t.size)
        return order
    lo, hi = float(t.min()), float(t.max())
    if not hi > lo:
        order[:] = np.arange(t.size)
        return order
    n_buckets = max(int(t.size) // 8, 1)
    _time_order(t, lo, (hi - lo) / n_buckets * (1 + 1e-12), n_buckets, order)
    return order


def node_stage(
    scenario: Scenario, published_at: np.ndarray, hop: np.ndarray, size_bytes: np.ndarray, *, in_place: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One node's subscriber over the events it carries, given in the run's event order.

    Returns, per event, when the gateway read it (NaN if lost) and whether Redis dropped it.
    Events published at the same instant are taken in event order. ``in_place``: the read
    instants replace the publish instants in ``published_at`` (a node of a whole platform
    carries tens of millions of events: this saves a copy of them).
    """
    ob = scenario.redis.output_buffer
    order = time_order(published_at)
    read_at = published_at if in_place else np.empty(published_at.size, np.float64)
    lost = np.zeros(published_at.size, np.bool_)
    _node_stage(
        order,
        published_at,
        hop,
        size_bytes,
        read_at,
        lost,
        float(ob.reader_rate_per_s),
        float(ob.hard_limit_bytes),
        float(ob.soft_limit_bytes),
        float(ob.soft_seconds),
        float(ob.resubscribe_s),
        float(ob.overhead_bytes),
        float(ob.kernel_buffer_bytes),
    )
    return read_at, lost


def node_arrivals(scenario: Scenario, w: Workload, event_id: np.ndarray, client_id: np.ndarray):
    """Per (event, client) row: when its node's subscriber read the event, and whether Redis dropped it.

    Runs the stage once per node over the distinct events its clients receive, then maps the
    results back onto the rows (``event_id``, ``client_id``). Needs ``redis.output_buffer``.
    """
    read_at = np.empty(event_id.size, np.float64)
    lost = np.zeros(event_id.size, np.bool_)
    row_node = w.client_node[client_id]
    for node in range(w.n_nodes):
        rows = np.flatnonzero(row_node == node)
        if rows.size == 0:
            continue
        events, inverse = np.unique(event_id[rows], return_inverse=True)
        node_read, node_lost = node_stage(scenario, w.published_at[events], w.hop_latency_s[events], w.payload_bytes[events])
        read_at[rows] = node_read[inverse]
        lost[rows] = node_lost[inverse]
    return read_at, lost


__all__ = ["node_arrivals", "node_stage", "time_order"]
