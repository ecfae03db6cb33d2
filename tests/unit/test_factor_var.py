"""VaR and ES per risk factor class (risk_factor_var) against exact one-factor answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from risk_engine import schemas
from risk_engine.book import resolve_book, validate_snapshot
from risk_engine.engine import InProcessEngine
from risk_engine.factor_var import risk_factor_var
from risk_engine.pipeline import risk_tables
from risk_engine.pricing import black_scholes_price
from risk_engine.revaluation import desk_values, plan_revaluation
from risk_engine.scenarios import block_rng
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.simulation import SimulationSpec
from risk_engine.timeaxis import ZeroCurve
from tests import helpers as h

EXPIRY = dt.date(2027, 5, 21)
LEVELS = (0.95, 0.99)


@dataclass(frozen=True)
class NormalFactors:
    """Independent normal columns (mean, sd per column), block b keyed by (seed, b).

    Stands in for the scenario model's generator: the same interface as ScenarioSource.
    """

    mean: tuple[float, ...]
    sd: tuple[float, ...]
    seed: int
    block_size: int
    n_scenarios: int

    @property
    def n_blocks(self) -> int:
        return -(-self.n_scenarios // self.block_size)

    def block_length(self, block_id: int) -> int:
        return max(0, min(self.block_size, self.n_scenarios - block_id * self.block_size))

    def block(self, block_id: int) -> np.ndarray:
        z = block_rng(self.seed, block_id).standard_normal(
            (self.block_length(block_id), len(self.sd)))
        return np.asarray(self.mean) + z * np.asarray(self.sd)


def _book(rows, vol=0.25, rate=0.03):
    snap = validate_snapshot(h.positions(rows), h.market([("A", 100.0, vol, 0.0, "x")]),
                             h.AS_OF)
    return resolve_book(snap, ZeroCurve.from_points([0.25, 5.0], [rate, rate]),
                        as_of=h.AS_OF, horizon_days=10)


def _run(book, layout, source):
    cfg = h.config(risk={"confidence_levels": list(LEVELS)})
    spec = SimulationSpec(plan=plan_revaluation(book, layout), source=source, chunk_size=1024)
    blocks = InProcessEngine().simulate(spec, LEVELS)
    tails = blocks.tail_summary(LEVELS)
    table = risk_factor_var(spec, blocks.fold, tails, book, 10)
    return table, risk_tables(tails, book, cfg)["risk_measures"]


def _figure(table, cls, measure="VaR", level=0.99, scope="firm"):
    row = table[(table["factor_class"] == cls) & (table["measure"] == measure)
                & (table["confidence_level"] == level) & (table["scope"] == scope)]
    assert len(row) == 1
    return float(row["value"].iloc[0]), float(row["std_error"].iloc[0])


def _horizon_value(book, p, spot=100.0, vol=None, rate=None):
    return black_scholes_price(
        spots=spot, strikes=book.strike[p], expiries=book.tau_h[p],
        volatilities=book.volatility[p] if vol is None else vol,
        rates=book.rate_h[p] if rate is None else rate,
        dividend_yields=0.0, is_call=book.kind[p] == 1)


def test_long_atm_call_vol_only_var_is_the_repricing_at_the_vol_shock_quantile():
    book = _book([("c", "d", "call", "A", 10.0, 100.0, EXPIRY, 100.0)])
    layout = FactorLayout(1, (0.25, 1.0), rate_factor=True)
    s_vol = 0.15
    source = NormalFactors((0.0, 0.0, 0.0, 0.0), (0.06, s_vol, s_vol, 0.004), seed=7,
                           block_size=5000, n_scenarios=40_000)
    table, _ = _run(book, layout, source)
    # the option's tau_h lies between the tenors, whose shocks here are independent: its
    # shock is w_lo x_lo + w_hi x_hi, normal with sd s_vol sqrt(w_lo^2 + w_hi^2)
    tau = book.tau_h[0]
    w_hi = (tau - 0.25) / 0.75
    sd = s_vol * np.hypot(1 - w_hi, w_hi)
    q = 1000.0
    for level in LEVELS:
        x = sd * norm.ppf(1 - level)  # the vol fall that is exceeded with 1 - level
        expected = book.value[0] - q * _horizon_value(book, 0, vol=0.25 * np.exp(x))
        var, se = _figure(table, "vol", level=level)
        assert abs(var - expected) < 4 * se, (level, var, expected, se)
        assert se > 0


def _short_straddle_hedged():
    rows = [("c", "d", "call", "A", -10.0, 100.0, EXPIRY, 100.0),
            ("p", "d", "put", "A", -10.0, 100.0, EXPIRY, 100.0)]
    delta = float((_book(rows).delta * _book(rows).quantity).sum())
    return _book([*rows, ("s", "d", "equity", "A", -delta, None, None, 1.0)])


def test_delta_hedged_straddle_spot_vol_and_all_factor_var():
    book = _short_straddle_hedged()
    assert abs(float((book.delta * book.quantity).sum())) < 1e-9
    layout = FactorLayout(1, (0.5,), rate_factor=False)
    s_spot, s_vol = 0.05, 0.12
    source = NormalFactors((0.0, 0.0), (s_spot, s_vol), seed=11, block_size=10_000,
                           n_scenarios=60_000)
    table, measures = _run(book, layout, source)
    opts = [0, 1]
    stock = 2

    def spot_loss(x):
        s = 100.0 * np.exp(x)
        v = sum(book.quantity[p] * _horizon_value(book, p, spot=s) for p in opts)
        return book.value.sum() - (v + book.quantity[stock] * s)

    def vol_loss(x):
        v = sum(book.quantity[p] * _horizon_value(book, p, vol=0.25 * np.exp(x)) for p in opts)
        return book.value.sum() - (v + book.value[stock])

    x_min = brentq(lambda x: (spot_loss(x + 1e-7) - spot_loss(x - 1e-7)), -0.05, 0.05)
    for level in LEVELS:
        # spot only: the gamma loss, U-shaped in x; the VaR L solves
        # P(x < a(L)) + P(x > b(L)) = 1 - level with loss(a) = loss(b) = L
        def tail(v, level=level):
            a = brentq(lambda x: spot_loss(x) - v, -1.0, x_min)
            b = brentq(lambda x: spot_loss(x) - v, x_min, 1.0)
            return norm.cdf(a / s_spot) + norm.sf(b / s_spot) - (1 - level)

        expected_spot = brentq(tail, spot_loss(x_min) + 1e-9, spot_loss(-0.5))
        var_spot, se_spot = _figure(table, "spot", level=level)
        assert abs(var_spot - expected_spot) < 4 * se_spot, (level, var_spot, expected_spot)
        # vol only: the vega loss of a vol rise, monotone in the shock
        expected_vol = vol_loss(s_vol * norm.ppf(level))
        var_vol, se_vol = _figure(table, "vol", level=level)
        assert abs(var_vol - expected_vol) < 4 * se_vol, (level, var_vol, expected_vol)
        # both: neither the sum nor zero
        var_all, se_all = _figure(table, "all", level=level)
        assert var_all < var_spot + var_vol - 4 * (se_all + se_spot + se_vol)
        assert var_all > max(var_spot, var_vol) + 4 * se_all


def test_all_rows_equal_risk_measures_and_every_desk_and_level_is_there():
    rows = [("c", "d1", "call", "A", 5.0, 95.0, EXPIRY, 100.0),
            ("p", "d2", "put", "A", -3.0, 105.0, dt.date(2026, 12, 18), 100.0),
            ("s", "d2", "equity", "A", 100.0, None, None, 1.0)]
    book = _book(rows)
    layout = FactorLayout(1, (0.1, 1.0), rate_factor=True)
    source = NormalFactors((0.0, 0.01, 0.0, 0.0), (0.05, 0.1, 0.1, 0.003), seed=3,
                           block_size=2000, n_scenarios=10_000)
    table, measures = _run(book, layout, source)
    assert list(table.columns) == [c for c in schemas.RISK_FACTOR_VAR.names
                                   if c not in ("run_id", "as_of_date")]
    assert set(table["factor_class"]) == {"spot", "vol", "rate", "all"}
    assert len(table) == 4 * 3 * len(LEVELS) * 2  # classes x (2 desks + firm) x levels x 2
    keys = ["scope", "desk", "measure", "confidence_level"]
    got = table[table["factor_class"] == "all"].set_index(keys).sort_index()
    exp = measures.set_index(keys).sort_index()
    pd.testing.assert_series_equal(got["value"], exp["value"], check_exact=True)
    pd.testing.assert_series_equal(got["std_error"], exp["std_error"], check_exact=True)
    assert np.isfinite(table["value"]).all() and (table["std_error"] >= 0).all()


def test_spot_only_blocks_give_no_table():
    book = _book([("c", "d", "call", "A", 10.0, 100.0, EXPIRY, 100.0)])
    source = NormalFactors((0.0,), (0.05,), seed=1, block_size=1000, n_scenarios=2000)
    table, _ = _run(book, None, source)
    assert table is None


def test_rate_only_move_reprices_at_the_shifted_rate():
    rows = [("c", "d", "call", "A", 10.0, 90.0, EXPIRY, 100.0),
            ("p", "d", "put", "A", -4.0, 110.0, dt.date(2028, 6, 16), 100.0),
            ("p2", "d", "put", "A", 3.0, 100.0, dt.date(2026, 12, 11), 100.0)]
    book = _book(rows)
    layout = FactorLayout(1, (0.25,), rate_factor=True)
    dr = np.array([-0.02, -0.0001, 0.0, 0.0001, 0.015])
    x = np.zeros((dr.size, layout.width))
    x[:, layout.rate_column] = dr
    got = desk_values(plan_revaluation(book, layout), x)[:, 0]
    live = np.flatnonzero(book.tau_h > 0)
    expected = [sum(book.quantity[p] * _horizon_value(book, p, rate=book.rate_h[p] + d)
                    for p in live) for d in dr]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_pipeline_stage_adds_the_table_unless_switched_off():
    """_from_tails with factor blocks: risk_factor_var present, and absent when off."""
    import dataclasses

    from risk_engine.pipeline import InputTables, RunLog, _from_tails, prepare

    inputs = InputTables(
        h.positions([("c", "d1", "call", "A", 5.0, 95.0, EXPIRY, 100.0),
                     ("s", "d2", "equity", "A", 100.0, None, None, 1.0)]),
        h.market([("A", 100.0, 0.25, 0.0, "x")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.05, 0.3)]), correlations=h.correlations())
    for on in (True, False):
        cfg = h.config(risk={"confidence_levels": list(LEVELS), "factor_classes": on},
                       monte_carlo={"n_scenarios": 4000, "block_size": 1000}, **h.MC_ONLY)
        prep = prepare(cfg, inputs)
        layout = FactorLayout(1, (0.25,), rate_factor=True)
        source = NormalFactors((0.0, 0.0, 0.0), (0.05, 0.1, 0.003), seed=2,
                               block_size=1000, n_scenarios=4000)
        spec = SimulationSpec(plan_revaluation(prep.book, layout), source, 1024)
        prep = dataclasses.replace(prep, spec=spec)
        blocks = InProcessEngine().simulate(spec, LEVELS)
        rl = RunLog()
        result = _from_tails(cfg, inputs, prep, blocks, blocks.tail_summary(LEVELS), rl)
        assert ("risk_factor_var" in result.tables) == on
        assert ("risk_factor_var" in rl.timings) == on
        if on:
            table = result.tables["risk_factor_var"]
            assert set(table["factor_class"]) == {"spot", "vol", "rate", "all"}


def _factor_run_inputs():
    from risk_engine.pipeline import InputTables

    pos = h.positions([("c", "d1", "call", "A", 5.0, 95.0, EXPIRY, 100.0),
                       ("p", "d1", "put", "B", -4.0, 48.0, dt.date(2027, 2, 19), 100.0),
                       ("s", "d2", "equity", "A", 100.0, None, None, 1.0),
                       ("c2", "d2", "call", "B", -3.0, 55.0, dt.date(2028, 1, 21), 100.0)])
    mkt = h.market([("A", 100.0, 0.25, 0.01, "x"), ("B", 50.0, 0.35, 0.0, "y")])
    fv = pd.DataFrame({"factor": ["vol:A:21", "vol:A:252", "vol:B:21", "vol:B:252", "rate"],
                       "volatility": [0.9, 0.5, 0.8, 0.4, 0.01]})
    corr = h.correlations([("A", "B", 0.5), ("A", "vol:A:21", -0.7), ("A", "vol:A:252", -0.6),
                           ("vol:A:21", "vol:A:252", 0.8), ("vol:B:21", "vol:B:252", 0.8)])
    return InputTables(pos, mkt, h.flat_rates(),
                       factor_model=h.factor_model([("A", 0.05, 0.3), ("B", 0.03, 0.4)]),
                       correlations=corr, factor_vols=fv)


def _quotes(surface, inputs):
    """Quotes of ``surface``'s vols on underlying A (strikes ``100 e^k``, any will do)."""
    rows = []
    for t, ks, ws in zip(surface.expiry_years, surface.log_moneyness, surface.total_variance,
                         strict=True):
        expiry = h.AS_OF + dt.timedelta(days=int(round(t * 365)))
        for k, w in zip(ks, ws, strict=True):
            rows.append((h.AS_OF, "A", expiry, float(100.0 * np.exp(k)), float(np.sqrt(w / t))))
    return pd.DataFrame(rows, columns=["as_of_date", "underlying", "expiry", "strike",
                                       "implied_vol"])


