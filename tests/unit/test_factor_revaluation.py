"""Full revaluation under spot, vol and rate moves vs an independent Black-Scholes pricer."""

import numpy as np
import pytest

from risk_engine.covariance import cov_factor
from risk_engine.pipeline import InputTables, prepare
from risk_engine.pricing import black_scholes_price
from risk_engine.revaluation import desk_pnl, desk_values, plan_revaluation, tenor_weights
from risk_engine.scenarios import ScenarioModel, block_rng, draw_log_returns
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.tools.demo_data import generate
from risk_engine.types import CALL, EQUITY
from risk_engine.valuation import position_values
from risk_engine.vol_surface import VolSurface
from tests import helpers as h

TENORS = (1 / 12, 0.25, 1.0)


@pytest.fixture(scope="module")
def demo():
    t = generate(h.AS_OF, n_positions=400, seed=11)
    cfg = h.config(monte_carlo={"n_scenarios": 1000, "block_size": 1000, "horizon_days": 10})
    return prepare(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                    factor_model=t["factor_model"],
                                    correlations=t["correlations"])).book


def _surface(seed):
    """A skewed, term-structured surface with uneven strike grids per expiry."""
    rng = np.random.default_rng(seed)
    t, k, v = [], [], []
    for i, expiry in enumerate((0.1, 0.4, 1.2, 3.0)):
        ks = np.sort(rng.uniform(-0.5, 0.5, size=5 + i))
        t += [expiry] * ks.size
        k += list(ks)
        v += list(0.2 + 0.03 * i - 0.25 * ks + 0.3 * ks**2)
    return VolSurface.from_quotes(np.array(t), np.array(k), np.array(v))


