"""The result of one run on any backend: its records and what is needed to reproduce it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .aggregates import Aggregates
from .errors import SseSimError
from .metrics import summarize, throughput
from .scenario import Scenario
from .workload import Workload


@dataclass
class SimulationResult:
    """One run: its records, and what is needed to reproduce it (seed, scenario, package version)."""

    records: pd.DataFrame | None
    scenario: Scenario
    seed: int
    backend: str = "sim"
    workload: Workload | None = field(default=None, repr=False)
    metadata: dict[str, Any] = field(default_factory=dict)
    aggregates: Aggregates | None = field(default=None, repr=False)

    def require_records(self, what: str) -> pd.DataFrame:
        """The records, or a clear error naming what needed them when the run kept none."""
        if self.records is None:
            raise SseSimError(
                f"{what} needs the run's records, and this run kept none (records=False, or a run too "
                "large for records='auto'): run it again with records=True, or use the aggregates"
            )
        return self.records

    @property
    def duration_s(self) -> float:
        return float(self.scenario.duration_s)

    def summary(self) -> pd.Series:
        """Published, delivered, loss rate by cause, latency percentiles and throughput.

        From the records when kept (exact percentiles), else from the aggregates (percentiles
        within :data:`~sse_sim.aggregates.LATENCY_RELATIVE_ERROR`).
        """
        if self.records is None:
            return self._aggregates("the summary").summary()
        return summarize(self.records, self.duration_s)

    def _aggregates(self, what: str) -> Aggregates:
        if self.aggregates is None:
            raise SseSimError(f"{what} needs the run's records or aggregates, and this result has neither")
        return self.aggregates

    def delivery_costs(self) -> pd.Series:
        """What the delivery design costs Redis: replay per reconnect, replay bursts, history memory, commands."""
        from .costs import delivery_costs
        from .workload import build_workload

        records = self.require_records("delivery_costs()")
        w = self.workload if self.workload is not None else build_workload(self.scenario, self.seed)
        return delivery_costs(records, w, self.scenario)

    def throughput(self, bin_s: float = 1.0) -> pd.DataFrame:
        """Attempts per time bin by fate, and deliveries per bin, ready to plot.

        Without records, ``bin_s`` must be a whole multiple of the aggregates' bins.
        """
        if self.records is None:
            return self._aggregates("throughput()").throughput(bin_s)
        return throughput(self.records, self.duration_s, bin_s)

    def latency_cdf(self, *, by: str | None = None) -> pd.DataFrame:
        """The ``latency_cdf`` table: from the records when kept, else from the aggregates' histograms."""
        from . import analysis

        if self.records is None:
            return self._aggregates("latency_cdf()").latency_cdf(by=by)
        return analysis.latency_cdf(self.records, by=by)

    def latency_over_time(self, bin_s: float = 1.0) -> pd.DataFrame:
        """The ``latency_over_time`` table: latency percentiles of the events published in each bin."""
        from . import analysis

        if self.records is None:
            return self._aggregates("latency_over_time()").latency_over_time(bin_s)
        return analysis.latency_percentiles_over_time(self.records, bin_s, duration_s=self.duration_s)

    def occupancy_by_connection(self, bin_s: float = 1.0, *, client_id: int | list[int] | None = None) -> pd.DataFrame:
        """The ``occupancy_by_connection`` table; without records, at the aggregates' own bins and for all clients."""
        from . import analysis

        if self.records is None:
            if client_id is not None:
                raise SseSimError("occupancy of chosen clients needs the run's records: run it with records=True")
            return self._aggregates("occupancy_by_connection()").occupancy_by_connection()
        return analysis.occupancy_by_connection(self.records, bin_s, workload=self.workload, duration_s=self.duration_s, client_id=client_id)

    def disconnects_over_time(self, bin_s: float = 1.0) -> pd.DataFrame:
        """The ``disconnects_over_time`` table: clients offline, closes and reconnects per bin."""
        from . import analysis

        if self.workload is None:
            return self._aggregates("disconnects_over_time()").disconnects_over_time(bin_s)
        return analysis.disconnects_over_time(self.workload, bin_s)

    def attempt_counts(self, bin_s: float | None = None) -> pd.DataFrame:
        """The ``attempt_counts`` table: attempts per (time bin, outcome, event type, node), from the aggregates."""
        return self._aggregates("attempt_counts()").attempt_counts(bin_s)

    def client_loss(self) -> pd.DataFrame:
        """The ``client_loss`` table: how many clients lost what share of their attempts."""
        return self._aggregates("client_loss()").client_loss()

    def worst_clients(self) -> pd.DataFrame:
        """The clients that lost most: client_id, node, attempts_n, lost_n, loss_rate (at most 30)."""
        return self._aggregates("worst_clients()").worst_clients.copy()

    def aggregates_only(self) -> SimulationResult:
        """This result without its records and workload: what every figure and table reads from the aggregates alone."""
        from dataclasses import replace

        self._aggregates("aggregates_only()")
        return replace(self, records=None, workload=None)

    def save_bin_s(self) -> float:
        """The bin width of the saved throughput table: about 200 bins, a multiple of the aggregates' bins without records."""
        want = max(self.duration_s / 200, 0.001)
        if self.records is not None or self.aggregates is None:
            return want
        unit = self.aggregates.bin_s
        return unit * max(round(want / unit), 1)

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

    def save(self, out_dir: str | Path, *, summary: pd.Series | None = None) -> dict[str, Path]:
        """Write records (Parquet, when kept), summary and run info (JSON), and throughput (CSV) into ``out_dir``.

        ``summary``: this result's summary when the caller has it already (it is not computed twice).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "records": out / "records.parquet",
            "summary": out / "summary.json",
            "throughput": out / "throughput.csv",
        }
        if self.records is not None:
            self.records.to_parquet(paths["records"], index=False)
        else:
            del paths["records"]
        summary = self.summary() if summary is None else summary
        doc: dict[str, Any] = {"summary": {k: _jsonable(v) for k, v in summary.items()}}
        if self.scenario.delivery.keeps_anything and self.records is not None:
            doc["delivery_costs"] = {k: _jsonable(v) for k, v in self.delivery_costs().items()}
        doc["run"] = self.run_info()
        paths["summary"].write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
        bin_s = self.save_bin_s()
        agg = self.aggregates
        if agg is not None and abs(bin_s / agg.bin_s - round(bin_s / agg.bin_s)) < 1e-9:
            # the aggregates hold the same counts, without a pass over every record
            agg.throughput(bin_s).to_csv(paths["throughput"], index=False)
        else:
            self.throughput(bin_s).to_csv(paths["throughput"], index=False)
        return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if np.isnan(v) else float(v)
    return v


__all__ = ["SimulationResult"]
