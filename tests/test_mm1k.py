"""The engine reproduces the closed-form M/M/1/K results (K = buffer_size + 1).

The closed form is itself checked against references that do not reuse it (the chain's
generator solved numerically, exact small cases), so that the engine and the formula cannot
agree on the same mistake.

Blocking is bursty (long busy periods), so standard errors come from batch means over long
batches, not from the binomial formula.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from sse_sim import simulate
from sse_sim.analytic import mm1k_blocking, mm1k_mean_sojourn
from sse_sim.scenario import load_scenario

N_BATCHES = 40


def batch_means(values: np.ndarray, times: np.ndarray, duration: float, n: int = N_BATCHES) -> tuple[float, float]:
    """Mean over the whole run and its standard error from ``n`` equal time batches."""
    idx = np.minimum((times / duration * n).astype(int), n - 1)
    sums = np.bincount(idx, weights=values, minlength=n)
    counts = np.bincount(idx, minlength=n)
    per_batch = sums / counts
    return float(values.mean()), float(per_batch.std(ddof=1) / np.sqrt(n))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rho", "duration_s", "seed"),
    [(0.9, 40000.0, 11), (1.0, 4000.0, 12), (1.2, 2000.0, 13)],
)
def test_engine_matches_mm1k_closed_form(scenarios_dir, rho, duration_s, seed):
    base = load_scenario(scenarios_dir / "mm1k.yaml")
    mu = 1.0 / base.clients.drain_time.mean
    lam = rho * mu
    sc = base.with_overrides({"duration_s": duration_s, "publishers.0.rate_per_player_per_s": lam})
    K = sc.gateway.buffer_size + 1
    rec = simulate(sc, seed=seed).records
    # drop the first 1 % as warm-up: the queue starts empty
    rec = rec[rec.published_at > duration_s / 100]
    t = rec["published_at"].to_numpy()
    blocked = (rec["outcome"] == "dropped_overflow").to_numpy(dtype=float)
    p_hat, p_se = batch_means(blocked, t, duration_s)
    p_exact = mm1k_blocking(rho, K)
    assert abs(p_hat - p_exact) <= 3 * p_se, (p_hat, p_exact, p_se)

    delivered = rec[rec["outcome"] == "delivered"]
    w_hat, w_se = batch_means(delivered["latency_s"].to_numpy(), delivered["published_at"].to_numpy(), duration_s)
    w_exact = mm1k_mean_sojourn(lam, mu, K)
    assert abs(w_hat - w_exact) <= 3 * w_se, (w_hat, w_exact, w_se)
    # every event is either delivered or blocked: nothing else can happen in this scenario
    assert set(rec["outcome"].astype(str)) <= {"delivered", "dropped_overflow"}


def _ctmc_stationary(lam: float, mu: float, K: int) -> np.ndarray:
    """P(n events held), n = 0..K, solved numerically from the M/M/1/K chain's generator.

    The chain moves n -> n+1 at rate ``lam`` while n < K and n -> n-1 at rate ``mu`` while n > 0.
    This solves pi Q = 0 with sum(pi) = 1 (the last balance equation swapped for the
    normalisation) by linear algebra, so it assumes nothing of the geometric product form the
    closed-form results are written from.
    """
    Q = np.zeros((K + 1, K + 1))
    n = np.arange(K)
    Q[n, n + 1] = lam
    Q[n + 1, n] = mu
    Q -= np.diag(Q.sum(axis=1))
    A = Q.T.copy()
    A[-1, :] = 1.0
    b = np.zeros(K + 1)
    b[-1] = 1.0
    return np.linalg.solve(A, b)


@pytest.mark.parametrize("rho", [0.3, 0.9, 1.0, 1.2, 3.0])
@pytest.mark.parametrize("K", [1, 2, 5, 51, 200])
def test_closed_form_matches_the_chain_solved_numerically(rho: float, K: int) -> None:
    mu = 10.0
    lam = rho * mu
    pi = _ctmc_stationary(lam, mu, K)
    # Poisson arrivals see the stationary distribution (PASTA): a share pi[K] finds the queue full.
    assert mm1k_blocking(rho, K) == pytest.approx(pi[K], rel=1e-9, abs=1e-12)
    # An admitted arrival that finds n held leaves after n + 1 exponential drains (memoryless).
    admitted = pi[:K] / pi[:K].sum()
    sojourn = float(admitted @ (np.arange(K) + 1.0)) / mu
    assert mm1k_mean_sojourn(lam, mu, K) == pytest.approx(sojourn, rel=1e-9)


@pytest.mark.parametrize(
    ("rho", "K", "p_block"),
    [
        # K = 1 is Erlang's loss system with one server: B = a / (1 + a) at offered load a.
        (Fraction(9, 10), 1, Fraction(9, 19)),
        (Fraction(2), 1, Fraction(2, 3)),
        # states 0, 1, 2 hold 4/7, 2/7, 1/7 of the time (each cut: lam p(n) = mu p(n+1))
        (Fraction(1, 2), 2, Fraction(1, 7)),
        # states 0..3 hold 1/15, 2/15, 4/15, 8/15
        (Fraction(2), 3, Fraction(8, 15)),
        # at rho = 1 all K + 1 states are equally likely
        (Fraction(1), 51, Fraction(1, 52)),
    ],
)
def test_blocking_exact_small_cases(rho: Fraction, K: int, p_block: Fraction) -> None:
    assert mm1k_blocking(float(rho), K) == pytest.approx(float(p_block), rel=1e-12)


def test_mean_sojourn_exact_small_cases() -> None:
    # One slot: an admitted event never waits, it only drains.
    assert mm1k_mean_sojourn(9.0, 10.0, 1) == pytest.approx(0.1, rel=1e-12)
    # rho = 1/2, K = 2, mu = 1: admitted arrivals find 0 held with probability (4/7)/(6/7) = 2/3
    # (one drain) and 1 held with probability 1/3 (two drains): W = 2/3 + 2/3 = 4/3.
    assert mm1k_mean_sojourn(0.5, 1.0, 2) == pytest.approx(4 / 3, rel=1e-12)
