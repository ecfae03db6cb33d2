"""Integer lots of baskets: exact MIQP (SCIP) against brute-force enumeration."""

from __future__ import annotations

import numpy as np
import pytest

from risk_engine.hedging.decomposition import (
    decompose,
    enumerate_lots,
    lot_box,
    residual_variance,
    share_factor,
)
from risk_engine.hedging.hedge import HedgeProblem, hedge_trades


def covariance_factor(rng: np.random.Generator, u: int) -> np.ndarray:
    vol = rng.uniform(0.15, 0.4, u)
    g = rng.normal(size=(u, u))
    c = g @ g.T + u * np.eye(u)
    corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    cov = corr * np.outer(vol, vol)
    return np.linalg.cholesky(cov)


def test_three_lots_of_a_basket_plus_noise():
    rng = np.random.default_rng(0)
    u = 5
    spot = rng.uniform(20, 200, u)
    a = share_factor(spot, covariance_factor(rng, u), 10 / 252)
    basket = np.array([100, -60, 0, 35, 0], dtype=float)
    other = np.array([0, 0, 100, 0, -80], dtype=float)
    noise = np.array([3.0, -2.0, 0.0, 4.0, 1.0])
    exposure = 3 * basket + noise
    sol = decompose(a, exposure, np.column_stack([basket, other]))
    assert sol.status == "optimal"
    assert sol.lots.tolist() == [3, 0]
    residual = exposure - np.column_stack([basket, other]) @ sol.lots
    np.testing.assert_allclose(residual, noise)
    assert sol.variance >= sol.continuous_variance
    # The hedge of that noise at a realistic cost (1 cent a share plus 1 bp): no trade.
    hedge = hedge_trades(HedgeProblem(
        a=a, residual=residual, spot=spot, lot_size=np.full(u, 100, np.int64),
        cost_per_share=0.01 + 1e-4 * spot))
    assert hedge.lots.tolist() == [0] * u and hedge.cost == 0.0
    assert hedge.risk == pytest.approx(np.sqrt(sol.variance))


@pytest.mark.parametrize("seed", range(12))
def test_exact_solve_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(1, 7))
    u = int(rng.integers(k + 1, 9))  # independent baskets: fewer than the underlyings
    spot = rng.uniform(10, 300, u)
    a = share_factor(spot, covariance_factor(rng, u), 10 / 252)
    baskets = rng.integers(-100, 101, size=(u, k)).astype(float)
    baskets[:, 0] = 0
    baskets[:2, 0] = [100, -100]  # at least one two-asset basket
    true_lots = rng.integers(-5, 6, size=k)
    exposure = baskets @ true_lots + rng.normal(0, 60, u)
    sol = decompose(a, exposure, baskets)
    lo, hi = np.full(k, -5), np.full(k, 5)
    brute, f_brute = enumerate_lots(a, exposure, baskets, lo, hi)
    if np.all(np.abs(sol.lots) <= 5):
        assert sol.variance == pytest.approx(f_brute, rel=1e-7, abs=1e-9)
    else:  # the optimum lies outside +-5: enumeration over a box that contains it
        assert sol.variance <= f_brute * (1 + 1e-9)
    # Brute force over the exact box of the problem agrees too.
    blo, bhi, _, _ = lot_box(a, exposure, baskets, 1_000_000)
    if np.prod(bhi - blo + 1) <= 200_000:
        _, f_box = enumerate_lots(a, exposure, baskets, blo, bhi)
        assert sol.variance == pytest.approx(f_box, rel=1e-7, abs=1e-9)
    assert sol.status == "optimal" and sol.method in ("miqp", "exact_box")
    assert residual_variance(a, exposure, baskets, sol.lots) == pytest.approx(sol.variance)
    assert brute.shape == (k,)


def test_no_basket_is_not_applicable():
    a = np.eye(2)
    sol = decompose(a, np.array([1.0, 2.0]), np.zeros((2, 0)))
    assert sol.status == "not_applicable" and sol.lots.size == 0
    assert sol.variance == pytest.approx(5.0)


def test_enumeration_solver_matches_scip():
    rng = np.random.default_rng(7)
    u, k = 4, 3
    a = share_factor(rng.uniform(20, 50, u), covariance_factor(rng, u), 1.0)
    baskets = rng.integers(-100, 101, size=(u, k)).astype(float)
    exposure = rng.normal(0, 300, u)
    exact = decompose(a, exposure, baskets)
    brute = decompose(a, exposure, baskets, solver="enumeration")
    assert exact.variance == pytest.approx(brute.variance, rel=1e-7)
