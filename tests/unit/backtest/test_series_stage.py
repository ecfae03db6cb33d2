"""The aligned series and the backtest stage on hand-built published VaR and P&L."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from risk_engine import schemas
from risk_engine.backtest.series import aligned_series, previous_business_day, window_dates
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.stage import backtest_tables
from risk_engine.errors import ConfigError, DataError
from tests import helpers as h

AS_OF = dt.date(2026, 11, 20)  # a Friday


def _published(dates, desks_var, level=0.99, horizon=1, run="r"):
    """risk_measures rows: for each date, desk VaR values and the firm's (the sum)."""
    rows = []
    for d in dates:
        for desk, v in desks_var.items():
            rows.append((f"{d}-{run}", d, "desk", desk, "VaR", level, horizon, v))
            rows.append((f"{d}-{run}", d, "desk", desk, "ES", level, horizon, 2 * v))
        rows.append((f"{d}-{run}", d, "firm", None, "VaR", level, horizon,
                     sum(desks_var.values())))
    return pd.DataFrame(rows, columns=["run_id", "as_of_date", "scope", "desk", "measure",
                                       "confidence_level", "horizon_days", "value"])


def _pnl(dates, values):
    rows = [(d, desk, v[i]) for desk, v in values.items() for i, d in enumerate(dates)]
    return pd.DataFrame(rows, columns=["date", "desk", "pnl"])


def test_window_dates_are_business_days():
    days = window_dates(AS_OF, 10)
    assert len(days) == 10 and days[-1] == AS_OF and days[0] == dt.date(2026, 11, 9)
    assert all(d.weekday() < 5 for d in days)
    assert previous_business_day(dt.date(2026, 11, 16)) == dt.date(2026, 11, 13)


def test_series_aligns_var_of_day_before_and_marks_gaps():
    days = window_dates(AS_OF, 5)  # Mon 16 .. Fri 20
    var_days = [previous_business_day(d) for d in days]  # Fri 13 .. Thu 19
    published = _published(var_days[:-1], {"a": 10.0})  # no VaR for Thu 19
    pnl = _pnl(days, {"a": [-11.0, 5.0, np.nan, -20.0, -30.0]})
    s = aligned_series(published, {"actual": pnl, "hypothetical": None}, AS_OF, 5, [0.99])
    desk = s[s["desk"] == "a"].reset_index(drop=True)
    assert list(desk["date"]) == days and list(desk["var_date"]) == var_days
    assert list(desk["status"]) == ["ok", "ok", "missing_pnl", "ok", "missing_var"]
    assert list(desk["exception"]) == [True, False, None, True, None]
    assert set(s["series"]) == {"actual"}
    firm = s[s["scope"] == "firm"].reset_index(drop=True)
    assert firm["desk"].isna().all()
    # no desk VaR for the day before the last: the firm's P&L has no desks to sum either
    assert list(firm["status"]) == ["ok", "ok", "missing_pnl", "ok", "missing"]
    assert firm["pnl"].iloc[0] == -11.0


def test_firm_pnl_is_missing_if_a_desk_has_none():
    days = window_dates(AS_OF, 2)
    published = _published([previous_business_day(d) for d in days], {"a": 1.0, "b": 2.0})
    pnl = pd.concat([_pnl(days, {"a": [-1.0, -2.0]}), _pnl(days[:1], {"b": [-5.0]})])
    s = aligned_series(published, {"actual": pnl}, AS_OF, 2, [0.99])
    firm = s[s["scope"] == "firm"].reset_index(drop=True)
    assert list(firm["status"]) == ["ok", "missing_pnl"]
    assert firm["pnl"].iloc[0] == -6.0 and firm["var"].iloc[0] == 3.0
    assert bool(firm["exception"].iloc[0]) is True


def test_only_one_day_var_is_backtested():
    days = window_dates(AS_OF, 3)
    published = _published([previous_business_day(d) for d in days], {"a": 1.0}, horizon=10)
    pnl = _pnl(days, {"a": [-5.0, 0.0, 0.0]})
    tables, alerts, _ = backtest_tables(published, pnl, BacktestSettings(
        enabled=True, window=3, confidence_levels=(0.99,)), AS_OF)
    assert set(tables["backtest_series"]["status"]) == {"not_applicable"}
    bt = tables["backtest"]
    actual = bt[bt["series"] == "actual"]
    assert set(actual["status"]) == {"not_applicable"}
    assert (actual["observations"] == 0).all() and not alerts
    assert "horizon_days [10]" in actual["message"].iloc[0]


def test_latest_run_of_a_date_is_used():
    days = window_dates(AS_OF, 1)
    vd = previous_business_day(days[0])
    published = pd.concat([_published([vd], {"a": 1.0}, run="1"),
                           _published([vd], {"a": 100.0}, run="2")])
    s = aligned_series(published, {"actual": _pnl(days, {"a": [-50.0]})}, AS_OF, 1, [0.99])
    assert s.loc[s["desk"] == "a", "var"].iloc[0] == 100.0


