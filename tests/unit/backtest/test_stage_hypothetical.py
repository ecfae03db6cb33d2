"""The backtest stage with the window's snapshots: hypothetical series and P&L attribution."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from risk_engine.backtest.hypothetical import hypothetical_pnl
from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.stage import backtest_tables

AS_OF = dt.date(2026, 11, 20)
WINDOW = 12
EXPIRY = dt.date(2027, 6, 18)


def _snapshots(days, option=True, vol_moves=True, seed=0):
    rng = np.random.default_rng(seed)
    pos, mkt, rts = [], [], []
    s = {"AAA": 100.0, "BBB": 40.0}
    v = {"AAA": 0.3, "BBB": 0.35}
    for d in days:
        for u in s:
            s[u] *= float(np.exp(0.02 * rng.standard_normal()))
            if vol_moves:
                v[u] = max(0.05, v[u] + 0.03 * float(rng.standard_normal()))
            mkt.append((d, u, s[u], v[u], 0.0, "x"))
        pos.append((d, "p1", "d1", "b", "equity", "AAA", 50.0, None, None, 1.0))
        pos.append((d, "p2", "d2", "b", "equity", "BBB", -30.0, None, None, 1.0))
        if option:
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


def _settings():
    return BacktestSettings(enabled=True, window=WINDOW, confidence_levels=(0.99,))


def test_hypothetical_series_is_the_revalued_book_and_pla_is_filled():
    days = window_dates(AS_OF, WINDOW)
    all_days = [previous_business_day(days[0]), *days]
    snaps = _snapshots(all_days)
    tables, _, warnings = backtest_tables(_published(days), None, _settings(), AS_OF,
                                          snapshots=snaps)
    s = tables["backtest_series"]
    hyp = s[(s["series"] == "hypothetical") & (s["desk"] == "d2")].set_index("date")
    by = {k: {d: g for d, g in f.groupby("as_of_date")} for k, f in snaps.items()}
    for t in days[:3]:
        p = previous_business_day(t)
        want, _ = hypothetical_pnl(by["positions"][p], by["market"][p], by["rates"][p],
                                   by["market"][t], by["rates"][t], p, t)
        assert hyp.loc[t, "pnl"] == want.set_index("desk").loc["d2", "pnl"]
        assert hyp.loc[t, "status"] == "ok"
    firm = s[(s["series"] == "hypothetical") & (s["scope"] == "firm")].set_index("date")
    d1 = s[(s["series"] == "hypothetical") & (s["desk"] == "d1")].set_index("date")
    assert firm.loc[days[0], "pnl"] == pytest.approx(d1.loc[days[0], "pnl"]
                                                     + hyp.loc[days[0], "pnl"])
    bt = tables["backtest"]
    row = bt[(bt["series"] == "hypothetical") & (bt["desk"] == "d2")].iloc[0]
    assert row["status"] == "ok" and row["observations"] == WINDOW
    assert np.isfinite(row["pla_spearman"]) and np.isfinite(row["pla_ks"])
    assert row["pla_zone"] in ("green", "amber", "red")
    assert bt[bt["series"] == "actual"]["status"].eq("missing").all()
    assert any("no pnl_history" in w for w in warnings)


def test_stock_book_with_static_vols_attributes_perfectly():
    days = window_dates(AS_OF, WINDOW)
    snaps = _snapshots([previous_business_day(days[0]), *days], option=False,
                       vol_moves=False)
    tables, _, _ = backtest_tables(_published(days), None, _settings(), AS_OF, snapshots=snaps)
    bt = tables["backtest"]
    hyp = bt[bt["series"] == "hypothetical"]
    np.testing.assert_allclose(hyp["pla_spearman"], 1.0, rtol=1e-12)
    assert (hyp["pla_ks"] == 0.0).all() and set(hyp["pla_zone"]) == {"green"}


def test_a_day_without_its_snapshot_is_missing():
    days = window_dates(AS_OF, WINDOW)
    snaps = _snapshots([previous_business_day(days[0]), *days])
    gone = days[5]
    snaps["market"] = snaps["market"][snaps["market"]["as_of_date"] != gone]
    tables, _, warnings = backtest_tables(_published(days), None, _settings(), AS_OF,
                                          snapshots=snaps)
    s = tables["backtest_series"]
    hyp = s[(s["series"] == "hypothetical") & (s["desk"] == "d1")].set_index("date")
    # no market on `gone`: neither its own P&L nor the next day's can be computed
    assert hyp.loc[gone, "status"] == "missing_pnl" and hyp.loc[days[6], "status"] == "missing_pnl"
    assert hyp["status"].eq("ok").sum() == WINDOW - 2
    assert any("2 day(s) without the snapshots" in w for w in warnings)


def test_published_hypothetical_rows_are_reused_not_revalued():
    from risk_engine.backtest.hypothetical import hypothetical_series

    days = window_dates(AS_OF, WINDOW)
    snaps = _snapshots([previous_business_day(days[0]), *days])
    pairs = [(previous_business_day(t), t) for t in days]
    hpl, rtpl, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                       pairs)
    cached = hpl.merge(rtpl.rename(columns={"pnl": "rtpl"}), on=["date", "desk"])
    cached = cached[cached["date"] != days[-1]]  # the last day was never published
    again, again_rt, _ = hypothetical_series(snaps["positions"], snaps["market"],
                                             snaps["rates"], pairs, cached=cached)
    pd.testing.assert_frame_equal(again.sort_values(["date", "desk"]).reset_index(drop=True),
                                  hpl.sort_values(["date", "desk"]).reset_index(drop=True))
    # a cached day is taken as published (here: altered), an uncached one is revalued
    altered = cached.assign(pnl=cached["pnl"] + 1.0)
    got, _, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"], pairs,
                                    cached=altered)
    g = got.set_index(["date", "desk"])["pnl"]
    want = hpl.set_index(["date", "desk"])["pnl"]
    assert g.loc[(days[0], "d1")] == want.loc[(days[0], "d1")] + 1.0
    assert g.loc[(days[-1], "d1")] == want.loc[(days[-1], "d1")]
    tables, _, _ = backtest_tables(_published(days), None, _settings(), AS_OF,
                                   snapshots={**snaps, "hypothetical": cached})
    s = tables["backtest_series"]
    row = s[(s["series"] == "hypothetical") & (s["desk"] == "d2")].set_index("date")
    rt = rtpl.set_index(["date", "desk"])["pnl"]
    assert row.loc[days[0], "rtpl"] == rt.loc[(days[0], "d2")]
    assert s.loc[s["series"] == "actual", "rtpl"].isna().all()
