"""Vol and rate risk factors of the scenario model: estimation, draws, checks, layout."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from risk_engine.config import config_from_dict
from risk_engine.covariance import cov_factor
from risk_engine.errors import ConfigError, DataError
from risk_engine.scenarios import FactorLayout, ScenarioModel, ScenarioSource, block_rng
from risk_engine.scenarios.factor_history import (
    atm_vol_levels,
    check_rate_history,
    check_vol_history,
    estimate_factors_from_history,
    factors_from_factor_model,
    manifest_entry,
    parallel_shifts,
)
from risk_engine.scenarios.generator import draw_log_returns
from risk_engine.scenarios.model import estimate_from_history
from tests import helpers as h

AS_OF = dt.date(2026, 11, 20)
TENORS = (21, 63, 252)
UND = ("AAA", "BBB")
SPOT_VOL = np.array([0.25, 0.35])
VOL_OF_VOL = np.array([[0.9, 0.6, 0.4], [1.1, 0.8, 0.5]])
RATE_VOL = 0.01
RHO_SPOT_VOL = (-0.7, -0.4)  # per underlying, with each tenor of its own vol
PHI = 0.995  # daily mean reversion of the simulated log ATM vol


def true_cov() -> np.ndarray:
    """Annual covariance in layout order: AAA, BBB, vol AAA x3, vol BBB x3, rate."""
    names = [("s", 0), ("s", 1)] + [("v", u, b) for u in range(2) for b in range(3)] + [("r",)]
    sd = np.concatenate([SPOT_VOL, VOL_OF_VOL.ravel(), [RATE_VOL]])
    corr = np.eye(len(names))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j:
                continue
            kinds = {a[0], b[0]}
            if kinds == {"s"}:
                c = 0.5
            elif kinds == {"s", "v"}:
                s, v = (a, b) if a[0] == "s" else (b, a)
                c = RHO_SPOT_VOL[s[1]] if s[1] == v[1] else -0.2
            elif kinds == {"v"}:
                c = 0.85 if a[1] == b[1] else 0.3
            elif kinds == {"s", "r"}:
                c = 0.3
            else:
                c = 0.0
            corr[i, j] = c
    assert np.linalg.eigvalsh(corr).min() > 0
    return corr * np.outer(sd, sd)


def simulated_inputs(n_days: int, seed: int = 7):
    """history, vol_history (tenors TENORS), rate_history from one joint normal daily path."""
    cov = true_cov()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_days, cov.shape[0])) @ np.linalg.cholesky(cov / 252.0).T
    dates = pd.bdate_range(end=AS_OF, periods=n_days + 1).date
    closes = 100.0 * np.exp(np.vstack([np.zeros(2), np.cumsum(x[:, :2], axis=0)]))
    hist = pd.DataFrame([(d, u, closes[i, j]) for i, d in enumerate(dates)
                         for j, u in enumerate(UND)], columns=["date", "underlying", "close"])
    # Mean-reverting log vol, y_t = PHI y_{t-1} + x_t: its daily change is x_t plus a
    # reversion term that biases the change's vol by (1 - PHI)/(1 + PHI)/2 = 0.13% relative,
    # far inside the tests' 4 standard errors.
    logvol = np.zeros((n_days + 1, 6))
    for i in range(n_days):
        logvol[i + 1] = PHI * logvol[i] + x[i, 2:8]
    base = np.array([0.20, 0.22, 0.24, 0.30, 0.31, 0.33])
    vols = base * np.exp(logvol)
    vh = pd.DataFrame([(d, UND[k // 3], TENORS[k % 3], vols[i, k]) for i, d in enumerate(dates)
                       for k in range(6)], columns=["date", "underlying", "tenor_days", "atm_vol"])
    level = np.concatenate([[0.0], np.cumsum(x[:, 8])])
    tenors_y = [0.5, 2.0, 10.0]
    rh = pd.DataFrame([(d, t, 0.02 + 0.001 * t + level[i]) for i, d in enumerate(dates)
                       for t in tenors_y], columns=["date", "tenor_years", "zero_rate"])
    return hist, vh, rh


def estimate(n_days: int, tenors=TENORS, rate=True, min_days=60):
    hist, vh, rh = simulated_inputs(n_days)
    spot, missing = estimate_from_history(hist, UND, AS_OF, window_days=n_days,
                                          min_days=min_days)
    assert not missing
    vc, rc = check_vol_history(vh, AS_OF, UND), check_rate_history(rh, AS_OF)
    assert not vc.rejected and not rc.rejected
    model, missing = estimate_factors_from_history(
        spot, hist, UND, AS_OF, vol_history=vc.frame, rate_history=rc.frame, tenors_days=tenors,
        rate_factor=rate, window_days=n_days, min_days=min_days)
    return spot, model, missing


def test_estimated_vol_of_vol_and_spot_vol_correlation_recover_the_simulation():
    n = 4000
    spot, model, missing = estimate(n)
    assert not missing
    lay = model.layout
    assert lay == FactorLayout(2, tuple(d / 252 for d in TENORS), True)
    sd, corr = model.factor_volatility, model.correlation
    # Sampling error of a volatility ~ sigma / sqrt(2n), of a correlation (1 - rho^2)/sqrt(n):
    # 4 standard errors.
    for i in range(2):
        for b in range(3):
            c = lay.vol_column(i, b)
            assert sd[c] == pytest.approx(VOL_OF_VOL[i, b], rel=4 / np.sqrt(2 * n))
            rho = RHO_SPOT_VOL[i]
            assert corr[i, c] == pytest.approx(rho, abs=4 * (1 - rho**2) / np.sqrt(n))
    assert sd[lay.rate_column] == pytest.approx(RATE_VOL, rel=4 / np.sqrt(2 * n))
    assert corr[0, lay.rate_column] == pytest.approx(0.3, abs=4 * 0.91 / np.sqrt(n))
    # the spot block is the spot-only estimate, bit for bit
    assert np.array_equal(model.cov[:2, :2], spot.cov)
    assert np.array_equal(model.factor[:2, :2], spot.factor)
    assert np.array_equal(model.mu, spot.mu)
    assert np.allclose(model.factor @ model.factor.T, model.cov, rtol=0, atol=1e-12)
    assert not np.any(model.factor[:2, 2:])
    entry = manifest_entry(model)
    assert entry["vol_tenors_days"] == [21, 63, 252] and entry["rate_factor"] is True
    assert entry["vol_of_vol"]["AAA"]["63"] == pytest.approx(sd[lay.vol_column(0, 1)], rel=1e-5)
    assert entry["spot_vol_correlation"]["BBB"]["252"] == pytest.approx(
        corr[1, lay.vol_column(1, 2)], rel=1e-5)
    assert entry["rate_volatility"] == pytest.approx(sd[lay.rate_column], rel=1e-5)


def test_factors_off_leave_the_model_and_its_block_as_today():
    spot, model, _ = estimate(300, tenors=(), rate=False)
    assert model is spot and model.layout.spot_only and model.layout.width == 2
    src = ScenarioSource(spot, 10 / 252, 11, False, 1000, 2500)
    x = src.block(1)
    # Today's draw, written out: the block's first n x U normals of the (seed, block)
    # Philox stream through the eigen-factor, summed over factors in a fixed order.
    z = block_rng(11, 1).standard_normal((1000, 2))
    ref = np.empty((1000, 2))
    ref[:] = spot.log_return_mean(10 / 252)
    loading = spot.factor.T * np.sqrt(10 / 252)
    for k in range(2):
        ref += z[:, k:k + 1] * loading[k]
    assert x.shape == (1000, 2) and np.array_equal(x, ref)
    assert manifest_entry(model) == {"source": "history", "n_observations": 300,
                                     "vol_tenors_days": [], "rate_factor": False}


@pytest.mark.parametrize("antithetic", [False, True])
def test_spot_columns_are_the_same_bits_with_factors_on(antithetic):
    spot, model, _ = estimate(300)
    on = ScenarioSource(model, 10 / 252, 5, antithetic, 512, 2048)
    off = ScenarioSource(spot, 10 / 252, 5, antithetic, 512, 2048)
    for b in range(on.n_blocks):
        x_on, x_off = on.block(b), off.block(b)
        assert x_on.shape == (512, model.layout.width) == (512, 9)
        assert np.array_equal(x_on[:, :2], x_off)
    assert on.layout is model.layout
    if antithetic:
        x = on.block(0)
        mean = model.block_mean(10 / 252)
        assert np.allclose(x[:256] - mean, -(x[256:] - mean), atol=1e-15)


def test_draws_have_the_model_covariance():
    _, model, _ = estimate(300)
    h_years = 10 / 252
    n = 200_000
    x = draw_log_returns(model, h_years, n, block_rng(3, 0))
    target = model.cov * h_years
    sample = np.cov(x, rowvar=False)
    d = np.diag(target)
    se = np.sqrt((np.outer(d, d) + target**2) / n)
    assert np.all(np.abs(sample - target) <= 4 * se)
    mean_se = np.sqrt(d / n)
    assert np.all(np.abs(x.mean(axis=0) - model.block_mean(h_years)) <= 4 * mean_se)
    assert not np.any(model.block_mean(h_years)[2:])  # vol and rate factors: zero mean


def test_subset_keeps_each_underlyings_vol_columns_and_the_rate():
    _, model, _ = estimate(300)
    sub = model.subset(("BBB",))
    assert sub.layout == FactorLayout(1, model.layout.vol_tenors_years, True)
    cols = [1, *range(model.layout.vol_column(1, 0), model.layout.vol_column(1, 2) + 1),
            model.layout.rate_column]
    assert np.allclose(sub.cov, model.cov[np.ix_(cols, cols)], rtol=1e-12, atol=1e-15)
    assert np.allclose(sub.factor @ sub.factor.T, sub.cov, atol=1e-12)
    assert sub.spot.layout.spot_only and sub.spot.cov.shape == (1, 1)


def test_atm_vol_interpolation_between_history_tenors_is_the_surface_rule():
    frame = pd.DataFrame({"date": np.array(["2026-11-20"] * 3, dtype="datetime64[D]"),
                          "underlying": ["AAA"] * 3, "tenor_days": [21, 126, 504],
                          "atm_vol": [0.30, 0.25, 0.22]})
    levels = atm_vol_levels(frame, ("AAA",), (10, 63, 252, 756))
    t = np.array([21, 126, 504]) / 252
    w = np.array([0.30, 0.25, 0.22]) ** 2 * t

    def by_rule(days):
        x = days / 252
        if x <= t[0]:
            return 0.30
        if x >= t[-1]:
            return 0.22
        j = np.searchsorted(t, x) - 1
        return np.sqrt((w[j] + (w[j + 1] - w[j]) * (x - t[j]) / (t[j + 1] - t[j])) / x)

    got = levels.loc[np.datetime64("2026-11-20")].to_numpy()
    assert got == pytest.approx([by_rule(d) for d in (10, 63, 252, 756)], rel=1e-14)


def test_parallel_shift_is_the_mean_change_over_common_tenors():
    rh = pd.DataFrame({"date": np.array(["2026-11-19"] * 3 + ["2026-11-20"] * 2,
                                        dtype="datetime64[D]"),
                       "tenor_years": [1.0, 2.0, 5.0, 1.0, 5.0],
                       "zero_rate": [0.01, 0.02, 0.03, 0.014, 0.032]})
    s = parallel_shifts(rh, np.array(["2026-11-19", "2026-11-20"], dtype="datetime64[D]"))
    assert s.iloc[0] == pytest.approx((0.004 + 0.002) / 2, abs=1e-15)


def test_bad_vol_history_rows_are_rejected_with_reasons():
    d1, d2, d3 = dt.date(2026, 11, 18), dt.date(2026, 11, 19), dt.date(2026, 11, 20)
    rows = [
        (d1, "AAA", 21, 0.2), (d1, "AAA", 63, 0.21),
        (d2, "AAA", 21, float("nan")), (d2, "AAA", 63, 0.22),   # NaN vol: whole date out
        (d3, "AAA", 21, 0.2), (d3, "AAA", 63, 0.23),
        (d3, "BBB", 0, 0.3), (d3, "BBB", 21.5, 0.3),             # bad tenors
        (d3, "BBB", 63, -0.1), (d3, "BBB", 252, 7.0),            # bad vols
        (None, "BBB", 21, 0.3), (d1, None, 21, 0.3),             # missing date, underlying
        (d1, "BBB", 21, 0.3), (d1, "BBB", 21, 0.31),             # conflicting copies
        (d2, "BBB", 21, 0.3), (d2, "BBB", 21, 0.3),              # identical copies
        (dt.date(2026, 11, 23), "AAA", 21, 0.2),                 # after as-of: left out
        (d1, "ZZZ", 21, -1.0),                                   # not in the book: left out
    ]
    frame = pd.DataFrame(rows, columns=["date", "underlying", "tenor_days", "atm_vol"])
    check = check_vol_history(frame, AS_OF, UND)
    reasons = {(r.key, r.column): r.reason for r in check.rejected}
    assert reasons[("AAA/2026-11-19/21", "atm_vol")].startswith("atm_vol must be finite")
    assert "tenor_days" in reasons[("BBB/2026-11-20/0", "tenor_days")]
    assert "tenor_days" in reasons[("BBB/2026-11-20/21.5", "tenor_days")]
    assert ("BBB/2026-11-20/63", "atm_vol") in reasons
    assert ("BBB/2026-11-20/252", "atm_vol") in reasons
    assert reasons[("BBB/NaT/21", "date")] == "date is missing"
    assert reasons[("<missing>/2026-11-18/21", "underlying")] == "underlying is missing"
    assert "different atm_vol: 0.3 and 0.31" in reasons[("BBB/2026-11-18/21", "atm_vol")]
    assert len(check.rejected) == 9
    kept = check.frame
    # AAA's 2026-11-19 is left out entirely (its 21d row was bad), so is BBB's 11-18 and 11-20
    assert sorted(map(str, kept.loc[kept["underlying"] == "AAA", "date"].dt.date.unique())) \
        == ["2026-11-18", "2026-11-20"]
    assert list(map(str, kept.loc[kept["underlying"] == "BBB", "date"].dt.date)) == \
        ["2026-11-19"]
    assert any("identical duplicate" in w for w in check.warnings)


def test_bad_rate_history_rows_are_rejected_with_reasons():
    d1 = dt.date(2026, 11, 19)
    frame = pd.DataFrame([(d1, 1.0, 0.02), (d1, -1.0, 0.02), (d1, 2.0, float("inf")),
                          (d1, 5.0, 0.03), (d1, 5.0, 0.031), (None, 1.0, 0.02)],
                         columns=["date", "tenor_years", "zero_rate"])
    check = check_rate_history(frame, AS_OF)
    cols = sorted((r.key, r.column) for r in check.rejected)
    assert cols == [("2026-11-19/-1.0", "tenor_years"), ("2026-11-19/2.0", "zero_rate"),
                    ("2026-11-19/5.0", "zero_rate"), ("2026-11-19/5.0", "zero_rate"),
                    ("NaT/1.0", "date")]
    assert list(check.frame["tenor_years"]) == [1.0]


def test_underlying_without_vol_history_is_dropped_with_the_reason():
    hist, vh, rh = simulated_inputs(200)
    spot, _ = estimate_from_history(hist, UND, AS_OF, window_days=200, min_days=60)
    vc = check_vol_history(vh[vh["underlying"] == "AAA"], AS_OF, UND)
    model, missing = estimate_factors_from_history(
        spot, hist, UND, AS_OF, vol_history=vc.frame, rate_history=None, tenors_days=TENORS,
        rate_factor=False, window_days=200, min_days=60)
    assert missing == {"BBB": "no vol_history rows (scenario_model.vol_factors is on)"}
    assert model.underlyings == ("AAA",) and model.layout.width == 4
    short = check_vol_history(vh[vh["date"] >= dt.date(2026, 10, 1)], AS_OF, UND)
    _, missing = estimate_factors_from_history(
        spot, hist, UND, AS_OF, vol_history=short.frame, rate_history=None, tenors_days=TENORS,
        rate_factor=False, window_days=200, min_days=60)
    assert set(missing) == set(UND) and "need 60" in missing["AAA"]
    with pytest.raises(DataError, match="rate_history: table not found"):
        estimate_factors_from_history(
            spot, hist, UND, AS_OF, vol_history=None, rate_history=None, tenors_days=(),
            rate_factor=True, window_days=200, min_days=60)


def _pipeline_inputs(vh, hist, rh=None):
    from risk_engine.pipeline import InputTables

    pos = h.positions([("p1", "d", "call", "AAA", 1.0, 100.0, dt.date(2027, 6, 18), 100.0),
                       ("p2", "d", "equity", "BBB", 10.0, None, None, 1.0)])
    mkt = h.market([("AAA", 100.0, 0.2, 0.0, "x"), ("BBB", 50.0, 0.3, 0.0, "y")])
    return InputTables(pos, mkt, h.flat_rates(), history=hist, vol_history=vh, rate_history=rh)


def test_prepare_rejects_positions_on_an_underlying_without_vol_history():
    from risk_engine.engine import InProcessEngine
    from risk_engine.pipeline import nightly_run, prepare

    hist, vh, rh = simulated_inputs(200)
    bad = pd.DataFrame([(dt.date(2026, 11, 20), "AAA", 21, -0.5)], columns=vh.columns)
    inputs = _pipeline_inputs(pd.concat([vh[vh["underlying"] == "AAA"], bad]), hist, rh)
    cfg = config_from_dict({"as_of_date": AS_OF.isoformat(),
                            "validation": {"max_rejected_share": None},
                            "scenario_model": {"source": "history",
                                               "vol_factors": {"enabled": True},
                                               "rate_factor": {"enabled": True}}})
    prep = prepare(cfg, inputs)
    rej = prep.rejected
    pos = rej[rej["table"] == "positions"]
    assert list(pos["key"]) == ["p2"]
    assert pos["reason"].iat[0] == "no vol_history rows (scenario_model.vol_factors is on)"
    vrow = rej[rej["table"] == "vol_history"]
    assert list(vrow["key"]) == ["AAA/2026-11-20/21"]
    assert prep.model.layout == FactorLayout(1, tuple(d / 252 for d in TENORS), True)
    assert prep.spec.source.layout.width == 5
    with pytest.raises(ConfigError, match="scenario_model.vol_factors.enabled"):
        nightly_run(cfg, inputs, InProcessEngine())


def test_given_factor_model_builds_the_joint_covariance():
    spot_fm = h.factor_model([("AAA", 0.05, 0.2), ("BBB", 0.03, 0.3)])
    corr = h.correlations([("AAA", "BBB", 0.4), ("AAA", "vol:AAA:63", -0.7),
                           ("vol:AAA:63", "vol:BBB:63", 0.5), ("rate", "BBB", 0.2)])
    from risk_engine.scenarios import from_factor_model

    spot, _ = from_factor_model(spot_fm, corr, UND)
    fv = pd.DataFrame({"factor": ["vol:AAA:63", "vol:BBB:63", "rate"],
                       "volatility": [0.9, 0.7, 0.008]})
    model, missing = factors_from_factor_model(spot, fv, corr, tenors_days=(63,),
                                               rate_factor=True)
    assert not missing
    lay = model.layout
    assert lay.width == 5 and np.array_equal(model.factor[:2, :2], spot.factor)
    sd, c = model.factor_volatility, model.correlation
    assert sd[lay.vol_column(0, 0)] == pytest.approx(0.9, rel=1e-12)
    assert sd[lay.rate_column] == pytest.approx(0.008, rel=1e-12)
    assert c[0, lay.vol_column(0, 0)] == pytest.approx(-0.7, abs=1e-12)
    assert c[lay.vol_column(0, 0), lay.vol_column(1, 0)] == pytest.approx(0.5, abs=1e-12)
    assert c[1, lay.rate_column] == pytest.approx(0.2, abs=1e-12)
    assert c[1, lay.vol_column(1, 0)] == pytest.approx(0.0, abs=1e-12)
    model, missing = factors_from_factor_model(spot, fv[fv["factor"] != "vol:BBB:63"], corr,
                                               tenors_days=(63,), rate_factor=False)
    assert "vol:BBB:63" in missing["BBB"] and model.underlyings == ("AAA",)


def test_inconsistent_given_correlations_are_repaired_and_said():
    spot_fm = h.factor_model([("AAA", 0.0, 0.2), ("BBB", 0.0, 0.2)])
    corr = h.correlations([("AAA", "BBB", 0.99), ("AAA", "vol:AAA:21", 0.9),
                           ("BBB", "vol:AAA:21", -0.9)])
    from risk_engine.scenarios import from_factor_model

    spot, _ = from_factor_model(spot_fm, corr, UND)
    fv = pd.DataFrame({"factor": ["vol:AAA:21", "vol:BBB:21"], "volatility": [1.0, 1.0]})
    model, _ = factors_from_factor_model(spot, fv, corr, tenors_days=(21,), rate_factor=False)
    assert "not positive semidefinite" in model.repair
    assert np.linalg.eigvalsh(model.cov).min() > -1e-12
    assert np.array_equal(model.cov[:2, :2], spot.cov)


@pytest.mark.parametrize(("section", "key"), [
    ({"vol_factors": {"tenors_days": [63, 21]}}, "scenario_model.vol_factors.tenors_days"),
    ({"vol_factors": {"tenors_days": [0]}}, "scenario_model.vol_factors.tenors_days[0]"),
    ({"vol_factors": {"tenors_days": []}}, "scenario_model.vol_factors.tenors_days"),
    ({"smile_dynamics": "sticky_delta"}, "scenario_model.smile_dynamics"),
    ({"rate_factor": {"enabled": "maybe"}}, "scenario_model.rate_factor.enabled"),
])
def test_bad_factor_config_names_the_key(section, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"as_of_date": "2026-11-20", "scenario_model": section})


def test_factor_config_defaults_are_off():
    sm = config_from_dict({"as_of_date": "2026-11-20"}).scenario_model
    assert not sm.vol_factors.enabled and not sm.rate_factor.enabled
    assert sm.vol_factors.tenors_days == (21, 63, 252) and sm.vol_factors.tenors_years == ()
    assert sm.smile_dynamics == "sticky_strike"


def test_model_without_layout_is_spot_only():
    cov = np.array([[0.04, 0.01], [0.01, 0.09]])
    m = ScenarioModel(UND, np.zeros(2), cov, cov_factor(cov), "x")
    assert m.layout == FactorLayout(2) and m.spot is m
    assert m.block_mean(1.0).shape == (2,)


def test_atm_vol_levels_with_days_quoting_different_tenors():
    from risk_engine.vol_surface import VolSurface

    d1, d2 = np.datetime64("2026-11-19"), np.datetime64("2026-11-20")
    frame = pd.DataFrame({"date": np.array([d1, d1, d2, d2, d2], dtype="datetime64[D]"),
                          "underlying": ["AAA"] * 5, "tenor_days": [21, 252, 10, 63, 504],
                          "atm_vol": [0.3, 0.2, 0.35, 0.28, 0.21]})
    levels = atm_vol_levels(frame, ("AAA",), TENORS)
    t = np.asarray(TENORS) / 252
    for d, rows in ((d1, [0, 1]), (d2, [2, 3, 4])):
        g = frame.iloc[rows]
        surf = VolSurface.from_quotes(g["tenor_days"].to_numpy(float) / 252,
                                      np.zeros(len(g)), g["atm_vol"].to_numpy(float))
        assert levels.loc[d].to_numpy() == pytest.approx(surf.vol_at(np.zeros(3), t),
                                                         rel=1e-14)


def test_demo_vol_history_has_vol_of_vol_and_negative_spot_vol_correlation():
    from risk_engine.tools.demo_data import generate

    base = generate(n_underlyings=10, n_positions=50, history_days=300, seed=3)
    t = base["history"]
    und = tuple(sorted(t["underlying"].unique()))
    spot, _ = estimate_from_history(t, und, AS_OF, window_days=300, min_days=60)
    vc = check_vol_history(base["vol_history"], AS_OF, und)
    rc = check_rate_history(base["rate_history"], AS_OF)
    assert not vc.rejected and not rc.rejected
    model, missing = estimate_factors_from_history(
        spot, t, und, AS_OF, vol_history=vc.frame, rate_history=rc.frame, tenors_days=(21, 252),
        rate_factor=True, window_days=300, min_days=60)
    assert not missing
    lay, sd, c = model.layout, model.factor_volatility, model.correlation
    vov_1m = np.array([sd[lay.vol_column(i, 0)] for i in range(len(und))])
    vov_1y = np.array([sd[lay.vol_column(i, 1)] for i in range(len(und))])
    rho = np.array([c[i, lay.vol_column(i, 0)] for i in range(len(und))])
    assert 0.7 < vov_1m.mean() < 1.1 and vov_1y.mean() < vov_1m.mean()
    assert np.all(rho < -0.2)
    assert sd[lay.rate_column] == pytest.approx(0.01, rel=0.2)
    # the last rate_history curve is today's rates table
    last = base["rate_history"][base["rate_history"]["date"] == AS_OF]
    assert np.allclose(last["zero_rate"].to_numpy(), base["rates"]["zero_rate"].to_numpy())


def test_factor_columns_are_an_exact_integer_product_whatever_the_blas():
    from risk_engine.scenarios.generator import Z_FRACTION_BITS, _exact_product

    rng = np.random.default_rng(2)
    z = rng.standard_normal((3000, 201))
    loading = rng.standard_normal((201, 151)) * 0.03
    got = _exact_product(z, loading)
    # The same computation in int64 (numpy's integer matmul never calls BLAS): equal bits.
    bits = 52 - 22 - int(np.ceil(np.log2(201)))
    scale = np.abs(loading).max()
    zq = np.rint(np.ldexp(z, Z_FRACTION_BITS)).astype(np.int64)
    lq = np.rint(np.ldexp(loading / scale, bits)).astype(np.int64)
    exact = (zq @ lq).astype(float) * (scale * 2.0 ** -(bits + Z_FRACTION_BITS))
    assert np.array_equal(got, exact)
    # and it is the product of the unrounded inputs to the rounding stated
    assert np.abs(got - z @ loading).max() < 1e-5 * np.abs(loading).sum(axis=0).max()


def test_prepare_with_given_factors_rejects_positions_of_bad_factor_rows():
    from risk_engine.pipeline import InputTables, prepare

    pos = h.positions([("p1", "d", "call", "AAA", 1.0, 100.0, dt.date(2027, 6, 18), 100.0),
                       ("p2", "d", "equity", "BBB", 10.0, None, None, 1.0),
                       ("p3", "d", "equity", "CCC", 10.0, None, None, 1.0)])
    mkt = h.market([("AAA", 100.0, 0.2, 0.0, "x"), ("BBB", 50.0, 0.3, 0.0, "y"),
                    ("CCC", 20.0, 0.3, 0.0, "y")])
    fv = pd.DataFrame({"factor": ["vol:AAA:21", "vol:BBB:21", "vol:BBB:21", "vol:CCC:21",
                                  "rate"],
                       "volatility": [0.9, 0.7, 0.8, 0.6, 0.01]})
    inputs = InputTables(pos, mkt, h.flat_rates(),
                         factor_model=h.factor_model([("AAA", 0.0, 0.2), ("BBB", 0.0, 0.3),
                                                      ("CCC", 0.0, 0.3)]),
                         correlations=h.correlations([("AAA", "vol:AAA:21", 1.5),
                                                      ("CCC", "vol:CCC:21", -0.6)]),
                         factor_vols=fv)
    cfg = h.config(scenario_model={"vol_factors": {"enabled": True, "tenors_days": [21]},
                                   "rate_factor": {"enabled": True}},
                   validation={"max_rejected_share": None})
    prep = prepare(cfg, inputs)
    rej = prep.rejected
    by_table = {t: sorted(g["key"]) for t, g in rej.groupby("table")}
    assert by_table["positions"] == ["p1", "p2"]
    assert by_table["correlations"] == ["AAA/vol:AAA:21"]
    assert by_table["factor_vols"] == ["vol:BBB:21", "vol:BBB:21"]
    pos_rej = rej[rej["table"] == "positions"].set_index("key")["reason"]
    assert "correlations row AAA/vol:AAA:21 rejected" in pos_rej["p1"]
    assert "factor_vols has no row for vol:BBB:21" in pos_rej["p2"]
    model = prep.model
    assert model.underlyings == ("CCC",) and model.layout.width == 3
    assert model.correlation[0, 1] == pytest.approx(-0.6, abs=1e-12)
    assert model.factor_volatility[2] == pytest.approx(0.01, rel=1e-12)
