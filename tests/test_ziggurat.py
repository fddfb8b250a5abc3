"""The compiled float32 ziggurat draws give NumPy's numbers and leave the generator where NumPy does."""

from __future__ import annotations

import numpy as np
import pytest

from sse_sim import ziggurat
from sse_sim.distributions import Exponential, LogNormal
from sse_sim.ziggurat import Float32Draws, standard_exponential_f32, standard_normal_f32

DRAWS = [
    (standard_normal_f32, lambda g, n: g.standard_normal(n, dtype=np.float32)),
    (standard_exponential_f32, lambda g, n: g.standard_exponential(n, dtype=np.float32)),
]


def _same_state(a: np.random.Generator, b: np.random.Generator) -> bool:
    return a.bit_generator.state == b.bit_generator.state and np.array_equal(
        a.random(3, dtype=np.float32), b.random(3, dtype=np.float32)
    )


@pytest.mark.parametrize("fast, numpy_draw", DRAWS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 300_001])
@pytest.mark.parametrize("half_pending", [False, True])
def test_same_numbers_and_state_as_numpy(fast, numpy_draw, n, half_pending):
    for seed in range(3):
        g1, g2 = np.random.default_rng([seed, n]), np.random.default_rng([seed, n])
        if half_pending:  # an odd number of 32-bit draws leaves half a 64-bit draw in the generator
            g1.random(3, dtype=np.float32)
            g2.random(3, dtype=np.float32)
        assert np.array_equal(fast(g1, n), numpy_draw(g2, n))
        assert _same_state(g1, g2)


@pytest.mark.parametrize("fast, numpy_draw", DRAWS)
def test_running_out_of_raw_draws_resumes_exactly(fast, numpy_draw, monkeypatch):
    # no spare draws: every call runs out and fetches more, some in the middle of a rejection
    monkeypatch.setattr(ziggurat, "_SPARE_PER", 10**12)
    g1, g2 = np.random.default_rng(11), np.random.default_rng(11)
    assert np.array_equal(fast(g1, 200_000), numpy_draw(g2, 200_000))
    assert _same_state(g1, g2)


def test_other_bit_generators_draw_through_numpy():
    g1, g2 = np.random.Generator(np.random.Philox(5)), np.random.Generator(np.random.Philox(5))
    assert np.array_equal(standard_normal_f32(g1, 1000), g2.standard_normal(1000, dtype=np.float32))


@pytest.mark.parametrize(
    "dist", [Exponential(kind="exponential", mean=0.01), LogNormal(kind="lognormal", median=0.02, p99=0.15)]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_distribution_samples_the_same_through_float32_draws(dist, dtype):
    a = dist.sample(Float32Draws(np.random.default_rng(3)), 50_000, dtype)
    b = dist.sample(np.random.default_rng(3), 50_000, dtype)
    assert a.dtype == b.dtype and np.array_equal(a, b)
