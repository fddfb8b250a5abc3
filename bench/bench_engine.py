"""Speed of the simulator end to end (workload, engine, records) against the same model in SimPy.

Run: ``.venv/bin/python bench/bench_engine.py`` (or ``make bench``). Prints events/s for both,
measured in the same process, their ratio, and the peak memory of a 10 M-event run measured in
a fresh child process. Machines here are shared and noisy: compare ratios, not seconds.

``--engine-only`` times the engine alone (``run_engine`` on a workload built beforehand) on
bench_10m and mm1k, to check a change to the engine without the noise of workload generation
and building the records. Beside it, in the same process and interleaved with it, a plain
compiled M/M/1/K loop (one queue, K = 51, numpy's exponential draws included) on as many
arrivals: the ratio of the two is the figure to compare between runs. The SimPy model runs on a
share of the same scenario (players for bench_10m, duration for mm1k).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from simpy_model import simpy_outcomes  # noqa: E402

from sse_sim import build_workload, load_scenario  # noqa: E402
from sse_sim.engine import run_engine  # noqa: E402
from sse_sim.records import records_frame  # noqa: E402

SCENARIO = HERE.parent / "data" / "scenarios" / "bench_10m.yaml"
MM1K = HERE.parent / "data" / "scenarios" / "mm1k.yaml"


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


# glibc hands blocks this large back to the kernel on free, so every run page-faults ~700 MB of
# fresh, zero-filled memory; these settings keep freed memory in the process instead, as a
# long-lived notebook or sweep worker effectively does.
WARM_ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(2**32),
    "MALLOC_TRIM_THRESHOLD_": str(2**36),
    "MALLOC_TOP_PAD_": str(2**30),
}


def measure(repeats: int, simpy_fraction: float) -> dict[str, float]:
    """Best-of-``repeats`` rates of sse_sim and of SimPy, measured in the same process."""
    sc = load_scenario(SCENARIO)
    end_to_end(sc.with_overrides({"duration_s": 1.0}), 0)  # compile / load the numba cache
    small = sc.with_overrides({"population.players_per_brand": max(int(5000 * simpy_fraction), 1)})
    # one after the other, not interleaved: SimPy's millions of small objects between two
    # simulator runs fragment the heap and cost the next run its huge pages
    runs = [end_to_end(sc, seed) for seed in range(repeats)]
    simpy_runs = [simpy_end_to_end(small, seed) for seed in range(repeats)]
    n_events, best, parts = min(runs, key=lambda r: r[1])
    n_simpy, t_simpy = min(simpy_runs, key=lambda r: r[1] / r[0])
    return {
        "events": n_events,
        "seconds": best,
        "rate": n_events / best,
        "simpy_events": n_simpy,
        "simpy_seconds": t_simpy,
        "simpy_rate": n_simpy / t_simpy,
        **{f"{k}_s": v for k, v in parts.items()},
    }


@numba.njit(cache=True)
def _mm1k_loop(interarrival, service, k):  # pragma: no cover - jitted
    """One M/M/1/K queue, FIFO: departure instants of the admitted in a ring of ``k``; returns how many were blocked."""
    dep = np.empty(k, np.float64)
    head = 0
    n = 0
    t = 0.0
    last = 0.0
    blocked = 0
    for i in range(interarrival.size):
        t += interarrival[i]
        while n > 0 and dep[head] <= t:
            head = head + 1 if head + 1 < k else 0
            n -= 1
        if n == k:
            blocked += 1
            continue
        last = (t if t > last else last) + service[i]
        slot = head + n
        dep[slot if slot < k else slot - k] = last
        n += 1
    return blocked


def mm1k_reference(n: int, seed: int, rho: float = 0.9, k: int = 51) -> int:
    """The reference: ``n`` arrivals through a plain compiled M/M/1/K loop, exponential draws by numpy included."""
    rng = np.random.default_rng(seed)
    interarrival = rng.standard_exponential(n)
    interarrival *= 1.0 / rho
    service = rng.standard_exponential(n)
    return _mm1k_loop(interarrival, service, k)


def engine_only(path: Path, repeats: int, simpy_overrides: dict) -> dict[str, float]:
    """Best-of-``repeats`` rates of ``run_engine`` alone, of the M/M/1/K reference loop and of the SimPy walk.

    The engine and the reference alternate, so each repeat gives a ratio measured under the
    same load; ``ratio_lo``, ``ratio_median`` and ``ratio_hi`` summarise those ratios.
    """
    sc = load_scenario(path)
    # compile / load the numba cache
    run_engine(sc, build_workload(sc.with_overrides({"duration_s": 1.0}), 0))
    mm1k_reference(1000, 0)
    w = build_workload(sc, 0)
    # one untimed round at full size: the first run pays for growing the process's memory
    run_engine(sc, w)
    mm1k_reference(w.n_events, repeats)
    times = []
    ref_times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run_engine(sc, w)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mm1k_reference(w.n_events, i)
        ref_times.append(time.perf_counter() - t0)
    ratios = [r / t for t, r in zip(times, ref_times, strict=True)]
    small = sc.with_overrides(simpy_overrides)
    ws = build_workload(small, 0)
    simpy_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        simpy_outcomes(small, ws)
        simpy_times.append(time.perf_counter() - t0)
    rate = w.n_events / min(times)
    simpy_rate = ws.n_events / min(simpy_times)
    return {
        "events": w.n_events,
        "seconds": min(times),
        "rate": rate,
        "ref_rate": w.n_events / min(ref_times),
        "ratio": rate / (w.n_events / min(ref_times)),
        "ratio_lo": min(ratios),
        "ratio_median": float(np.median(ratios)),
        "ratio_hi": max(ratios),
        "simpy_events": ws.n_events,
        "simpy_seconds": min(simpy_times),
        "simpy_rate": simpy_rate,
    }


def report_engine_only(repeats: int, simpy_fraction: float) -> None:
    """Print the engine-only rates of bench_10m and mm1k beside the M/M/1/K loop and SimPy, with the ratios."""
    cases = [
        (SCENARIO, {"population.players_per_brand": max(int(5000 * simpy_fraction), 1)}),
        (MM1K, {"duration_s": 20000 * simpy_fraction}),
    ]
    print(f"engine only (run_engine on a prebuilt workload), one core, best of {repeats}:")
    for path, simpy_overrides in cases:
        m = engine_only(path, repeats, simpy_overrides)
        print(
            f"  {path.stem:<10} run_engine {m['rate'] / 1e6:6.2f} M events/s ({m['events']:,.0f} in "
            f"{m['seconds']:.3f} s)   M/M/1/K loop {m['ref_rate'] / 1e6:6.2f} M/s   "
            f"engine / loop {m['ratio']:.2f} (each repeat: median {m['ratio_median']:.2f}, "
            f"{m['ratio_lo']:.2f}-{m['ratio_hi']:.2f})   "
            f"SimPy walk {m['simpy_rate'] / 1e6:6.3f} M events/s   engine / SimPy {m['rate'] / m['simpy_rate']:4.0f} x"
        )


def delivery_modes(repeats: int) -> None:
    """Print run_engine's rate on bench_10m under pubsub, stream and latest delivery, with their ratios.

    The three run on the same prebuilt workload in this process, interleaved, best of
    ``repeats`` each, so the ratio is not the machine's noise.
    """
    sc = load_scenario(SCENARIO)
    variants = {
        "pubsub": sc,
        "stream": sc.with_overrides({"delivery.mode": "stream", "delivery.history_size": 100}),
        "stream+latest": sc.with_overrides(
            {"delivery.mode": "stream", "delivery.event_types": {"gamification_balance_update": "latest"}}
        ),
    }
    small = build_workload(sc.with_overrides({"duration_s": 1.0}), 0)
    for v in variants.values():
        run_engine(v, small)  # compile / load the numba cache
    w = build_workload(sc, 0)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for name, v in variants.items():
            t0 = time.perf_counter()
            run_engine(v, w)
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"delivery modes on {SCENARIO.name} (run_engine alone, best of {repeats}):")
    for name, t in best.items():
        print(
            f"  {name:<14} {w.n_events / t / 1e6:8.2f} M events/s   time vs pubsub {t / best['pubsub']:5.2f} x"
        )


def report(title: str, m: dict[str, float]) -> None:
    print(title)
    print(
        f"  sse_sim end to end      {m['rate'] / 1e6:8.2f} M events/s   ({m['events']:,.0f} events in "
        f"{m['seconds']:.2f} s: workload {m['workload_s']:.2f} s, engine {m['engine_s']:.2f} s, "
        f"records {m['records_s']:.2f} s)"
    )
    print(
        f"  SimPy, same model       {m['simpy_rate'] / 1e6:8.3f} M events/s   "
        f"({m['simpy_events']:,.0f} events in {m['simpy_seconds']:.2f} s)"
    )
    print(f"  ratio sse_sim / SimPy   {m['rate'] / m['simpy_rate']:8.0f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--simpy-fraction",
        type=float,
        default=0.02,
        help="Share of players SimPy runs (of mm1k's duration with --engine-only).",
    )
    parser.add_argument("--json", action="store_true", help="Print the measurement as JSON only.")
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="Time run_engine alone on bench_10m and mm1k (workload built beforehand).",
    )
    parser.add_argument(
        "--delivery",
        action="store_true",
        help="Time run_engine on bench_10m under pubsub, stream and latest delivery, and their ratios.",
    )
    args = parser.parse_args()
    if args.delivery:
        delivery_modes(args.repeats)
        return
    if args.engine_only:
        report_engine_only(args.repeats, args.simpy_fraction)
        return
    if args.json:
        print(json.dumps(measure(args.repeats, args.simpy_fraction)))
        return

    cold = measure(args.repeats, args.simpy_fraction)
    warm_proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--json",
            "--repeats",
            str(args.repeats),
            "--simpy-fraction",
            str(args.simpy_fraction),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **WARM_ALLOCATOR_ENV},
    )
    warm = json.loads(warm_proc.stdout.strip().splitlines()[-1])
    report(f"{SCENARIO.name}, one core, default allocator (fresh pages every run):", cold)
    report("the same, allocator keeping freed memory (a long-lived process):", warm)
    print(
        f"peak memory of one 10 M-event simulate() in a fresh process: {peak_memory_mb(0):.0f} MB"
    )


if __name__ == "__main__":
    main()
