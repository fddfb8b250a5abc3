"""A run cut into blocks of players and spread over processes: how a whole platform fits in memory.

Players are independent of one another except through a gateway node's shared Redis
subscriber (the output-buffer stage, :mod:`sse_sim.node_stage`). So a run is walked in blocks
of whole chunks of players (:data:`~sse_sim.workload.PLAYER_CHUNK`): each block's workload is
generated, walked, folded into :class:`~sse_sim.aggregates.Aggregates` and, if asked, turned
into records, then dropped. Memory is that of one block (per worker) plus the aggregates,
whatever the run's length. With the output-buffer stage, the stage first runs once per node
over that node's events (generated again, events only), and each block then reads when its
node's subscriber read each event.

Blocks and nodes are tasks: run in this process, on local worker processes, or on a Dask
cluster. Every random draw is keyed by its chunk and every aggregate is an integer sum, so the
result is the same, bit for bit, whatever the block size and wherever the tasks run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd

from .aggregates import PEAK_BINS, Aggregates, default_bin_s
from .engine import run_engine
from .errors import SseSimError
from .node_stage import node_stage
from .records import records_frame, row_layout
from .scenario import BurstPublisher, PoissonPublisher, Scenario
from .workload import (
    PLAYER_CHUNK,
    SSE_FRAME_BYTES,
    build_workload,
    chunk_events,
    n_chunks,
    run_tables,
)

#: Rows (event, client attempts) a block aims at: a few hundred megabytes while it is walked.
BLOCK_ROWS = 4_000_000


def expected_events_per_player(sc: Scenario) -> float:
    """Events a player is expected to get over the run, from the publishers' rates (for sizing blocks)."""
    total = 0.0
    for pub in sc.publishers:
        if isinstance(pub, PoissonPublisher):
            total += pub.rate_per_player_per_s * sc.duration_s
        elif isinstance(pub, BurstPublisher):
            total += pub.size * sc.duration_s / pub.every_s
        else:
            total += pub.rows.published_at.size / max(sc.population.n_players, 1)
    return total


def expected_attempts(sc: Scenario) -> float:
    """(Event, client) attempts the run is expected to make."""
    return expected_events_per_player(sc) * sc.population.n_players * sc.population.clients_per_player


