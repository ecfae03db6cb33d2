"""Historical simulation against an independent numpy computation from the history table."""

import math

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import ConfigError, DataError
from risk_engine.measures import tail_rank
from risk_engine.pipeline import InputTables
from risk_engine.revaluation import desk_pnl, plan_revaluation
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.scenarios.historical import (
    HistoricalSettings,
    check_layout,
    ewma_scale,
    filtered,
    historical_data,
    historical_source,
)
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import position_values
from tests import helpers as h

LEVELS = (0.95, 0.99)


@pytest.fixture(scope="module")
def demo():
    return generate(h.AS_OF, n_underlyings=20, n_positions=300, history_days=520, seed=4)


def _names(t, n):
    return tuple(sorted(t["market"]["underlying"]))[:n]


def _inputs(t, history=None):
    return InputTables(t["positions"], t["market"], t["rates"],
                       history=t["history"] if history is None else history)


def _cfg(**hist):
    return h.config(scenario_model={"source": "historical"}, historical=hist,
                    risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY)


def _numpy_scenarios(history, underlyings, window, horizon, method="overlapping"):
    """The scenario matrix straight from the history table, by pandas and numpy."""
    wide = history.pivot(index="date", columns="underlying", values="close").sort_index()
    logs = np.log(wide[list(underlyings)].to_numpy(float)[-(window + 1):])
    if method == "overlapping":
        return logs[horizon:] - logs[:-horizon]
    return (logs[1:] - logs[:-1]) * math.sqrt(horizon)


def _exact_var_es(loss, alpha):
    s = np.sort(loss)
    n = s.size
    k = tail_rank(n, alpha)
    es = (s[k:].sum() + (k - alpha * n) * s[k - 1]) / (n * (1 - alpha))
    return s[k - 1], es


@pytest.mark.parametrize("horizon", [1, 10])
def test_historical_var_es_equal_numpy_from_history(demo, horizon):
    cfg = _cfg(window_days=500, block_size=64)
    cfg = h.config(scenario_model={"source": "historical"}, historical={"block_size": 64},
                   monte_carlo={"horizon_days": horizon},
                   risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY)
    prep, tables, pnl = h.run(cfg, _inputs(demo))
    book = prep.book
    x = _numpy_scenarios(demo["history"], book.underlyings, 500, horizon)
    assert x.shape[0] == 500 - horizon + 1 == prep.spec.source.n_scenarios
    np.testing.assert_array_equal(np.concatenate(
        [prep.spec.source.block(b) for b in range(prep.spec.source.n_blocks)]), x)
    ref = desk_pnl(plan_revaluation(book), x, 1024)
    np.testing.assert_array_equal(pnl, ref)
    # A second revaluation (position by position) agrees to rounding.
    pos = position_values(book, x) - book.value
    by_desk = np.stack([pos[:, book.desk_index == d].sum(axis=1)
                        for d in range(len(book.desks))], axis=1)
    np.testing.assert_allclose(ref, by_desk, rtol=1e-9, atol=1e-6)
    rm = tables["risk_measures"]
    assert (rm["n_scenarios"] == x.shape[0]).all()
    series = [("desk", d, -ref[:, i]) for i, d in enumerate(book.desks)]
    series.append(("firm", None, -ref.sum(axis=1)))
    for scope, desk, loss in series:
        for alpha in LEVELS:
            var, es = _exact_var_es(loss, alpha)
            sel = rm[(rm["scope"] == scope) & (rm["confidence_level"] == alpha)]
            if desk is not None:
                sel = sel[sel["desk"] == desk]
            got = sel.set_index("measure")["value"]
            assert got["VaR"] == var
            assert got["ES"] == pytest.approx(es, rel=1e-13, abs=1e-9)


