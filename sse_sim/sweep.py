"""Parameter sweeps: run a scenario at many parameter points and seeds, in parallel, as one tidy frame.

``sweep(scenario, {"gateway.buffer_size": [20, 50, 100]}, seeds=5)`` returns one row per
(point, seed): the parameters under their dotted names, ``seed``, and the summary columns.
By default the runs go to local worker processes (a progress bar shows in terminals and, with
tqdm.auto, in notebooks); given a ``dask.distributed.Client`` they go to that Dask cluster
instead, so a study that outgrows one machine runs unchanged. The frame is the same either
way: every run is a pure function of (scenario, seed), and rows are ordered by point (in the
order given) then seed.

Why processes, not threads: the engine holds the GIL in numpy and pandas glue between its
numba loops, so threads would not scale. Why ``concurrent.futures`` with a forkserver rather
than Dask's local scheduler for the default: it needs no cluster to start, and the forkserver
imports sse_sim (numba, pandas) once, so each worker starts by forking a warm interpreter;
numba's on-disk cache (``cache=True``) spares every worker the compile. Forking the caller
itself is avoided because a notebook kernel has threads of its own.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .blocks import process_context
from .errors import SseSimError
from .records import SUMMARY
from .scenario import Scenario, as_scenario
from .tables import SWEEP


class SweepError(SseSimError, ValueError):
    """A sweep's grid, seeds or options are invalid; the message says which point or option and why."""


