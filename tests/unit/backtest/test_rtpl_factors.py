"""Risk-theoretical P&L with the scenario model's vol and rate factors on.

Every expected value is computed here from the inputs, with a Black-Scholes written out and
the stated interpolation rules (total variance across quoted ATM tenors, the vol shock
linear in the option's life between the factor tenors), not with the engine's helpers.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from risk_engine.backtest.hypothetical import RtplFactors, day_pnl, hypothetical_series
from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.stage import backtest_tables

T0, T1 = dt.date(2026, 11, 19), dt.date(2026, 11, 20)
EXPIRY = dt.date(2027, 6, 18)
SPOT, SIGMA, Q = 100.0, 0.25, 0.01
TENORS = (21, 63, 252)  # vol factor tenors, trading days
QUOTED = (10, 42, 126, 504)  # vol_history tenors, trading days
VOLS0 = (0.30, 0.27, 0.25, 0.24)
VOLS1 = (0.33, 0.28, 0.255, 0.239)


def _bs(s, k, t, vol, r, q, call=True):
    d1 = (math.log(s / k) + (r - q + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    if call:
        return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)


def _market(day, spot=SPOT, vol=SIGMA):
    return pd.DataFrame([(day, "AAA", spot, vol, Q, "tech")],
                        columns=["as_of_date", "underlying", "spot", "volatility",
                                 "dividend_yield", "sector"])


def _rates(day, r1=0.02, r5=0.025):
    return pd.DataFrame({"as_of_date": day, "tenor_years": [1.0, 5.0],
                         "zero_rate": [r1, r5]})


POSITIONS = pd.DataFrame(
    [(T0, "p1", "d1", "b", "call", "AAA", 2.0, SPOT, EXPIRY, 100.0)],
    columns=["as_of_date", "position_id", "desk", "book", "instrument_type", "underlying",
             "quantity", "strike", "expiry", "multiplier"])


def _vol_history(days_vols):
    rows = [(d, "AAA", t, v) for d, vols in days_vols for t, v in zip(QUOTED, vols,
                                                                        strict=True)]
    return pd.DataFrame(rows, columns=["date", "underlying", "tenor_days", "atm_vol"])


def _atm(vols, tenor_days):
    """ATM vol at a tenor: total variance linear between the quoted tenors, flat outside."""
    t = np.array(QUOTED) / 252.0
    w = np.array(vols) ** 2 * t
    x = tenor_days / 252.0
    if x <= t[0]:
        return vols[0]
    if x >= t[-1]:
        return vols[-1]
    j = int(np.searchsorted(t, x)) - 1
    wx = w[j] + (w[j + 1] - w[j]) * (x - t[j]) / (t[j + 1] - t[j])
    return math.sqrt(wx / x)


def _shock(life):
    """The realized log vol shock at an option's life: linear between tenors, flat outside."""
    x = [math.log(_atm(VOLS1, d) / _atm(VOLS0, d)) for d in TENORS]
    ten = [d / 252.0 for d in TENORS]
    if life <= ten[0]:
        return x[0]
    if life >= ten[-1]:
        return x[-1]
    j = max(i for i in range(len(ten)) if ten[i] <= life)
    return x[j] + (x[j + 1] - x[j]) * (life - ten[j]) / (ten[j + 1] - ten[j])


def _rate_at(life, r1=0.02, r5=0.025):
    return float(np.interp(life, [1.0, 5.0], [r1, r5]))


def _rtpl(factors, **kw):
    _, rt, messages = day_pnl(POSITIONS, _market(T0), _rates(T0), _market(T1, **kw),
                              _rates(T1), T0, T1, "act_365",
                              *([] if factors is None else [_moves(factors)]))
    return rt.set_index("desk")["pnl"], messages


def _moves(factors):
    from risk_engine.backtest.hypothetical import day_moves

    return day_moves(factors, ("AAA",), [(T0, T1)])[T1]


def test_only_vol_moving_on_an_atm_call_is_the_repricing_at_the_shocked_vol():
    vh = _vol_history([(T0, VOLS0), (T1, VOLS1)])
    got, messages = _rtpl(RtplFactors(TENORS, vol_history=vh))
    assert not messages
    l0, l1 = (EXPIRY - T0).days / 365, (EXPIRY - T1).days / 365
    assert TENORS[1] / 252 < l1 < TENORS[2] / 252  # interpolated between two tenors
    x = _shock(l1)
    assert abs(x) > 1e-3
    want = 200.0 * (_bs(SPOT, SPOT, l1, SIGMA * math.exp(x), _rate_at(l1), Q)
                    - _bs(SPOT, SPOT, l0, SIGMA, _rate_at(l0), Q))
    assert got["d1"] == pytest.approx(want, rel=1e-9)
    # the vol part alone: V(sigma exp(x)) - V(sigma) at today's life
    spot_only, _ = _rtpl(None)
    vega_part = 200.0 * (_bs(SPOT, SPOT, l1, SIGMA * math.exp(x), _rate_at(l1), Q)
                         - _bs(SPOT, SPOT, l1, SIGMA, _rate_at(l1), Q))
    assert got["d1"] - spot_only["d1"] == pytest.approx(vega_part, rel=1e-8)


