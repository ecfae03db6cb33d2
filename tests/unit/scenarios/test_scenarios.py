"""Scenario model estimation and generation: moments within 4 standard errors, seeding."""

import numpy as np
import pandas as pd
import pytest

from risk_engine.scenarios import (
    ScenarioModel,
    block_rng,
    draw_log_returns,
    estimate_from_history,
    from_factor_model,
    nearest_psd_correlation,
)
from tests.helpers import AS_OF, correlations, factor_model


def _model():
    fm = factor_model([("A", 0.10, 0.30), ("B", 0.05, 0.20), ("C", -0.02, 0.45)])
    corr = correlations([("A", "B", 0.6), ("C", "A", -0.3)])  # B-C missing: 0
    model, missing = from_factor_model(fm, corr, ("A", "B", "C"))
    assert missing == {}
    return model


def test_factor_model_covariance():
    m = _model()
    vol = np.array([0.30, 0.20, 0.45])
    corr = np.array([[1, 0.6, -0.3], [0.6, 1, 0.0], [-0.3, 0.0, 1]])
    np.testing.assert_allclose(m.cov, corr * np.outer(vol, vol), rtol=1e-14)
    np.testing.assert_allclose(m.factor @ m.factor.T, m.cov, atol=1e-14)
    assert m.repair == ""


def test_generated_moments_within_four_standard_errors():
    m = _model()
    h = 10 / 252
    n = 200_000
    x = draw_log_returns(m, h, n, block_rng(11, 0))
    mean_exact = (m.mu - 0.5 * np.diag(m.cov)) * h
    cov_exact = m.cov * h
    se_mean = np.sqrt(np.diag(cov_exact) / n)
    assert np.all(np.abs(x.mean(axis=0) - mean_exact) < 4 * se_mean)
    cov_hat = np.cov(x, rowvar=False)
    d = np.diag(cov_exact)
    se_cov = np.sqrt((np.outer(d, d) + cov_exact**2) / n)
    assert np.all(np.abs(cov_hat - cov_exact) < 4 * se_cov)


def test_blocks_are_keyed_by_seed_and_block_only():
    m = _model()
    a = draw_log_returns(m, 0.1, 1000, block_rng(5, 3))
    b = draw_log_returns(m, 0.1, 1000, block_rng(5, 3))
    c = draw_log_returns(m, 0.1, 1000, block_rng(5, 4))
    d = draw_log_returns(m, 0.1, 1000, block_rng(6, 3))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, d)


def test_antithetic_pairs_mirror_around_the_mean():
    m = _model()
    h = 1 / 252
    x = draw_log_returns(m, h, 1000, block_rng(1, 0), antithetic=True)
    mean = m.log_return_mean(h)
    np.testing.assert_allclose(x[:500] - mean, -(x[500:] - mean), atol=1e-15)
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=1e-15)
    with pytest.raises(ValueError, match="even"):
        draw_log_returns(m, h, 7, block_rng(1, 0), antithetic=True)


def test_history_estimation_recovers_the_generating_model():
    m = _model()
    n_days = 2000
    rets = draw_log_returns(m, 1 / 252, n_days, block_rng(2, 0))
    dates = pd.bdate_range(end=pd.Timestamp(AS_OF), periods=n_days + 1).date
    closes = 100 * np.exp(np.vstack([np.zeros(3), np.cumsum(rets, axis=0)]))
    hist = pd.DataFrame({"date": np.repeat(dates, 3),
                         "underlying": np.tile(list("ABC"), n_days + 1),
                         "close": closes.ravel()})
    est, missing = estimate_from_history(hist, ("A", "B", "C"), AS_OF, window_days=n_days,
                                         min_days=60)
    assert missing == {}
    vol = np.sqrt(np.diag(m.cov))
    se_vol = vol / np.sqrt(2 * n_days)
    assert np.all(np.abs(est.volatility - vol) < 4 * se_vol)
    corr_hat = est.cov / np.outer(est.volatility, est.volatility)
    corr = m.cov / np.outer(vol, vol)
    assert np.all(np.abs(corr_hat - corr) < 4 * (1 - corr**2) / np.sqrt(n_days) + 1e-12)
    se_mu = vol / np.sqrt(n_days / 252)
    assert np.all(np.abs(est.mu - m.mu) < 4 * se_mu)


def test_history_with_too_few_days_or_bad_close_is_reported_not_fatal():
    dates = pd.bdate_range(end=pd.Timestamp(AS_OF), periods=100).date
    rng = np.random.default_rng(0)
    rows = [(d, "A", 100 * np.exp(0.01 * rng.standard_normal())) for d in dates]
    rows += [(d, "B", 50.0 + i) for i, d in enumerate(dates[-10:])]
    rows += [(d, "C", -1.0 if i == 5 else 10.0 + i) for i, d in enumerate(dates)]
    hist = pd.DataFrame(rows, columns=["date", "underlying", "close"])
    est, missing = estimate_from_history(hist, ("A", "B", "C", "D"), AS_OF, window_days=500,
                                         min_days=60)
    assert est.underlyings == ("A",)
    assert "only 9 daily returns" in missing["B"]
    assert "non-positive" in missing["C"]
    assert "only 0" in missing["D"]


def test_non_psd_correlation_is_repaired_and_recorded():
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    fixed, min_eig = nearest_psd_correlation(bad)
    assert min_eig < 0
    assert np.linalg.eigvalsh(fixed).min() > -1e-12
    np.testing.assert_allclose(np.diag(fixed), 1.0)
    fm = factor_model([("A", 0.0, 0.2), ("B", 0.0, 0.2), ("C", 0.0, 0.2)])
    corr = correlations([("A", "B", 0.9), ("B", "C", 0.9), ("A", "C", -0.9)])
    model, _ = from_factor_model(fm, corr, ("A", "B", "C"))
    assert "not positive semidefinite" in model.repair
    assert isinstance(model, ScenarioModel)


def test_factor_model_rejects_inconsistent_pairs():
    from risk_engine.errors import ModelError

    fm = factor_model([("A", 0.0, 0.2), ("B", 0.0, 0.2)])
    with pytest.raises(ModelError, match="given twice"):
        from_factor_model(fm, correlations([("A", "B", 0.5), ("B", "A", 0.4)]), ("A", "B"))
    with pytest.raises(ModelError, match="not in \\[-1, 1\\]"):
        from_factor_model(fm, correlations([("A", "B", 1.5)]), ("A", "B"))
