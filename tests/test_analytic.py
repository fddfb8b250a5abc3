"""The closed-form M/M/1/K helpers: their doctests, and agreement with the stationary distribution."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from sse_sim import analytic
from sse_sim.analytic import mm1k_blocking, mm1k_mean_number, mm1k_mean_sojourn, mm1k_smallest_k


def test_doctests_pass():
    failures, tried = doctest.testmod(analytic, optionflags=doctest.ELLIPSIS)
    assert tried >= 8
    assert failures == 0


def stationary(rho: float, K: int) -> np.ndarray:
    """P(n events held), n = 0..K, from the birth-death balance equations directly."""
    p = np.array([rho**n for n in range(K + 1)], dtype=float)
    return p / p.sum()


@pytest.mark.parametrize("rho", [0.3, 0.9, 0.999, 1.0, 1.001, 1.5, 4.0])
@pytest.mark.parametrize("K", [1, 2, 11, 51])
def test_formulas_match_the_stationary_distribution(rho, K):
    p = stationary(rho, K)
    assert mm1k_blocking(rho, K) == pytest.approx(p[-1], rel=1e-6)
    assert mm1k_mean_number(rho, K) == pytest.approx(float(np.arange(K + 1) @ p), rel=1e-6)
    mu = 100.0
    lam = rho * mu
    # Little's law over admitted events
    assert mm1k_mean_sojourn(lam, mu, K) == pytest.approx(float(np.arange(K + 1) @ p) / (lam * (1 - p[-1])), rel=1e-6)


def test_large_k_does_not_overflow():
    assert mm1k_blocking(3.0, 5000) == pytest.approx(2 / 3)
    assert mm1k_blocking(0.5, 5000) == 0.0
    assert mm1k_mean_number(3.0, 5000) == pytest.approx(5000 - 0.5, rel=1e-9)


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.1])
@pytest.mark.parametrize("target", [0.2, 0.05, 1e-3, 1e-6])
def test_smallest_k_is_the_first_capacity_under_target(rho, target):
    k = mm1k_smallest_k(rho, target)
    if k is None:
        assert rho > 1 and 1 - 1 / rho >= target
        return
    assert mm1k_blocking(rho, k) <= target
    if k > 1:
        assert mm1k_blocking(rho, k - 1) > target


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mm1k_blocking(-1.0, 5), "rho"),
        (lambda: mm1k_blocking(0.5, 0), "K"),
        (lambda: mm1k_blocking(0.5, 2.5), "K"),
        (lambda: mm1k_smallest_k(0.5, 0.0), "target"),
        (lambda: mm1k_smallest_k(0.5, 1.5), "target"),
        (lambda: mm1k_mean_sojourn(0.0, 1.0, 3), "lam"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
