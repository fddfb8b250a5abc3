"""Aggregates of a run, accumulated block by block inside the engine: what a run is without one row per attempt.

A run of a whole platform makes hundreds of millions of (event, client) attempts; their records
do not fit in memory, and most questions do not need them. The engine therefore folds every
block of rows it walks into an :class:`Aggregates` before dropping them:

* attempts per (time bin, outcome, event type, node), binned by publish time, and events published;
* deliveries per bin by receive time, and deliveries sent on a reconnect (``replayed``);
* a latency histogram per publish bin and per event type, log-linear (each doubling cut into 64
  bins), so a percentile read from it is within :data:`LATENCY_RELATIVE_ERROR` (0.8 %) of the
  exact one above 1 µs (below, within 0.5 µs); the largest latency and the mean are exact;
* buffer occupancy per bin: events held (time-integral), the largest any connection held, and
  the histogram over connections of each connection's peak in the bin;
* connections per bin from the sessions: connected, connects, closes, reconnects, and the
  time-integral of active subscriptions (clients offline);
* per client, attempts and losses: the distribution of per-client loss and the worst clients.

Every count and time-integral is an integer (time in nanoseconds), so aggregates merge by
addition exactly, in any order: a run cut into blocks, on one process or many, gives the same
aggregates bit for bit as the run in one piece.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd

from .metrics import summary_series, throughput_frame
from .outcomes import LOSS_CAUSES, OUTCOME_LABELS, Outcome

if TYPE_CHECKING:
    from .records import DeliveryRows
    from .workload import Workload

#: Latency histogram, log-linear as in HdrHistogram: the first bin holds [0, LATENCY_MIN_S), then
#: each doubling of latency up to LATENCY_MAX_S is cut into LATENCY_SUB_BINS equal bins;
#: latencies beyond it count in the last bin.
LATENCY_MIN_S = 1e-6
LATENCY_MAX_S = 1e5
LATENCY_SUB_BINS = 64
_OCTAVES = math.ceil(math.log2(LATENCY_MAX_S / LATENCY_MIN_S))
LATENCY_BINS = 1 + _OCTAVES * LATENCY_SUB_BINS
#: Largest relative error of a latency read from the histogram (a bin's middle): half a bin's
#: width over its lower edge, at most 1 / (2 * LATENCY_SUB_BINS).
LATENCY_RELATIVE_ERROR = 1 / (2 * LATENCY_SUB_BINS)
#: Per-client loss rates are counted in this many equal bins of (0, 1], plus one for exactly 0.
CLIENT_LOSS_BINS = 1000
#: The histogram of connections' peaks stops here: K with socket buffers counted in bytes can be
#: far larger than any queue worth a histogram bin per event.
PEAK_BINS = 4096
#: How many of the clients that lost most are kept by name.
WORST_CLIENTS = 30

_NS = 1e9
_LOSS_CODES = np.array([i for i, name in enumerate(OUTCOME_LABELS) if name in LOSS_CAUSES], np.int64)


def latency_bin_values() -> np.ndarray:
    """The latency each histogram bin stands for: its middle (half of LATENCY_MIN_S for the first)."""
    k = np.arange(LATENCY_BINS - 1)
    octave, j = k // LATENCY_SUB_BINS, k % LATENCY_SUB_BINS
    low = LATENCY_MIN_S * 2.0**octave * (1 + j / LATENCY_SUB_BINS)
    return np.concatenate(([LATENCY_MIN_S / 2], low + LATENCY_MIN_S * 2.0**octave / (2 * LATENCY_SUB_BINS)))


def default_bin_s(duration_s: float) -> float:
    """The aggregates' bin width: the power of ten giving at least 300 bins over the run.

    A power of ten divides every round width the plots and tables ask for (1, 2 or 5 times a
    larger power of ten), so those re-bin the aggregates exactly.
    """
    return float(10.0 ** math.floor(math.log10(max(duration_s / 300.0, 1e-9))))


@numba.njit(cache=True, inline="always")
def _lat_bin(lat, n):  # pragma: no cover - jitted
    """The histogram bin of a latency: its power of two and the linear sub-bin within it (no logarithm)."""
    x = lat / LATENCY_MIN_S
    if not x >= 1.0:
        return 0
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1, e >= 1
    k = 1 + (e - 1) * LATENCY_SUB_BINS + int((m - 0.5) * (2 * LATENCY_SUB_BINS))
    return k if k < n else n - 1


@numba.njit(cache=True)
def _add_interval(area_ns, full, t0, t1, bin_s, n_bins, end):  # pragma: no cover - jitted
    """Add the overlap of [t0, t1) with each bin: whole bins counted in ``full``, the ends in nanoseconds.

    Here and below an instant's bin is int(t / bin_s), not t // bin_s: the division is
    rounded, so 15.0 falls in bin 150 of 0.1 s as in bin 15 of 1 s (15.0 // 0.1 is 149).
    """
    if t1 > end:
        t1 = end
    if not t1 > t0:
        return
    b0 = int(t0 / bin_s)
    b1 = int(t1 / bin_s)
    if b0 >= n_bins:
        return
    if b1 >= n_bins:
        b1 = n_bins - 1
    if b0 == b1:
        area_ns[b0] += round((t1 - t0) * 1e9)
        return
    area_ns[b0] += round(((b0 + 1) * bin_s - t0) * 1e9)
    if b0 + 1 < b1:
        full[b0 + 1] += 1
        full[b1] -= 1
    if t1 < (b1 + 1) * bin_s:
        area_ns[b1] += round((t1 - b1 * bin_s) * 1e9)
    else:
        full[b1] += 1
        if b1 + 1 < n_bins:
            full[b1 + 1] -= 1


@numba.njit(cache=True)
def _fold_rows(
    row_off, event_id, outcome, gateway_at, left_at, received_at, replayed, published_at, ev_type, client_node,
    bin_s, end, counts, received, replayed_n, lat_time, lat_type, lat_sum_ns, lat_max, held_ns, held_full,
    held_max, peak_hist, client_attempts, client_lost, is_loss,
):  # pragma: no cover - jitted
    """Fold one block's rows into the aggregates' arrays (client by client, rows in publish order)."""
    n_bins = counts.shape[0]
    n_lat = lat_time.shape[1]
    k_max = peak_hist.shape[1] - 1
    n_clients = row_off.size - 1
    longest = 0
    for c in range(n_clients):
        if row_off[c + 1] - row_off[c] > longest:
            longest = row_off[c + 1] - row_off[c]
    arrive = np.empty(longest, np.float64)  # one connection's held rows: when they arrived
    depart = np.empty(longest, np.float64)  # and when they left
    for c in range(n_clients):
        r0 = row_off[c]
        r1 = row_off[c + 1]
        node = client_node[c]
        n_held = 0
        for r in range(r0, r1):
            e = event_id[r]
            p = published_at[e]
            b = int(p / bin_s)
            if b >= n_bins:
                b = n_bins - 1
            o = outcome[r]
            t = ev_type[e]
            counts[b, o, t, node] += 1
            client_attempts[c] += 1
            if is_loss[o]:
                client_lost[c] += 1
            rv = received_at[r]
            if rv == rv:
                lat = rv - p
                k = _lat_bin(lat, n_lat)
                lat_time[b, k] += 1
                lat_type[t, k] += 1
                lat_sum_ns[b] += round(lat * 1e9)
                if lat > lat_max[b]:
                    lat_max[b] = lat
                if o == 0 and replayed.size > 0 and replayed[r]:
                    replayed_n[b] += 1
                rb = int(rv / bin_s)
                if rb < n_bins:
                    received[rb] += 1
            g = gateway_at[r]
            lv = left_at[r]
            if g == g and lv == lv and lv > g:
                arrive[n_held] = g
                depart[n_held] = lv
                n_held += 1
                _add_interval(held_ns, held_full, g, lv, bin_s, n_bins, end)
        if n_held == 0:
            continue
        # this connection's level over time: +1 at each arrival, -1 at each departure, departures
        # first at a tie (the engine delivers what is done before it enqueues the next arrival).
        # Arrivals come in row order, already sorted; departures nearly so (FIFO, but an evicted
        # or flushed event leaves out of turn), so an insertion sort is about one pass.
        for i in range(1, n_held):
            x = depart[i]
            j = i - 1
            while j >= 0 and depart[j] > x:
                depart[j + 1] = depart[j]
                j -= 1
            depart[j + 1] = x
        level = 0
        cur_bin = -1
        cur_peak = 0
        ia = 0
        idp = 0
        while ia < n_held or idp < n_held:
            if idp >= n_held or (ia < n_held and arrive[ia] < depart[idp]):
                t0 = arrive[ia]
                level += 1
                ia += 1
            else:
                t0 = depart[idp]
                level -= 1
                idp += 1
            # the next change, arrival or departure, ends this level's segment
            if ia < n_held and (idp >= n_held or arrive[ia] < depart[idp]):
                t1 = arrive[ia]
            elif idp < n_held:
                t1 = depart[idp]
            else:
                t1 = t0
            if level <= 0 or not t1 > t0 or not t0 < end:
                continue
            b0 = int(t0 / bin_s)
            if b0 >= n_bins:
                b0 = n_bins - 1
            b1 = int(math.ceil(t1 / bin_s)) - 1
            if b1 >= n_bins:
                b1 = n_bins - 1
            if b1 < b0:
                b1 = b0
            for b in range(b0, b1 + 1):
                if b != cur_bin:
                    if cur_bin >= 0:
                        peak_hist[cur_bin, min(cur_peak, k_max)] += 1
                    cur_bin = b
                    cur_peak = 0
                if level > cur_peak:
                    cur_peak = level
                if level > held_max[b]:
                    held_max[b] = level
        if cur_bin >= 0:
            peak_hist[cur_bin, min(cur_peak, k_max)] += 1


@numba.njit(cache=True)
def _fold_sessions(
    session_offsets, connect_at, subscribed_at, disconnect_at, bin_s, end, connections, connected_ns,
    connected_full, active_ns, active_full, connects, disconnects, reconnects,
):  # pragma: no cover - jitted
    """Fold one block's sessions: connections per bin, connected and subscribed time, connects, closes, reconnects."""
    n_bins = connections.shape[0]
    n_clients = session_offsets.size - 1
    for c in range(n_clients):
        last_b1 = -1
        for s in range(session_offsets[c], session_offsets[c + 1]):
            on = connect_at[s]
            off = disconnect_at[s]
            sub = subscribed_at[s]
            if on > 0 and on < end:
                connects[int(on / bin_s)] += 1
            if s > session_offsets[c] and sub >= 0 and sub < end:
                reconnects[int(sub / bin_s)] += 1
            if off < end:
                disconnects[int(off / bin_s)] += 1
            _add_interval(connected_ns, connected_full, on, off, bin_s, n_bins, end)
            _add_interval(active_ns, active_full, sub, off, bin_s, n_bins, end)
            # connected at some instant of a bin; a close exactly on an edge does not reach the
            # next bin, and a client's next session sharing a bin with its last counts once
            if not on < end:
                continue
            stop = off if off < end else end
            b0 = int(on / bin_s)
            b1 = int(math.ceil(stop / bin_s)) - 1
            if b1 >= n_bins:
                b1 = n_bins - 1
            if b1 < b0:
                b1 = b0
            if b0 <= last_b1:
                b0 = last_b1 + 1
            for b in range(b0, b1 + 1):
                connections[b] += 1
            if b1 > last_b1:
                last_b1 = b1


@dataclass
class Aggregates:
    """What a run delivered, lost and held, per time bin, without one row per attempt; merge with ``+``.

    See the module docstring for what is accumulated. Arrays are indexed by time bin (width
    ``bin_s``, by publish time unless said otherwise), outcome (:class:`~sse_sim.outcomes.Outcome`
    code), event type (index into ``event_types``) and gateway node.
    """

    duration_s: float
    bin_s: float
    event_types: tuple[str, ...]
    n_nodes: int
    clients_n: int
    k_max: int
    published: np.ndarray  # [bin] events published
    counts: np.ndarray  # [bin, outcome, type, node] attempts
    received: np.ndarray  # [bin] deliveries by receive time
    replayed: np.ndarray  # [bin] deliveries sent on a reconnect
    latency_time: np.ndarray  # [bin, latency bin] deliveries
    latency_type: np.ndarray  # [type, latency bin] deliveries
    latency_sum_ns: np.ndarray  # [bin]
    latency_max_s: np.ndarray  # [bin], -inf where nothing was delivered
    held_ns: np.ndarray  # [bin] event-nanoseconds held by all connections
    held_max: np.ndarray  # [bin] most events any connection held
    peak_hist: np.ndarray  # [bin, peak] connections (that held something) by their peak in the bin
    connections: np.ndarray  # [bin] connections connected at some instant of the bin
    connected_ns: np.ndarray  # [bin] connection-nanoseconds connected
    subscribed_ns: np.ndarray  # [bin] client-nanoseconds with an active subscription
    connects: np.ndarray  # [bin]
    disconnects: np.ndarray  # [bin]
    reconnects: np.ndarray  # [bin] subscriptions after the first
    client_loss_hist: np.ndarray  # [CLIENT_LOSS_BINS + 1] clients by loss rate (0, then (k-1)/N < rate <= k/N)
    worst_clients: pd.DataFrame = field(repr=False)  # client_id, node, attempts_n, lost_n, loss_rate

    @property
    def n_bins(self) -> int:
        return int(self.published.size)

    @classmethod
    def empty(cls, *, duration_s: float, bin_s: float, event_types: tuple[str, ...], n_nodes: int, k_max: int) -> Aggregates:
        """Zeroed aggregates of a run of ``duration_s`` in bins of ``bin_s``."""
        n = max(int(math.ceil(duration_s / bin_s - 1e-9)), 1)
        nt = max(len(event_types), 1)
        z = lambda *shape: np.zeros(shape, np.int64)  # noqa: E731
        return cls(
            duration_s=float(duration_s),
            bin_s=float(bin_s),
            event_types=tuple(event_types),
            n_nodes=int(n_nodes),
            clients_n=0,
            k_max=int(k_max),
            published=z(n),
            counts=z(n, len(OUTCOME_LABELS), nt, n_nodes),
            received=z(n),
            replayed=z(n),
            latency_time=z(n, LATENCY_BINS),
            latency_type=z(nt, LATENCY_BINS),
            latency_sum_ns=z(n),
            latency_max_s=np.full(n, -np.inf),
            held_ns=z(n),
            held_max=z(n),
            peak_hist=z(n, k_max + 1),
            connections=z(n),
            connected_ns=z(n),
            subscribed_ns=z(n),
            connects=z(n),
            disconnects=z(n),
            reconnects=z(n),
            client_loss_hist=z(CLIENT_LOSS_BINS + 1),
            worst_clients=_worst_frame(np.zeros(0, np.int64), np.zeros(0, np.int16), z(0), z(0)),
        )

    def __iadd__(self, other: Aggregates) -> Aggregates:
        """Add the aggregates of another, disjoint part of the same run (a block of players) into these."""
        if not isinstance(other, Aggregates):
            return NotImplemented
        if (self.bin_s, self.n_bins, self.event_types, self.n_nodes, self.k_max) != (
            other.bin_s, other.n_bins, other.event_types, other.n_nodes, other.k_max
        ):
            raise ValueError("aggregates of different runs (bins, event types, nodes or buffer) cannot be added")
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("latency_max_s", "held_max"):
                np.maximum(a, b, out=a)
            elif f.name == "worst_clients":
                self.worst_clients = _top(pd.concat([a, b], ignore_index=True))
            elif f.name == "clients_n":
                self.clients_n = a + b
            elif isinstance(a, np.ndarray):
                a += b
        return self

    def __add__(self, other: Aggregates) -> Aggregates:
        """The aggregates of two disjoint parts of one run (blocks of players or nodes) together."""
        if not isinstance(other, Aggregates):
            return NotImplemented
        merged = copy.deepcopy(self)
        merged += other
        return merged

    def __radd__(self, other: object) -> Aggregates:
        # sum() starts from 0
        if other == 0:
            return self
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Aggregates):
            return NotImplemented
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif isinstance(a, pd.DataFrame):
                if not a.equals(b):
                    return False
            elif a != b:
                return False
        return True

    # ------------------------------------------------------------------------------------------
    # Folding a block in

    def fold(self, w: Workload, rows: DeliveryRows, row_off: np.ndarray) -> None:
        """Add one block's rows (a workload block and what the engine made of it) to these aggregates."""
        nb = self.n_bins
        end = self.duration_s
        pb = np.minimum((w.published_at / self.bin_s).astype(np.int64), nb - 1)
        self.published += np.bincount(pb, minlength=nb)
        held_full = np.zeros(nb + 1, np.int64)
        replayed = rows.replayed if rows.replayed is not None else np.zeros(0, np.bool_)
        client_attempts = np.zeros(w.n_clients, np.int64)
        client_lost = np.zeros(w.n_clients, np.int64)
        is_loss = np.zeros(len(OUTCOME_LABELS), np.bool_)
        is_loss[_LOSS_CODES] = True
        _fold_rows(
            row_off, rows.event_id, rows.outcome, rows.gateway_at, rows.left_at, rows.received_at, replayed,
            w.published_at, w.event_type_code.astype(np.int64, copy=False), w.client_node.astype(np.int64),
            self.bin_s, end, self.counts, self.received, self.replayed, self.latency_time, self.latency_type,
            self.latency_sum_ns, self.latency_max_s, self.held_ns, held_full, self.held_max, self.peak_hist,
            client_attempts, client_lost, is_loss,
        )
        bin_ns = round(self.bin_s * _NS)
        self.held_ns += np.cumsum(held_full)[:nb] * bin_ns
        c_full = np.zeros(nb + 1, np.int64)
        a_full = np.zeros(nb + 1, np.int64)
        _fold_sessions(
            w.session_offsets, w.connect_at, w.subscribed_at, w.disconnect_at, self.bin_s, end, self.connections,
            self.connected_ns, c_full, self.subscribed_ns, a_full, self.connects, self.disconnects, self.reconnects,
        )
        self.connected_ns += np.cumsum(c_full)[:nb] * bin_ns
        self.subscribed_ns += np.cumsum(a_full)[:nb] * bin_ns
        self.clients_n += w.n_clients
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(client_attempts > 0, client_lost / np.maximum(client_attempts, 1), 0.0)
        k = np.where(client_lost > 0, np.ceil(rate * CLIENT_LOSS_BINS).astype(np.int64), 0)
        self.client_loss_hist += np.bincount(np.clip(k, 0, CLIENT_LOSS_BINS), minlength=CLIENT_LOSS_BINS + 1)
        ids = np.arange(w.n_clients, dtype=np.int64) + w.client_base
        self.worst_clients = _top(
            pd.concat([self.worst_clients, _worst_frame(ids, w.client_node, client_attempts, client_lost)], ignore_index=True)
        )

    # ------------------------------------------------------------------------------------------
    # Reading them: the documented frames

    def _factor(self, bin_s: float | None) -> int:
        """How many of the aggregates' bins make one bin of ``bin_s`` (None: the aggregates' own)."""
        if bin_s is None:
            return 1
        f = bin_s / self.bin_s
        k = round(f)
        if k < 1 or abs(f - k) > 1e-6 * k:
            raise ValueError(
                f"bin_s={bin_s:g} s is not a whole multiple of this run's aggregate bins ({self.bin_s:g} s); "
                "without records, use a multiple of it, or run with records=True"
            )
        return int(k)

    def _rebin(self, a: np.ndarray, k: int, how: str = "sum") -> np.ndarray:
        n = -(-a.shape[0] // k)
        pad = n * k - a.shape[0]
        if pad:
            fill = -np.inf if how == "max" else 0
            a = np.concatenate([a, np.full((pad, *a.shape[1:]), fill, a.dtype)])
        a = a.reshape(n, k, *a.shape[1:])
        return a.max(axis=1) if how == "max" else a.sum(axis=1)

    def _edges(self, k: int) -> tuple[np.ndarray, float]:
        width = self.bin_s * k
        n = -(-self.n_bins // k)
        return np.arange(n) * width, width

    def summary(self) -> pd.Series:
        """The run's SUMMARY figures; latency percentiles within LATENCY_RELATIVE_ERROR of the exact ones."""
        by_outcome = self.counts.sum(axis=(0, 2, 3))
        delivered = int(by_outcome[Outcome.DELIVERED])
        p50, p95, p99 = _hist_quantiles(self.latency_time.sum(axis=0), (0.5, 0.95, 0.99))
        lmax = float(self.latency_max_s.max()) if delivered else np.nan
        lmean = float(self.latency_sum_ns.sum() / _NS / delivered) if delivered else np.nan
        return summary_series(by_outcome, int(self.published.sum()), int(self.replayed.sum()), (p50, p95, p99, lmax, lmean), self.duration_s)

    def throughput(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``throughput`` table, in bins that are a whole multiple of the aggregates' bins."""
        k = self._factor(bin_s)
        grid = self._rebin(self.counts.sum(axis=(2, 3)), k)
        received = self._rebin(self.received, k)
        starts, width = self._edges(k)
        return throughput_frame(grid, received, starts, width)

    def attempt_counts(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``attempt_counts`` table: attempts per (time bin, outcome, event type, node), tidy, zeros left out."""
        k = self._factor(bin_s)
        grid = self._rebin(self.counts, k)
        starts, width = self._edges(k)
        b, o, t, n = np.nonzero(grid)
        return pd.DataFrame(
            {
                "bin_start_at": starts[b],
                "bin_s": np.full(b.size, width),
                "outcome": pd.Categorical.from_codes(o, categories=list(OUTCOME_LABELS)),
                "event_type": pd.Categorical.from_codes(t, categories=list(self.event_types) or ["none"]),
                "node": n.astype(np.int16),
                "attempts_n": grid[b, o, t, n].astype(np.int64),
            }
        )

    def latency_over_time(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``latency_over_time`` table: percentiles from the histogram, the largest exact."""
        k = self._factor(bin_s)
        hist = self._rebin(self.latency_time, k)
        lmax = self._rebin(self.latency_max_s, k, "max")
        starts, width = self._edges(k)
        qs = np.array([_hist_quantiles(h, (0.5, 0.95, 0.99)) for h in hist]).reshape(-1, 3)
        n = hist.sum(axis=1).astype(np.int64)
        return pd.DataFrame(
            {
                "bin_start_at": starts,
                "bin_s": np.full(starts.size, width),
                "delivered_n": n,
                "latency_p50_s": qs[:, 0],
                "latency_p95_s": qs[:, 1],
                "latency_p99_s": qs[:, 2],
                "latency_max_s": np.where(n > 0, lmax, np.nan),
            }
        )

    def latency_cdf(self, *, by: str | None = None) -> pd.DataFrame:
        """The ``latency_cdf`` table from the histogram, for all deliveries or ``by="event_type"``."""
        if by not in (None, "event_type"):
            raise ValueError(f"without records the latency CDF is kept overall and by event_type, not by {by!r}")
        values = latency_bin_values()
        groups = [("all", self.latency_type.sum(axis=0))] if by is None else list(zip(self.event_types, self.latency_type, strict=True))
        parts = []
        for name, h in groups:
            total = h.sum()
            if total == 0:
                continue
            nz = np.flatnonzero(h)
            parts.append(
                pd.DataFrame({"group": pd.Series([name] * nz.size, dtype=object), "latency_s": values[nz], "fraction": np.cumsum(h)[nz] / total})
            )
        if not parts:
            return pd.DataFrame({"group": pd.Series([], dtype=object), "latency_s": np.array([], float), "fraction": np.array([], float)})
        return pd.concat(parts, ignore_index=True)

    def occupancy_by_connection(self) -> pd.DataFrame:
        """The ``occupancy_by_connection`` table, at the aggregates' own bin width (a peak is per bin)."""
        starts, width = self._edges(1)
        connections = np.maximum(self.connections, self.peak_hist.sum(axis=1))
        zeros = connections - self.peak_hist.sum(axis=1)

        def quantile(q: float) -> np.ndarray:
            rank = np.ceil(q * connections).astype(np.int64)
            cum = np.cumsum(self.peak_hist, axis=1) + zeros[:, None]
            out = np.zeros(self.n_bins, np.int64)
            for b in np.flatnonzero(rank > zeros):
                out[b] = int(np.searchsorted(cum[b], rank[b]))
            return out

        with np.errstate(divide="ignore", invalid="ignore"):
            per_conn = np.where(self.connected_ns > 0, self.held_ns / self.connected_ns, np.nan)
        return pd.DataFrame(
            {
                "bin_start_at": starts,
                "bin_s": np.full(starts.size, width),
                "connections_n": connections.astype(np.int64),
                "held_per_connection_mean": per_conn.astype(np.float64),
                "peak_p50": quantile(0.5),
                "peak_p99": quantile(0.99),
                "peak_max": self.held_max.astype(np.int64),
            }
        )

    def occupancy(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``occupancy`` table: time-averaged events held by all connections, and the most any one held."""
        k = self._factor(bin_s)
        starts, width = self._edges(k)
        return pd.DataFrame(
            {
                "bin_start_at": starts,
                "bin_s": np.full(starts.size, width),
                "held_mean": self._rebin(self.held_ns, k) / (width * _NS),
                "held_max": self._rebin(self.held_max, k, "max").astype(np.int64),
            }
        )

    def disconnects_over_time(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``disconnects_over_time`` table: clients offline, closes and reconnects per bin."""
        k = self._factor(bin_s)
        starts, width = self._edges(k)
        active = self._rebin(self.subscribed_ns, k) / (width * _NS)
        return pd.DataFrame(
            {
                "bin_start_at": starts,
                "bin_s": np.full(starts.size, width),
                "offline_mean": (self.clients_n - active).astype(np.float64),
                "disconnects_n": self._rebin(self.disconnects, k).astype(np.int64),
                "reconnects_n": self._rebin(self.reconnects, k).astype(np.int64),
            }
        )

    def client_loss(self) -> pd.DataFrame:
        """The ``client_loss`` table: how many clients lost what share of their attempts."""
        edges = np.arange(CLIENT_LOSS_BINS + 1) / CLIENT_LOSS_BINS
        return pd.DataFrame(
            {
                "loss_rate_low": np.concatenate(([0.0], edges[:-1])),
                "loss_rate_high": np.concatenate(([0.0], edges[1:])),
                "clients_n": self.client_loss_hist.astype(np.int64),
            }
        )


def _hist_quantiles(hist: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """Quantiles of a latency histogram, interpolated between order statistics as numpy's default does."""
    n = int(hist.sum())
    if n == 0:
        return tuple(np.nan for _ in qs)
    values = latency_bin_values()
    cum = np.cumsum(hist)
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        # the bin holding the (lo+1)-th and (hi+1)-th smallest latencies
        v_lo = values[int(np.searchsorted(cum, lo + 1))]
        v_hi = values[int(np.searchsorted(cum, hi + 1))]
        out.append(float(v_lo * (1 - frac) + v_hi * frac))
    return tuple(out)


def _worst_frame(ids: np.ndarray, node: np.ndarray, attempts: np.ndarray, lost: np.ndarray) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(attempts > 0, lost / np.maximum(attempts, 1), np.nan)
    return pd.DataFrame(
        {
            "client_id": ids.astype(np.int64),
            "node": node.astype(np.int16),
            "attempts_n": attempts.astype(np.int64),
            "lost_n": lost.astype(np.int64),
            "loss_rate": rate.astype(np.float64),
        }
    )


def _top(frame: pd.DataFrame) -> pd.DataFrame:
    """The WORST_CLIENTS clients that lost most, ties by client id: the same whatever the merge order."""
    frame = frame[frame["lost_n"] > 0]
    return frame.sort_values(["lost_n", "client_id"], ascending=[False, True], kind="stable").head(WORST_CLIENTS).reset_index(drop=True)


__all__ = [
    "Aggregates",
    "LATENCY_RELATIVE_ERROR",
    "LATENCY_BINS",
    "latency_bin_values",
    "default_bin_s",
]
