"""The records schema: one row per (event, client) delivery attempt, the same for every backend.

This module owns the schema of a run's frames (records, summary, throughput, replication
intervals), the row layout both backends fill (client-major: each client's player's events in
publish order) and the building of the records frame from per-row arrays. Every documented
table, these and the analysis frames, is listed in :mod:`sse_sim.tables`. Naming: instants end
in ``_at`` (seconds since the run's start), durations in ``_s``, counts in ``_n``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
import pandas as pd

from .outcomes import LOSS_CAUSES, OUTCOME_LABELS

if TYPE_CHECKING:
    from .workload import Workload


@dataclass(frozen=True)
class Column:
    """One documented column: its name, pandas dtype, unit and meaning."""

    name: str
    dtype: str
    unit: str
    description: str


RECORDS: tuple[Column, ...] = (
    Column("event_id", "int64", "", "Index of the published event in the workload (publish schedule)."),
    Column("client_id", "int32", "", "Index of the client (a player's tab or device)."),
    Column("brand_id", "int64", "", "Casino brand of the player."),
    Column("player_id", "int64", "", "Player the event was published to (channel SSE::{brand_id}::{player_id})."),
    Column("node", "int16", "", "Gateway node serving the client."),
    Column("event_type", "category", "", "Envelope event_type, e.g. notification."),
    Column("payload_bytes", "int32", "bytes", "Size of the published JSON message."),
    Column("published_at", "float64", "s", "When the backend published the event to Redis."),
    Column("gateway_at", "float64", "s", "When the event reached the client's connection at the gateway; NaN if it never did."),
    Column("left_at", "float64", "s", "When it left the connection's buffer: read by the client, evicted, or flushed by a disconnect; NaN if it never entered."),
    Column("received_at", "float64", "s", "When the client received it; NaN unless delivered."),
    Column("latency_s", "float64", "s", "received_at - published_at; NaN unless delivered."),
    Column("outcome", "category", "", "delivered, superseded (delivery latest: a newer value replaced it) or the loss cause: " + ", ".join(LOSS_CAUSES) + "."),
    Column("replayed", "bool", "", "Delivery stream or latest: sent on a reconnect from the player's history or latest-value cache, not live."),
    Column("session_id", "int32", "", "Index of the client's connection session in the workload; -1 when not connected."),
)

SUMMARY: tuple[Column, ...] = (
    Column("published_n", "int64", "events", "Events published."),
    Column("attempts_n", "int64", "rows", "(event, client) delivery attempts: published events times clients per player."),
    Column("delivered_n", "int64", "rows", "Attempts delivered."),
    Column("lost_n", "int64", "rows", "Attempts not delivered, all loss causes (superseded is not a loss)."),
    Column("loss_rate", "float64", "fraction", "lost_n / attempts_n."),
    Column("superseded_n", "int64", "rows", "Attempts replaced by a newer value of the same event type before the client read them (delivery latest)."),
    Column("replayed_n", "int64", "rows", "Delivered attempts sent on a reconnect from history or the latest-value cache (included in delivered_n)."),
    *(Column(f"loss_rate_{c}", "float64", "fraction", f"Share of attempts lost as {c}.") for c in LOSS_CAUSES),
    Column("latency_p50_s", "float64", "s", "Median latency of delivered attempts."),
    Column("latency_p95_s", "float64", "s", "95th percentile latency."),
    Column("latency_p99_s", "float64", "s", "99th percentile latency."),
    Column("latency_max_s", "float64", "s", "Largest latency."),
    Column("latency_mean_s", "float64", "s", "Mean latency."),
    Column("published_per_s", "float64", "events/s", "Events published per second over the run (one per publish, whatever the number of clients)."),
    Column("delivered_per_s", "float64", "deliveries/s", "Deliveries per second over the run: delivered attempts, one per (event, client), so up to published_per_s × clients per player."),
    Column("duration_s", "float64", "s", "Length of the run."),
)

THROUGHPUT: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("published_n", "int64", "events", "Attempts whose event was published in the bin."),
    Column("delivered_n", "int64", "events", "Attempts published in the bin that were delivered."),
    Column("superseded_n", "int64", "events", "Attempts published in the bin replaced by a newer value before being read (delivery latest)."),
    *(Column(f"{c}_n", "int64", "events", f"Attempts published in the bin lost as {c}.") for c in LOSS_CAUSES),
    Column("received_n", "int64", "events", "Deliveries received in the bin (by received_at)."),
    Column("received_per_s", "float64", "events/s", "received_n / bin_s."),
)

REPLICATIONS_CI: tuple[Column, ...] = (
    Column("metric", "object", "", "Summary metric (a SUMMARY column)."),
    Column("mean", "float64", "", "Mean over the seeds."),
    Column("std_err", "float64", "", "Standard error of the mean over the seeds."),
    Column("ci_low", "float64", "", "Lower bound of the confidence interval (Student t)."),
    Column("ci_high", "float64", "", "Upper bound of the confidence interval."),
    Column("seeds_n", "int64", "", "Number of seeds."),
)


def outcome_categorical(codes: np.ndarray) -> pd.Categorical:
    """Outcome codes (see :class:`sse_sim.outcomes.Outcome`) as the records' categorical."""
    return pd.Categorical.from_codes(codes, categories=list(OUTCOME_LABELS))


