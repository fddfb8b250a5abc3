"""sse_sim: simulate and measure the SSE delivery path of a Redis pub/sub gateway.

Start with :func:`simulate`: load a scenario, run it, read ``result.summary()`` and
``result.records`` (one row per (event, client) delivery attempt).
"""

from __future__ import annotations

from ._version import __version__
from .errors import EventValidationError, ScenarioError, SseSimError
from .metrics import confidence_intervals, summarize, throughput
from .outcomes import LOSS_CAUSES, OUTCOME_LABELS, Outcome
from .scenario import Scenario, load_scenario, scenario_json_schema
from .simulation import SimulationResult, replicate, simulate
from .sizing import SizingResult, size_buffer
from .sweep import sweep
from .tables import columns_markdown
from .workload import Workload, build_workload

__all__ = [
    "__version__",
    "Scenario",
    "load_scenario",
    "scenario_json_schema",
    "Workload",
    "build_workload",
    "simulate",
    "replicate",
    "SimulationResult",
    "sweep",
    "size_buffer",
    "SizingResult",
    "summarize",
    "throughput",
    "confidence_intervals",
    "columns_markdown",
    "Outcome",
    "OUTCOME_LABELS",
    "LOSS_CAUSES",
    "SseSimError",
    "ScenarioError",
    "EventValidationError",
]
