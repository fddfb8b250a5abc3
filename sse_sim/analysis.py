"""What the plots draw, as documented DataFrames: occupancy, latency over time, CDFs, offline windows.

Pure functions of records (and of a run's workload, for connection sessions); no matplotlib,
no I/O. Every frame they return is declared in :mod:`sse_sim.tables`, so its columns are
documented with the others (``sse-sim columns``).

Buffer occupancy comes from the records alone: an event is held by its connection from
``gateway_at`` until ``left_at`` (drained to the client, evicted, or flushed by a disconnect);
a row whose ``left_at`` is NaN never entered the buffer. "Held" counts the waiting events and
the ones in flight, so a connection holds at most K = buffer_size + 1 (+ socket_buffer_events).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .tables import (
    DISCONNECTS_OVER_TIME,
    LATENCY_CDF,
    LATENCY_OVER_TIME,
    OCCUPANCY,
    OCCUPANCY_BY_CONNECTION,
    OFFLINE_WINDOWS,
)
from .workload import Workload


def _bins(duration_s: float, bin_s: float) -> tuple[int, np.ndarray]:
    if not (bin_s > 0 and np.isfinite(bin_s)):
        raise ValueError(f"bin_s must be a positive number of seconds, got {bin_s!r}")
    if not (duration_s > 0 and np.isfinite(duration_s)):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    n = max(int(np.ceil(duration_s / bin_s - 1e-9)), 1)
    return n, np.arange(n + 1) * float(bin_s)


def _duration(records: pd.DataFrame, duration_s: float | None) -> float:
    if duration_s is not None:
        return float(duration_s)
    t = records["published_at"].to_numpy()
    return float(np.nanmax(t)) if t.size and np.isfinite(np.nanmax(t)) and np.nanmax(t) > 0 else 1.0


def _step_mean(times: np.ndarray, deltas: np.ndarray, edges: np.ndarray, start_level: float = 0.0) -> np.ndarray:
    """Time average per bin of a step function that starts at ``start_level`` and jumps by ``deltas`` at ``times``."""
    # the bin edges join the change points as zero jumps, so the area up to each edge is read off
    points = np.concatenate((times, edges))
    jumps = np.concatenate((deltas, np.zeros(edges.size)))
    order = np.argsort(points, kind="stable")
    p = points[order]
    level = start_level + np.cumsum(jumps[order])
    area = np.concatenate(([0.0], np.cumsum(level[:-1] * np.diff(p))))
    at_edges = area[order >= times.size]
    return np.diff(at_edges) / np.diff(edges)


def occupancy(
    records: pd.DataFrame,
    bin_s: float = 1.0,
    *,
    duration_s: float | None = None,
    client_id: int | Sequence[int] | None = None,
) -> pd.DataFrame:
    """How full the connections' buffers are over time: time-averaged total and per-connection peak.

    ``client_id`` selects one client or several (default: all). ``duration_s`` defaults to the
    last publish instant. Columns: see the ``occupancy`` table.
    """
    rec = records
    if client_id is not None:
        ids = np.atleast_1d(np.asarray(client_id))
        rec = rec[rec["client_id"].isin(ids)]
    dur = _duration(records, duration_s)
    n_bins, edges = _bins(dur, bin_s)
    g = rec["gateway_at"].to_numpy()
    lv = rec["left_at"].to_numpy()
    cl = rec["client_id"].to_numpy()
    # held for a positive time; rows that never entered (NaN) or left at arrival hold nothing
    held = np.isfinite(g) & np.isfinite(lv) & (lv > g)
    g, lv, cl = g[held], lv[held], cl[held]
    held_mean = np.zeros(n_bins)
    held_max = np.zeros(n_bins, np.int64)
    if g.size:
        times = np.concatenate((g, lv))
        deltas = np.concatenate((np.ones(g.size), -np.ones(lv.size)))
        held_mean = _step_mean(times, deltas, edges)
        # per-connection level: sort by (client, time, departures before arrivals at a tie, as
        # the engine delivers what is done before it enqueues the next arrival)
        clients = np.concatenate((cl, cl))
        order = np.lexsort((deltas, times, clients))
        t = times[order]
        level = np.cumsum(deltas[order]).astype(np.int64)  # every client's block nets to zero
        nxt = np.append(t[1:], t[-1])
        seg = (level > 0) & (nxt > t)
        t0, t1, lev = t[seg], nxt[seg], level[seg]
        b0 = np.clip(np.floor(t0 / bin_s).astype(np.int64), 0, n_bins - 1)
        b1 = np.clip((np.ceil(t1 / bin_s) - 1).astype(np.int64), 0, n_bins - 1)
        b1 = np.maximum(b1, b0)
        inside = t0 < edges[-1]
        b0, b1, lev = b0[inside], b1[inside], lev[inside]
        span = b1 - b0 + 1
        starts = np.repeat(b0, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span))
        np.maximum.at(held_max, starts, np.repeat(lev, span))
    return pd.DataFrame(
        {
            "bin_start_at": edges[:-1],
            "bin_s": np.full(n_bins, float(bin_s)),
            "held_mean": held_mean.astype(np.float64),
            "held_max": held_max,
        }
    )


def _client_bins_peak(
    records: pd.DataFrame, edges: np.ndarray, bin_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (client, bin) in which a client held something: client ids, bins, and its peak held there."""
    n_bins = edges.size - 1
    g = records["gateway_at"].to_numpy()
    lv = records["left_at"].to_numpy()
    cl = records["client_id"].to_numpy().astype(np.int64)
    held = np.isfinite(g) & np.isfinite(lv) & (lv > g)
    g, lv, cl = g[held], lv[held], cl[held]
    if not g.size:
        empty = np.array([], np.int64)
        return empty, empty, empty
    times = np.concatenate((g, lv))
    deltas = np.concatenate((np.ones(g.size), -np.ones(lv.size)))
    clients = np.concatenate((cl, cl))
    # departures before arrivals at a tie, as in occupancy()
    order = np.lexsort((deltas, times, clients))
    t, c = times[order], clients[order]
    level = np.cumsum(deltas[order]).astype(np.int64)
    nxt = np.append(t[1:], t[-1])
    seg = (level > 0) & (nxt > t) & (t < edges[-1])
    t0, t1, lev, c = t[seg], nxt[seg], level[seg], c[seg]
    b0 = np.clip(np.floor(t0 / bin_s).astype(np.int64), 0, n_bins - 1)
    b1 = np.maximum(np.clip((np.ceil(t1 / bin_s) - 1).astype(np.int64), 0, n_bins - 1), b0)
    span = b1 - b0 + 1
    within = np.arange(span.sum()) - np.repeat(np.cumsum(span) - span, span)
    bins = np.repeat(b0, span) + within
    cells = np.repeat(c, span) * n_bins + bins
    lev = np.repeat(lev, span)
    # the largest level per (client, bin) cell
    order = np.lexsort((-lev, cells))
    cells, lev = cells[order], lev[order]
    first = np.concatenate(([True], cells[1:] != cells[:-1]))
    cells, lev = cells[first], lev[first]
    return cells // n_bins, cells % n_bins, lev


