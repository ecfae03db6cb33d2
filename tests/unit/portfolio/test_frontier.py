"""Efficient frontier: first point, monotonicity, closed-form hyperbola, degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest

from risk_engine.portfolio import Bounds, efficient_frontier, min_variance


def _moments() -> tuple[np.ndarray, np.ndarray]:
    vols = np.array([0.18, 0.25, 0.32, 0.22])
    corr = np.array([[1.0, 0.4, 0.2, 0.1],
                     [0.4, 1.0, 0.5, 0.3],
                     [0.2, 0.5, 1.0, 0.2],
                     [0.1, 0.3, 0.2, 1.0]])
    return np.array([0.05, 0.08, 0.12, 0.06]), vols[:, None] * corr * vols[None, :]


def test_long_only_frontier_shape() -> None:
    mu, sigma = _moments()
    fr = efficient_frontier(mu, sigma, n_points=12, risk_free_rate=0.01)
    assert fr.status == "optimal", fr.message
    assert len(fr.points) == 12
    gmv = min_variance(mu, sigma)
    first = fr.points[0]
    np.testing.assert_allclose(first.weights, gmv.weights, atol=1e-9)
    assert fr.min_return == pytest.approx(gmv.expected_return, abs=1e-12)
    assert fr.max_return == pytest.approx(mu.max(), abs=1e-8)
    rets = np.array([p.expected_return for p in fr.points])
    vols = np.array([p.volatility for p in fr.points])
    np.testing.assert_allclose(rets, fr.target_returns, atol=1e-7)
    assert np.all(np.diff(rets) > 0)
    assert np.all(np.diff(vols) > 0)
    for p in fr.points:
        assert p.weights.sum() == pytest.approx(1.0, abs=1e-8)
        assert p.weights.min() >= -1e-7
        assert p.volatility == pytest.approx(np.sqrt(p.weights @ sigma @ p.weights), rel=1e-12)
    np.testing.assert_allclose(fr.sharpe_ratios, (rets - 0.01) / vols, rtol=1e-12)
    # the top point is all in the best asset
    assert fr.points[-1].weights[np.argmax(mu)] == pytest.approx(1.0, abs=1e-5)


def test_unbounded_frontier_follows_closed_form_hyperbola() -> None:
    mu, sigma = _moments()
    fr = efficient_frontier(mu, sigma, n_points=6, bounds=Bounds.unbounded(),
                            max_target_return=0.20)
    assert fr.status == "optimal", fr.message
    inv = np.linalg.inv(sigma)
    one = np.ones(4)
    a, b, c = one @ inv @ one, one @ inv @ mu, mu @ inv @ mu
    d = a * c - b * b
    assert fr.min_return == pytest.approx(b / a, abs=1e-8)
    assert fr.max_return == pytest.approx(0.20)
    for r, p in zip(fr.target_returns, fr.points, strict=True):
        assert p.volatility ** 2 == pytest.approx((a * r * r - 2 * b * r + c) / d, rel=1e-6)
        w = inv @ ((c - b * r) / d * one + (a * r - b) / d * mu)
        np.testing.assert_allclose(p.weights, w, atol=1e-6)


def test_unbounded_frontier_without_cap_reports_unbounded() -> None:
    mu, sigma = _moments()
    fr = efficient_frontier(mu, sigma, bounds=Bounds.unbounded())
    assert fr.status == "unbounded"
    assert "max_target_return" in fr.message
    assert len(fr.points) == 1 and fr.points[0].status == "optimal"


def test_cap_below_max_return_is_used() -> None:
    mu, sigma = _moments()
    fr = efficient_frontier(mu, sigma, n_points=5, max_target_return=0.09)
    assert fr.max_return == pytest.approx(0.09)
    assert fr.points[-1].expected_return == pytest.approx(0.09, abs=1e-7)


def test_equal_means_degenerate_to_one_point() -> None:
    _, sigma = _moments()
    fr = efficient_frontier(np.full(4, 0.07), sigma, n_points=10)
    assert fr.status == "optimal"
    assert len(fr.points) == 1
    assert "degenerates" in fr.message


def test_bad_n_points() -> None:
    mu, sigma = _moments()
    with pytest.raises(ValueError, match="n_points"):
        efficient_frontier(mu, sigma, n_points=1)
