"""Hypothetical P&L of an unchanged book against the value change computed independently."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from scipy.stats import norm

from risk_engine.backtest.hypothetical import hypothetical_pnl

T0, T1 = dt.date(2026, 11, 19), dt.date(2026, 11, 20)
EXPIRY = dt.date(2027, 3, 19)
R = 0.03


def _bs(s, k, t, vol, r, q, call):
    """Black-Scholes with continuous dividend yield, written out (independent of the engine)."""
    d1 = (math.log(s / k) + (r - q + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    if call:
        return s * math.exp(-q * t) * norm.cdf(d1) - k * math.exp(-r * t) * norm.cdf(d2)
    return k * math.exp(-r * t) * norm.cdf(-d2) - s * math.exp(-q * t) * norm.cdf(-d1)


def _market(day, spots, vols):
    return pd.DataFrame([(day, u, spots[u], vols[u], 0.01, "tech") for u in spots],
                        columns=["as_of_date", "underlying", "spot", "volatility",
                                 "dividend_yield", "sector"])


def _rates(day):
    return pd.DataFrame({"as_of_date": day, "tenor_years": [0.25, 1.0, 5.0],
                         "zero_rate": [R] * 3})


POSITIONS = pd.DataFrame(
    [(T0, "p1", "d1", "b", "equity", "AAA", 100.0, None, None, 1.0),
     (T0, "p2", "d1", "b", "call", "AAA", -10.0, 105.0, EXPIRY, 100.0),
     (T0, "p3", "d2", "b", "put", "BBB", 5.0, 48.0, EXPIRY, 100.0),
     (T0, "p4", "d2", "b", "equity", "BBB", -40.0, None, None, 1.0)],
    columns=["as_of_date", "position_id", "desk", "book", "instrument_type", "underlying",
             "quantity", "strike", "expiry", "multiplier"])


def test_unchanged_book_equals_independent_value_change():
    s0, v0 = {"AAA": 100.0, "BBB": 50.0}, {"AAA": 0.25, "BBB": 0.40}
    s1, v1 = {"AAA": 97.5, "BBB": 51.2}, {"AAA": 0.27, "BBB": 0.38}
    pnl, messages = hypothetical_pnl(POSITIONS, _market(T0, s0, v0), _rates(T0),
                                     _market(T1, s1, v1), _rates(T1), T0, T1,
                                     day_count="act_365")
    assert not messages
    t0, t1 = (EXPIRY - T0).days / 365, (EXPIRY - T1).days / 365

    def value(s, v, t):
        return {"d1": 100.0 * s["AAA"]
                - 1000.0 * _bs(s["AAA"], 105.0, t, v["AAA"], R, 0.01, True),
                "d2": 500.0 * _bs(s["BBB"], 48.0, t, v["BBB"], R, 0.01, False)
                - 40.0 * s["BBB"]}

    a, b = value(s0, v0, t0), value(s1, v1, t1)
    got = pnl.set_index("desk")["pnl"]
    assert list(pnl["date"]) == [T1, T1]
    for desk in ("d1", "d2"):
        assert got[desk] == pytest.approx(b[desk] - a[desk], rel=1e-9, abs=1e-7)


def test_unchanged_market_leaves_only_time_decay_and_a_desk_not_valued_is_missing():
    s, v = {"AAA": 100.0, "BBB": 50.0}, {"AAA": 0.25, "BBB": 0.40}
    # BBB is missing from today's market: desk d2 cannot be revalued
    now = _market(T1, {"AAA": 100.0}, {"AAA": 0.25})
    pnl, messages = hypothetical_pnl(POSITIONS, _market(T0, s, v), _rates(T0), now,
                                     _rates(T1), T0, T1, day_count="act_365")
    assert list(pnl["desk"]) == ["d1"]
    assert any("desk d2 missing" in m for m in messages)
    t0, t1 = (EXPIRY - T0).days / 365, (EXPIRY - T1).days / 365
    decay = -1000.0 * (_bs(100.0, 105.0, t1, 0.25, R, 0.01, True)
                       - _bs(100.0, 105.0, t0, 0.25, R, 0.01, True))
    assert pnl["pnl"].iloc[0] == pytest.approx(decay, rel=1e-9)
