"""The public entry point: ``simulate(scenario, seed=...)`` and the result it returns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .engine import run_engine
from .metrics import confidence_intervals, summarize, throughput
from .records import RECORDS, outcome_categorical
from .scenario import Scenario, as_scenario
from .workload import Workload, build_workload


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class SimulationResult:
    """One run: its records, and what is needed to reproduce it (seed, scenario, package version)."""

    records: pd.DataFrame
    scenario: Scenario
    seed: int
    backend: str = "sim"
    workload: Workload | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return float(self.scenario.duration_s)

    def summary(self) -> pd.Series:
        """Published, delivered, loss rate by cause, latency percentiles and throughput."""
        return summarize(self.records, self.duration_s)

    def throughput(self, bin_s: float = 1.0) -> pd.DataFrame:
        """Attempts per time bin by fate, and deliveries per bin, ready to plot."""
        return throughput(self.records, self.duration_s, bin_s)

    def run_info(self) -> dict[str, Any]:
        """Seed, backend, package version and the full scenario: enough to reproduce this run."""
        from . import __version__

        return {
            "sse_sim_version": __version__,
            "backend": self.backend,
            "seed": self.seed,
            "scenario_source": self.scenario.source,
            "scenario": self.scenario.to_dict(),
            **self.metadata,
        }

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write records (Parquet), summary and run info (JSON), and throughput (CSV) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "records": out / "records.parquet",
            "summary": out / "summary.json",
            "throughput": out / "throughput.csv",
        }
        self.records.to_parquet(paths["records"], index=False)
        summary = {k: _jsonable(v) for k, v in self.summary().items()}
        paths["summary"].write_text(
            json.dumps({"summary": summary, "run": self.run_info()}, indent=2, allow_nan=False, default=str)
            + "\n"
        )
        self.throughput(max(self.duration_s / 200, 0.001)).to_csv(paths["throughput"], index=False)
        return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if np.isnan(v) else float(v)
    return v


def records_frame(w: Workload, out: Any) -> pd.DataFrame:
    """Assemble the documented records DataFrame from engine (or real-mode) per-row arrays."""
    player = out.event_id_player if hasattr(out, "event_id_player") else w.player[out.event_id]
    brand_of_player = w.player_brand_ids()
    latency = out.received_at - w.published_at[out.event_id]
    data = {
        "event_id": out.event_id.astype(np.int64, copy=False),
        "client_id": out.client_id.astype(np.int32, copy=False),
        "brand_id": brand_of_player[player],
        "player_id": w.player_ids[player],
        "node": w.client_node[out.client_id],
        "event_type": pd.Categorical.from_codes(w.event_type_code[out.event_id], list(w.event_types)),
        "payload_bytes": w.payload_bytes[out.event_id],
        "published_at": w.published_at[out.event_id],
        "gateway_at": out.gateway_at,
        "left_at": out.left_at,
        "received_at": out.received_at,
        "latency_s": latency,
        "outcome": outcome_categorical(out.outcome),
        "session_id": out.session_id.astype(np.int32, copy=False),
    }
    return pd.DataFrame({c.name: data[c.name] for c in RECORDS}, copy=False)


def simulate(scenario: Scenario | str | Path | dict, seed: int = 0) -> SimulationResult:
    """Run a scenario through the simulation engine; the same seed gives the same records, bit for bit."""
    sc = as_scenario(scenario)
    w = build_workload(sc, seed)
    out = run_engine(sc, w)
    return SimulationResult(records_frame(w, out), sc, int(seed), "sim", w)


def replicate(
    scenario: Scenario | str | Path | dict, seeds: int | list[int] = 10, *, level: float = 0.95
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run several seeds; return (one summary row per seed, confidence interval per metric)."""
    sc = as_scenario(scenario)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    rows = []
    for s in seed_list:
        summ = simulate(sc, s).summary()
        rows.append({"seed": s, **summ.to_dict()})
    per_seed = pd.DataFrame(rows)
    return per_seed, confidence_intervals(per_seed, level)


__all__ = ["simulate", "replicate", "SimulationResult", "records_frame"]
