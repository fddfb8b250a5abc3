"""The public entry point: ``simulate(scenario, seed=...)`` and the result it returns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .engine import run_engine
from .metrics import confidence_intervals
from .records import records_frame
from .results import SimulationResult
from .scenario import Scenario, as_scenario
from .workload import build_workload


def simulate(scenario: Scenario | str | Path | dict, seed: int = 0, *, progress: bool = False) -> SimulationResult:
    """Run a scenario through the simulation engine; the same seed gives the same records, bit for bit.

    ``scenario`` is a :class:`Scenario`, a path to a YAML file, or a mapping. ``progress`` shows
    a progress bar (tqdm; in notebooks too) over the (event, client) rows simulated.
    """
    sc = as_scenario(scenario)
    w = build_workload(sc, seed)
    if progress:
        from tqdm.auto import tqdm

        with tqdm(total=w.n_events * w.clients_per_player, desc=sc.name, unit="row", unit_scale=True) as bar:
            out = run_engine(sc, w, bar.update)
    else:
        out = run_engine(sc, w)
    return SimulationResult(records_frame(w, out), sc, int(seed), "sim", w)


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


__all__ = ["simulate", "replicate", "SimulationResult"]
