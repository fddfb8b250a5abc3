"""Duration and size distributions a scenario can name, and how to sample them with a seeded Generator.

Every distribution is given in seconds (or bytes, for payload sizes). A bare number in a
scenario means a constant. ``lognormal`` is set by its median and 99th percentile, the two
figures people usually know about a latency, rather than by mu and sigma.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

from .errors import ScenarioError

# z such that P(Z <= z) = 0.99 for a standard normal: lognormal sigma = ln(p99/median) / Z99.
Z99 = 2.3263478740408408


class _Dist(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:  # pragma: no cover
        """``n`` independent draws; float32 halves the cost where ~7 significant digits suffice."""
        raise NotImplementedError

    @property
    def mean(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class Constant(_Dist):
    """Always the same value."""

    kind: Literal["constant"] = "constant"
    value: float = Field(ge=0)

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
        return np.full(n, self.value, dtype=dtype)

    @property
    def mean(self) -> float:
        return self.value


class Exponential(_Dist):
    """Exponential with the given mean (memoryless: the M in M/M/1/K)."""

    kind: Literal["exponential"]
    mean_: float = Field(gt=0, alias="mean")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
        x = rng.standard_exponential(n, dtype=dtype)
        x *= self.mean_
        return x

    @property
    def mean(self) -> float:
        return self.mean_


class LogNormal(_Dist):
    """Lognormal given by its median and 99th percentile (p99 must exceed the median)."""

    kind: Literal["lognormal"]
    median: float = Field(gt=0)
    p99: float = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> LogNormal:
        if self.p99 <= self.median:
            raise ValueError(f"p99 ({self.p99}) must be greater than median ({self.median})")
        return self

    @property
    def sigma(self) -> float:
        return float(np.log(self.p99 / self.median) / Z99)

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
        # in place: at millions of draws the temporaries of rng.lognormal cost more than the draws
        x = rng.standard_normal(n, dtype=dtype)
        x *= self.sigma
        x += np.log(self.median)
        np.exp(x, out=x)
        return x

    @property
    def mean(self) -> float:
        return float(self.median * np.exp(self.sigma**2 / 2))


class Empirical(_Dist):
    """Resamples (with replacement) the values of one column of a CSV file, or of a one-column text file.

    ``file`` is relative to the scenario file that names it. The values are read when the
    scenario is loaded (see :func:`sse_sim.scenario.load_scenario`), so sampling never touches
    the disk; an Empirical made by hand needs :meth:`load_values` before it can be sampled.
    """

    kind: Literal["empirical"]
    file: Path
    column: str | None = None
    _values: _Values | None = PrivateAttr(default=None)

    def load_values(self, values: np.ndarray) -> Empirical:
        """Attach the values to resample: at least one, all finite and >= 0."""
        x = np.array(values, dtype=np.float64)
        if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x) & (x >= 0)):
            raise ScenarioError(f"empirical data of {self.file}: expected a non-empty list of numbers >= 0")
        x.flags.writeable = False
        self._values = _Values(x)
        return self

    @property
    def values(self) -> np.ndarray:
        """The values resampled (read-only)."""
        if self._values is None:
            raise ScenarioError(
                f"the empirical distribution of {self.file} has no values: load it through a scenario "
                "(load_scenario or scenario_from_dict read the file) or call load_values() first"
            )
        return self._values.array

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
        values = self.values
        return values.astype(dtype, copy=False)[rng.integers(0, values.size, n)]

    @property
    def mean(self) -> float:
        return float(self.values.mean())


@dataclass(frozen=True, eq=False)
class _Values:
    """An array held by a model's private attribute: pydantic compares private attributes with ``==``."""

    array: np.ndarray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Values) and np.array_equal(self.array, other.array)

    __hash__ = None  # type: ignore[assignment]


def _coerce(value: object) -> object:
    """A bare number means a constant, so ``drain_time: 0.01`` just works."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "constant", "value": value}
    return value


DistSpec = Annotated[
    Constant | Exponential | LogNormal | Empirical,
    Field(discriminator="kind"),
    BeforeValidator(_coerce),
]


Distribution = Constant | Exponential | LogNormal | Empirical

__all__ = ["Constant", "Exponential", "LogNormal", "Empirical", "DistSpec", "Distribution", "Z99"]
