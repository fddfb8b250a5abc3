"""What a delivery design costs Redis: replay per reconnect, the largest replay burst, history memory, commands.

Pure functions of a run's records, workload and scenario; the figures an architect weighs
against the losses a replay window or conflation saves (see "Delivery designs" in the README).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scenario import Scenario
from .tables import DELIVERY_COSTS, STREAM_ENTRY_OVERHEAD_BYTES
from .workload import Workload


def delivery_costs(records: pd.DataFrame, workload: Workload, scenario: Scenario) -> pd.Series:
    """The cost figures of a run's delivery design, a Series indexed by the DELIVERY_COSTS names."""
    w = workload
    d = scenario.delivery
    modes = np.array([d.mode_of(t) for t in w.event_types], dtype=object)
    ev_mode = modes[w.event_type_code] if modes.size else np.zeros(0, dtype=object)
    is_stream = ev_mode == "stream"
    is_latest = ev_mode == "latest"
    n_latest_types = int((modes == "latest").sum())
    duration = float(w.duration_s)

    # resubscriptions: the workload's sessions after each client's first, and the instants a
    # replay was sent that are not among them (reconnects after a slow-client close)
    first = w.session_offsets[:-1][np.diff(w.session_offsets) > 0]
    later = np.ones(w.n_sessions, bool)
    later[first] = False
    sess_client = np.repeat(np.arange(w.n_clients), np.diff(w.session_offsets))
    later &= w.subscribed_at < np.minimum(w.disconnect_at, duration)
    rp = records.loc[records["replayed"].to_numpy(), ["client_id", "gateway_at"]]
    sent = rp.groupby(["client_id", "gateway_at"]).size()
    keys = pd.MultiIndex.from_arrays([sess_client[later], w.subscribed_at[later]], names=["client_id", "gateway_at"])
    per = pd.Series(0, index=keys.unique(), dtype=np.int64)
    per = per.add(sent, fill_value=0).astype(np.int64)
    reconnects = int(per.size)
    if reconnects:
        mean, p99 = float(per.mean()), float(np.quantile(per.to_numpy(), 0.99))
    else:
        mean = p99 = 0.0
    at = rp["gateway_at"].to_numpy()
    burst = int(np.bincount(np.floor(at).astype(np.int64)).max()) if at.size else 0

    # history held at the end: per player the newest history_size stream entries, within the TTL
    memory = 0.0
    if is_stream.any():
        player = w.player[is_stream]
        t = w.published_at[is_stream]
        size = w.payload_bytes[is_stream].astype(np.float64) + STREAM_ENTRY_OVERHEAD_BYTES
        kept = np.ones(t.size, bool) if d.history_ttl_s is None else t > duration - d.history_ttl_s
        # rank from the newest within each player (events are grouped by player, in time order)
        counts = np.bincount(player, minlength=w.n_players)
        ends = np.cumsum(counts)
        rank_from_newest = np.repeat(ends, counts) - 1 - np.arange(t.size)
        kept &= rank_from_newest < d.history_size
        memory += float(size[kept].sum())
    if is_latest.any():
        # one cached value per (player, latest type) that was published
        pairs = np.unique(w.player[is_latest].astype(np.int64) * 65536 + w.event_type_code[is_latest])
        last_size = pd.Series(w.payload_bytes[is_latest]).groupby(
            w.player[is_latest].astype(np.int64) * 65536 + w.event_type_code[is_latest]
        ).last()
        memory += float(last_size.sum()) + pairs.size * STREAM_ENTRY_OVERHEAD_BYTES
    per_reconnect = (1 if is_stream.any() else 0) + n_latest_types
    commands = int(is_stream.sum()) + int(is_latest.sum()) + reconnects * per_reconnect
    values = {
        "reconnects_n": reconnects,
        "replayed_per_reconnect_mean": mean,
        "replayed_per_reconnect_p99": p99,
        "replay_burst_max_per_s": burst,
        "history_memory_bytes": memory,
        "extra_redis_commands_per_s": commands / duration,
    }
    return pd.Series({c.name: values[c.name] for c in DELIVERY_COSTS}, name="value", dtype=object)


__all__ = ["delivery_costs", "DELIVERY_COSTS", "STREAM_ENTRY_OVERHEAD_BYTES"]
