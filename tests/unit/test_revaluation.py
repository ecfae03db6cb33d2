"""Revaluation kernel vs the reference pricer; Monte Carlo VaR vs a GBM closed form."""

import datetime as dt

import numpy as np
import pytest
from scipy.stats import norm

from risk_engine.book import resolve_book, validate_snapshot
from risk_engine.measures import var_es
from risk_engine.pipeline import InputTables, prepare
from risk_engine.revaluation import desk_pnl, plan_revaluation
from risk_engine.scenarios import block_rng, draw_log_returns
from risk_engine.simulation import simulate_block
from risk_engine.timeaxis import ZeroCurve
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import position_values
from tests import helpers as h


@pytest.fixture(scope="module")
def demo():
    t = generate(h.AS_OF, n_positions=600, seed=3)
    cfg = h.config(monte_carlo={"n_scenarios": 4000, "block_size": 1000, "horizon_days": 10})
    return cfg, prepare(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                         factor_model=t["factor_model"],
                                         correlations=t["correlations"]))


def test_kernel_equals_reference_pricer_per_desk(demo):
    _, prep = demo
    book = prep.book
    x = draw_log_returns(prep.model, book.horizon_years, 700, block_rng(1, 0))
    ref = position_values(book, x) - book.value
    ref_desk = np.stack([ref[:, book.desk_index == d].sum(axis=1)
                         for d in range(len(book.desks))], axis=1)
    got = desk_pnl(plan_revaluation(book), x, chunk_size=128)
    scale = np.abs(book.value).sum()
    np.testing.assert_allclose(got, ref_desk, rtol=0, atol=1e-10 * scale)


def test_demo_book_has_options_expiring_inside_the_horizon(demo):
    _, prep = demo
    book = prep.book
    opt = book.kind != 0
    assert np.any(opt & (book.tau_h <= 0)) and np.any(opt & (book.tau_h > 0))
    assert np.any(book.quantity < 0) and np.any(book.quantity > 0)


def test_expired_options_are_worth_intrinsic_at_the_horizon():
    snap = validate_snapshot(
        h.positions([("c", "d", "call", "A", 1.0, 100.0, dt.date(2026, 11, 24), 100.0),
                     ("p", "d", "put", "A", -2.0, 105.0, dt.date(2026, 12, 4), 100.0)]),
        h.market([("A", 100.0, 0.3, 0.0, "x")]), h.AS_OF)
    book = resolve_book(snap, ZeroCurve.from_points([1.0], [0.02]), as_of=h.AS_OF,
                        horizon_days=10)
    assert np.all(book.tau_h <= 0)
    x = np.log(np.array([[0.9], [1.0], [1.1]]))
    vals = position_values(book, x)
    s = 100 * np.exp(x[:, 0])
    np.testing.assert_allclose(vals[:, 0], np.maximum(s - 100, 0) * 100)
    np.testing.assert_allclose(vals[:, 1], -2 * np.maximum(105 - s, 0) * 100)
    pnl = desk_pnl(plan_revaluation(book), x)
    np.testing.assert_allclose(pnl[:, 0], vals.sum(axis=1) - book.value.sum(), atol=1e-9)


def _one_stock(quantity, antithetic=False, n=200_000, horizon=10):
    cfg = h.config(monte_carlo={"n_scenarios": n, "block_size": 25_000, "horizon_days": horizon,
                                "antithetic": antithetic}, **h.MC_ONLY)
    inputs = InputTables(
        h.positions([("s1", "desk", "equity", "A", quantity, None, None, 1.0)]),
        h.market([("A", 80.0, 0.3, 0.0, "x")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.07, 0.35)]), correlations=h.correlations())
    return cfg, h.run(cfg, inputs)


