"""Frontier points that used to fail, the fallback solver, per-point status and accuracy.

The exact optimum is computed independently by enumerating every support of the long-only
weights and solving the KKT linear system of each (the best feasible one wins).
"""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
from scipy.optimize import linprog

from risk_engine.errors import ConfigError
from risk_engine.portfolio import (
    Bounds,
    PortfolioSettings,
    desk_portfolio_tables,
    efficient_frontier,
    max_return,
    min_variance,
)

# A long-only desk of 5 underlyings (covariance eigenvalues 0.069 to 0.534) on which
# Clarabel stopped at its iteration limit (status user_limit) for this target when the
# objective was the variance as a quadratic; OSQP and SCS solved it.
MU = np.array([0.1945820410344588, 0.39306435523969724, 0.45311101139206184,
               0.3270001505586158, 0.02764272559997183])
SIGMA = np.array([
    [0.11403300544783088, 0.006669023822886274, 0.015040702646144741,
     -0.002488384772742623, -0.06976209913342862],
    [0.006669023822886274, 0.2766204971019111, 0.12805010418628032,
     -0.06020339581960486, -0.07658717335488327],
    [0.015040702646144741, 0.12805010418628032, 0.3540877269841333,
     -0.06613817736705815, -0.07910730567190996],
    [-0.002488384772742623, -0.06020339581960486, -0.06613817736705815,
     0.24864160637299818, 0.05934744770937776],
    [-0.06976209913342862, -0.07658717335488327, -0.07910730567190996,
     0.05934744770937776, 0.20685183918157293],
])
TARGET = 0.44066750802040794

#: The accuracy the README promises for polished weights.
WEIGHT_TOL = 1e-9


def _exact_long_only(sigma: np.ndarray, mu: np.ndarray, target: float | None) -> np.ndarray:
    """Brute-force long-only minimum variance (with mu'w = target if given)."""
    n = mu.shape[0]
    best, best_var = None, np.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            s = list(support)
            rows = [np.ones(k)] + ([mu[s]] if target is not None else [])
            a = np.array(rows)
            m = a.shape[0]
            lhs = np.block([[2 * sigma[np.ix_(s, s)], a.T], [a, np.zeros((m, m))]])
            rhs = np.concatenate([np.zeros(k), [1.0] + ([target] if target is not None else [])])
            if np.linalg.cond(lhs) > 1e12:
                continue
            w = np.zeros(n)
            w[s] = np.linalg.solve(lhs, rhs)[:k]
            if w.min() < -1e-12:
                continue
            var = w @ sigma @ w
            if var < best_var:
                best, best_var = w, var
    assert best is not None
    return best


