"""Platform scale: ``sse-sim run`` end to end, against the engine alone, and the whole platform in 4 GB.

Run: ``.venv/bin/python bench/bench_platform.py`` (or ``make bench``). Two measurements:

1. ``bench_10m.yaml`` through ``sse-sim run SCENARIO --out DIR`` in this process (workload,
   engine, aggregates, summary, files and every standard figure), with records (the default
   under 20 M attempts) and with ``--no-records``, beside the engine alone (``run_engine`` on a
   workload built beforehand) timed in the same process: events/s of each and their ratio;
   then each standard figure drawn from the aggregates alone, in seconds.
2. ``platform_1m.yaml`` (``--scale`` shrinks its population) through the command line in a
   child process with ``--no-records --workers N``: wall time, events/s and the peak memory of
   the whole process tree (the command, its worker processes and their fork server), sampled
   from /proc every 0.2 s.

Machines here are shared and noisy: compare ratios measured in one run, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCH_10M = ROOT / "data" / "scenarios" / "bench_10m.yaml"
PLATFORM = ROOT / "data" / "scenarios" / "platform_1m.yaml"


def _cli(args: list[str]) -> None:
    import contextlib
    import io

    from sse_sim.cli import main

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            main(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"sse-sim {' '.join(args)} exited {exc.code}") from None


def end_to_end(repeats: int) -> dict[str, float]:
    """Events/s of ``sse-sim run bench_10m.yaml --out DIR`` (with and without records) and of the engine alone."""
    from sse_sim import build_workload, load_scenario
    from sse_sim.engine import run_engine

    sc = load_scenario(BENCH_10M)
    with tempfile.TemporaryDirectory() as tmp:
        _cli(["run", str(ROOT / "data" / "scenarios" / "baseline.yaml"), "--out", f"{tmp}/warm"])  # compile, import
        w = build_workload(sc, 0)
        n = w.n_events
        best: dict[str, float] = {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            run_engine(sc, w)
            engine = time.perf_counter() - t0
            t0 = time.perf_counter()
            _cli(["run", str(BENCH_10M), "--out", f"{tmp}/rec"])
            with_records = time.perf_counter() - t0
            t0 = time.perf_counter()
            _cli(["run", str(BENCH_10M), "--no-records", "--out", f"{tmp}/agg"])
            without = time.perf_counter() - t0
            for k, v in (("engine", engine), ("run_records", with_records), ("run_no_records", without)):
                best[k] = min(best.get(k, float("inf")), v)
    figures = figure_seconds(sc)
    return {
        "events": n,
        **{f"{k}_s": v for k, v in best.items()},
        **{f"figure_{k}_s": v for k, v in figures.items()},
        **{f"{k}_events_per_s": n / v for k, v in best.items()},
        "run_no_records_over_engine": best["run_no_records"] / best["engine"],
        "run_records_over_engine": best["run_records"] / best["engine"],
    }


def figure_seconds(sc) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds each standard figure takes to draw and save from a run's aggregates alone."""
    import matplotlib.pyplot as plt

    from sse_sim import plots, simulate

    result = simulate(sc, 0, records=False)
    out = {}
    with tempfile.TemporaryDirectory() as tmp, plots.detached():
        for name, make in plots.standard_figure_makers(result).items():
            t0 = time.perf_counter()
            fig, _ = make()
            fig.savefig(f"{tmp}/{name}.png", dpi=110, pil_kwargs={"compress_level": 1})
            plt.close(fig)
            out[name] = time.perf_counter() - t0
    return out


def _tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ppid = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 2**20


def platform(scale: float, workers: int) -> dict[str, float]:
    """Wall time and peak process-tree memory of platform_1m (scaled) with --no-records --workers N."""
    from sse_sim import load_scenario

    sc = load_scenario(PLATFORM)
    ppb = max(int(round(sc.population.players_per_brand * scale)), 1)
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "platform.yaml"
        scenario.write_text(json.dumps(sc.with_overrides({"population.players_per_brand": ppb}).to_dict()))
        cmd = [sys.executable, "-m", "sse_sim.cli", "run", str(scenario), "--no-records", "--workers", str(workers), "--out", f"{tmp}/out"]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        peak = 0.0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _tree_rss_mb(proc.pid))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise RuntimeError(out)
        summary = json.loads((Path(tmp) / "out" / "summary.json").read_text())["summary"]
    events = summary["published_n"]
    return {
        "scale": scale,
        "players": ppb * len(sc.population.brand_ids),
        "workers": workers,
        "events": events,
        "attempts": summary["attempts_n"],
        "wall_s": wall,
        "events_per_s": events / wall,
        "peak_tree_rss_mb": peak,
        "loss_rate": summary["loss_rate"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end repeats (best of)")
    ap.add_argument("--scale", type=float, default=1.0, help="share of platform_1m's players to run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-platform", action="store_true")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args()
    if not args.skip_end_to_end:
        print(json.dumps({"end_to_end_bench_10m": end_to_end(args.repeats)}, indent=2))
    if not args.skip_platform:
        print(json.dumps({"platform_1m": platform(args.scale, args.workers)}, indent=2))


if __name__ == "__main__":
    main()