@pytest.mark.parametrize("quantity", [1000.0, -1000.0])
def test_monte_carlo_var_es_of_one_stock_match_gbm_closed_form(quantity):
    cfg, (_, tables, _) = _one_stock(quantity)
    hy = 10 / 252
    m, s = (0.07 - 0.5 * 0.35**2) * hy, 0.35 * np.sqrt(hy)
    v0 = abs(quantity) * 80.0
    rm = tables["risk_measures"].query("scope == 'firm'").set_index(["measure",
                                                                     "confidence_level"])
    for alpha in cfg.risk.confidence_levels:
        if quantity > 0:  # loss when the price falls: quantile of X at 1 - alpha
            z = norm.ppf(1 - alpha)
            var = v0 * (1 - np.exp(m + s * z))
            es = v0 * (1 - np.exp(m + s * s / 2) * norm.cdf(z - s) / (1 - alpha))
        else:  # short: loss when the price rises
            z = norm.ppf(alpha)
            var = v0 * (np.exp(m + s * z) - 1)
            es = v0 * (np.exp(m + s * s / 2) * norm.cdf(s - z) / (1 - alpha) - 1)
        got_var, got_es = rm.loc[("VaR", alpha)], rm.loc[("ES", alpha)]
        assert abs(got_var["value"] - var) < 4 * got_var["std_error"], alpha
        assert abs(got_es["value"] - es) < 4 * got_es["std_error"], alpha


def test_antithetic_option_runs_and_stays_within_four_standard_errors():
    cfg, (_, tables, pnl) = _one_stock(1000.0, antithetic=True, n=100_000, horizon=1)
    hy = 1 / 252
    m, s = (0.07 - 0.5 * 0.35**2) * hy, 0.35 * np.sqrt(hy)
    # antithetic pairs mirror the log return around its mean
    x = np.log1p(pnl[:, 0] / 80_000.0)
    np.testing.assert_allclose(x[:12_500] - m, -(x[12_500:25_000] - m), atol=1e-12)
    row = tables["risk_measures"].query("scope == 'firm' and measure == 'VaR' and "
                                        "confidence_level == 0.99").iloc[0]
    exact = 80_000.0 * (1 - np.exp(m + s * norm.ppf(0.01)))
    assert abs(row["value"] - exact) < 4 * row["std_error"]


def test_option_book_var_matches_an_independent_revaluation(demo):
    """Same scenarios, P&L recomputed with scipy's normal CDF in the test: same VaR/ES."""
    cfg, prep = demo
    book = prep.book
    x = np.concatenate([draw_log_returns(prep.model, book.horizon_years,
                                         prep.spec.source.block_length(b),
                                         block_rng(cfg.monte_carlo.seed, b))
                        for b in range(cfg.n_blocks)])
    s = book.spot * np.exp(x)
    sg = s[:, book.underlying_index]
    tau = np.where(book.kind > 0, book.tau_h, 1.0)
    live = (book.kind > 0) & (book.tau_h > 0)
    k, v, r, q = book.strike, book.volatility, book.rate_h, book.dividend_yield
    with np.errstate(all="ignore"):
        d1 = (np.log(sg / k) + (r - q + v * v / 2) * tau) / (v * np.sqrt(tau))
        d2 = d1 - v * np.sqrt(tau)
        call = sg * np.exp(-q * tau) * norm.cdf(d1) - k * np.exp(-r * tau) * norm.cdf(d2)
        put = k * np.exp(-r * tau) * norm.cdf(-d2) - sg * np.exp(-q * tau) * norm.cdf(-d1)
    unit = np.where(book.kind == 0, sg,
                    np.where(live, np.where(book.kind == 1, call, put),
                             np.where(book.kind == 1, np.maximum(sg - k, 0),
                                      np.maximum(k - sg, 0))))
    firm_loss = -(unit * book.quantity).sum(axis=1) + book.value.sum()
    engine = np.concatenate([simulate_block(prep.spec, b) for b in range(cfg.n_blocks)])
    np.testing.assert_allclose(-engine.sum(axis=1), firm_loss, rtol=0,
                               atol=1e-9 * np.abs(book.value).sum())
    for a, b in zip(var_es(firm_loss, cfg.risk.confidence_levels),
                    var_es(-engine.sum(axis=1), cfg.risk.confidence_levels), strict=False):
        assert b.var == pytest.approx(a.var, rel=1e-9)
        assert b.es == pytest.approx(a.es, rel=1e-9)
