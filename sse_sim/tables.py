"""Every documented table sse_sim returns, declared in one place.

The README's results tables are generated from :data:`TABLES` (``sse-sim columns``), and tests
check that each frame matches its declaration with :func:`check_frame`. Declaring them here,
rather than registering them when the module that builds a frame is imported, means every
table is known as soon as this module is, whatever else has been imported.
"""

from __future__ import annotations

import pandas as pd

from .outcomes import DISCONNECT_CAUSES, OVERFLOW_CAUSES
from .records import RECORDS, REPLICATIONS_CI, SUMMARY, THROUGHPUT, Column

OCCUPANCY: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("held_mean", "float64", "events", "Time-averaged events held (waiting + in flight), summed over the selected connections."),
    Column("held_max", "int64", "events", "Most events one selected connection held at any instant in the bin (at most K = buffer_size + 1)."),
)

OCCUPANCY_BY_CONNECTION: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("connections_n", "int64", "connections", "Connections connected at some instant of the bin (HTTP connect to close)."),
    Column("held_per_connection_mean", "float64", "events", "Time-averaged events held (waiting + in flight) per connected connection."),
    Column("peak_p50", "int64", "events", "Median over the connected connections of each one's peak held in the bin."),
    Column("peak_p99", "int64", "events", "99th percentile of those peaks (the smallest peak at least 99 % stay at or under)."),
    Column("peak_max", "int64", "events", "The busiest connection's peak held in the bin (at most K)."),
)

LATENCY_OVER_TIME: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin (by publish time)."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("delivered_n", "int64", "rows", "Deliveries of events published in the bin."),
    Column("latency_p50_s", "float64", "s", "Median latency of those deliveries; NaN if none."),
    Column("latency_p95_s", "float64", "s", "95th percentile latency."),
    Column("latency_p99_s", "float64", "s", "99th percentile latency."),
    Column("latency_max_s", "float64", "s", "Largest latency."),
)

LATENCY_CDF: tuple[Column, ...] = (
    Column("group", "object", "", "Value of the grouping column (e.g. an event_type), or 'all'."),
    Column("latency_s", "float64", "s", "A latency of a delivered row."),
    Column("fraction", "float64", "fraction", "Share of the group's deliveries with latency <= latency_s."),
)

OFFLINE_WINDOWS: tuple[Column, ...] = (
    Column("client_id", "int32", "", "Client without an active subscription."),
    Column("node", "int16", "", "Gateway node serving the client."),
    Column("offline_at", "float64", "s", "Start of the window: the connection closed (or the run started)."),
    Column("online_at", "float64", "s", "When a subscription became active again; NaN if not before the end of the run."),
    Column("offline_s", "float64", "s", "Length of the window, up to the end of the run."),
)

DISCONNECTS_OVER_TIME: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin."),
    Column("bin_s", "float64", "s", "Width of the bin."),
    Column("offline_mean", "float64", "clients", "Time-averaged clients without an active subscription."),
    Column("disconnects_n", "int64", "connections", "Connections that closed in the bin."),
    Column("reconnects_n", "int64", "connections", "Subscriptions that became active again in the bin (a reconnect storm shows as a spike)."),
)


def _ci_cols(name: str, what: str) -> tuple[Column, ...]:
    return (
        Column(name, "float64", "fraction", f"{what}: mean over seeds."),
        Column(f"{name}_ci_low", "float64", "fraction", "Lower bound of its confidence interval (Student t over seeds, clipped at 0); NaN with one seed."),
        Column(f"{name}_ci_high", "float64", "fraction", "Upper bound of its confidence interval."),
    )