def test_sqrt_scaling_with_h1_equals_overlapping(demo):
    t = demo
    two = _names(t, 2)
    data, missing = historical_data(t["history"], two, h.AS_OF, window_days=300)
    assert not missing
    from risk_engine.scenarios import ScenarioModel

    model = ScenarioModel((), np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)), "history")
    over = historical_source(data, HistoricalSettings(window_days=300, block_size=7),
                             horizon_days=1, model=model, horizon_years=1 / 252)
    sq = historical_source(data, HistoricalSettings(window_days=300, block_size=7,
                                                    horizon_method="sqrt_scaled"),
                           horizon_days=1, model=model, horizon_years=1 / 252)
    assert over.n_scenarios == sq.n_scenarios == 300
    for b in range(over.n_blocks):
        np.testing.assert_array_equal(over.block(b), sq.block(b))
    sq10 = historical_source(data, HistoricalSettings(window_days=300,
                                                      horizon_method="sqrt_scaled"),
                             horizon_days=10, model=model, horizon_years=10 / 252)
    ov10 = historical_source(data, HistoricalSettings(window_days=300),
                             horizon_days=10, model=model, horizon_years=10 / 252)
    assert sq10.n_scenarios == 300 and ov10.n_scenarios == 300 - 10 + 1
    x = _numpy_scenarios(t["history"], two, 300, 10, "sqrt_scaled")
    np.testing.assert_array_equal(sq10.changes(0, 300), x)


def test_short_history_rejects_positions_with_reason(demo):
    t = demo
    hist = t["history"]
    victim = sorted(t["positions"]["underlying"].unique())[0]
    # Drop one mid-window close of one underlying: its positions go, with the reason.
    day = sorted(hist["date"].unique())[-100]
    cut = hist[~((hist["underlying"] == victim) & (hist["date"] == day))]
    prep, tables, _ = h.run(_cfg(), _inputs(t, cut))
    assert victim not in prep.book.underlyings
    rej = tables["rejected_rows"]
    mine = rej[(rej["table"] == "positions") & rej["reason"].str.contains("historical window")]
    n_pos = int((t["positions"]["underlying"] == victim).sum())
    assert len(mine) == n_pos and (mine["value"].astype(str) == victim).all()


def test_too_short_history_for_window_is_a_reason_not_zero_shock(demo):
    t = demo
    with pytest.raises(DataError, match="no valid position"):
        h.run(_cfg(window_days=600), _inputs(t))
    data, missing = historical_data(t["history"], _names(t, 2), h.AS_OF, window_days=600)
    assert data.underlyings == () and set(missing) == set(_names(t, 2))
    assert all("historical.window_days + 1 = 601" in r for r in missing.values())


def test_vol_or_rate_factors_are_refused_with_the_key():
    check_layout(FactorLayout(3))
    with pytest.raises(ConfigError, match="scenario_model.source"):
        check_layout(FactorLayout(3, vol_tenors_years=(0.25, 1.0)))
    with pytest.raises(ConfigError, match="scenario_model.source"):
        check_layout(FactorLayout(3, rate_factor=True))


@pytest.mark.parametrize("key, value", [("window_days", 1), ("horizon_method", "both"),
                                        ("filter", "kalman"), ("ewma_lambda", 0.0),
                                        ("ewma_lambda", 1.5), ("spot_shift", "log"),
                                        ("block_size", 0)])
def test_bad_historical_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"historical.{key}"):
        _cfg(**{key: value})


def test_window_shorter_than_horizon_names_the_key(demo):
    cfg = h.config(scenario_model={"source": "historical"}, historical={"window_days": 5},
                   monte_carlo={"horizon_days": 10}, **h.MC_ONLY)
    with pytest.raises(ConfigError, match="historical.window_days"):
        h.run(cfg, _inputs(demo))


def test_absolute_spot_shift_applies_price_changes_to_today(demo):
    t = demo
    und = _names(t, 4)[::3]
    spots = t["market"].set_index("underlying").loc[list(und), "spot"].to_numpy(float)
    data, _ = historical_data(t["history"], und, h.AS_OF, window_days=50,
                              spot_shift="absolute", spots=spots)
    from risk_engine.scenarios import ScenarioModel

    model = ScenarioModel((), np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)), "history")
    src = historical_source(data, HistoricalSettings(window_days=50, spot_shift="absolute"),
                            horizon_days=5, model=model, horizon_years=5 / 252)
    wide = t["history"].pivot(index="date", columns="underlying", values="close").sort_index()
    c = wide[list(und)].to_numpy(float)[-51:]
    expected = np.log((spots + (c[5:] - c[:-5])) / spots)
    np.testing.assert_array_equal(src.changes(0, src.n_scenarios), expected)


