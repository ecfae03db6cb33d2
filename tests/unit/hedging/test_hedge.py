"""Whole-lot hedge trades: flattening, costs, caps, the fallback and its gap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from risk_engine.hedging.decomposition import share_factor
from risk_engine.hedging.hedge import (
    HedgeProblem,
    continuous_bound,
    fallback_hedge,
    hedge_box,
    hedge_trades,
)


def problem(seed: int, u: int, residual=None, cost=0.01, **caps) -> HedgeProblem:
    rng = np.random.default_rng(seed)
    vol = rng.uniform(0.15, 0.4, u)
    g = rng.normal(size=(u, u))
    c = g @ g.T + u * np.eye(u)
    corr = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    spot = rng.uniform(20, 200, u)
    a = share_factor(spot, np.linalg.cholesky(corr * np.outer(vol, vol)), 10 / 252)
    r = rng.normal(0, 400, u) if residual is None else np.asarray(residual, float)
    return HedgeProblem(a=a, residual=r, spot=spot, lot_size=np.full(u, 100, np.int64),
                        cost_per_share=np.full(u, cost), **caps)


def test_zero_cost_flattens_whole_lot_residual():
    p = problem(0, 3, residual=[300.0, -200.0, 0.0], cost=0.0)
    res = hedge_trades(p)
    assert res.lots.tolist() == [-3, 2, 0]
    assert res.risk == pytest.approx(0.0, abs=1e-9)
    assert res.status == "optimal"


def test_noise_of_a_few_shares_is_not_traded_at_a_realistic_cost():
    p = problem(1, 4, residual=[3.0, -2.0, 4.0, 1.0], cost=0.005)
    res = hedge_trades(p)
    assert res.lots.tolist() == [0, 0, 0, 0]
    assert res.cost == 0.0


def test_cost_makes_it_a_decision():
    free, some, prohibitive = (hedge_trades(problem(2, 4, cost=c)) for c in (0.0, 5.0, 1e3))
    assert np.abs(free.lots).sum() > np.abs(some.lots).sum() > 0
    assert np.count_nonzero(prohibitive.lots) == 0
    assert free.risk < some.risk < prohibitive.risk


def brute(p: HedgeProblem):
    lo, hi = hedge_box(p)
    best, best_f = None, np.inf
    for pt in itertools.product(*(range(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))):
        x = np.asarray(pt, np.int64)
        f = p.objective(x)
        if f < best_f:
            best, best_f = x, f
    return best, best_f


@pytest.mark.parametrize("seed", range(6))
def test_exact_hedge_equals_brute_force_with_caps(seed):
    p = problem(10 + seed, 3, cost=0.02, max_underlyings=2,
                max_gross_notional=40_000.0)
    res = hedge_trades(p)
    _, f = brute(p)
    assert res.objective == pytest.approx(f, rel=1e-6)
    assert p.feasible(res.lots)
    assert res.bound <= res.objective + 1e-9


@pytest.mark.parametrize("seed", range(5))
def test_fallback_never_below_the_continuous_bound(seed):
    p = problem(20 + seed, 12, cost=0.01, max_underlyings=5)
    lo, hi = hedge_box(p)
    bound, m_c, _ = continuous_bound(p, lo, hi)
    lots, f = fallback_hedge(p, lo, hi, m_c)
    assert f >= bound - 1e-9 * abs(bound)
    assert p.feasible(lots) and np.count_nonzero(lots) <= 5
    res = hedge_trades(p, exact=False)
    assert res.method == "rounding+local_search"
    assert 0.0 <= res.gap < 1.0
    assert res.gap == pytest.approx((res.objective - res.bound) / res.objective)
    assert res.objective >= res.bound


def test_time_limit_falls_back_and_reports_gap():
    p = problem(30, 40, cost=0.01)
    res = hedge_trades(p, time_limit=0.2)
    assert res.objective <= p.objective(np.zeros(40, np.int64))
    assert res.objective >= res.bound and res.gap >= 0.0
    assert res.status in ("optimal", "inaccurate")


def test_large_problems_go_to_the_deterministic_fallback():
    p = problem(40, 12, cost=0.01)
    res = hedge_trades(p, exact_max_variables=5)
    lo, hi = hedge_box(p)
    bound, m_c, _ = continuous_bound(p, lo, hi)
    lots, f = fallback_hedge(p, lo, hi, m_c)
    assert res.method == "rounding+local_search" and res.status == "inaccurate"
    assert res.lots.tolist() == lots.tolist() and res.objective == f
    assert "exact_max_variables" in res.message
    assert res.bound == pytest.approx(bound) and res.objective >= res.bound
