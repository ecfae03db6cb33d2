"""Performance metrics on hand-built series against direct numpy formulas."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import DataError
from risk_engine.governance import (
    PERFORMANCE_COLUMNS,
    PerformanceSettings,
    alerts_from_performance,
    annualized_volatility,
    drawdowns,
    equity_from_pnl,
    hit_ratio,
    hypothetical_pnl,
    performance_summary,
    performance_table,
    position_values_from_prices,
    returns_from_pnl,
    sharpe_ratio,
)

DATES = pd.bdate_range("2024-01-01", periods=7)  # Mon 1 Jan .. Tue 9 Jan
D = [d.date() for d in DATES]


def test_value_series_drawdown_dates_and_metrics() -> None:
    v = np.array([100.0, 110.0, 99.0, 88.0, 95.0, 121.0, 115.0])
    s = pd.Series(v, index=DATES)
    dd = drawdowns(s)
    assert dd.max_drawdown == pytest.approx(22 / 110)
    assert (dd.peak_date, dd.trough_date, dd.recovery_date) == (D[1], D[3], D[5])
    assert dd.current_drawdown == pytest.approx(6 / 121)

    summ = performance_summary(s, kind="value", settings=PerformanceSettings(risk_free_rate=0.03))
    r = v[1:] / v[:-1] - 1
    assert summ.n_days == 6
    assert summ.annualized_volatility == pytest.approx(np.std(r, ddof=1) * np.sqrt(252))
    assert summ.sharpe == pytest.approx((r.mean() - 0.03 / 252) / r.std(ddof=1) * np.sqrt(252))
    assert summ.annualized_return == pytest.approx(r.mean() * 252)
    assert summ.hit_ratio == pytest.approx(3 / 6)  # +10, -11, -11, +7, +26, -6
    assert summ.total_pnl == pytest.approx(15.0)
    assert summ.total_return == pytest.approx(0.15)
    assert summ.capital == 100.0
    assert (summ.start_date, summ.end_date) == (D[1], D[6])
    assert summ.pnl_volatility == pytest.approx(np.std(np.diff(v), ddof=1) * np.sqrt(252))
    assert summ.status == "ok"


def test_pnl_series_with_capital() -> None:
    pnl = pd.Series([-5.0, 10.0, -20.0, 5.0, 30.0], index=DATES[1:6])
    eq = equity_from_pnl(pnl, 100.0)
    assert eq.tolist() == [100.0, 95.0, 105.0, 85.0, 90.0, 120.0]
    assert eq.index[0] == DATES[0]  # the trading day before the first P&L date
    summ = performance_summary(pnl, kind="pnl", capital=100.0)
    assert summ.max_drawdown == pytest.approx(20 / 105)
    assert (summ.peak_date, summ.trough_date, summ.recovery_date) == (D[2], D[3], D[5])
    assert summ.current_drawdown == 0.0
    e = np.array([100.0, 95.0, 105.0, 85.0, 90.0, 120.0])
    r = np.diff(e) / e[:-1]
    np.testing.assert_allclose(returns_from_pnl(pnl, 100.0).to_numpy(), r)
    assert summ.annualized_volatility == pytest.approx(r.std(ddof=1) * math.sqrt(252))
    assert summ.hit_ratio == pytest.approx(3 / 5)
    assert summ.total_return == pytest.approx(0.2)


def test_first_day_loss_peak_is_the_capital_base_and_not_recovered() -> None:
    pnl = pd.Series([-12.0, 1.0], index=DATES[3:5])  # Thu, Fri
    summ = performance_summary(pnl, kind="pnl", capital=100.0)
    assert summ.max_drawdown == pytest.approx(0.12)
    assert summ.peak_date == D[2]  # Wednesday: the capital base
    assert summ.trough_date == D[3]
    assert summ.recovery_date is None
    assert summ.current_drawdown == pytest.approx(0.11)


def test_monday_start_dates_capital_on_friday() -> None:
    eq = equity_from_pnl(pd.Series([1.0], index=[pd.Timestamp("2024-01-08")]), 10.0)
    assert eq.index[0] == pd.Timestamp("2024-01-05")


def test_peak_date_is_the_last_time_the_peak_was_reached() -> None:
    s = pd.Series([100.0, 110.0, 105.0, 110.0, 90.0, 112.0], index=DATES[:6])
    dd = drawdowns(s)
    assert dd.max_drawdown == pytest.approx(20 / 110)
    assert (dd.peak_date, dd.trough_date, dd.recovery_date) == (D[3], D[4], D[5])


def test_no_drawdown() -> None:
    dd = drawdowns(pd.Series([1.0, 2.0, 3.0], index=DATES[:3]))
    assert (dd.max_drawdown, dd.peak_date, dd.trough_date, dd.recovery_date) == (
        0.0, None, None, None)


def test_sharpe_vol_hit_ratio_direct() -> None:
    rng = np.random.default_rng(4)
    r = rng.normal(0.0005, 0.01, 300)
    assert annualized_volatility(r) == pytest.approx(np.sqrt(252) * np.std(r, ddof=1))
    excess = r - 0.02 / 252
    assert sharpe_ratio(r, 0.02) == pytest.approx(np.mean(excess) / np.std(excess, ddof=1)
                                                  * np.sqrt(252))
    assert math.isnan(sharpe_ratio(np.full(5, 0.01)))
    assert math.isnan(sharpe_ratio(np.array([0.01])))
    assert hit_ratio(np.array([1.0, 0.0, -1.0, 2.0])) == 0.5
    assert math.isnan(hit_ratio(np.array([])))


def test_unsorted_index_is_sorted_and_duplicates_rejected() -> None:
    s = pd.Series([110.0, 100.0, 120.0], index=[DATES[1], DATES[0], DATES[2]])
    assert performance_summary(s, kind="value").total_return == pytest.approx(0.2)
    dup = pd.Series([1.0, 2.0], index=[DATES[0], DATES[0]])
    with pytest.raises(DataError, match="duplicate"):
        performance_summary(dup, kind="value")


def test_lookback_uses_last_days() -> None:
    pnl = pd.Series([50.0, -1.0, 2.0, -3.0], index=DATES[:4])
    s = performance_summary(pnl, capital=100.0, settings=PerformanceSettings(lookback_days=3))
    assert s.n_days == 3 and s.total_pnl == pytest.approx(-2.0)


def test_performance_table_rows_and_failures() -> None:
    pnl = pd.Series([-5.0, 10.0, -20.0, 5.0, -2.0], index=DATES[1:6])
    df = performance_table("eq", pnl, capital=100.0)
    assert {c: str(t) for c, t in df.dtypes.items()} == PERFORMANCE_COLUMNS
    row = df.iloc[0]
    assert row["status"] == "ok" and row["peak_date"] == D[2]
    assert isinstance(row["start_date"], dt.date)
    # drawdown over 10% -> critical alert
    alerts = alerts_from_performance(df, dt.date(2024, 1, 8))
    assert [(a.severity, a.desk) for a in alerts] == [("critical", "eq")]

    no_capital = performance_table("eq", pnl)
    assert no_capital.loc[0, "status"] == "error" and "capital" in no_capital.loc[0, "message"]
    assert {c: str(t) for c, t in no_capital.dtypes.items()} == PERFORMANCE_COLUMNS
    nan = pnl.copy()
    nan.iloc[2] = np.nan
    assert "non-finite" in performance_table("eq", nan, capital=100.0).loc[0, "message"]
    short = performance_table("eq", pnl.iloc[:1], capital=100.0)
    assert short.loc[0, "status"] == "not_applicable"
    assert math.isnan(short.loc[0, "sharpe"])


def test_wiped_out_equity_is_an_error() -> None:
    pnl = pd.Series([-150.0, 10.0], index=DATES[:2])
    df = performance_table("eq", pnl, capital=100.0)
    assert df.loc[0, "status"] == "error"


def test_hypothetical_pnl_of_current_book() -> None:
    prices = pd.DataFrame({"AAA": [10.0, 11.0, 10.5], "BBB": [50.0, 49.0, 52.0]},
                          index=DATES[:3])
    holdings = {"p1": ("AAA", 100.0), "p2": ("BBB", -20.0), "p3": ("AAA", 5.0)}
    values = position_values_from_prices(prices, holdings)
    assert values.columns.tolist() == ["p1", "p2", "p3"]
    opt = pd.DataFrame({"c1": [3.0, 4.5, 2.0]}, index=DATES[:3])  # e.g. a revalued option
    pnl = hypothetical_pnl(pd.concat([values, opt], axis=1))
    # day 1: AAA +1 * 105, BBB -1 * -20 = +20, option +1.5; day 2: -0.5*105, +3*-20, -2.5
    np.testing.assert_allclose(pnl.to_numpy(), [105 + 20 + 1.5, -52.5 - 60 - 2.5])
    assert pnl.index.tolist() == list(DATES[1:3])
    with pytest.raises(DataError, match="BBB|no price"):
        position_values_from_prices(prices.drop(columns=["BBB"]), holdings)
    gap = values.copy()
    gap.iloc[1, 1] = np.nan
    with pytest.raises(DataError, match="p2"):
        hypothetical_pnl(gap)
    with pytest.raises(DataError, match="2 dates"):
        hypothetical_pnl(values.iloc[:1])
