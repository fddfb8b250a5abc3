"""The engine reproduces the closed-form M/M/1/K results (K = buffer_size + 1).

Blocking is bursty (long busy periods), so standard errors come from batch means over long
batches, not from the binomial formula.
"""

from __future__ import annotations

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


def test_closed_form_reference_values():
    # rho = 1 has its own limit; K = 51 there gives 1/52
    assert mm1k_blocking(1.0, 51) == pytest.approx(1 / 52)
    assert mm1k_blocking(0.9, 51) == pytest.approx(0.1 * 0.9**51 / (1 - 0.9**52))
