"""The result of one run on any backend: its records and what is needed to reproduce it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .metrics import summarize, throughput
from .scenario import Scenario
from .workload import Workload


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

    def delivery_costs(self) -> pd.Series:
        """What the delivery design costs Redis: replay per reconnect, replay bursts, history memory, commands."""
        from .costs import delivery_costs
        from .workload import build_workload

        w = self.workload if self.workload is not None else build_workload(self.scenario, self.seed)
        return delivery_costs(self.records, w, self.scenario)

    def throughput(self, bin_s: float = 1.0) -> pd.DataFrame:
        """Attempts per time bin by fate, and deliveries per bin, ready to plot."""
        return throughput(self.records, self.duration_s, bin_s)

    def run_info(self) -> dict[str, Any]:
        """Seed, backend, package version and the full scenario: enough to reproduce this run."""
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
        doc: dict[str, Any] = {"summary": {k: _jsonable(v) for k, v in self.summary().items()}}
        if self.scenario.delivery.keeps_anything:
            doc["delivery_costs"] = {k: _jsonable(v) for k, v in self.delivery_costs().items()}
        doc["run"] = self.run_info()
        paths["summary"].write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
        self.throughput(max(self.duration_s / 200, 0.001)).to_csv(paths["throughput"], index=False)
        return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if np.isnan(v) else float(v)
    return v


__all__ = ["SimulationResult"]