def test_only_the_rate_moving_is_the_repricing_at_the_shifted_curve():
    rh = pd.DataFrame({"date": [T0, T0, T1, T1], "tenor_years": [1.0, 5.0, 1.0, 5.0],
                       "zero_rate": [0.02, 0.025, 0.021, 0.0262]})
    got, messages = _rtpl(RtplFactors(rate=True, rate_history=rh), spot=103.0)
    assert not messages
    shift = ((0.021 - 0.02) + (0.0262 - 0.025)) / 2
    l0, l1 = (EXPIRY - T0).days / 365, (EXPIRY - T1).days / 365
    want = 200.0 * (_bs(103.0, SPOT, l1, SIGMA, _rate_at(l1) + shift, Q)
                    - _bs(SPOT, SPOT, l0, SIGMA, _rate_at(l0), Q))
    assert got["d1"] == pytest.approx(want, rel=1e-9)


def test_a_day_missing_from_vol_history_has_no_rtpl_and_says_why():
    vh = _vol_history([(T0, VOLS0)])  # nothing on T1
    got, messages = _rtpl(RtplFactors(TENORS, vol_history=vh))
    assert "d1" not in got.index
    assert any("desk d1 missing: no ATM vol move of AAA" in m for m in messages)
    rh = pd.DataFrame({"date": [T0], "tenor_years": [1.0], "zero_rate": [0.02]})
    got, messages = _rtpl(RtplFactors(rate=True, rate_history=rh))
    assert "d1" not in got.index
    assert any("no parallel rate shift" in m for m in messages)


# ----------------------------------------------------------------------------- the stage

AS_OF = dt.date(2026, 11, 20)
WINDOW = 12


def _snapshots(days, seed=0):
    rng = np.random.default_rng(seed)
    pos, mkt, rts = [], [], []
    s = {"AAA": 100.0, "BBB": 40.0}
    for d in days:
        for u in s:
            s[u] *= float(np.exp(0.02 * rng.standard_normal()))
            mkt.append((d, u, s[u], 0.3, 0.0, "x"))
        pos.append((d, "p1", "d1", "b", "equity", "AAA", 50.0, None, None, 1.0))
        pos.append((d, "p2", "d2", "b", "equity", "BBB", -30.0, None, None, 1.0))
        pos.append((d, "p3", "d2", "b", "call", "BBB", 4.0, 40.0, EXPIRY, 100.0))
        rts.extend([(d, 1.0, 0.02), (d, 5.0, 0.025)])
    return {
        "positions": pd.DataFrame(pos, columns=["as_of_date", "position_id", "desk", "book",
                                                "instrument_type", "underlying", "quantity",
                                                "strike", "expiry", "multiplier"]),
        "market": pd.DataFrame(mkt, columns=["as_of_date", "underlying", "spot", "volatility",
                                             "dividend_yield", "sector"]),
        "rates": pd.DataFrame(rts, columns=["as_of_date", "tenor_years", "zero_rate"]),
    }


def _published(days):
    rows = []
    for d in days:
        vd = previous_business_day(d)
        rows += [(f"r{vd}", vd, "desk", "d1", "VaR", 0.99, 1, 1e6),
                 (f"r{vd}", vd, "desk", "d2", "VaR", 0.99, 1, 1e6),
                 (f"r{vd}", vd, "firm", None, "VaR", 0.99, 1, 2e6)]
    return pd.DataFrame(rows, columns=["run_id", "as_of_date", "scope", "desk", "measure",
                                       "confidence_level", "horizon_days", "value"])


