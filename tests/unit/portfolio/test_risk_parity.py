"""Risk parity (Spinu/Newton) and Euler risk contributions."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest

from risk_engine.errors import DataError
from risk_engine.portfolio import equal_risk_adjustments, risk_contributions, risk_parity


def _sigma(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, n + 3))
    c = a @ a.T
    d = 1.0 / np.sqrt(np.diag(c))
    vols = rng.uniform(0.1, 0.6, n)
    return (vols * d)[:, None] * c * (vols * d)[None, :]


def _shares(w: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return w * (sigma @ w) / (w @ sigma @ w)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_risk_contributions(seed: int) -> None:
    sigma = _sigma(7, seed)
    res = risk_parity(sigma)
    assert res.status == "optimal", res.message
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(res.weights > 0)
    np.testing.assert_allclose(_shares(res.weights, sigma), np.full(7, 1 / 7), atol=1e-6)
    assert res.max_share_error < 1e-9


@pytest.mark.parametrize("rho", [-0.9, -0.3, 0.0, 0.5, 0.95])
def test_two_assets_inverse_volatility(rho: float) -> None:
    s1, s2 = 0.15, 0.40
    sigma = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    res = risk_parity(sigma)
    assert res.status == "optimal"
    expected = np.array([1 / s1, 1 / s2]) / (1 / s1 + 1 / s2)
    np.testing.assert_allclose(res.weights, expected, atol=1e-10)


def test_risk_budgets_are_met_and_match_an_independent_cvxpy_solution() -> None:
    sigma = _sigma(5, 11)
    b = np.array([0.4, 0.2, 0.2, 0.1, 0.1])
    res = risk_parity(sigma, risk_budgets=b * 10)  # unnormalized on purpose
    assert res.status == "optimal"
    np.testing.assert_allclose(res.budgets, b, atol=1e-15)
    np.testing.assert_allclose(_shares(res.weights, sigma), b, atol=1e-6)
    # Spinu's problem with a generic conic solver (exponential cone), independent of Newton
    y = cp.Variable(5)
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(y, cp.psd_wrap(sigma)) - b @ cp.log(y)))
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    np.testing.assert_allclose(res.weights, y.value / y.value.sum(), atol=1e-5)


def test_diagonal_covariance_gives_inverse_volatility() -> None:
    vols = np.array([0.1, 0.2, 0.4, 0.8])
    res = risk_parity(np.diag(vols ** 2))
    np.testing.assert_allclose(res.weights, (1 / vols) / (1 / vols).sum(), atol=1e-12)


def test_zero_variance_asset_is_not_applicable() -> None:
    sigma = np.diag([0.04, 0.0, 0.09])
    res = risk_parity(sigma)
    assert res.status == "not_applicable"
    assert "zero variance" in res.message
    assert np.all(np.isnan(res.weights))


def test_perfect_hedge_is_not_applicable() -> None:
    s1, s2 = 0.2, 0.3
    sigma = np.array([[s1 * s1, -s1 * s2], [-s1 * s2, s2 * s2]])
    res = risk_parity(sigma)
    assert res.status == "not_applicable"
    assert "zero variance" in res.message
    assert np.all(np.isnan(res.weights))


def test_bad_budgets_raise() -> None:
    with pytest.raises(DataError, match="budgets"):
        risk_parity(np.eye(3) * 0.04, risk_budgets=[0.5, 0.5, 0.0])


# --------------------------------------------------------------------------- contributions
def test_contributions_add_up_to_volatility_and_match_finite_differences() -> None:
    sigma = _sigma(6, 5)
    w = np.array([0.3, -0.1, 0.25, 0.2, 0.15, 0.2])
    rc = risk_contributions(w, sigma)
    vol = np.sqrt(w @ sigma @ w)
    assert rc.volatility == pytest.approx(vol, rel=1e-14)
    assert rc.contributions.sum() == pytest.approx(vol, rel=1e-12)
    assert rc.shares.sum() == pytest.approx(1.0, abs=1e-12)
    h = 1e-6
    for i in range(6):
        e = np.zeros(6)
        e[i] = h
        dvol = (np.sqrt((w + e) @ sigma @ (w + e)) - np.sqrt((w - e) @ sigma @ (w - e))) / (2 * h)
        assert rc.contributions[i] == pytest.approx(w[i] * dvol, abs=1e-8)


def test_zero_volatility_contributions() -> None:
    rc = risk_contributions(np.zeros(3), np.eye(3) * 0.04)
    assert rc.volatility == 0.0
    np.testing.assert_array_equal(rc.contributions, np.zeros(3))
    assert np.all(np.isnan(rc.shares))


def test_seed_adjustments_and_guards() -> None:
    sigma = np.array([[0.04, 0.0, 0.0], [0.0, 0.09, 0.0], [0.0, 0.0, 0.16]])
    w = np.array([0.5, 0.5, 0.0])
    adj = equal_risk_adjustments(w, sigma)
    shares = np.array([0.25 * 0.04, 0.25 * 0.09]) / (0.25 * 0.13)
    np.testing.assert_allclose(adj.current_shares[:2], shares, rtol=1e-12)
    np.testing.assert_allclose(adj.adjustments[:2], (1 / 3) / shares, rtol=1e-12)
    assert np.isnan(adj.adjustments[2])
    assert adj.notes == ("", "", "zero_risk_contribution")

    # a hedge: negative contribution
    rho = -0.8
    s = np.array([[0.04, rho * 0.2 * 0.3], [rho * 0.2 * 0.3, 0.09]])
    hedged = equal_risk_adjustments(np.array([1.0, 0.2]), s)
    assert hedged.current_shares[1] < 0
    assert hedged.notes[1] == "negative_risk_contribution"
    assert np.isnan(hedged.adjustments[1])
    assert hedged.adjustments[0] == pytest.approx(0.5 / hedged.current_shares[0])

    flat = equal_risk_adjustments(np.zeros(3), sigma)
    assert flat.notes == ("zero_portfolio_volatility",) * 3
    assert np.all(np.isnan(flat.adjustments))


def test_adjustments_at_risk_parity_are_one() -> None:
    sigma = _sigma(4, 9)
    res = risk_parity(sigma)
    adj = equal_risk_adjustments(res.weights, sigma)
    np.testing.assert_allclose(adj.adjustments, np.ones(4), atol=1e-8)
