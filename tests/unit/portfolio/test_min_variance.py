"""Min-variance allocations against independent KKT solutions and closed forms."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from risk_engine.errors import DataError
from risk_engine.portfolio import (
    Bounds,
    max_return,
    min_variance,
    min_variance_closed_form,
    two_fund_closed_form,
)


def _moments(n: int = 5, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vols = rng.uniform(0.15, 0.45, n)
    a = rng.normal(size=(n, n))
    c = a @ a.T + n * np.eye(n)
    d = 1.0 / np.sqrt(np.diag(c))
    corr = d[:, None] * c * d[None, :]
    sigma = vols[:, None] * corr * vols[None, :]
    mu = rng.uniform(0.02, 0.15, n)
    return mu, sigma


def _kkt(sigma: np.ndarray, mu: np.ndarray | None = None, r: float | None = None) -> np.ndarray:
    """Solve min w'Sw s.t. 1'w = 1 (and mu'w = r) from its KKT linear system."""
    n = sigma.shape[0]
    rows = [np.ones(n)] + ([mu] if r is not None else [])
    a = np.array(rows)
    k = a.shape[0]
    lhs = np.block([[2 * sigma, a.T], [a, np.zeros((k, k))]])
    rhs = np.concatenate([np.zeros(n), [1.0] + ([r] if r is not None else [])])
    return np.linalg.solve(lhs, rhs)[:n]


def _long_only_by_active_sets(sigma: np.ndarray) -> np.ndarray:
    """Brute-force the long-only min-variance portfolio over all supports (KKT check)."""
    n = sigma.shape[0]
    best, best_var = None, np.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            s = list(support)
            w = np.zeros(n)
            w[s] = _kkt(sigma[np.ix_(s, s)])
            if np.any(w < -1e-12):
                continue
            var = w @ sigma @ w
            if var < best_var:
                best, best_var = w, var
    assert best is not None
    return best


def test_unbounded_matches_closed_form_and_kkt() -> None:
    mu, sigma = _moments()
    res = min_variance(mu, sigma, bounds=Bounds.unbounded())
    assert res.status == "optimal"
    inv = np.linalg.inv(sigma)
    closed = inv @ np.ones(5) / (np.ones(5) @ inv @ np.ones(5))
    np.testing.assert_allclose(res.weights, closed, atol=1e-7)
    np.testing.assert_allclose(res.weights, _kkt(sigma), atol=1e-7)
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert res.volatility == pytest.approx(np.sqrt(closed @ sigma @ closed), rel=1e-7)
    assert res.expected_return == pytest.approx(mu @ closed, rel=1e-7)


def test_closed_form_functions_match_kkt() -> None:
    mu, sigma = _moments(4, seed=3)
    gmv = min_variance_closed_form(mu, sigma)
    np.testing.assert_allclose(gmv.weights, _kkt(sigma), atol=1e-12)
    assert gmv.volatility ** 2 == pytest.approx(1.0 / (np.ones(4) @ np.linalg.inv(sigma)
                                                        @ np.ones(4)), rel=1e-12)
    tf = two_fund_closed_form(mu, sigma, 0.12)
    np.testing.assert_allclose(tf.weights, _kkt(sigma, mu, 0.12), atol=1e-12)
    assert tf.expected_return == pytest.approx(0.12, abs=1e-12)


@pytest.mark.parametrize("target", [0.05, 0.11, 0.25])
def test_unbounded_target_return_matches_two_fund(target: float) -> None:
    mu, sigma = _moments()
    res = min_variance(mu, sigma, target_return=target, bounds=Bounds.unbounded())
    assert res.status == "optimal"
    np.testing.assert_allclose(res.weights, _kkt(sigma, mu, target), atol=1e-7)
    assert res.expected_return == pytest.approx(target, abs=1e-8)


def test_long_only_matches_active_set_enumeration() -> None:
    # Highly correlated pair: the unbounded solution shorts one asset.
    vols = np.array([0.20, 0.30, 0.25, 0.40])
    corr = np.array([[1.0, 0.95, 0.3, 0.2],
                     [0.95, 1.0, 0.3, 0.2],
                     [0.3, 0.3, 1.0, 0.1],
                     [0.2, 0.2, 0.1, 1.0]])
    sigma = vols[:, None] * corr * vols[None, :]
    assert np.any(_kkt(sigma) < 0)
    res = min_variance(None, sigma)  # long-only by default
    assert res.status == "optimal"
    expected = _long_only_by_active_sets(sigma)
    np.testing.assert_allclose(res.weights, expected, atol=1e-6)
    assert res.weights.min() >= -1e-8


def test_upper_bound_is_respected() -> None:
    mu, sigma = _moments()
    res = min_variance(mu, sigma, bounds=Bounds(lower=0.0, upper=0.25))
    assert res.status == "optimal"
    assert res.weights.max() <= 0.25 + 1e-7
    free = min_variance(mu, sigma)
    assert res.volatility >= free.volatility - 1e-9


def test_ge_target_is_inactive_below_and_binding_above() -> None:
    mu, sigma = _moments()
    gmv = min_variance(mu, sigma)
    low = min_variance(mu, sigma, target_return=gmv.expected_return - 0.02, target_mode="ge")
    np.testing.assert_allclose(low.weights, gmv.weights, atol=1e-6)
    hi_target = gmv.expected_return + 0.02
    ge = min_variance(mu, sigma, target_return=hi_target, target_mode="ge")
    eq = min_variance(mu, sigma, target_return=hi_target, target_mode="eq")
    np.testing.assert_allclose(ge.weights, eq.weights, atol=1e-6)
    assert eq.expected_return == pytest.approx(hi_target, abs=1e-8)


def test_unreachable_target_is_infeasible_with_nan_weights() -> None:
    mu, sigma = _moments()
    res = min_variance(mu, sigma, target_return=mu.max() + 0.05)
    assert res.status == "infeasible"
    assert np.all(np.isnan(res.weights))
    assert "infeasible" in res.message


def test_max_return_long_only_is_best_asset_and_unbounded_without_bounds() -> None:
    mu, sigma = _moments()
    res = max_return(mu, sigma=sigma)
    assert res.status == "optimal"
    assert res.expected_return == pytest.approx(mu.max(), abs=1e-8)
    assert max_return(mu, bounds=Bounds.unbounded()).status == "unbounded"
    capped = max_return(mu, bounds=Bounds(lower=0.0, upper=0.5))
    top2 = np.sort(mu)[-2:]
    assert capped.expected_return == pytest.approx(0.5 * top2.sum(), abs=1e-8)


def test_scs_agrees_with_clarabel_loosely() -> None:
    mu, sigma = _moments()
    a = min_variance(mu, sigma, solver="CLARABEL")
    b = min_variance(mu, sigma, solver="SCS")
    assert b.status in ("optimal", "inaccurate")
    np.testing.assert_allclose(a.weights, b.weights, atol=2e-3)


def test_singular_covariance_closed_form_not_applicable_but_solver_works() -> None:
    v = np.array([0.2, 0.3, 0.25])
    sigma = np.outer(v, v)  # rank one
    assert min_variance_closed_form(None, sigma).status == "not_applicable"
    res = min_variance(None, sigma)
    assert res.status == "optimal"
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-8)


def test_equal_means_two_fund_not_applicable() -> None:
    _, sigma = _moments()
    res = two_fund_closed_form(np.full(5, 0.05), sigma, 0.06)
    assert res.status == "not_applicable"


@pytest.mark.parametrize(
    ("mu", "sigma", "fragment"),
    [
        (np.zeros(2), np.array([[0.04, 0.0], [0.0, -0.01]]), "positive semidefinite"),
        (np.zeros(2), np.array([[0.04, 0.01], [0.0, 0.09]]), "symmetric"),
        (np.array([0.1, np.nan]), np.eye(2) * 0.04, "non-finite"),
        (np.zeros(3), np.eye(2) * 0.04, "shape"),
        (np.zeros(0), np.zeros((0, 0)), "no underlyings"),
    ],
)
def test_invalid_moments_raise_data_error(mu: np.ndarray, sigma: np.ndarray, fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        min_variance(mu, sigma)


def test_inputs_are_not_mutated() -> None:
    mu, sigma = _moments()
    mu0, sigma0 = mu.copy(), sigma.copy()
    min_variance(mu, sigma, target_return=0.1)
    np.testing.assert_array_equal(mu, mu0)
    np.testing.assert_array_equal(sigma, sigma0)