def _factor_cfg(**sections):
    return h.config(scenario_model={"vol_factors": {"enabled": True, "tenors_days": [21, 252]},
                                    "rate_factor": {"enabled": True}},
                    risk={"confidence_levels": list(LEVELS)},
                    monte_carlo={"n_scenarios": 20_000, "block_size": 5000}, **sections)


def test_a_run_with_vol_and_rate_factors_reports_var_by_factor_class():
    inputs = _factor_run_inputs()
    prep, tables, _ = h.run(_factor_cfg(**h.MC_ONLY), inputs)
    assert prep.spec.plan.layout == prep.model.layout and prep.model.layout.width == 7
    table = tables["risk_factor_var"]
    assert set(table["factor_class"]) == {"spot", "vol", "rate", "all"}
    keys = ["scope", "desk", "measure", "confidence_level"]
    got = table[table["factor_class"] == "all"].set_index(keys).sort_index()["value"]
    exp = tables["risk_measures"].set_index(keys).sort_index()["value"]
    pd.testing.assert_series_equal(got, exp, check_exact=True)
    # spot only: the same spot draws as a run without factors, repriced with vols and
    # rates held: the same figures up to rounding
    off = h.config(risk={"confidence_levels": list(LEVELS)},
                   monte_carlo={"n_scenarios": 20_000, "block_size": 5000}, **h.MC_ONLY)
    _, plain, _ = h.run(off, inputs)
    spot = table[table["factor_class"] == "spot"].set_index(keys).sort_index()["value"]
    ref = plain["risk_measures"].set_index(keys).sort_index()["value"]
    np.testing.assert_allclose(spot.to_numpy(), ref.to_numpy(), rtol=1e-9)
    # the vol factors matter: the all-factor firm VaR differs from spot-only by far more
    var_all, se = _figure(table, "all")
    assert abs(var_all - _figure(table, "spot")[0]) > 4 * se