def test_history_after_as_of_is_ignored(demo):
    t = demo
    late = pd.DataFrame({"date": [pd.Timestamp("2027-01-05").date()],
                         "underlying": [_names(t, 1)[0]], "close": [1.0]})
    a, _ = historical_data(t["history"], _names(t, 1), h.AS_OF, window_days=20)
    b, _ = historical_data(pd.concat([t["history"], late]), _names(t, 1), h.AS_OF,
                           window_days=20)
    np.testing.assert_array_equal(a.levels, b.levels)


def test_ewma_lambda_one_reproduces_plain_history(demo):
    data, _ = historical_data(demo["history"], _names(demo, 3), h.AS_OF,
                              window_days=200)
    np.testing.assert_array_equal(ewma_scale(np.diff(data.levels, axis=0), 1.0), 1.0)
    np.testing.assert_allclose(filtered(data, "ewma", 1.0).levels, data.levels,
                               rtol=0, atol=1e-12)
    gaps = [np.abs(filtered(data, "ewma", 1 - eps).levels - data.levels).max()
            for eps in (1e-3, 1e-6, 1e-9)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-7


def test_ewma_filter_is_hull_white_rescaling(demo):
    data, _ = historical_data(demo["history"], _names(demo, 2), h.AS_OF, window_days=120)
    r = np.diff(data.levels, axis=0)
    lam = 0.94
    # Independent recursion, one factor at a time in plain Python.
    for c in range(r.shape[1]):
        v = [float(np.mean(r[:, c] ** 2))]
        for t in range(r.shape[0]):
            v.append(lam * v[-1] + (1 - lam) * r[t, c] ** 2)
        want = r[:, c] * np.sqrt(v[-1]) / np.sqrt(v[:-1])
        got = np.diff(filtered(data, "ewma", lam).levels[:, c])
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)