SIZING: tuple[Column, ...] = (
    Column("buffer_size", "int64", "events", "gateway.buffer_size evaluated: events that wait per connection."),
    Column("capacity_k", "int64", "events", "Events a connection holds: buffer_size + 1 in flight + socket_buffer_events (M/M/1/K's K); byte caps counted in events of the workload's mean framed size."),
    Column("seeds_n", "int64", "", "Seeds run at this size (the same seeds at every size)."),
    *_ci_cols("overflow_loss_rate", f"Share of attempts lost because the buffer was full ({' + '.join(OVERFLOW_CAUSES)})"),
    *_ci_cols("disconnect_loss_rate", f"Share lost because the connection or the node's subscriber was gone ({' + '.join(DISCONNECT_CAUSES)}): no buffer size fixes it"),
    *_ci_cols("loss_rate", "Share of attempts lost, all causes"),
    Column("meets_target", "bool", "", "Mean overflow loss <= max_loss."),
)

#: Bytes a Redis stream entry costs beyond its payload (id, field name, listpack framing): an
#: estimate; ``MEMORY USAGE`` on a real key gives the exact figure for a given Redis version.
STREAM_ENTRY_OVERHEAD_BYTES = 32

DELIVERY_COSTS: tuple[Column, ...] = (
    Column("reconnects_n", "int64", "subscriptions", "Resubscriptions: every connection after a client's first (and each reconnect after a slow-client close that replayed something)."),
    Column("replayed_per_reconnect_mean", "float64", "entries", "Entries sent on a resubscription from history or the latest-value cache, mean over resubscriptions."),
    Column("replayed_per_reconnect_p99", "float64", "entries", "99th percentile of the same."),
    Column("replay_burst_max_per_s", "int64", "entries/s", "Most entries replayed within one second of the run (a mass drop's reconnect storm)."),
    Column("history_memory_bytes", "float64", "bytes", f"Redis memory the histories hold at the end of the run: retained entries x (payload + {STREAM_ENTRY_OVERHEAD_BYTES} B), plus one cached value per (player, latest type)."),
    Column("extra_redis_commands_per_s", "float64", "commands/s", "Commands beyond pub/sub's PUBLISH: XADD per stream event, SET per latest event, XRANGE and GETs per resubscription."),
)


HISTORY_SIZING: tuple[Column, ...] = (
    Column("history_size", "int64", "entries", "delivery.history_size evaluated (or held, when sizing the TTL)."),
    Column("history_ttl_s", "float64", "s", "delivery.history_ttl_s evaluated (or held, when sizing entries); NaN: no TTL."),
    Column("seeds_n", "int64", "", "Seeds run at this value (the same seeds at every value)."),
    Column("expired_loss_rate", "float64", "fraction", "Share of attempts lost_history_expired: mean over seeds."),
    Column("expired_loss_rate_ci_low", "float64", "fraction", "Lower bound of its confidence interval (Student t over seeds, clipped at 0); NaN with one seed."),
    Column("expired_loss_rate_ci_high", "float64", "fraction", "Upper bound of its confidence interval."),
    Column("loss_rate", "float64", "fraction", "Share of attempts lost, all causes: mean over seeds."),
    Column("history_memory_bytes", "float64", "bytes", "Redis memory the histories hold at the end of the run, mean over seeds."),
    Column("meets_target", "bool", "", "Mean expired loss <= max_loss."),
)


SWEEP: tuple[Column, ...] = (
    Column("<parameter>", "as given", "", "One column per swept parameter, named by its dotted path (e.g. gateway.buffer_size), holding that point's value."),
    Column("seed", "int64", "", "Seed of the run."),
    *SUMMARY,
)

COMPARISON: tuple[Column, ...] = (
    Column("metric", "object", "", "loss_rate, loss_rate_<cause> for each cause, superseded_rate, replayed_rate, latency_p50_s, latency_p95_s or latency_p99_s."),
    Column("sim", "float64", "fraction or s", "The simulator's value for the same workload (same seed)."),
    Column("real", "float64", "fraction or s", "The real run's value (gateway, Redis or fakeredis, SSE clients)."),
    Column("diff", "float64", "fraction or s", "real - sim."),
    Column("tolerance", "float64", "fraction or s", "Largest |diff| accepted: z x combined standard error + floor (see the tolerance rule)."),
    Column("within", "bool", "", "|diff| <= tolerance (a NaN on one side only is not within; NaN on both is)."),
)

