"""The public entry point: ``simulate(scenario, seed=...)`` and the result it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .metrics import confidence_intervals
from .results import SimulationResult
from .scenario import Scenario, as_scenario

#: With ``records="auto"``, records are kept up to this many (event, client) attempts.
AUTO_RECORDS_MAX_ATTEMPTS = 20_000_000


def records_fit(sc: Scenario) -> bool:
    """Whether a run's records fit in memory: at most AUTO_RECORDS_MAX_ATTEMPTS expected attempts."""
    from .blocks import expected_attempts

    return expected_attempts(sc) <= AUTO_RECORDS_MAX_ATTEMPTS


def keeps_records(sc: Scenario, records: bool | Literal["auto"]) -> bool:
    """Whether a run keeps one row per attempt: as asked, or under "auto" when they fit in memory."""
    if records == "auto":
        return records_fit(sc)
    if isinstance(records, bool):
        return records
    raise ValueError(f"records must be True, False or 'auto', got {records!r}")


def simulate(
    scenario: Scenario | str | Path | dict,
    seed: int = 0,
    *,
    progress: bool = False,
    records: bool | Literal["auto"] = "auto",
    records_to: str | Path | None = None,
    workers: int = 1,
    client: Any = None,
    bin_s: float | None = None,
    block_players: int | None = None,
) -> SimulationResult:
    """Run a scenario through the simulation engine; the same seed gives the same result, bit for bit.

    ``scenario`` is a :class:`Scenario`, a path to a YAML file, or a mapping. ``progress``
    shows a progress bar (tqdm; in notebooks too).

    Every run folds its attempts into :class:`~sse_sim.aggregates.Aggregates` (counts,
    latency histograms, occupancy, connections per time bin of ``bin_s``; default: a power of
    ten giving at least 300 bins). ``records``: also keep one row per attempt (True), not
    (False), or only up to AUTO_RECORDS_MAX_ATTEMPTS expected attempts ("auto").
    ``records_to``: write the records to this Parquet file block by block as the run goes
    (memory stays bounded), whether or not they are kept.

    Large runs are cut into blocks of players (``block_players``, default about four million
    attempts each) and spread over ``workers`` local processes or a Dask ``client``
    (``dask.distributed.Client``); the result does not depend on either.
    """
    from .blocks import block_plan, block_task, run_blocks

    sc = as_scenario(scenario)
    seed = int(seed)
    if isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    keep = keeps_records(sc, records)
    plan = block_plan(sc, block_players)
    # records kept in memory take memory in proportion to the run anyway: one block saves
    # putting them together again
    one_piece = (len(plan) == 1 or (keep and block_players is None)) and workers == 1 and client is None and records_to is None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # in one piece the engine counts (event, client) rows as it walks; in blocks, events per block
        bar = tqdm(desc=sc.name, unit="row" if one_piece else "event", unit_scale=True)
    try:
        if one_piece:
            res = block_task(sc, seed, 0, plan[-1][1], keep, bin_s, None, keep_workload=True,
                             progress=None if bar is None else bar.update)
            return SimulationResult(res.records, sc, seed, "sim", res.workload, aggregates=res.aggregates,
                                    metadata={"blocks": 1, "workers": 1})
        agg, recs, info = run_blocks(
            sc, seed, keep_records=keep, records_to=records_to, workers=workers, client=client, bin_s=bin_s,
            block_players=block_players, progress=None if bar is None else bar.update,
        )
        return SimulationResult(recs, sc, seed, "sim", None, aggregates=agg, metadata=info)
    finally:
        if bar is not None:
            bar.close()


def replicate(
    scenario: Scenario | str | Path | dict,
    seeds: int | list[int] = 10,
    *,
    level: float = 0.95,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run several seeds; return (one summary row per seed, confidence interval per metric).

    ``seeds`` is a count (seeds 0..N-1) or an explicit list. The intervals are Student-t
    intervals over the per-seed means (see ``confidence_intervals``).
    """
    sc = as_scenario(scenario)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    rows = []
    if progress:
        from tqdm.auto import tqdm

        seed_list = tqdm(seed_list, desc=f"{sc.name} seeds", unit="seed")
    for s in seed_list:
        summ = simulate(sc, s).summary()
        rows.append({"seed": s, **summ.to_dict()})
    per_seed = pd.DataFrame(rows)
    return per_seed, confidence_intervals(per_seed, level)


__all__ = ["simulate", "replicate", "SimulationResult", "AUTO_RECORDS_MAX_ATTEMPTS", "keeps_records", "records_fit"]