def test_garch_filter_rescales_by_fitted_volatility(demo):
    from arch import arch_model

    data, _ = historical_data(demo["history"], _names(demo, 2), h.AS_OF, window_days=400)
    f = filtered(data, "garch")
    r = np.diff(data.levels, axis=0)
    c = 1
    scale = np.sqrt(np.mean(r[:, c] ** 2))
    res = arch_model(r[:, c] / scale, mean="Zero", vol="GARCH", p=1, q=1,
                     rescale=False).fit(disp="off")
    omega, alpha, beta = (float(res.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    sig = np.asarray(res.conditional_volatility)
    # Today's forecast by the GARCH(1,1) recursion itself.
    nxt = np.sqrt(omega + alpha * (r[-1, c] / scale) ** 2 + beta * sig[-1] ** 2)
    np.testing.assert_allclose(np.diff(f.levels[:, c]), r[:, c] * nxt / sig, rtol=1e-9)
    assert f.levels.shape == data.levels.shape and np.isfinite(f.levels).all()


def _vol_rate_history(dates, names, tenors_days=(30, 91, 365)):
    rng = np.random.default_rng(5)
    rows, rates = [], []
    for d in dates:
        for u in names:
            base = 0.2 + 0.05 * rng.standard_normal()
            for td in tenors_days:
                rows.append((d, u, td, abs(base) + 0.01 * td / 252))
        for ty, r in ((0.25, 0.03), (1.0, 0.035), (5.0, 0.04)):
            rates.append((d, ty, r + 0.002 * rng.standard_normal()))
    return (pd.DataFrame(rows, columns=["date", "underlying", "tenor_days", "atm_vol"]),
            pd.DataFrame(rates, columns=["date", "tenor_years", "zero_rate"]))


def test_vol_and_rate_columns_follow_the_layout(demo):
    from risk_engine.scenarios import ScenarioModel
    from risk_engine.scenarios.historical import add_vol_rate_columns
    from risk_engine.vol_surface import VolSurface

    names = _names(demo, 3)
    data, _ = historical_data(demo["history"], names, h.AS_OF, window_days=40)
    dates = [pd.Timestamp(d).date() for d in data.dates]
    vh, rh = _vol_rate_history(dates, names)
    layout = FactorLayout(3, vol_tenors_years=(0.05, 0.5, 2.0), rate_factor=True)
    full, missing = add_vol_rate_columns(data, layout, vol_history=vh, rate_history=rh)
    assert not missing and full.levels.shape == (41, layout.width)
    model = ScenarioModel((), np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)), "history")
    with pytest.raises(ConfigError, match="scenario_model.source"):
        historical_source(full, HistoricalSettings(window_days=40), horizon_days=5,
                          model=model, horizon_years=5 / 252)
    src = historical_source(full, HistoricalSettings(window_days=40), horizon_days=5,
                            model=model, horizon_years=5 / 252, layout=layout)
    x = src.block(0)
    assert x.shape == (36, layout.width)
    # Vol column (u=1, tenor 0.5y) by the surface rule on each date; rate by the mean.
    u, b = 1, 1
    def vol(day):
        q = vh[(vh["date"] == day) & (vh["underlying"] == names[u])]
        surf = VolSurface.from_quotes(q["tenor_days"].to_numpy(float) / 252.0,
                                      np.zeros(len(q)), q["atm_vol"].to_numpy(float))
        return float(surf.vol_at(np.zeros(1), np.array([0.5]))[0])
    want = np.log(vol(dates[7])) - np.log(vol(dates[2]))
    assert x[2, layout.vol_column(u, b)] == pytest.approx(want, abs=1e-14)
    mean = rh.groupby("date")["zero_rate"].mean()
    assert x[2, layout.rate_column] == pytest.approx(mean[dates[7]] - mean[dates[2]], abs=1e-15)
    np.testing.assert_array_equal(x[:, :3], historical_source(
        data, HistoricalSettings(window_days=40), horizon_days=5, model=model,
        horizon_years=5 / 252).block(0))
    # Subset keeps each underlying's vol columns with it.
    sub = full.subset((names[2], names[0]))
    assert sub.levels.shape == (41, 2 * 4 + 1)
    np.testing.assert_array_equal(sub.levels[:, 2:5], full.levels[:, 9:12])
    np.testing.assert_array_equal(sub.levels[:, 5:8], full.levels[:, 3:6])
    # Relative rate shifts: r0 (exp(d) - 1) with today's mean rate.
    rel, _ = add_vol_rate_columns(data, layout, vol_history=vh, rate_history=rh,
                                  rate_shift="relative")
    srel = historical_source(rel, HistoricalSettings(window_days=40), horizon_days=5,
                             model=model, horizon_years=5 / 252, layout=layout)
    r0 = mean[dates[-1]]
    assert srel.block(0)[2, -1] == pytest.approx(
        r0 * (mean[dates[7]] / mean[dates[2]] - 1), rel=1e-12)


def test_missing_vol_history_rejects_the_underlying(demo):
    from risk_engine.scenarios.historical import add_vol_rate_columns

    names = _names(demo, 2)
    data, _ = historical_data(demo["history"], names, h.AS_OF, window_days=20)
    dates = [pd.Timestamp(d).date() for d in data.dates]
    vh, rh = _vol_rate_history(dates, names)
    vh = vh[~((vh["underlying"] == names[0]) & (vh["date"] == dates[4]))]
    out, missing = add_vol_rate_columns(data, FactorLayout(2, vol_tenors_years=(0.25,)),
                                        vol_history=vh)
    assert set(missing) == {names[0]} and "vol_history" in missing[names[0]]
    assert out.underlyings == (names[1],) and out.levels.shape == (21, 2)


def test_thin_tail_warning_names_the_window(demo):
    cfg = h.config(scenario_model={"source": "historical"}, historical={"window_days": 300},
                   risk={"confidence_levels": [0.99]}, **h.MC_ONLY)
    prep, _, _ = h.run(cfg, _inputs(demo))
    thin = [w for w in prep.warnings if "in the tail" in w]
    assert len(thin) == 1 and "historical.window_days" in thin[0]
    assert "monte_carlo.n_scenarios" not in thin[0]


