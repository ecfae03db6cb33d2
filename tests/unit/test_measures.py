"""VaR/ES estimators: exact definitions, identities, metamorphic properties, errors."""

import numpy as np
import pytest
from scipy.stats import norm

from risk_engine.measures import euler_contributions, tail_rank, tail_weights, var_es

LEVELS = (0.95, 0.975, 0.99)


def test_hand_computed_estimator():
    losses = np.arange(1.0, 101.0)[::-1]  # order must not matter
    e95, e975 = var_es(losses, [0.95, 0.975])
    assert e95.var == 95.0  # k = 95; ES = (96+...+100)/5
    assert e95.es == pytest.approx(98.0, rel=1e-14)
    # k = ceil(97.5) = 98; ES = (99 + 100 + (98 - 97.5) * 98) / 2.5
    assert e975.var == 98.0
    assert e975.es == pytest.approx((99 + 100 + 0.5 * 98) / 2.5, rel=1e-15)


def test_tail_rank_is_robust_to_binary_rounding():
    assert tail_rank(100_000, 0.95) == 95_000  # 0.95 * 100000 = 95000.00000000001
    assert tail_rank(1000, 0.999) == 999
    assert tail_rank(3, 0.5) == 2


def test_rockafellar_uryasev_identity():
    rng = np.random.default_rng(3)
    losses = rng.standard_t(4, 20_001)
    for est in var_es(losses, LEVELS):
        ru = est.var + np.maximum(losses - est.var, 0).mean() / (1 - est.confidence_level)
        assert est.es == pytest.approx(ru, rel=1e-12)


def test_metamorphic_properties():
    rng = np.random.default_rng(4)
    losses = rng.lognormal(0, 1, 50_000) - 1.5
    ests = var_es(losses, LEVELS)
    for e in ests:
        assert e.es >= e.var
    assert [e.var for e in ests] == sorted(e.var for e in ests)
    assert [e.es for e in ests] == sorted(e.es for e in ests)
    for c in (0.5, 3.0):  # positive homogeneity
        scaled = var_es(c * losses, LEVELS)
        for a, b in zip(ests, scaled, strict=False):
            assert b.var == pytest.approx(c * a.var, rel=1e-12)
            assert b.es == pytest.approx(c * a.es, rel=1e-12)
    shifted = var_es(losses + 7.0, LEVELS)  # translation equivariance
    for a, b in zip(ests, shifted, strict=False):
        assert b.var == pytest.approx(a.var + 7.0, rel=1e-12)
        assert b.es == pytest.approx(a.es + 7.0, rel=1e-12)


def test_normal_sample_within_four_standard_errors_of_exact():
    rng = np.random.default_rng(5)
    losses = rng.standard_normal(200_000)
    for e in var_es(losses, LEVELS):
        z = norm.ppf(e.confidence_level)
        exact_es = norm.pdf(z) / (1 - e.confidence_level)
        assert abs(e.var - z) < 4 * e.var_std_error
        assert abs(e.es - exact_es) < 4 * e.es_std_error


def test_standard_errors_match_the_spread_of_repeated_estimates():
    rng = np.random.default_rng(6)
    reps = [var_es(rng.standard_normal(20_000), [0.99])[0] for _ in range(300)]
    sd_var = np.std([r.var for r in reps], ddof=1)
    sd_es = np.std([r.es for r in reps], ddof=1)
    se_var = np.mean([r.var_std_error for r in reps])
    se_es = np.mean([r.es_std_error for r in reps])
    assert 0.75 < se_var / sd_var < 1.33
    assert 0.75 < se_es / sd_es < 1.33


def test_tail_weights_reproduce_es():
    rng = np.random.default_rng(7)
    losses = rng.standard_normal(10_007)
    for alpha in LEVELS:
        idx, w = tail_weights(losses, alpha)
        assert w @ losses[idx] == pytest.approx(var_es(losses, [alpha])[0].es, rel=1e-12)
        assert w.sum() == pytest.approx(1.0, rel=1e-12)


def test_euler_contributions_add_up_and_firm_is_subadditive_in_es():
    rng = np.random.default_rng(8)
    cov = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.5], [-0.2, 0.5, 0.5]])
    comp = rng.multivariate_normal(np.zeros(3), cov, 100_000)
    total = comp.sum(axis=1)
    for alpha, (var_c, es_c) in zip(LEVELS, euler_contributions(comp, LEVELS), strict=False):
        t = var_es(total, [alpha])[0]
        assert var_c.sum() == pytest.approx(t.var, rel=1e-12)
        assert es_c.sum() == pytest.approx(t.es, rel=1e-12)
        desk_es = [var_es(comp[:, j], [alpha])[0].es for j in range(3)]
        assert t.es <= sum(desk_es)
        # Gaussian: the Euler ES contribution is known in closed form.
        sd = np.sqrt(cov.sum())
        exact = cov.sum(axis=1) / sd * norm.pdf(norm.ppf(alpha)) / (1 - alpha)
        np.testing.assert_allclose(es_c, exact, atol=4 * t.es_std_error)


def test_errors():
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        var_es([1.0, 2.0], [99])
    with pytest.raises(ValueError, match="finite"):
        var_es([1.0, np.nan], [0.9])
    with pytest.raises(ValueError, match="no scenario"):
        var_es([], [0.9])