def occupancy_by_connection(
    records: pd.DataFrame,
    bin_s: float = 1.0,
    *,
    workload: Workload | None = None,
    duration_s: float | None = None,
    client_id: int | Sequence[int] | None = None,
) -> pd.DataFrame:
    """How full the connected connections' buffers are in each bin: the spread over connections, not one sum.

    For every connection connected at some instant of a bin, its peak held (waiting + in
    flight) in that bin; per bin the median, the 99th percentile and the largest of those
    peaks, and the time-averaged events held per connected connection. Connections come from
    ``workload``'s sessions (HTTP connect to close); without a workload every selected client
    in the records counts as connected throughout. Percentiles are of whole events (the
    smallest peak that at least that share of the connections stays at or under). Columns:
    ``bin_start_at, bin_s, connections_n, held_per_connection_mean, peak_p50, peak_p99, peak_max``.
    """
    if duration_s is None and workload is not None:
        duration_s = float(workload.duration_s)
    dur = _duration(records, duration_s)
    n_bins, edges = _bins(dur, bin_s)
    rec = records
    ids: np.ndarray | None = None
    if client_id is not None:
        ids = np.unique(np.atleast_1d(np.asarray(client_id)).astype(np.int64))
        rec = rec[rec["client_id"].isin(ids)]
    if workload is not None:
        w = workload
        sess_client = np.repeat(np.arange(w.n_clients), np.diff(w.session_offsets))
        keep = np.ones(sess_client.size, bool) if ids is None else np.isin(sess_client, ids)
        sc, on, off = sess_client[keep], w.connect_at[keep], np.minimum(w.disconnect_at[keep], edges[-1])
        live = (on < edges[-1]) & (off >= on)
        sc, on, off = sc[live], on[live], off[live]
        b0 = np.clip(np.floor(on / bin_s).astype(np.int64), 0, n_bins - 1)
        # a connection closed exactly on a bin edge is not connected in the bin that starts there
        b1 = np.maximum(np.clip((np.ceil(off / bin_s) - 1).astype(np.int64), 0, n_bins - 1), b0)
        diff = np.zeros(n_bins + 1, np.int64)
        np.add.at(diff, b0, 1)
        np.add.at(diff, b1 + 1, -1)
        # a client's sessions follow one another: two in a row share at most the bin where one
        # ends and the next starts, which would count that client twice there
        same = np.flatnonzero(sc[1:] == sc[:-1])
        shared = same[b0[same + 1] <= b1[same]]
        np.add.at(diff, b1[shared], -1)
        np.add.at(diff, b1[shared] + 1, 1)
        connections = np.cumsum(diff)[:n_bins]
        closes = np.isfinite(w.disconnect_at[keep][live])
        times = np.concatenate((on, off[closes]))
        deltas = np.concatenate((np.ones(on.size), -np.ones(int(closes.sum()))))
        connected_mean = _step_mean(times, deltas, edges) if times.size else np.zeros(n_bins)
    else:
        n = int(ids.size) if ids is not None else int(rec["client_id"].nunique())
        connections = np.full(n_bins, n, np.int64)
        connected_mean = np.full(n_bins, float(n))
    _, cell_bin, cell_peak = _client_bins_peak(rec, edges, float(bin_s))
    nonzero = np.bincount(cell_bin, minlength=n_bins).astype(np.int64)
    connections = np.maximum(connections, nonzero)
    order = np.lexsort((cell_peak, cell_bin))
    peaks_sorted = cell_peak[order]
    starts = np.concatenate(([0], np.cumsum(nonzero)[:-1]))
    zeros = connections - nonzero

    def quantile(q: float) -> np.ndarray:
        # rank of the q-quantile among a bin's connections (1-based), zeros first
        rank = np.ceil(q * connections).astype(np.int64)
        out = np.zeros(n_bins, np.int64)
        above = rank > zeros
        out[above] = peaks_sorted[starts[above] + rank[above] - zeros[above] - 1]
        return out

    held_total = occupancy(rec, bin_s, duration_s=dur)["held_mean"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        per_conn = np.where(connected_mean > 0, held_total / connected_mean, np.nan)
    peak_max = np.zeros(n_bins, np.int64)
    np.maximum.at(peak_max, cell_bin, cell_peak)
    return pd.DataFrame(
        {
            "bin_start_at": edges[:-1],
            "bin_s": np.full(n_bins, float(bin_s)),
            "connections_n": connections.astype(np.int64),
            "held_per_connection_mean": per_conn.astype(np.float64),
            "peak_p50": quantile(0.5),
            "peak_p99": quantile(0.99),
            "peak_max": peak_max,
        }
    )


def _grouped_quantiles(bins: np.ndarray, values: np.ndarray, n_bins: int, qs: Sequence[float]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-bin count and linear-interpolated quantiles (numpy's default method), vectorised."""
    order = np.lexsort((values, bins))
    b, v = bins[order], values[order]
    counts = np.bincount(b, minlength=n_bins)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = []
    for q in qs:
        res = np.full(n_bins, np.nan)
        has = counts > 0
        pos = q * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts[has] - 1)
        frac = pos - lo
        s = starts[has]
        res[has] = v[s + lo] * (1 - frac) + v[s + hi] * frac
        out.append(res)
    return counts, out


def latency_percentiles_over_time(
    records: pd.DataFrame, bin_s: float = 1.0, *, duration_s: float | None = None
) -> pd.DataFrame:
    """Latency p50, p95, p99 and max of the events published in each time bin (delivered rows only)."""
    dur = _duration(records, duration_s)
    n_bins, edges = _bins(dur, bin_s)
    lat = records["latency_s"].to_numpy()
    pub = records["published_at"].to_numpy()
    ok = np.isfinite(lat)
    b = np.clip(np.floor(pub[ok] / bin_s).astype(np.int64), 0, n_bins - 1)
    counts, (p50, p95, p99, pmax) = _grouped_quantiles(b, lat[ok], n_bins, (0.5, 0.95, 0.99, 1.0))
    return pd.DataFrame(
        {
            "bin_start_at": edges[:-1],
            "bin_s": np.full(n_bins, float(bin_s)),
            "delivered_n": counts.astype(np.int64),
            "latency_p50_s": p50,
            "latency_p95_s": p95,
            "latency_p99_s": p99,
            "latency_max_s": pmax,
        }
    )


def latency_cdf(records: pd.DataFrame, *, by: str | None = None, points: int = 2000) -> pd.DataFrame:
    """The empirical latency CDF of delivered rows, per group of ``by`` (a records column), thinned to ``points``."""
    if by is not None and by not in records.columns:
        raise ValueError(f"by={by!r} is not a records column (allowed: {', '.join(records.columns)})")
    if points < 2:
        raise ValueError(f"points must be at least 2, got {points!r}")
    delivered = records[records["latency_s"].notna()]
    groups = [("all", delivered)] if by is None else [(str(k), g) for k, g in delivered.groupby(by, observed=True, sort=True)]
    parts = []
    for name, g in groups:
        lat = np.sort(g["latency_s"].to_numpy())
        if lat.size == 0:
            continue
        idx = np.unique(np.round(np.linspace(0, lat.size - 1, min(points, lat.size))).astype(np.int64))
        parts.append(
            pd.DataFrame(
                {"group": pd.Series([name] * idx.size, dtype=object), "latency_s": lat[idx], "fraction": (idx + 1) / lat.size}
            )
        )
    if not parts:
        return pd.DataFrame(
            {"group": pd.Series([], dtype=object), "latency_s": np.array([], float), "fraction": np.array([], float)}
        )
    return pd.concat(parts, ignore_index=True)


def offline_windows(workload: Workload) -> pd.DataFrame:
    """Every interval in which a client had no active subscription, from the run's connection sessions.

    The gap between an HTTP connect and its subscription becoming active counts as offline:
    events published in it are lost too (``lost_disconnected``).
    """
    w = workload
    dur = float(w.duration_s)
    n_sess = np.diff(w.session_offsets)
    rows_client, rows_start, rows_end = [], [], []
    # clients that never connected are offline the whole run
    never = np.flatnonzero(n_sess == 0)
    rows_client.append(never)
    rows_start.append(np.zeros(never.size))
    rows_end.append(np.full(never.size, np.nan))
    has = n_sess > 0
    first = w.session_offsets[:-1][has]
    last = w.session_offsets[1:][has] - 1
    cl_has = np.flatnonzero(has)
    # before the first subscription
    sub0 = w.subscribed_at[first]
    m = sub0 > 0
    rows_client.append(cl_has[m])
    rows_start.append(np.zeros(m.sum()))
    rows_end.append(sub0[m])
    # between sessions: from a close to the next subscription
    sess_client = np.repeat(np.arange(w.n_clients), n_sess)
    if w.n_sessions > 1:
        same = sess_client[1:] == sess_client[:-1]
        i = np.flatnonzero(same)
        rows_client.append(sess_client[i])
        rows_start.append(w.disconnect_at[i])
        rows_end.append(w.subscribed_at[i + 1])
    # after the last session, if it closed before the end
    dis_last = w.disconnect_at[last]
    m = np.isfinite(dis_last) & (dis_last < dur)
    rows_client.append(cl_has[m])
    rows_start.append(dis_last[m])
    rows_end.append(np.full(m.sum(), np.nan))
    client = np.concatenate(rows_client).astype(np.int32)
    start = np.concatenate(rows_start).astype(np.float64)
    end = np.concatenate(rows_end).astype(np.float64)
    # a reconnect after the end of the run is no reconnect within it
    end = np.where(end >= dur, np.nan, end)
    keep = start < dur
    client, start, end = client[keep], start[keep], end[keep]
    order = np.lexsort((start, client))
    client, start, end = client[order], start[order], end[order]
    return pd.DataFrame(
        {
            "client_id": client,
            "node": w.client_node[client].astype(np.int16),
            "offline_at": start,
            "online_at": end,
            "offline_s": np.where(np.isnan(end), dur, end) - start,
        }
    )


def disconnects_over_time(workload: Workload, bin_s: float = 1.0) -> pd.DataFrame:
    """Clients offline, connections closed and reconnects per time bin: where disconnect windows and storms are."""
    w = workload
    n_bins, edges = _bins(float(w.duration_s), bin_s)
    sub = w.subscribed_at
    dis = w.disconnect_at
    closes = np.isfinite(dis)
    # active subscriptions: +1 when one becomes active, -1 when its connection closes
    times = np.concatenate((sub, dis[closes]))
    deltas = np.concatenate((np.ones(sub.size), -np.ones(int(closes.sum()))))
    if times.size:
        active = _step_mean(times, deltas, edges)
    else:
        active = np.zeros(n_bins)
    first = np.zeros(w.n_sessions, bool)
    n_sess = np.diff(w.session_offsets)
    first[w.session_offsets[:-1][n_sess > 0]] = True

    def count(t: np.ndarray) -> np.ndarray:
        t = t[(t >= 0) & (t < edges[-1])]
        return np.bincount(np.floor(t / bin_s).astype(np.int64), minlength=n_bins)[:n_bins].astype(np.int64)

    return pd.DataFrame(
        {
            "bin_start_at": edges[:-1],
            "bin_s": np.full(n_bins, float(bin_s)),
            "offline_mean": (w.n_clients - active).astype(np.float64),
            "disconnects_n": count(dis[closes]),
            "reconnects_n": count(sub[~first]),
        }
    )


__all__ = [
    "occupancy",
    "occupancy_by_connection",
    "latency_percentiles_over_time",
    "latency_cdf",
    "offline_windows",
    "disconnects_over_time",
    "OCCUPANCY",
    "OCCUPANCY_BY_CONNECTION",
    "LATENCY_OVER_TIME",
    "LATENCY_CDF",
    "OFFLINE_WINDOWS",
    "DISCONNECTS_OVER_TIME",
]