def sweep_points(grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The parameter names and the list of points of a grid (a dict of value lists, or a list of dicts).

    A dict is expanded to every combination, the first key varying slowest:

    >>> sweep_points({"gateway.buffer_size": [10, 50], "gateway.nodes": [1, 2]})[1]
    [{'gateway.buffer_size': 10, 'gateway.nodes': 1}, {'gateway.buffer_size': 10, 'gateway.nodes': 2}, {'gateway.buffer_size': 50, 'gateway.nodes': 1}, {'gateway.buffer_size': 50, 'gateway.nodes': 2}]
    """
    if isinstance(grid, Mapping):
        names = [str(k) for k in grid]
        values = []
        for name, vals in grid.items():
            if isinstance(vals, (str, bytes, Mapping)) or not isinstance(vals, Iterable):
                raise SweepError(f"grid[{name!r}] must be a list of values, got {vals!r}; write [{vals!r}] for a single value")
            vals = list(vals)
            if not vals:
                raise SweepError(f"grid[{name!r}] is an empty list: a sweep needs at least one value per parameter")
            values.append([v.item() if isinstance(v, np.generic) else v for v in vals])
        return names, [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise SweepError(f"grid must be a dict of value lists or a list of dicts, got {type(grid).__name__}")
    points = list(grid)
    if not points:
        raise SweepError("grid is an empty list: give at least one point")
    for i, p in enumerate(points):
        if not isinstance(p, Mapping):
            raise SweepError(f"grid[{i}] must be a dict of parameter values, got {p!r}")
    names = [str(k) for k in points[0]]
    for i, p in enumerate(points):
        if [str(k) for k in p] != names:
            raise SweepError(f"grid[{i}] has parameters {list(p)}, but grid[0] has {names}: every point needs the same parameters")
    return names, [{str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in p.items()} for p in points]


def seed_list(seeds: int | Iterable[int]) -> list[int]:
    """Seeds as a list: a count N means seeds 0..N-1."""
    if isinstance(seeds, (bool, np.bool_)):
        raise SweepError(f"seeds must be a count or a list of seeds, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise SweepError(f"seeds must be at least 1, got {seeds}")
        return list(range(int(seeds)))
    given = list(seeds)
    if not given:
        raise SweepError("seeds is empty: give at least one seed")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in given):
        raise SweepError(f"seeds must be whole numbers >= 0, got {given!r}")
    out = [int(s) for s in given]
    if len(set(out)) != len(out):
        raise SweepError(f"seeds has repeats: {out}")
    return out


def apply_point(scenario: Scenario, point: Mapping[str, Any], where: str = "") -> Scenario:
    """The scenario with one point's dotted-path overrides applied and validated, or a SweepError naming the point."""
    try:
        return scenario.with_overrides(dict(point))
    except SseSimError as exc:
        raise SweepError(f"{where or 'point'} {dict(point)}: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SweepError(f"{where or 'point'} {dict(point)}: cannot apply it to the scenario ({type(exc).__name__}: {exc})") from None


def run_summary(scenario: Scenario, seed: int) -> dict[str, Any]:
    """One run's summary as a plain dict: the unit of work a worker process or Dask task does.

    When the scenario keeps events for clients that are away (stream or latest delivery), the
    dict also holds the run's delivery costs (see :mod:`sse_sim.costs`).
    """
    from .simulation import simulate

    result = simulate(scenario, seed)
    out = result.summary().to_dict()
    if scenario.delivery.keeps_anything:
        out.update(result.delivery_costs().to_dict())
    return out


def _default_workers() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


class Runner:
    """Runs (scenario, seed) tasks inline, on a reused local process pool, or on a Dask client."""

    def __init__(self, *, client: Any = None, n_workers: int | None = None, progress: bool = True):
        if n_workers is not None and (isinstance(n_workers, bool) or int(n_workers) != n_workers or n_workers < 1):
            raise SweepError(f"n_workers must be a whole number >= 1, got {n_workers!r}")
        if client is not None and not hasattr(client, "map"):
            raise SweepError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
        self.client = client
        self.n_workers = int(n_workers) if n_workers is not None else _default_workers()
        self.progress = progress
        self._pool: Executor | None = None

    def close(self) -> None:
        """Shut the local process pool down, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bar(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        # an explicit disable=False would override TQDM_DISABLE, so leave the default unless off
        return tqdm(total=total, desc=desc, unit="run", **({} if self.progress else {"disable": True}))

    def run(self, tasks: Sequence[tuple[Scenario, int]], desc: str = "sweep") -> list[dict[str, Any]]:
        """Every task's summary dict, in task order."""
        results: list[dict[str, Any] | None] = [None] * len(tasks)
        with self._bar(len(tasks), desc) as bar:
            if self.client is not None:
                from distributed import as_completed as dask_completed

                futures = self.client.map(run_summary, [t[0] for t in tasks], [t[1] for t in tasks], pure=False, key=None)
                index = {f.key: i for i, f in enumerate(futures)}
                for fut in dask_completed(futures):
                    results[index[fut.key]] = fut.result()
                    bar.update(1)
            elif self.n_workers == 1 or len(tasks) == 1:
                for i, (sc, seed) in enumerate(tasks):
                    results[i] = run_summary(sc, seed)
                    bar.update(1)
            else:
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(max_workers=self.n_workers, mp_context=process_context(["sse_sim.sweep", "sse_sim.simulation"]))
                futs = {self._pool.submit(run_summary, sc, seed): i for i, (sc, seed) in enumerate(tasks)}
                try:
                    for fut in as_completed(futs):
                        results[futs[fut]] = fut.result()
                        bar.update(1)
                except BrokenProcessPool:
                    self._pool = None
                    raise SweepError(
                        "a sweep worker process died before finishing. Worker processes re-import the "
                        "script that started them: in a script, call sweep under `if __name__ == \"__main__\":`; "
                        "or pass n_workers=1 to run in this process"
                    ) from None
        return results  # type: ignore[return-value]


@contextmanager
def runner(*, client: Any = None, n_workers: int | None = None, progress: bool = True) -> Iterator[Runner]:
    """A :class:`Runner` whose process pool is shut down on exit."""
    r = Runner(client=client, n_workers=n_workers, progress=progress)
    try:
        yield r
    finally:
        r.close()


def summaries_frame(names: list[str], points: list[dict[str, Any]], seeds: list[int], results: list[dict[str, Any]]) -> pd.DataFrame:
    """Assemble the tidy sweep frame: parameter columns, seed, summary columns with documented dtypes."""
    rows_points = [p for p in points for _ in seeds]
    data: dict[str, Any] = {}
    for name in names:
        data[name] = [p[name] for p in rows_points]
    data["seed"] = np.array([s for _ in points for s in seeds], dtype=np.int64)
    for col in SUMMARY:
        data[col.name] = np.array([r[col.name] for r in results], dtype=col.dtype)
    return pd.DataFrame(data)


def sweep(
    scenario: Scenario | str | Path | dict,
    grid: Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]],
    seeds: int | Iterable[int] = 1,
    *,
    client: Any = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``scenario`` at every point of ``grid`` for every seed; one summary row per (point, seed).

    ``grid`` is a dict of dotted-path parameters to value lists (every combination is run) or a
    list of dicts (the points as given), e.g. ``{"gateway.buffer_size": [20, 50, 100]}``.
    ``seeds`` is a count N (seeds 0..N-1) or a list of seeds; the same seeds are used at every
    point (common random numbers), so differences between points are not seed noise.
    ``client``: a ``dask.distributed.Client`` to run on; otherwise ``n_workers`` local
    processes (default: the CPUs available). ``progress`` shows a progress bar.

    Every point is validated before anything runs. Columns: the parameters, ``seed``, then
    the summary columns (see the ``sweep`` and ``summary`` tables); rows are ordered by point,
    then seed, whether run locally or on Dask.
    """
    sc = as_scenario(scenario)
    names, points = sweep_points(grid)
    seeds_ = seed_list(seeds)
    scenarios = [apply_point(sc, p, f"grid point {i}") for i, p in enumerate(points)]
    tasks = [(s, seed) for s in scenarios for seed in seeds_]
    with runner(client=client, n_workers=n_workers, progress=progress) as r:
        results = r.run(tasks, desc=f"sweep {sc.name}")
    return summaries_frame(names, points, seeds_, results)


__all__ = ["sweep", "sweep_points", "seed_list", "apply_point", "run_summary", "Runner", "runner", "SweepError", "SWEEP", "summaries_frame"]
