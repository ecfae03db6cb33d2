"""Integer lots of baskets: exact MIQP (SCIP) against brute-force enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from risk_engine.hedging.decomposition import (
    _highs_cvar,
    decompose,
    decompose_cvar,
    enumerate_lots,
    lot_box,
    residual_es,
    residual_variance,
    scenario_share_pnl,
    share_factor,
)
from risk_engine.hedging.hedge import HedgeProblem, hedge_trades
from risk_engine.measures import var_es


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


def cvar_instance(seed: int, n_scenarios: int = 400):
    rng = np.random.default_rng(500 + seed)
    k = int(rng.integers(1, 4))
    u = int(rng.integers(k + 1, 7))
    spot = rng.uniform(10, 300, u)
    factor = covariance_factor(rng, u)
    # Fat-tailed, skewed scenarios: the ES optimum is not the variance optimum.
    z = rng.standard_t(3, size=(n_scenarios, u)) - 0.3 * rng.exponential(size=(n_scenarios, 1))
    x = z @ factor.T * np.sqrt(10 / 252)
    baskets = rng.integers(-100, 101, size=(u, k)).astype(float)
    true_lots = rng.integers(-5, 6, size=k)
    exposure = baskets @ true_lots + rng.normal(0, 60, u)
    return scenario_share_pnl(spot, x), exposure, baskets, true_lots


@pytest.mark.parametrize("seed", range(8))
def test_cvar_milp_equals_brute_force_of_the_exact_es(seed):
    pnl, exposure, baskets, true_lots = cvar_instance(seed)
    k = baskets.shape[1]
    lo, hi = true_lots - 3, true_lots + 3
    alpha = 0.975

    def es(n):  # the project's estimator, directly on the residual's losses
        q = exposure - baskets @ np.asarray(n, float)
        return var_es(-(pnl @ q), [alpha])[0].es

    axes = [range(a, b + 1) for a, b in zip(lo, hi, strict=True)]
    values = {n: es(n) for n in itertools.product(*axes)}
    best = min(values.values())
    # The Rockafellar-Uryasev MILP alone (no polish) lands on the brute-force optimum.
    status, n_milp, _ = _highs_cvar(pnl @ exposure, pnl @ baskets, lo, hi, alpha, 30.0)
    assert status == "optimal" and n_milp is not None
    assert values[tuple(int(v) for v in n_milp)] == pytest.approx(best, rel=1e-6)
    # The solution reports the exact ES of its lots, the brute-force minimum.
    sol = decompose_cvar(pnl, exposure, baskets, lo, hi, lo, alpha, time_limit=30.0)
    assert sol.status == "optimal" and sol.method == "milp" and sol.solver == "HIGHS"
    assert sol.es == pytest.approx(best, rel=1e-12)
    assert sol.es == residual_es(pnl, exposure, baskets, sol.lots, alpha)
    assert sol.exposure_es == pytest.approx(es(np.zeros(k)), rel=1e-12)
    assert np.all((sol.lots >= lo) & (sol.lots <= hi))


def test_cvar_fallbacks():
    pnl, exposure, baskets, true_lots = cvar_instance(1)
    one = decompose_cvar(pnl, exposure, baskets, true_lots, true_lots, true_lots, 0.99)
    assert one.method == "exact_box" and one.lots.tolist() == true_lots.tolist()
    many = decompose_cvar(pnl, exposure, baskets, true_lots - 3, true_lots + 3, true_lots,
                          0.99, exact_max_variables=0)
    assert many.status == "inaccurate" and many.method == "rounding+local_search"
    assert many.es <= residual_es(pnl, exposure, baskets, true_lots, 0.99)
    none = decompose_cvar(pnl, exposure, np.zeros((exposure.size, 0)), np.zeros(0, np.int64),
                          np.zeros(0, np.int64), np.zeros(0, np.int64), 0.99)
    assert none.status == "not_applicable" and none.es == none.exposure_es
