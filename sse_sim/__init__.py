"""sse_sim: simulate and measure the SSE delivery path of a Redis pub/sub gateway.

Start with :func:`simulate`: load a scenario, run it, read ``result.summary()`` and
``result.records`` (one row per (event, client) delivery attempt).

The names below are loaded on first use, so that ``import sse_sim`` (and the ``sse-sim``
command line, which imports it) does not pay for numba, pandas and pydantic until a
simulation needs them.
"""

from __future__ import annotations

import sys
import types
import typing as _typing

from ._version import __version__
from .errors import EventValidationError, ScenarioError, SseSimError

if _typing.TYPE_CHECKING:
    from .aggregates import Aggregates
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
    "Aggregates",
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


def __getattr__(name: str) -> _typing.Any:
    """Load a public name from the module that defines it, on first use (PEP 562)."""
    if name in ("Scenario", "load_scenario", "scenario_json_schema"):
        from . import scenario as module
    elif name in ("Workload", "build_workload"):
        from . import workload as module
    elif name in ("simulate", "replicate", "SimulationResult"):
        from . import simulation as module
    elif name == "sweep":
        from .sweep import sweep as function  # the function, not the module of the same name

        globals()[name] = function
        return function
    elif name in ("size_buffer", "SizingResult"):
        from . import sizing as module
    elif name in ("summarize", "throughput", "confidence_intervals"):
        from . import metrics as module
    elif name == "Aggregates":
        from . import aggregates as module
    elif name == "columns_markdown":
        from . import tables as module
    elif name in ("Outcome", "OUTCOME_LABELS", "LOSS_CAUSES"):
        from . import outcomes as module
    else:
        raise AttributeError(f"module 'sse_sim' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module, keeping the name ``sweep`` for the function once its module is imported."""

    def __setattr__(self, name: str, value: _typing.Any) -> None:
        # Importing the submodule sse_sim.sweep binds it to this attribute; ``sse_sim.sweep``
        # is the function, as the public API has always said (the module stays in sys.modules).
        if name == "sweep" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