def _factor_block(book, layout, n, seed):
    """Spot returns from the demo model, random vol shocks and rate shifts."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, layout.width))
    x[:, :layout.n_underlyings] = rng.normal(0.0, 0.08, size=(n, layout.n_underlyings))
    x[:, layout.vol_columns] = rng.normal(0.0, 0.25, size=(n, layout.n_underlyings
                                                           * layout.n_vol_buckets))
    if layout.rate_column is not None:
        x[:, layout.rate_column] = rng.normal(0.0, 0.01, size=n)
    return x


def _reference_values(book, layout, x, smile="sticky_strike", surfaces=None):
    """Every position revalued one by one: (n, P), by black_scholes_price."""
    surfaces = surfaces or {}
    n_u = layout.n_underlyings
    s = book.spot * np.exp(x[:, :n_u])
    sg = s[:, book.underlying_index]
    unit = sg.copy()
    opt = book.kind != EQUITY
    live = opt & (book.tau_h > 0)
    dr = x[:, layout.rate_column][:, None] if layout.rate_column is not None else 0.0
    for p in np.flatnonzero(live):
        u = book.underlying_index[p]
        tau = book.tau_h[p]
        if layout.n_vol_buckets:
            cols = [layout.vol_column(u, b) for b in range(layout.n_vol_buckets)]
            shock = np.array([np.interp(tau, layout.vol_tenors_years, row)
                              for row in x[:, cols]])
        else:
            shock = np.zeros(x.shape[0])
        name = book.underlyings[u]
        if smile == "sticky_moneyness" and name in surfaces:
            t = book.expiry_years[p]
            fwd = s[:, u] * np.exp((book.rate[p] - book.dividend_yield[p]) * t)
            vol = surfaces[name].vol_at(np.log(book.strike[p] / fwd), np.full(x.shape[0], t))
        else:
            vol = book.volatility[p]
        unit[:, p] = black_scholes_price(
            spots=sg[:, p], strikes=book.strike[p], expiries=tau,
            volatilities=vol * np.exp(shock), rates=book.rate_h[p] + np.ravel(dr * 1.0),
            dividend_yields=book.dividend_yield[p], is_call=book.kind[p] == CALL)
    dead = opt & ~live
    sign = np.where(book.kind[dead] == CALL, 1.0, -1.0)
    unit[:, dead] = np.maximum(sign * (sg[:, dead] - book.strike[dead]), 0.0)
    return unit * book.quantity


def _per_desk(book, values):
    return np.stack([values[:, book.desk_index == d].sum(axis=1)
                     for d in range(len(book.desks))], axis=1)


LAYOUTS = {
    "vol_and_rate": lambda u: FactorLayout(u, TENORS, True),
    "vol_only": lambda u: FactorLayout(u, TENORS),
    "one_tenor": lambda u: FactorLayout(u, (0.5,)),
    "rate_only": lambda u: FactorLayout(u, (), True),
}


@pytest.mark.parametrize("smile", ["sticky_strike", "sticky_moneyness"])
@pytest.mark.parametrize("which", list(LAYOUTS))
def test_full_revaluation_equals_an_independent_pricer(demo, smile, which):
    book = demo
    layout = LAYOUTS[which](len(book.underlyings))
    surfaces = {u: _surface(i) for i, u in enumerate(book.underlyings[::2])}
    x = _factor_block(book, layout, 300, seed=5)
    plan = plan_revaluation(book, layout, smile=smile, surfaces=surfaces)
    ref = _per_desk(book, _reference_values(book, layout, x, smile, surfaces))
    got = desk_values(plan, x, chunk_size=64)
    scale = np.abs(book.value).sum()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_array_equal(desk_pnl(plan, x, 1024), got - plan.value_today)


@pytest.mark.parametrize("every", [1, 2])
def test_sticky_moneyness_on_every_or_some_underlyings_and_far_wings(demo, every):
    """Surfaces on all underlyings (no scatter) or half; spot moves beyond the smile wings."""
    book = demo
    layout = LAYOUTS["vol_and_rate"](len(book.underlyings))
    surfaces = {u: _surface(i) for i, u in enumerate(book.underlyings[::every])}
    x = _factor_block(book, layout, 130, seed=13)
    x[5, :layout.n_underlyings] = 9.0  # a spot x e^9: k beyond every knot and wing
    x[6, :layout.n_underlyings] = -9.5
    x[7, :layout.n_underlyings] = 2.0
    plan = plan_revaluation(book, layout, smile="sticky_moneyness", surfaces=surfaces)
    assert plan.factors.smile_slices.all_contracts == (every == 1)
    ref = _per_desk(book, _reference_values(book, layout, x, "sticky_moneyness", surfaces))
    got = desk_values(plan, x, chunk_size=64)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(book.value).sum())


def test_results_do_not_depend_on_tiles(demo):
    book = demo
    layout = LAYOUTS["vol_and_rate"](len(book.underlyings))
    x = _factor_block(book, layout, 700, seed=7)
    plan = plan_revaluation(book, layout)
    base = desk_pnl(plan, x, 1024)
    for chunk in (64, 100, 256):
        np.testing.assert_array_equal(desk_pnl(plan, x, chunk), base)
    np.testing.assert_array_equal(desk_pnl(plan, x[333:341]), base[333:341])


def test_zero_factor_moves_reprice_today_at_the_horizon(demo):
    """With vol and rate columns at zero the factor path equals the spot-only kernel."""
    book = demo
    u = len(book.underlyings)
    x = _spot_block(book, 500)
    layout = LAYOUTS["vol_and_rate"](u)
    wide = np.zeros((x.shape[0], layout.width))
    wide[:, :u] = x
    got = desk_pnl(plan_revaluation(book, layout), wide)
    base = desk_pnl(plan_revaluation(book), x)
    np.testing.assert_allclose(got, base, rtol=0, atol=1e-10 * np.abs(book.value).sum())


def _spot_block(book, n):
    u = len(book.underlyings)
    cov = np.eye(u) * 0.09
    model = ScenarioModel(book.underlyings, np.zeros(u), cov, cov_factor(cov), "test")
    return draw_log_returns(model, book.horizon_years, n, block_rng(3, 0))


def test_moving_one_class_zeroes_the_others(demo):
    book = demo
    layout = LAYOUTS["vol_and_rate"](len(book.underlyings))
    x = _factor_block(book, layout, 200, seed=9)
    plan = plan_revaluation(book, layout)
    for cls, cols in (("spot", slice(0, layout.n_underlyings)), ("vol", layout.vol_columns),
                      ("rate", slice(layout.rate_column, layout.rate_column + 1))):
        only = np.zeros_like(x)
        only[:, cols] = x[:, cols]
        np.testing.assert_array_equal(desk_pnl(plan.moving((cls,)), x), desk_pnl(plan, only))


def test_spot_only_layout_is_todays_kernel(demo):
    book = demo
    x = _spot_block(book, 300)
    plan = plan_revaluation(book, FactorLayout(len(book.underlyings)))
    assert plan.factors is None
    np.testing.assert_array_equal(desk_pnl(plan, x), desk_pnl(plan_revaluation(book), x))
    # sticky moneyness without any surface is sticky strike: the same kernel
    assert plan_revaluation(book, smile="sticky_moneyness").factors is None


def test_block_of_the_wrong_width_is_refused(demo):
    book = demo
    plan = plan_revaluation(book, LAYOUTS["vol_only"](len(book.underlyings)))
    with pytest.raises(ValueError, match="columns"):
        desk_pnl(plan, np.zeros((3, len(book.underlyings))))


def test_tenor_weights_interpolate_linearly_and_flat_outside():
    tau = np.array([0.01, 1 / 12, 0.1, 0.25, 0.6, 1.0, 4.0])
    lo, hi, wl, wh = tenor_weights(tau, TENORS)
    v = np.array([1.0, -2.0, 5.0])
    np.testing.assert_allclose(wl * v[lo] + wh * v[hi], np.interp(tau, TENORS, v),
                               rtol=0, atol=1e-15)


def test_grid_method_refuses_vol_and_rate_factors(demo):
    from risk_engine.errors import ConfigError
    from risk_engine.revaluation_grid import build_plan

    book = demo
    u = len(book.underlyings)
    cov = np.eye(u) * 0.09
    model = ScenarioModel(book.underlyings, np.zeros(u), cov, cov_factor(cov), "test")
    for layout in (LAYOUTS["vol_only"](u), LAYOUTS["rate_only"](u)):
        with pytest.raises(ConfigError, match="monte_carlo.revaluation.*spot alone"):
            build_plan(book, "grid", model=model, layout=layout)
    with pytest.raises(ConfigError, match="monte_carlo.revaluation"):
        build_plan(book, "grid", model=model, smile="sticky_moneyness",
                   surfaces={n: _surface(0) for n in book.underlyings})
    grid = build_plan(book, "grid", model=model, layout=FactorLayout(u))
    with pytest.raises(ValueError, match="spot log returns only"):
        desk_pnl(grid, np.zeros((2, LAYOUTS["vol_only"](u).width)))


@pytest.mark.parametrize("smile", ["sticky_strike", "sticky_moneyness"])
@pytest.mark.parametrize("which", ["vol_and_rate", "one_tenor", "rate_only"])
def test_position_values_price_the_factor_columns_too(demo, smile, which):
    """The position-level pricer (attribution, worst case) and the kernel agree."""
    book = demo
    layout = LAYOUTS[which](len(book.underlyings))
    surfaces = {u: _surface(i) for i, u in enumerate(book.underlyings[::2])}
    x = _factor_block(book, layout, 60, seed=17)
    got = position_values(book, x, layout=layout, smile=smile, surfaces=surfaces)
    ref = _reference_values(book, layout, x, smile, surfaces)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)
    kernel = desk_values(plan_revaluation(book, layout, smile=smile, surfaces=surfaces), x)
    np.testing.assert_allclose(_per_desk(book, got), kernel, rtol=1e-9,
                               atol=1e-9 * np.abs(book.value).sum())
    with pytest.raises(ValueError, match="columns"):
        position_values(book, x)