def _random_desk(rng: np.random.Generator, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    ev = np.sort(rng.uniform(0.069, 0.534, n))
    sigma = (q * ev) @ q.T
    return rng.uniform(0.0, 0.5, n), 0.5 * (sigma + sigma.T)


def test_point_where_clarabel_stalled_solves_with_clarabel_alone() -> None:
    res = min_variance(MU, SIGMA, target_return=TARGET, fallback_solver=None)
    assert res.status == "optimal", res.message
    assert res.solver == "CLARABEL" and res.message == ""
    np.testing.assert_allclose(res.weights, _exact_long_only(SIGMA, MU, TARGET),
                               rtol=0, atol=WEIGHT_TOL)
    assert res.volatility == pytest.approx(0.5233580701, abs=1e-9)


def test_dense_frontier_of_that_desk_is_all_optimal() -> None:
    fr = efficient_frontier(MU, SIGMA, n_points=120, fallback_solver=None)
    assert fr.status == "optimal" and fr.failed_points == (), fr.message
    assert all(p.solver == "CLARABEL" for p in fr.points)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frontier_weights_match_the_exact_optimum(seed: int) -> None:
    mu, sigma = _random_desk(np.random.default_rng(seed))
    fr = efficient_frontier(mu, sigma, n_points=15)
    assert fr.status == "optimal" and fr.failed_points == ()
    for k, (target, point) in enumerate(zip(fr.target_returns, fr.points, strict=True)):
        assert point.message == "", point.message
        exact = _exact_long_only(sigma, mu, None if k == 0 else float(target))
        np.testing.assert_allclose(point.weights, exact, rtol=0, atol=WEIGHT_TOL)
    # the top point is the best asset alone, exactly
    top = np.zeros(5)
    top[np.argmax(mu)] = 1.0
    np.testing.assert_allclose(fr.points[-1].weights, top, rtol=0, atol=WEIGHT_TOL)


def test_bounded_and_ge_targets_match_the_exact_optimum() -> None:
    mu, sigma = _random_desk(np.random.default_rng(5))
    bounds = Bounds(lower=0.05, upper=0.4)
    target = float(np.sort(mu)[-2])
    res = min_variance(mu, sigma, target_return=target, target_mode="ge", bounds=bounds)
    w = cp.Variable(5)
    prob = cp.Problem(cp.Minimize(cp.quad_form(w, sigma)),
                      [cp.sum(w) == 1, mu @ w >= target, w >= 0.05, w <= 0.4])
    prob.solve(solver="CLARABEL")
    assert res.status == "optimal" and res.message == ""
    # independent (unpolished) interior-point answer: agreement to its own accuracy
    np.testing.assert_allclose(res.weights, w.value, atol=1e-6)
    assert res.weights.min() >= 0.05 - 1e-12 and res.weights.max() <= 0.4 + 1e-12
    assert mu @ res.weights >= target - 1e-12


def test_fallback_solver_answers_when_the_first_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    original = cp.Problem.solve

    def clarabel_down(self: cp.Problem, *args: object, **kwargs: object) -> object:
        if kwargs.get("solver") == "CLARABEL":
            raise cp.error.SolverError("clarabel down")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", clarabel_down)
    res = min_variance(MU, SIGMA, target_return=TARGET)
    assert res.status == "optimal" and res.solver == "SCS"
    assert "clarabel down" in res.message
    np.testing.assert_allclose(res.weights, _exact_long_only(SIGMA, MU, TARGET),
                               rtol=0, atol=WEIGHT_TOL)
    alone = min_variance(MU, SIGMA, target_return=TARGET, fallback_solver=None)
    assert alone.status == "solver_error" and np.isnan(alone.weights).all()


def test_one_failed_point_neither_marks_the_desk_nor_hides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = cp.Problem.solve
    settings = PortfolioSettings(n_frontier_points=6)
    fr = efficient_frontier(MU, SIGMA, n_points=6)
    broken_target = float(fr.target_returns[3])

    def fail_one_target(self: cp.Problem, *args: object, **kwargs: object) -> object:
        for p in self.parameters():
            if p.name() == "target_return" and p.value == broken_target:
                raise cp.error.SolverError("boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", fail_one_target)
    fr = efficient_frontier(MU, SIGMA, n_points=6)
    assert fr.status == "optimal"
    assert fr.failed_points == (3,)
    assert fr.points[3].status == "solver_error" and "boom" in fr.points[3].message
    assert "point 3" in fr.message
    tables = desk_portfolio_tables("d", list("ABCDE"), MU, SIGMA, settings=settings)
    frontier = tables.frontier
    assert set(frontier["frontier_status"]) == {"optimal"}
    assert set(frontier.loc[frontier["point"] == 3, "status"]) == {"solver_error"}
    assert set(frontier.loc[frontier["point"] != 3, "status"]) == {"optimal"}
    assert len(tables.warnings) == 1
    assert tables.warnings[0].startswith("portfolio: desk d: frontier point 3")
    assert "boom" in tables.warnings[0]


def test_clean_desk_has_no_warnings() -> None:
    tables = desk_portfolio_tables("d", list("ABCDE"), MU, SIGMA)
    assert tables.warnings == ()


@pytest.mark.parametrize("bounds", [Bounds(), Bounds(0.0, 0.3), Bounds(0.1, 0.5),
                                    Bounds(None, 0.4), Bounds(-0.2, None)])
def test_max_return_is_the_lp_optimum(bounds: Bounds) -> None:
    mu = np.array([0.03, 0.11, 0.07, 0.11, -0.02])
    res = max_return(mu, bounds=bounds)
    lp = linprog(-mu, A_eq=np.ones((1, 5)), b_eq=[1.0],
                 bounds=[(bounds.lower, bounds.upper)] * 5, method="highs")
    assert lp.status == 0 and res.status == "optimal"
    assert res.expected_return == pytest.approx(-lp.fun, abs=1e-12)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-15)


def test_max_return_with_impossible_bounds_is_infeasible() -> None:
    assert max_return(MU, bounds=Bounds(0.3, None)).status == "infeasible"
    assert max_return(MU, bounds=Bounds(0.0, 0.1)).status == "infeasible"


def test_fallback_solver_setting_is_checked() -> None:
    from tests import helpers as h

    with pytest.raises(ConfigError, match="governance.portfolio.fallback_solver"):
        h.config(governance={"portfolio": {"fallback_solver": "ECOS"}})
    assert PortfolioSettings().solvers == ("CLARABEL", "SCS")
    assert PortfolioSettings(fallback_solver=None).solvers == ("CLARABEL",)