ATTEMPT_COUNTS: tuple[Column, ...] = (
    Column("bin_start_at", "float64", "s", "Start of the time bin (by publish time)."),
    Column("bin_s", "float64", "s", "Width of the bin: a whole multiple of the run's aggregate bins."),
    Column("outcome", "category", "", "delivered, superseded or the loss cause."),
    Column("event_type", "category", "", "Envelope event_type."),
    Column("node", "int16", "", "Gateway node serving the clients."),
    Column("attempts_n", "int64", "rows", "(Event, client) attempts published in the bin with this outcome, type and node; combinations with none are left out."),
)

CLIENT_LOSS: tuple[Column, ...] = (
    Column("loss_rate_low", "float64", "fraction", "Lower bound of the bin of per-client loss rate (exclusive; the first bin is exactly 0)."),
    Column("loss_rate_high", "float64", "fraction", "Upper bound of the bin (inclusive); 1000 equal bins of (0, 1]."),
    Column("clients_n", "int64", "clients", "Clients whose share of attempts lost, all causes, falls in the bin."),
)

WORST_CLIENTS: tuple[Column, ...] = (
    Column("client_id", "int64", "", "Client (a player's tab or device), numbered as in records."),
    Column("node", "int16", "", "Gateway node serving the client."),
    Column("attempts_n", "int64", "rows", "Delivery attempts to the client."),
    Column("lost_n", "int64", "rows", "Attempts lost, all causes; the 30 clients that lost most, most first (ties: lower client_id)."),
    Column("loss_rate", "float64", "fraction", "lost_n / attempts_n."),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "records": RECORDS,
    "summary": SUMMARY,
    "throughput": THROUGHPUT,
    "delivery_costs": DELIVERY_COSTS,
    "replications_ci": REPLICATIONS_CI,
    "occupancy": OCCUPANCY,
    "occupancy_by_connection": OCCUPANCY_BY_CONNECTION,
    "latency_over_time": LATENCY_OVER_TIME,
    "latency_cdf": LATENCY_CDF,
    "offline_windows": OFFLINE_WINDOWS,
    "disconnects_over_time": DISCONNECTS_OVER_TIME,
    "attempt_counts": ATTEMPT_COUNTS,
    "client_loss": CLIENT_LOSS,
    "worst_clients": WORST_CLIENTS,
    "sizing": SIZING,
    "history_sizing": HISTORY_SIZING,
    "sweep": SWEEP,
    "comparison": COMPARISON,
}


def columns_markdown(table: str | None = None) -> str:
    """The documented columns as Markdown tables (what the README shows); one table if named."""
    out = []
    for name, cols in TABLES.items():
        if table is not None and name != table:
            continue
        out.append(f"### `{name}`\n\n| column | dtype | unit | meaning |\n|---|---|---|---|")
        out += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.description} |" for c in cols]
        out.append("")
    return "\n".join(out)


def check_frame(frame: pd.DataFrame, table: str | tuple[Column, ...]) -> None:
    """Raise AssertionError unless ``frame`` has exactly the documented columns and dtypes, in order.

    ``table`` is a name in :data:`TABLES` or a tuple of columns (a part of a table).
    """
    cols = TABLES[table] if isinstance(table, str) else table
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
    "TABLES",
    "columns_markdown",
    "check_frame",
    "OCCUPANCY",
    "OCCUPANCY_BY_CONNECTION",
    "LATENCY_OVER_TIME",
    "LATENCY_CDF",
    "OFFLINE_WINDOWS",
    "DISCONNECTS_OVER_TIME",
    "ATTEMPT_COUNTS",
    "CLIENT_LOSS",
    "WORST_CLIENTS",
    "SIZING",
    "SWEEP",
    "COMPARISON",
]