def test_factors_with_the_worst_case_stage_are_refused():
    from risk_engine.errors import ConfigError
    from risk_engine.pipeline import nightly_run

    with pytest.raises(ConfigError, match="scenario_model.vol_factors.enabled.*worst_case"):
        nightly_run(_factor_cfg(governance={"enabled": False}), _factor_run_inputs(),
                    InProcessEngine())
    with pytest.raises(ConfigError, match="rate_factor.enabled.*worst_case.enabled"):
        nightly_run(h.config(scenario_model={"rate_factor": {"enabled": True}}),
                    _factor_run_inputs(), InProcessEngine())


@pytest.mark.parametrize("smile", ["sticky_strike", "sticky_moneyness"])
def test_attribution_under_vol_and_rate_factors_adds_up_to_the_desks_var(smile):
    """Euler contributions priced with the scenarios' vol and rate moves: they equal the
    brute-force contributions of a position-by-position revaluation and add up to each
    desk's VaR and ES; the whole run with attribution on publishes them."""
    from risk_engine.attribution import attribute_in_process, attribution_requests
    from risk_engine.measures import euler_contributions, var_es
    from risk_engine.simulation import smile_of
    from risk_engine.tails import summarize_matrix
    from risk_engine.valuation import position_values
    from risk_engine.vol_surface import VolSurface

    inputs = _factor_run_inputs()
    if smile == "sticky_moneyness":  # a skewed surface on A, so the smile moves with spot
        k = np.array([-0.3, 0.0, 0.3])
        surface = VolSurface.from_quotes(np.array([0.5] * 3 + [2.0] * 3), np.r_[k, k],
                                         np.array([0.32, 0.25, 0.21, 0.3, 0.26, 0.23]))
        inputs = dataclasses.replace(inputs, vol_surface=_quotes(surface, inputs))
    cfg = h.config(scenario_model={"vol_factors": {"enabled": True, "tenors_days": [21, 252]},
                                   "rate_factor": {"enabled": True}, "smile_dynamics": smile},
                   risk={"confidence_levels": list(LEVELS)}, worst_case={"enabled": False},
                   monte_carlo={"n_scenarios": 20_000, "block_size": 5000})
    prep, tables, pnl = h.run(cfg, inputs)
    assert smile_of(prep.spec.plan) == smile and len(tables["position_risk"])
    book, src = prep.book, prep.spec.source
    assert (smile == "sticky_moneyness") == bool(book.surfaces)
    requests = attribution_requests(summarize_matrix(pnl, src.block_size, LEVELS))
    contrib, _ = attribute_in_process(book, src, requests, LEVELS, pnl, smile=smile)
    x = np.concatenate([src.block(b) for b in range(src.n_blocks)])
    pos_loss = -(position_values(book, x, layout=src.model.layout, smile=smile,
                                 surfaces=book.surfaces) - book.value)
    for d in range(len(book.desks)):
        cols = np.flatnonzero(book.desk_index == d)
        brute = euler_contributions(pos_loss[:, cols], LEVELS)
        for alpha, (var_c, es_c) in zip(LEVELS, brute, strict=True):
            est = var_es(-pnl[:, d], [alpha])[0]
            for measure, want, total in (("VaR", var_c, est.var), ("ES", es_c, est.es)):
                i = next(i for i, r in enumerate(requests) if r.desk_index == d
                         and r.measure == measure and r.confidence_level == alpha)
                assert contrib[i, cols].sum() == pytest.approx(total, rel=1e-9)
                np.testing.assert_allclose(contrib[i, cols], want,
                                           atol=1e-6 * np.abs(want).max())
