"""The multi-day demo data, and the backtest of a month of in-process runs on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine.backtest.hypothetical import hypothetical_pnl
from risk_engine.pipeline import InputTables
from risk_engine.tools.demo_data import generate_days
from tests import helpers as h

DAYS = 22


@pytest.fixture(scope="module")
def demo():
    return generate_days(h.AS_OF, DAYS, n_positions=60, seed=3)


def _day(frame, day, column="as_of_date"):
    return frame[frame[column] == day].reset_index(drop=True)


def test_snapshots_follow_one_path_and_the_book_trades(demo):
    dates = sorted(demo["market"]["as_of_date"].unique())
    assert len(dates) == DAYS and dates[-1] == h.AS_OF
    hist = demo["history"].pivot(index="date", columns="underlying", values="close")
    for day in (dates[0], dates[-1]):
        m = _day(demo["market"], day).set_index("underlying")["spot"]
        np.testing.assert_array_equal(m.to_numpy(), hist.loc[day, m.index].to_numpy())
    ids = [set(_day(demo["positions"], d)["position_id"]) for d in dates]
    assert all(len(i) == 60 for i in ids)
    pairs = list(zip(ids, ids[1:], strict=False))
    assert all(a & b for a, b in pairs) and sum(a != b for a, b in pairs) >= len(pairs) // 2
    # actual P&L = hypothetical P&L of the day before's book + 5% noise
    p, t = dates[-2], dates[-1]
    hpl, _ = hypothetical_pnl(_day(demo["positions"], p), _day(demo["market"], p),
                              _day(demo["rates"], p), _day(demo["market"], t),
                              _day(demo["rates"], t), p, t)
    act = _day(demo["pnl_history"], t, "date").set_index("desk")["pnl"]
    hpl = hpl.set_index("desk")["pnl"]
    assert set(act.index) == set(hpl.index)
    assert (abs(act - hpl) <= 0.3 * abs(hpl) + 0.01).all()


def test_backtest_of_the_demo_month(demo):
    dates = sorted(demo["market"]["as_of_date"].unique())
    cfg = lambda day, **bt: h.config(  # noqa: E731
        as_of_date=day.isoformat(),
        monte_carlo={"n_scenarios": 4000, "block_size": 2000, "horizon_days": 1},
        risk={"confidence_levels": [0.95]}, worst_case={"enabled": False},
        governance={"enabled": False}, backtest=bt)
    published = []
    for i, day in enumerate(dates[:-1]):
        inputs = InputTables(_day(demo["positions"], day), _day(demo["market"], day),
                             _day(demo["rates"], day), factor_model=demo["factor_model"],
                             correlations=demo["correlations"])
        _, tables, _ = h.run(cfg(day), inputs)
        published.append(tables["risk_measures"].assign(as_of_date=day, run_id=f"r{i:03d}"))
    last = dates[-1]
    inputs = InputTables(
        _day(demo["positions"], last), _day(demo["market"], last), _day(demo["rates"], last),
        factor_model=demo["factor_model"], correlations=demo["correlations"],
        pnl_history=demo["pnl_history"], published_risk=pd.concat(published),
        backtest_snapshots={k: demo[k] for k in ("positions", "market", "rates")})
    _, tables, _ = h.run(cfg(last, enabled=True, window=DAYS - 1), inputs)
    bt = tables["backtest"]
    assert set(bt["status"]) == {"ok"}
    assert (bt["observations"] == DAYS - 1).all() and (bt["missing"] == 0).all()
    # the model is the market's: few exceptions at 95% over 21 days, never red
    assert (bt["exceptions"] <= 5).all() and "red" not in set(bt["zone"])
    hyp = bt[bt["series"] == "hypothetical"]
    assert hyp["pla_spearman"].notna().all() and hyp["pla_zone"].notna().all()
    # the firm's and desks' rows of both series are there
    assert set(bt["scope"]) == {"desk", "firm"} and set(bt["series"]) == {"actual",
                                                                          "hypothetical"}