def block_plan(sc: Scenario, block_players: int | None = None) -> list[tuple[int, int]]:
    """The run's blocks as (first chunk, end chunk) ranges, about BLOCK_ROWS rows each unless ``block_players`` says."""
    total = n_chunks(sc)
    if block_players is None:
        rows_per_chunk = max(expected_events_per_player(sc) * PLAYER_CHUNK * sc.population.clients_per_player, 1.0)
        per_block = max(int(BLOCK_ROWS // rows_per_chunk), 1)
    else:
        per_block = max(int(block_players) // PLAYER_CHUNK, 1)
    return [(lo, min(lo + per_block, total)) for lo in range(0, total, per_block)]


# ----------------------------------------------------------------------------------------------
# The node stage over the whole run


@dataclass(frozen=True)
class NodeReads:
    """One node's output-buffer stage over the run: per visit (an event to one of its players), read instant and loss.

    Visits are in the run's event order (player-major), so chunk ``k``'s visits start at
    ``chunk_start[k]``. The arrays are held here, or in ``.npy`` files under ``path`` when the
    stage ran in another process.
    """

    node: int
    chunk_start: np.ndarray
    read_at: np.ndarray | None = None
    lost: np.ndarray | None = None
    path: str | None = None

    def slice(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Read instants and losses of the visits of chunks ``lo:hi``."""
        a, b = int(self.chunk_start[lo]), int(self.chunk_start[hi])
        if self.path is None:
            return self.read_at[a:b], self.lost[a:b]  # type: ignore[index]
        read = np.load(f"{self.path}.read.npy", mmap_mode="r")
        lost = np.load(f"{self.path}.lost.npy", mmap_mode="r")
        return np.array(read[a:b]), np.array(lost[a:b])


def _players_visiting(sc: Scenario, a: int, b: int, node: int) -> np.ndarray:
    """Which of players ``a:b`` have a client on ``node`` (client c is on node c % nodes)."""
    cpp = sc.population.clients_per_player
    nodes = sc.gateway.nodes
    clients = np.arange(a, b)[:, None] * cpp + np.arange(cpp)[None, :]
    return ((clients % nodes) == node).any(axis=1)


def node_groups(sc: Scenario) -> list[list[int]]:
    """Nodes grouped by the players they serve: nodes of one group carry the same events, so one stage serves them all.

    Client ``c`` is on node ``c % nodes``, so which nodes a player's clients reach repeats every
    ``nodes`` players; e.g. two clients per player over eight nodes pair the nodes up.
    """
    groups: dict[tuple[bool, ...], list[int]] = {}
    for n in range(sc.gateway.nodes):
        key = tuple(_players_visiting(sc, 0, sc.gateway.nodes, n).tolist())
        groups.setdefault(key, []).append(n)
    return list(groups.values())


class _Growing:
    """An array appended to in pieces without holding the pieces and their concatenation at once."""

    def __init__(self, dtype: Any, capacity: int) -> None:
        self.data = np.empty(max(int(capacity), 16), dtype)
        self.n = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.n + values.size
        if need > self.data.size:
            bigger = np.empty(max(need, int(self.data.size * 1.25)), self.data.dtype)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger
        self.data[self.n : need] = values
        self.n = need

    def take(self) -> np.ndarray:
        out = self.data if self.n == self.data.size else self.data[: self.n].copy()
        self.data = np.empty(0, self.data.dtype)
        return out


def node_task(sc: Scenario, seed: int, nodes: Sequence[int], scratch: str | None) -> list[NodeReads]:
    """Run the output-buffer stage of a group of nodes (one stage: they carry the same events) over the whole run.

    Generates the run's events chunk by chunk and keeps those of the group's players only.
    """
    node = nodes[0]
    tables = run_tables(sc)
    total = n_chunks(sc)
    starts = np.zeros(total + 1, np.int64)
    # room for the expected visits and a little more, so the arrays are not copied as they grow
    share = float(_players_visiting(sc, 0, sc.gateway.nodes, node).mean())
    expect = expected_events_per_player(sc) * sc.population.n_players * share * 1.02
    published, hop_s, size = _Growing(np.float64, expect), _Growing(np.float32, expect), _Growing(np.int32, expect)
    for k in range(total):
        times, player, _types, sizes, hop = chunk_events(sc, seed, k, tables)
        a = k * PLAYER_CHUNK
        b = min(a + PLAYER_CHUNK, sc.population.n_players)
        visits = _players_visiting(sc, a, b, node)[player]
        published.extend(times[visits])
        hop_s.extend(hop[visits])
        size.extend(sizes[visits])
        starts[k + 1] = starts[k] + int(visits.sum())
    # the read instants overwrite the publish instants: one array of the group's size less
    read_at, lost = node_stage(sc, published.take(), hop_s.take(), size.take(), in_place=True)
    if scratch is None:
        return [NodeReads(n, starts, read_at, lost) for n in nodes]
    path = str(Path(scratch) / f"node{node}")
    np.save(f"{path}.read.npy", read_at)
    np.save(f"{path}.lost.npy", lost)
    return [NodeReads(n, starts, path=path) for n in nodes]


@numba.njit(cache=True)
def _gather_reads(event_id, client_id, player_offsets, cpp, client_node, first, read_all, lost_all):  # pragma: no cover
    """Per row, its visit's read instant and loss: visit = the node's first visit of the player + the event's rank."""
    n = event_id.size
    read_at = np.empty(n, np.float64)
    lost = np.empty(n, np.bool_)
    for r in range(n):
        c = client_id[r]
        p = c // cpp
        i = first[client_node[c], p] + event_id[r] - player_offsets[p]
        read_at[r] = read_all[i]
        lost[r] = lost_all[i]
    return read_at, lost


def _block_node_reads(sc: Scenario, w: Any, lo: int, hi: int, event_id: np.ndarray, client_id: np.ndarray, nodes: Sequence[NodeReads]):
    """Per row of a block, when its node's subscriber read the event and whether Redis dropped it."""
    a = lo * PLAYER_CHUNK
    counts = np.diff(w.player_offsets)
    first = np.zeros((len(nodes), w.n_players), np.int64)
    reads, losts = [], []
    bases: dict[Any, int] = {}  # nodes of a group share one stage: read its slice once
    size = 0
    for nr in sorted(nodes, key=lambda x: x.node):
        visits = _players_visiting(sc, a, a + w.n_players, nr.node)
        key = nr.path if nr.path is not None else id(nr.read_at)
        if key not in bases:
            node_read, node_lost = nr.slice(lo, hi)
            reads.append(node_read)
            losts.append(node_lost)
            bases[key] = size
            size += node_read.size
        # a visiting player's events follow those of the block's earlier visiting players
        first[nr.node] = bases[key] + np.concatenate(([0], np.cumsum(counts * visits)[:-1]))
    return _gather_reads(
        event_id, client_id.astype(np.int64), w.player_offsets, int(w.clients_per_player),
        w.client_node.astype(np.int64), first, np.concatenate(reads), np.concatenate(losts),
    )


# ----------------------------------------------------------------------------------------------
# Blocks


@dataclass
class BlockResult:
    """What one block contributes: its aggregates, its records if kept, and its sizes (to number ids)."""

    aggregates: Aggregates
    records: pd.DataFrame | None
    n_events: int
    n_sessions: int
    workload: Any = None


def block_task(
    sc: Scenario,
    seed: int,
    lo: int,
    hi: int,
    keep_records: bool,
    bin_s: float | None,
    nodes: Sequence[NodeReads] | None,
    keep_workload: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BlockResult:
    """Generate, walk and fold chunks ``lo:hi`` of a run; ids in its records are the block's own.

    Without ``nodes`` a scenario's output-buffer stage runs on the block alone, which is the
    run's stage only when the block is the whole run.
    """
    w = build_workload(sc, seed, chunks=(lo, hi))
    node_reads = None
    if nodes:
        _, event_id, client_id = row_layout(w.player_offsets, w.clients_per_player)
        node_reads = _block_node_reads(sc, w, lo, hi, event_id, client_id, nodes)
    rows = run_engine(sc, w, progress, node_reads=node_reads)
    agg = empty_aggregates(sc, w.event_types, bin_s)
    row_off = np.zeros(w.n_clients + 1, np.int64)
    np.cumsum(np.repeat(np.diff(w.player_offsets), w.clients_per_player), out=row_off[1:])
    agg.fold(w, rows, row_off)
    records = records_frame(w, rows) if keep_records else None
    return BlockResult(agg, records, w.n_events, w.n_sessions, w if keep_workload else None)


def empty_aggregates(sc: Scenario, event_types: Sequence[str], bin_s: float | None = None) -> Aggregates:
    """Zeroed aggregates shaped for a scenario (bins, event types, nodes, the most a connection can hold)."""
    cl = sc.clients
    in_flight = 1 + cl.socket_buffer_events
    if cl.socket_buffer_bytes is not None:
        # the most framed events of one byte each the sockets could hold beside the one being read
        by_bytes = 1 + cl.socket_buffer_bytes // (SSE_FRAME_BYTES + 1)
        in_flight = by_bytes if cl.socket_buffer_events == 0 else min(in_flight, by_bytes)
    k_max = int(min(sc.gateway.buffer_size + in_flight, PEAK_BINS))
    return Aggregates.empty(
        duration_s=sc.duration_s,
        bin_s=bin_s or default_bin_s(sc.duration_s),
        event_types=tuple(event_types),
        n_nodes=sc.gateway.nodes,
        k_max=k_max,
    )


def globalize(records: pd.DataFrame, event_base: int, client_base: int, session_base: int) -> pd.DataFrame:
    """A block's records with the run's event, client and session numbers."""
    records["event_id"] += event_base
    records["client_id"] += np.int32(client_base)
    sess = records["session_id"].to_numpy()
    records["session_id"] = np.where(sess >= 0, sess + np.int32(session_base), sess).astype(np.int32)
    return records


# ----------------------------------------------------------------------------------------------
# Where the tasks run


def process_context(preload: Sequence[str]) -> Any:
    """The way local worker processes start: forked from a server that has imported ``preload`` (numba, pandas) once."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(preload))
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - Windows


@contextmanager
def task_runner(workers: int = 1, client: Any = None) -> Iterator[Callable[..., Iterator[tuple[int, Any]]]]:
    """A function mapping a task over argument tuples, yielding (index, result) as each finishes.

    In this process (``workers=1``), on ``workers`` local processes, or on a Dask ``client``.
    """
    if client is not None:
        from distributed import as_completed

        def run_dask(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
            futures = [client.submit(fn, *a, pure=False) for a in args]
            index = {f.key: i for i, f in enumerate(futures)}
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
                fut.release()

        yield run_dask
    elif workers <= 1:
        yield lambda fn, args: ((i, fn(*a)) for i, a in enumerate(args))
    else:
        from concurrent.futures import as_completed as done

        with ProcessPoolExecutor(max_workers=workers, mp_context=process_context(["sse_sim.blocks"])) as pool:

            def run_local(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
                futs = {pool.submit(fn, *a): i for i, a in enumerate(args)}
                try:
                    for fut in done(futs):
                        yield futs[fut], fut.result()
                except BrokenProcessPool:
                    raise SseSimError(
                        "a worker process died before finishing (out of memory, or a script that starts "
                        "workers without `if __name__ == \"__main__\":`, since workers re-import it); "
                        "or run with workers=1"
                    ) from None

            yield run_local


def run_blocks(
    sc: Scenario,
    seed: int,
    *,
    keep_records: bool,
    records_to: str | Path | None = None,
    workers: int = 1,
    client: Any = None,
    bin_s: float | None = None,
    block_players: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Aggregates, pd.DataFrame | None, dict[str, Any]]:
    """Run a scenario block by block; return its aggregates, its records if kept, and how it was cut.

    ``records_to``: write the records to this Parquet file as the run goes, one row group per
    block, in order, so they need not fit in memory. ``progress`` is called with each block's
    events.
    """
    plan = block_plan(sc, block_players)
    tables = run_tables(sc)
    agg = empty_aggregates(sc, tables.event_types, bin_s)
    want_rows = keep_records or records_to is not None
    with task_runner(workers, client) as run, tempfile.TemporaryDirectory(prefix="sse-sim-nodes-") as scratch:
        nodes: list[NodeReads] | None = None
        if sc.redis.output_buffer is not None:
            where = None if (workers <= 1 and client is None) else scratch
            found = {nr.node: nr for _, group in run(node_task, [(sc, seed, g, where) for g in node_groups(sc)]) for nr in group}
            nodes = [found[n] for n in range(sc.gateway.nodes)]
        tasks = [(sc, seed, lo, hi, want_rows, agg.bin_s, nodes) for lo, hi in plan]
        kept: list[pd.DataFrame] = []
        waiting: dict[int, BlockResult] = {}
        next_block = 0
        event_base = session_base = 0
        writer = None
        try:
            for i, res in run(block_task, tasks):
                agg += res.aggregates
                if progress is not None:
                    progress(res.n_events)
                waiting[i] = res
                # records are numbered, kept and written in block order
                while next_block in waiting:
                    done = waiting.pop(next_block)
                    if done.records is not None:
                        lo = plan[next_block][0]
                        frame = globalize(done.records, event_base, lo * PLAYER_CHUNK * sc.population.clients_per_player, session_base)
                        if records_to is not None:
                            writer = _write_row_group(writer, records_to, frame)
                        if keep_records:
                            kept.append(frame)
                    event_base += done.n_events
                    session_base += done.n_sessions
                    next_block += 1
        finally:
            if writer is not None:
                writer.close()
    records = None
    if keep_records:
        records = kept[0] if len(kept) == 1 else pd.concat(kept, ignore_index=True)
    info = {"blocks": len(plan), "block_players": (plan[0][1] - plan[0][0]) * PLAYER_CHUNK, "workers": int(workers) if client is None else "dask"}
    return agg, records, info


def _write_row_group(writer: Any, path: str | Path, frame: pd.DataFrame) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if writer is None:
        writer = pq.ParquetWriter(str(path), table.schema)
    writer.write_table(table)
    return writer


def n_blocks(sc: Scenario, block_players: int | None = None) -> int:
    """How many blocks a run is cut into."""
    return len(block_plan(sc, block_players))


__all__ = ["run_blocks", "process_context", "task_runner", "block_plan", "expected_attempts", "expected_events_per_player", "NodeReads", "BLOCK_ROWS", "n_blocks"]