def _window_vol_history(days, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for d in days:
        for u in ("AAA", "BBB"):
            for t in TENORS:
                rows.append((d, u, t, 0.3 * float(np.exp(0.05 * rng.standard_normal()))))
    return pd.DataFrame(rows, columns=["date", "underlying", "tenor_days", "atm_vol"])


def test_stage_with_factors_off_is_the_spot_rtpl_bit_for_bit():
    days = window_dates(AS_OF, WINDOW)
    snaps = _snapshots([previous_business_day(days[0]), *days])
    settings = BacktestSettings(enabled=True, window=WINDOW, confidence_levels=(0.99,))
    before, _, w0 = backtest_tables(_published(days), None, settings, AS_OF, snapshots=snaps)
    off, _, w1 = backtest_tables(_published(days), None, settings, AS_OF, snapshots=snaps,
                                 factors=RtplFactors(vol_history=_window_vol_history(days)))
    for name in ("backtest", "backtest_series"):
        pd.testing.assert_frame_equal(before[name], off[name])
    assert w0 == w1
    s = before["backtest_series"]
    assert set(s.loc[s["series"] == "hypothetical", "rtpl_factors"]) == {"spot"}
    assert s.loc[s["series"] == "actual", "rtpl_factors"].isna().all()


def test_stage_vol_rtpl_and_a_day_missing_from_vol_history():
    days = window_dates(AS_OF, WINDOW)
    all_days = [previous_business_day(days[0]), *days]
    snaps = _snapshots(all_days)
    gone = days[4]
    vh = _window_vol_history(all_days)
    vh = vh[vh["date"] != gone]
    settings = BacktestSettings(enabled=True, window=WINDOW, confidence_levels=(0.99,))
    factors = RtplFactors(TENORS, vol_history=vh)
    tables, _, warnings = backtest_tables(_published(days), None, settings, AS_OF,
                                          snapshots=snaps, factors=factors)
    s = tables["backtest_series"]
    hyp = s[s["series"] == "hypothetical"]
    d2 = hyp[hyp["desk"] == "d2"].set_index("date")
    d1 = hyp[hyp["desk"] == "d1"].set_index("date")
    firm = hyp[hyp["scope"] == "firm"].set_index("date")
    # the option desk has no RTPL on the gone day and the next (never a zero shock)
    for t in (gone, days[5]):
        assert np.isnan(d2.loc[t, "rtpl"]) and np.isfinite(d2.loc[t, "pnl"])
        assert np.isnan(firm.loc[t, "rtpl"])
    assert np.isfinite(d1["rtpl"]).all()  # stock only: no vol move needed
    assert d2["rtpl"].notna().sum() == WINDOW - 2
    assert set(hyp["rtpl_factors"]) == {"spot+vol"}
    assert any(f"risk-theoretical P&L of {gone}: desk d2 missing: no ATM vol move of BBB"
               in w for w in warnings)
    bt = tables["backtest"]
    row = bt[(bt["series"] == "hypothetical") & (bt["desk"] == "d2")].iloc[0]
    assert row["rtpl_factors"] == "spot+vol"
    assert "RTPL (spot+vol) missing on 2 of" in row["message"]
    # a day with the moves equals the day's repricing with them
    t = days[0]
    by = {k: {d: g for d, g in f.groupby("as_of_date")} for k, f in snaps.items()}
    from risk_engine.backtest.hypothetical import day_moves

    moves = day_moves(factors, ("AAA", "BBB"), [(all_days[0], t)])[t]
    _, rt, _ = day_pnl(by["positions"][all_days[0]], by["market"][all_days[0]],
                       by["rates"][all_days[0]], by["market"][t], by["rates"][t],
                       all_days[0], t, moves=moves)
    assert d2.loc[t, "rtpl"] == rt.set_index("desk").loc["d2", "pnl"]
    _, spot_rt, _ = day_pnl(by["positions"][all_days[0]], by["market"][all_days[0]],
                            by["rates"][all_days[0]], by["market"][t], by["rates"][t],
                            all_days[0], t)
    assert d2.loc[t, "rtpl"] != spot_rt.set_index("desk").loc["d2", "pnl"]
    assert d1.loc[t, "rtpl"] == spot_rt.set_index("desk").loc["d1", "pnl"]


def test_cached_rows_of_other_rtpl_factors_are_revalued():
    days = window_dates(AS_OF, WINDOW)
    all_days = [previous_business_day(days[0]), *days]
    snaps = _snapshots(all_days)
    pairs = [(previous_business_day(t), t) for t in days]
    factors = RtplFactors(TENORS, vol_history=_window_vol_history(all_days))
    hpl, rtpl, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                       pairs, factors=factors)
    cached = hpl.merge(rtpl.rename(columns={"pnl": "rtpl"}), on=["date", "desk"])
    altered = cached.assign(rtpl=cached["rtpl"] + 1.0)
    # published before the column existed (spot RTPL): revalued with the vol factors
    _, got, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                    pairs, cached=altered, factors=factors)
    pd.testing.assert_frame_equal(got, rtpl)
    # published with the same factors: reused
    same = altered.assign(rtpl_factors="spot+vol")
    _, got, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                    pairs, cached=same, factors=factors)
    g = got.set_index(["date", "desk"])["pnl"]
    want = rtpl.set_index(["date", "desk"])["pnl"]
    assert g.loc[(days[0], "d2")] == want.loc[(days[0], "d2")] + 1.0
    # and a spot-only run does not reuse RTPL published with the vol factors
    _, spot, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                     pairs)
    _, got, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                    pairs, cached=same)
    pd.testing.assert_frame_equal(got, spot)


def test_factors_on_without_their_history_tables_leave_option_desks_without_rtpl():
    days = window_dates(AS_OF, WINDOW)
    snaps = _snapshots([previous_business_day(days[0]), *days])
    pairs = [(previous_business_day(t), t) for t in days]
    hpl, rtpl, messages = hypothetical_series(snaps["positions"], snaps["market"],
                                              snaps["rates"], pairs,
                                              factors=RtplFactors(TENORS, rate=True))
    assert set(hpl["desk"]) == {"d1", "d2"} and set(rtpl["desk"]) == {"d1"}
    for name in ("vol_factors", "rate_factor"):
        assert any(f"scenario_model.{name} is on but its history table was not given" in m
                   for m in messages)
