"""Duration and size distributions a scenario can name, and how to sample them with a seeded Generator.

Every distribution is given in seconds (or bytes, for payload sizes). A bare number in a
scenario means a constant. ``lognormal`` is set by its median and 99th percentile, the two
figures people usually know about a latency, rather than by mu and sigma.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, model_validator

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

    ``file`` is relative to the scenario file that names it.
    """

    kind: Literal["empirical"]
    file: Path
    column: str | None = None
    _values: np.ndarray | None = PrivateAttr(default=None)

    def bind(self, base_dir: Path) -> None:
        """Load the values now, resolving ``file`` against the scenario's folder."""
        path = self.file if self.file.is_absolute() else base_dir / self.file
        if not path.is_file():
            raise ValueError(f"empirical data file not found: {path}")
        import pandas as pd

        try:
            frame = pd.read_csv(path)
        except Exception as exc:  # noqa: BLE001 - any parse failure is a user error here
            raise ValueError(f"cannot read empirical data file {path}: {exc}") from None
        col = self.column or frame.columns[0]
        if col not in frame.columns:
            raise ValueError(f"column {col!r} not in {path} (columns: {', '.join(map(str, frame.columns))})")
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        if values.size == 0 or np.isnan(values).any() or (values < 0).any():
            raise ValueError(f"column {col!r} of {path} must hold non-negative numbers only")
        self._values = values

    def sample(self, rng: np.random.Generator, n: int, dtype: type = np.float64) -> np.ndarray:
        if self._values is None:
            self.bind(Path.cwd())
        assert self._values is not None
        return self._values.astype(dtype, copy=False)[rng.integers(0, self._values.size, n)]

    @property
    def mean(self) -> float:
        if self._values is None:
            self.bind(Path.cwd())
        assert self._values is not None
        return float(self._values.mean())




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
