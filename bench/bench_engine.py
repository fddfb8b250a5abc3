"""Speed of the simulator end to end (workload, engine, records) against the same model in SimPy.

Run: ``.venv/bin/python bench/bench_engine.py`` (or ``make bench``). Prints events/s for both,
measured in the same process, their ratio, and the peak memory of a 10 M-event run measured in
a fresh child process. Machines here are shared and noisy: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from simpy_model import simpy_outcomes  # noqa: E402

from sse_sim import build_workload, load_scenario  # noqa: E402
from sse_sim.engine import run_engine  # noqa: E402
from sse_sim.simulation import records_frame  # noqa: E402

SCENARIO = HERE.parent / "data" / "scenarios" / "bench_10m.yaml"


def end_to_end(sc, seed: int) -> tuple[int, float, dict[str, float]]:
    """Events published and seconds taken for workload + engine + records DataFrame."""
    t0 = time.perf_counter()
    w = build_workload(sc, seed)
    t1 = time.perf_counter()
    out = run_engine(sc, w)
    t2 = time.perf_counter()
    rec = records_frame(w, out)
    t3 = time.perf_counter()
    assert len(rec) == w.n_events
    return w.n_events, t3 - t0, {"workload": t1 - t0, "engine": t2 - t1, "records": t3 - t2}


def simpy_end_to_end(sc, seed: int) -> tuple[int, float]:
    """Events and seconds for the same model in SimPy, including its workload and records."""
    import pandas as pd

    t0 = time.perf_counter()
    w = build_workload(sc, seed)
    ref = simpy_outcomes(sc, w)
    pd.DataFrame(ref)
    return w.n_events, time.perf_counter() - t0


def peak_memory_mb(seed: int) -> float:
    """Peak RSS of a fresh process that runs the full scenario once through simulate()."""
    code = (
        "import resource, sys; from sse_sim import simulate; "
        f"r = simulate({str(SCENARIO)!r}, seed={seed}); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--simpy-fraction", type=float, default=0.02, help="Share of players SimPy runs."
    )
    args = parser.parse_args()

    sc = load_scenario(SCENARIO)
    end_to_end(sc.with_overrides({"duration_s": 1.0}), 0)  # compile / load the numba cache

    small = sc.with_overrides(
        {"population.players_per_brand": max(int(5000 * args.simpy_fraction), 1)}
    )
    # interleave the two so that both see the same background load; keep each one's best run
    runs, simpy_runs = [], []
    for seed in range(args.repeats):
        runs.append(end_to_end(sc, seed))
        simpy_runs.append(simpy_end_to_end(small, seed))
    n_events, best, parts = min(runs, key=lambda r: r[1])
    rate = n_events / best
    n_simpy, t_simpy = min(simpy_runs, key=lambda r: r[1] / r[0])
    simpy_rate = n_simpy / t_simpy
    n_small, t_small, _ = end_to_end(small, 0)

    mem = peak_memory_mb(0)
    print(f"scenario: {SCENARIO.name}  ({n_events:,} events, one core)")
    print(
        f"  sse_sim end to end      {rate / 1e6:8.2f} M events/s   ({best:.2f} s: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
        + ")"
    )
    print(
        f"  sse_sim, SimPy's slice  {n_small / t_small / 1e6:8.2f} M events/s   ({n_small:,} events)"
    )
    print(
        f"  SimPy, same model       {simpy_rate / 1e6:8.3f} M events/s   ({n_simpy:,} events, {t_simpy:.2f} s)"
    )
    print(f"  ratio sse_sim / SimPy   {rate / simpy_rate:8.0f} x")
    print(f"  peak memory, 10 M run   {mem:8.0f} MB")


if __name__ == "__main__":
    main()