def test_duplicate_pnl_is_a_data_error():
    days = window_dates(AS_OF, 1)
    pnl = pd.concat([_pnl(days, {"a": [1.0]}), _pnl(days, {"a": [2.0]})])
    with pytest.raises(DataError, match=r"pnl_history: column pnl, key date=2026-11-20, desk=a"):
        aligned_series(None, {"actual": pnl}, AS_OF, 1, [0.99])


def test_stage_statistics_and_alerts():
    window = 250
    days = window_dates(AS_OF, window)
    published = _published([previous_business_day(d) for d in days], {"a": 10.0, "b": 10.0},
                           level=0.99)
    rng = np.random.default_rng(1)
    a = rng.uniform(-5, 5, window)
    a[[3, 50, 51, 100, 200, 201]] = -50.0  # 6 exceptions: yellow
    b = rng.uniform(-5, 5, window)
    b[[7]] = -50.0  # 1 exception: green
    pnl = _pnl(days, {"a": list(a), "b": list(b)})
    settings = BacktestSettings(enabled=True, window=window, confidence_levels=(0.99,))
    tables, alerts, warnings = backtest_tables(published, pnl, settings, AS_OF)
    bt = tables["backtest"]
    assert list(bt.columns) == list(schemas.BACKTEST.pandas_dtypes())
    assert list(tables["backtest_series"].columns) == list(
        schemas.BACKTEST_SERIES.pandas_dtypes())
    row = bt[(bt["desk"] == "a") & (bt["series"] == "actual")].iloc[0]
    assert (row["observations"], row["exceptions"], row["missing"]) == (250, 6, 0)
    assert row["zone"] == "yellow" and row["multiplier_addon"] == 0.50
    lr = -2 * (244 * np.log(0.99) + 6 * np.log(0.01) - 244 * np.log(244 / 250)
               - 6 * np.log(6 / 250))
    assert row["kupiec_lr"] == pytest.approx(lr, rel=1e-12)
    assert row["kupiec_p"] == pytest.approx(scipy.stats.chi2.sf(lr, 1), rel=1e-12)
    assert row["cc_lr"] == pytest.approx(row["kupiec_lr"] + row["independence_lr"])
    assert bt[(bt["desk"] == "b") & (bt["series"] == "actual")]["zone"].iloc[0] == "green"
    hyp = bt[bt["series"] == "hypothetical"]
    assert set(hyp["status"]) == {"missing"} and hyp["zone"].isna().all()
    # the firm (sum of desks, VaR 20): exceptions where a + b < -20
    firm = bt[(bt["scope"] == "firm") & (bt["series"] == "actual")].iloc[0]
    assert firm["exceptions"] == int(((a + b) < -20).sum())
    by = {(al.desk, al.severity) for al in alerts}
    assert ("a", "warning") in by and all(al.source == "backtest" for al in alerts)
    assert all(al.subject == "actual" for al in alerts)
    assert not warnings


def test_red_zone_is_critical():
    days = window_dates(AS_OF, 250)
    published = _published([previous_business_day(d) for d in days], {"a": 1.0})
    pnl = _pnl(days, {"a": [-2.0] * 12 + [0.0] * 238})
    _, alerts, _ = backtest_tables(published, pnl, BacktestSettings(
        enabled=True, confidence_levels=(0.99,)), AS_OF)
    assert {(al.desk, al.severity) for al in alerts} == {("a", "critical"), (None, "critical")}


def test_no_published_var_everything_missing_never_a_pass():
    days = window_dates(AS_OF, 20)
    pnl = _pnl(days, {"a": [0.0] * 20})
    tables, alerts, warnings = backtest_tables(None, pnl, BacktestSettings(
        enabled=True, window=20, confidence_levels=(0.99,)), AS_OF)
    bt = tables["backtest"]
    actual = bt[bt["series"] == "actual"]
    assert set(actual["status"]) == {"missing"} and (actual["observations"] == 0).all()
    assert (actual[actual["scope"] == "desk"]["missing"] == 20).all()
    assert actual["zone"].isna().all() and not alerts
    assert any("no VaR published" in w for w in warnings)


def test_config_section():
    cfg = h.config()
    assert cfg.backtest.enabled is False and cfg.backtest.window == 250
    assert cfg.backtest.confidence_levels == cfg.risk.confidence_levels
    cfg = h.config(risk={"confidence_levels": [0.99]}, backtest={"enabled": True})
    assert cfg.backtest.confidence_levels == (0.99,)
    with pytest.raises(ConfigError, match="backtest.window"):
        h.config(backtest={"window": 0})
    with pytest.raises(ConfigError, match=r"backtest.confidence_levels\[0\]"):
        h.config(backtest={"confidence_levels": [99]})
