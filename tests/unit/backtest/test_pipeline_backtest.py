"""The backtest stage inside the in-process nightly run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.pipeline import InputTables
from risk_engine.tools.demo_data import generate
from tests import helpers as h

WINDOW = 30


@pytest.fixture(scope="module")
def snapshot():
    t = generate(h.AS_OF, n_positions=40, seed=7)
    return InputTables(t["positions"], t["market"], t["rates"], factor_model=t["factor_model"],
                       correlations=t["correlations"])


def _cfg(**backtest):
    return h.config(monte_carlo={"n_scenarios": 2000, "block_size": 1000, "horizon_days": 1},
                    risk={"confidence_levels": [0.99]}, worst_case={"enabled": False},
                    backtest=backtest)


def test_backtest_off_changes_nothing(snapshot):
    import dataclasses

    _, base, _ = h.run(_cfg(), snapshot)
    published = base["risk_measures"].assign(as_of_date=h.D1, run_id="x")
    _, tables, _ = h.run(_cfg(), dataclasses.replace(snapshot, published_risk=published))
    assert set(tables) == set(base) and "backtest" not in tables
    for name in base:
        pd.testing.assert_frame_equal(tables[name], base[name])


def test_backtest_in_the_run(snapshot):
    import dataclasses

    _, base, _ = h.run(_cfg(), snapshot)
    rm = base["risk_measures"]
    days = window_dates(h.AS_OF, WINDOW)
    published = pd.concat([rm.assign(as_of_date=previous_business_day(d), run_id=f"r{i}")
                           for i, d in enumerate(days)], ignore_index=True)
    desk_var = rm[(rm["scope"] == "desk") & (rm["measure"] == "VaR")].set_index("desk")["value"]
    # every desk loses 2 x its VaR on 8 days: red
    pnl = pd.DataFrame([(d, desk, -2 * v if i < 8 else 0.0) for desk, v in desk_var.items()
                        for i, d in enumerate(days)], columns=["date", "desk", "pnl"])
    inputs = dataclasses.replace(snapshot, published_risk=published, pnl_history=pnl)
    _, tables, _ = h.run(_cfg(enabled=True, window=WINDOW), inputs)
    bt = tables["backtest"]
    actual = bt[(bt["series"] == "actual") & (bt["scope"] == "desk")]
    assert set(actual["desk"]) == set(desk_var.index)
    assert (actual["observations"] == WINDOW).all() and (actual["exceptions"] == 8).all()
    assert set(actual["zone"]) == {"red"}
    s = tables["backtest_series"]
    one = s[(s["desk"] == desk_var.index[0]) & (s["series"] == "actual")]
    np.testing.assert_array_equal(one["var"], desk_var.iloc[0])
    alerts = tables["alerts"]
    bt_alerts = alerts[alerts["source"] == "backtest"]
    assert set(bt_alerts["severity"]) == {"critical"}
    assert set(bt_alerts["desk"].dropna()) == set(desk_var.index)