@dataclass(frozen=True)
class DeliveryRows:
    """The per-row arrays a backend fills: one entry per (event, client) row, in :func:`row_layout` order.

    ``outcome`` holds :class:`~sse_sim.outcomes.Outcome` codes; instants are seconds since the
    run's start; ``session_id`` is -1 where the client had no session.
    """

    event_id: np.ndarray
    client_id: np.ndarray
    outcome: np.ndarray
    gateway_at: np.ndarray
    left_at: np.ndarray
    received_at: np.ndarray
    session_id: np.ndarray
    replayed: np.ndarray | None = None  # per row: sent on a reconnect, not live (None: all live)


def row_layout(player_offsets: np.ndarray, clients_per_player: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row ranges per client and the event id and client id of each row (client-major)."""
    events_per_player = np.diff(player_offsets).astype(np.int64)
    row_off = np.zeros(events_per_player.size * clients_per_player + 1, np.int64)
    np.cumsum(np.repeat(events_per_player, clients_per_player), out=row_off[1:])
    # numpy allocates the row arrays, not the compiled fill: numpy asks the kernel for huge
    # pages, numba's allocator does not, and at 10 M rows faulting in 4 KiB pages took 4 times
    # as long as filling them (33 ms against 8 ms for 80 MB)
    total = int(row_off[-1])
    event_id = np.empty(total, np.int64)
    client_id = np.empty(total, np.int32)
    _fill_rows(player_offsets, clients_per_player, row_off, event_id, client_id)
    return row_off, event_id, client_id


@numba.njit(cache=True)
def _fill_rows(player_offsets, clients_per_player, row_off, event_id, client_id):  # pragma: no cover - jitted
    """Fill each row's event id and client id from the row ranges of :func:`row_layout`."""
    for c in range(row_off.size - 1):
        e0 = player_offsets[c // clients_per_player]
        r0 = row_off[c]
        for j in range(row_off[c + 1] - r0):
            event_id[r0 + j] = e0 + j
            client_id[r0 + j] = c


@numba.njit(cache=True)
def _gather_rows(event_id, client_id, player, brand_of_player, player_ids, client_node, published_at, received_at):  # pragma: no cover
    """Per-row ids and latency in one pass (no temporaries: at 10 M rows memory traffic dominates)."""
    n = event_id.size
    brand = np.empty(n, np.int64)
    pid = np.empty(n, np.int64)
    node = np.empty(n, np.int16)
    latency = np.empty(n, np.float64)
    for r in range(n):
        e = event_id[r]
        p = player[e]
        brand[r] = brand_of_player[p]
        pid[r] = player_ids[p]
        node[r] = client_node[client_id[r]]
        latency[r] = received_at[r] - published_at[e]
    return brand, pid, node, latency


def records_frame(w: Workload, out: DeliveryRows) -> pd.DataFrame:
    """The documented records DataFrame of a workload from a backend's per-row arrays."""
    event_id = np.ascontiguousarray(out.event_id, dtype=np.int64)
    client_id = np.ascontiguousarray(out.client_id, dtype=np.int32)
    received_at = np.ascontiguousarray(out.received_at, dtype=np.float64)
    brand, pid, node, latency = _gather_rows(
        event_id,
        client_id,
        w.player.astype(np.int64, copy=False),
        w.player_brand_ids().astype(np.int64, copy=False),
        w.player_ids,
        w.client_node,
        w.published_at,
        received_at,
    )
    if event_id.size == w.n_events and w.clients_per_player == 1 and np.array_equal(event_id, np.arange(event_id.size)):
        # one client per player: rows are the events themselves, so share the workload's arrays
        type_code, payload, published = w.event_type_code, w.payload_bytes, w.published_at
    else:
        type_code, payload, published = (
            w.event_type_code[event_id],
            w.payload_bytes[event_id],
            w.published_at[event_id],
        )
    data = {
        "event_id": event_id,
        "client_id": client_id,
        "brand_id": brand,
        "player_id": pid,
        "node": node,
        "event_type": pd.Categorical.from_codes(type_code, list(w.event_types)),
        "payload_bytes": payload,
        "published_at": published,
        "gateway_at": out.gateway_at,
        "left_at": out.left_at,
        "received_at": received_at,
        "latency_s": latency,
        "outcome": outcome_categorical(out.outcome),
        "replayed": np.zeros(event_id.size, np.bool_) if out.replayed is None else np.ascontiguousarray(out.replayed, dtype=np.bool_),
        "session_id": np.ascontiguousarray(out.session_id, dtype=np.int32),
    }
    return pd.DataFrame({c.name: data[c.name] for c in RECORDS}, copy=False)


__all__ = [
    "Column",
    "RECORDS",
    "SUMMARY",
    "THROUGHPUT",
    "REPLICATIONS_CI",
    "DeliveryRows",
    "outcome_categorical",
    "records_frame",
    "row_layout",
]
