"""The records schema: one row per (event, client) delivery attempt, the same for every backend.

Every column of every DataFrame sse_sim returns is described in :data:`COLUMNS`, the one place
the README's results table is generated from (``sse-sim columns``), and tests check that the
frames match it. Naming: instants end in ``_at`` (seconds since the run's start), durations
in ``_s``, counts in ``_n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .outcomes import LOSS_CAUSES, OUTCOME_LABELS


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
    Column("outcome", "category", "", "delivered, or the loss cause: " + ", ".join(LOSS_CAUSES) + "."),
    Column("session_id", "int32", "", "Index of the client's connection session in the workload; -1 when not connected."),
)

SUMMARY: tuple[Column, ...] = (
    Column("published_n", "int64", "events", "Events published."),
    Column("attempts_n", "int64", "rows", "(event, client) delivery attempts: published events times clients per player."),
    Column("delivered_n", "int64", "rows", "Attempts delivered."),
    Column("lost_n", "int64", "rows", "Attempts not delivered, all causes."),
    Column("loss_rate", "float64", "fraction", "lost_n / attempts_n."),
    *(Column(f"loss_rate_{c}", "float64", "fraction", f"Share of attempts lost as {c}.") for c in LOSS_CAUSES),
    Column("latency_p50_s", "float64", "s", "Median latency of delivered attempts."),
    Column("latency_p95_s", "float64", "s", "95th percentile latency."),
    Column("latency_p99_s", "float64", "s", "99th percentile latency."),
    Column("latency_max_s", "float64", "s", "Largest latency."),
    Column("latency_mean_s", "float64", "s", "Mean latency."),
    Column("published_per_s", "float64", "events/s", "Mean publish rate over the run."),
    Column("delivered_per_s", "float64", "events/s", "Mean delivery rate over the run."),
    Column("duration_s", "float64", "s", "Length of the run."),
)

THROUGHPUT: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("published_n", "int64", "events", "Attempts whose event was published in the bin."),
    Column("delivered_n", "int64", "events", "Attempts published in the bin that were delivered."),
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

TABLES: dict[str, tuple[Column, ...]] = {
    "records": RECORDS,
    "summary": SUMMARY,
    "throughput": THROUGHPUT,
    "replications_ci": REPLICATIONS_CI,
}


def register_table(name: str, columns: tuple[Column, ...]) -> None:
    """Add a documented table (used by modules that return frames of their own, e.g. sweeps)."""
    TABLES[name] = columns


def columns_markdown(table: str | None = None) -> str:
    """The documented columns as Markdown tables (what the README shows)."""
    out = []
    for name, cols in TABLES.items():
        if table is not None and name != table:
            continue
        out.append(f"### `{name}`\n\n| column | dtype | unit | meaning |\n|---|---|---|---|")
        out += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.description} |" for c in cols]
        out.append("")
    return "\n".join(out)


def outcome_categorical(codes: np.ndarray) -> pd.Categorical:
    """Outcome codes (see :class:`sse_sim.outcomes.Outcome`) as the records' categorical."""
    return pd.Categorical.from_codes(codes, categories=list(OUTCOME_LABELS))


def check_frame(frame: pd.DataFrame, table: str) -> None:
    """Raise AssertionError unless ``frame`` has exactly the documented columns and dtypes, in order."""
    cols = TABLES[table]
    names = [c.name for c in cols]
    assert list(frame.columns) == names, f"{table}: columns {list(frame.columns)} != documented {names}"
    for c in cols:
        actual = str(frame[c.name].dtype)
        expected = c.dtype
        if expected == "object":
            ok = actual in ("object", "str", "string")
        else:
            ok = actual == expected
        assert ok, f"{table}.{c.name}: dtype {actual} != documented {expected}"


__all__ = [
    "Column",
    "RECORDS",
    "SUMMARY",
    "THROUGHPUT",
    "REPLICATIONS_CI",
    "TABLES",
    "columns_markdown",
    "check_frame",
    "outcome_categorical",
    "register_table",
]
