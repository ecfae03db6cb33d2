"""Backtest statistics against closed forms and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from risk_engine.backtest.statistics import (
    BASEL_ADDON,
    Transitions,
    christoffersen_independence,
    coverage_tests,
    exceptions,
    kupiec_pof,
    pla_zone,
    pnl_attribution,
    traffic_light,
    transitions,
    zone_boundaries,
)

P = 0.01
ALPHA = 0.99


def _close(a, b):
    assert a == pytest.approx(b, rel=1e-12, abs=1e-12)


def test_all_zeros():
    t = coverage_tests(np.zeros(250), ALPHA)
    assert (t.observations, t.exceptions, t.missing) == (250, 0, 0)
    _close(t.kupiec_lr, -2 * 250 * math.log(1 - P))
    _close(t.kupiec_p, scipy.stats.chi2.sf(-2 * 250 * math.log(1 - P), 1))
    assert transitions(np.zeros(250)) == Transitions(249, 0, 0, 0)
    _close(t.independence_lr, 0.0)
    _close(t.independence_p, 1.0)
    _close(t.cc_lr, t.kupiec_lr)
    _close(t.cc_p, scipy.stats.chi2.sf(t.kupiec_lr, 2))


def test_all_ones():
    t = coverage_tests(np.ones(40), ALPHA)
    assert t.exceptions == 40 and t.exception_rate == 1.0
    _close(t.kupiec_lr, -2 * 40 * math.log(P))
    assert transitions(np.ones(40)) == Transitions(0, 0, 0, 39)
    _close(t.independence_lr, 0.0)


def test_alternating():
    m = 50
    hits = np.tile([0.0, 1.0], m)
    t = coverage_tests(hits, ALPHA)
    _close(t.kupiec_lr, -2 * (m * math.log(1 - P) + m * math.log(P) - 2 * m * math.log(0.5)))
    assert transitions(hits) == Transitions(0, m, m - 1, 0)
    pi = m / (2 * m - 1)
    lr = -2 * ((m - 1) * math.log(1 - pi) + m * math.log(pi))  # the free likelihood is 1
    _close(t.independence_lr, lr)
    _close(t.independence_p, scipy.stats.chi2.sf(lr, 1))
    _close(t.cc_lr, t.kupiec_lr + lr)
    _close(t.cc_p, scipy.stats.chi2.sf(t.kupiec_lr + lr, 2))


def test_clustered():
    hits = np.r_[np.zeros(240), np.ones(10)]
    t = coverage_tests(hits, ALPHA)
    pi_hat = 10 / 250
    _close(t.kupiec_lr, -2 * (240 * math.log(1 - P) + 10 * math.log(P)
                              - 240 * math.log(1 - pi_hat) - 10 * math.log(pi_hat)))
    _close(t.kupiec_p, scipy.stats.chi2.sf(t.kupiec_lr, 1))
    assert transitions(hits) == Transitions(239, 1, 0, 9)
    pi, pi01 = 10 / 249, 1 / 240
    restricted = 239 * math.log(1 - pi) + 10 * math.log(pi)
    free = 239 * math.log(1 - pi01) + math.log(pi01)  # pi11 = 1: 9 ln 1 = 0, 0 ln 0 = 0
    _close(t.independence_lr, -2 * (restricted - free))
    _close(t.independence_p, scipy.stats.chi2.sf(-2 * (restricted - free), 1))


def test_missing_days_are_neither_pass_nor_exception():
    hits = np.array([0.0, 1.0, np.nan, 1.0, 0.0])
    t = coverage_tests(hits, ALPHA)
    assert (t.observations, t.exceptions, t.missing) == (4, 2, 1)
    # no transition across the missing day
    assert transitions(hits) == Transitions(0, 1, 1, 0)
    ex = exceptions([1.0, -5.0, np.nan, -5.0], [2.0, 2.0, 2.0, np.nan])
    np.testing.assert_array_equal(ex, [0.0, 1.0, np.nan, np.nan])


def test_no_observation_gives_nan():
    t = coverage_tests([np.nan, np.nan], ALPHA)
    assert t.observations == 0 and math.isnan(t.kupiec_lr) and math.isnan(t.independence_lr)
    assert math.isnan(christoffersen_independence(Transitions(0, 0, 0, 0))[0])


def test_kupiec_vectorised_matches_scalar():
    n = np.array([250, 250, 100])
    x = np.array([0, 7, 3])
    lr, p = kupiec_pof(n, x, 0.975)
    for i in range(3):
        lr_i, p_i = kupiec_pof(int(n[i]), int(x[i]), 0.975)
        _close(lr[i], float(lr_i))
        _close(p[i], scipy.stats.chi2.sf(lr[i], 1))


def test_traffic_light_basel_boundaries_from_binomial():
    assert zone_boundaries(250, 0.99) == (4, 9)
    # the same from scipy.stats.binom directly
    c = scipy.stats.binom.cdf(np.arange(251), 250, 0.01)
    assert int(np.argmax(c >= 0.95)) == 5 and int(np.argmax(c >= 0.9999)) == 10
    zone, addon = traffic_light(250, np.arange(13), 0.99)
    assert list(zone) == ["green"] * 5 + ["yellow"] * 5 + ["red"] * 3
    np.testing.assert_allclose(addon, [0.0] * 5 + [0.40, 0.50, 0.65, 0.75, 0.85] + [1.0] * 3)


@pytest.mark.parametrize("n", [1, 3, 5, 6, 250])
def test_no_exception_is_green_on_any_window(n):
    """A window of a few days with no exception is green, not yellow: with n < 6 at 99%,
    P(X <= 0) = 0.99^n is itself above 0.95, which the cumulative rule alone would call
    yellow. One exception on such a window is not green."""
    zone, addon = traffic_light(n, 0, 0.99)
    assert zone[()] == "green" and addon == 0.0
    assert zone_boundaries(n, 0.99)[0] >= 0
    if n < 6:
        assert traffic_light(n, 1, 0.99)[0][()] != "green"


def test_traffic_light_other_window_and_level():
    n, alpha = 500, 0.975
    green, yellow = zone_boundaries(n, alpha)
    c = scipy.stats.binom.cdf(np.arange(n + 1), n, 1 - alpha)
    assert c[green] < 0.95 <= c[green + 1]
    assert c[yellow] < 0.9999 <= c[yellow + 1]
    zone, addon = traffic_light(n, [green, green + 1, yellow, yellow + 1], alpha)
    assert list(zone) == ["green", "yellow", "yellow", "red"]
    assert addon[0] == 0.0 and addon[3] == 1.0
    assert set(addon[1:3]) <= set(BASEL_ADDON.values())
    assert addon[1] <= addon[2]
    zone, addon = traffic_light(0, 0, alpha)
    assert zone[()] is None and math.isnan(float(addon))


def _simulate_zones(var_scale: float, seeds: int = 200, days: int = 250) -> np.ndarray:
    """Zone per seed of P&L drawn from the model (normal, sd 1) against its VaR x scale."""
    var = scipy.stats.norm.ppf(ALPHA) * var_scale
    pnl = np.stack([np.random.default_rng(seed).standard_normal(days) for seed in range(seeds)])
    counts = exceptions(pnl, var).sum(axis=1)
    zone, _ = traffic_light(days, counts, ALPHA)
    return zone


def test_correct_model_is_green_mostly():
    zone = _simulate_zones(1.0)
    assert np.mean(zone == "green") >= 0.85


def test_halved_var_is_red():
    zone = _simulate_zones(0.5)
    assert np.mean(zone == "red") >= 0.95


def test_pla_statistics_equal_scipy_and_zones():
    rng = np.random.default_rng(3)
    h = rng.standard_normal(250)
    r = h + 0.1 * rng.standard_normal(250)
    a = pnl_attribution(h, r)
    _close(a.spearman, scipy.stats.spearmanr(h, r).statistic)
    _close(a.ks, scipy.stats.ks_2samp(h, r).statistic)
    assert a.zone == "green" and a.observations == 250
    assert pnl_attribution(h, rng.standard_normal(250)).zone == "red"
    assert pla_zone(0.80, 0.09) == "green"
    assert pla_zone(0.79, 0.05) == "amber"
    assert pla_zone(0.85, 0.10) == "amber"
    assert pla_zone(0.70, 0.12) == "amber"
    assert pla_zone(0.69, 0.05) == "red"
    assert pla_zone(0.9, 0.121) == "red"
    b = pnl_attribution([1.0, np.nan, 2.0], [1.0, 3.0, np.nan])
    assert b.observations == 1 and b.zone is None