def test_every_stage_runs_on_historical_scenarios():
    t = generate(h.AS_OF, n_underlyings=10, n_positions=150, seed=4, history_days=520)
    cfg = h.config(scenario_model={"source": "historical"}, hedging={"enabled": True},
                   governance={"attribution": True})
    prep, tables, pnl = h.run(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                               history=t["history"]))
    assert pnl.shape == (491, len(prep.book.desks))
    for name in ("worst_case_var", "position_risk", "hedge_summary", "limit_checks"):
        assert len(tables[name]) > 0, name
    # Position attribution adds up to the historical VaR of each desk.
    pr = tables["position_risk"]
    rm = tables["risk_measures"]
    for desk in prep.book.desks:
        var = rm[(rm["desk"] == desk) & (rm["measure"] == "VaR")
                 & (rm["confidence_level"] == 0.99)]["value"].iloc[0]
        got = pr[(pr["desk"] == desk) & (pr["confidence_level"] == 0.99)]["var_contribution"]
        assert got.sum() == pytest.approx(var, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("smile", ["sticky_strike", "sticky_moneyness"])
def test_historical_vol_and_rate_scenarios_equal_numpy_from_the_histories(demo, smile):
    """Spot, ATM-vol and rate windows straight from the three history tables, revalued
    position by position, give the run's VaR; its factor classes add up to ``all``."""
    from risk_engine.tools.demo_data import demo_vol_surface

    horizon, tenors = 5, [21, 252]  # tenors quoted in the demo's vol_history: no interpolation
    surface = demo_vol_surface(demo["market"], demo["rates"], h.AS_OF, seed=3)
    inputs = InputTables(demo["positions"], demo["market"], demo["rates"],
                         history=demo["history"], vol_history=demo["vol_history"],
                         rate_history=demo["rate_history"], vol_surface=surface)
    cfg = h.config(scenario_model={"source": "historical", "smile_dynamics": smile,
                                   "vol_factors": {"enabled": True, "tenors_days": tenors},
                                   "rate_factor": {"enabled": True}},
                   historical={"window_days": 300, "block_size": 100},
                   monte_carlo={"horizon_days": horizon},
                   risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY)
    prep, tables, pnl = h.run(cfg, inputs)
    book, layout = prep.book, prep.spec.plan.layout
    assert layout.width == len(book.underlyings) * 3 + 1 and book.surfaces

    def windows(levels):
        return levels[horizon:] - levels[:-horizon]

    spot = _numpy_scenarios(demo["history"], book.underlyings, 300, horizon)
    vh = demo["vol_history"].pivot_table(index="date", columns=["underlying", "tenor_days"],
                                         values="atm_vol").sort_index()
    vols = np.log(np.concatenate([vh[u][tenors].to_numpy(float)[-301:]
                                  for u in book.underlyings], axis=1))
    rate = demo["rate_history"].groupby("date")["zero_rate"].mean().sort_index()
    x = np.concatenate([spot, windows(vols), windows(rate.to_numpy(float)[-301:])[:, None]],
                       axis=1)
    got = np.concatenate([prep.spec.source.block(b) for b in range(prep.spec.source.n_blocks)])
    assert got.shape == x.shape == (300 - horizon + 1, layout.width)
    np.testing.assert_allclose(got, x, rtol=1e-12, atol=1e-15)
    pos = position_values(book, x, layout=layout, smile=smile, surfaces=book.surfaces)
    ref = np.stack([(pos - book.value)[:, book.desk_index == d].sum(axis=1)
                    for d in range(len(book.desks))], axis=1)
    np.testing.assert_allclose(pnl, ref, rtol=1e-9, atol=1e-4)
    rm = tables["risk_measures"]
    for alpha in LEVELS:
        var, _ = _exact_var_es(-ref.sum(axis=1), alpha)
        sel = rm[(rm["scope"] == "firm") & (rm["confidence_level"] == alpha)
                 & (rm["measure"] == "VaR")]
        assert float(sel["value"].iloc[0]) == pytest.approx(var, rel=1e-9)
    rfv = tables["risk_factor_var"]
    keys = ["scope", "desk", "measure", "confidence_level"]
    pd.testing.assert_series_equal(
        rfv[rfv["factor_class"] == "all"].set_index(keys).sort_index()["value"],
        rm.set_index(keys).sort_index()["value"], check_exact=True)
