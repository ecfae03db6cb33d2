"""Hypothetical P&L of one day: yesterday's book revalued on today's market.

``HPL_t = V(book_{t-1}; market_t, rates_t, as of t) - V(book_{t-1}; market_{t-1},
rates_{t-1}, as of t-1)`` per desk, by full revaluation (Black-Scholes for options, spot for
stock; times to expiry of the valuation date, so the option's one-day time decay is in the
P&L). Positions are those of day t-1, unchanged: trades of day t are not in it.

A desk with a position that cannot be valued on either day (rejected by
:func:`risk_engine.book.validate_snapshot`: e.g. an underlying missing from today's
market, an option expired by today) has no hypothetical P&L that day (``missing``, with
the reason in the returned messages), never a partial one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from risk_engine.book import resolve_book, validate_snapshot
from risk_engine.input_checks import check_rates
from risk_engine.timeaxis import ZeroCurve


def _values(positions: pd.DataFrame, market: pd.DataFrame, rates: pd.DataFrame,
            day: dt.date, day_count: str) -> tuple[pd.Series, set[str], list[str]]:
    """Desk values of ``positions`` on ``day``'s market, the desks with rejected positions."""
    pos = positions.assign(as_of_date=day)
    snap = validate_snapshot(pos, market, day)
    bad_ids = {r.key for r in snap.rejected if r.table == "positions"}
    key = pos["position_id"].astype(str)
    bad_desks = set(pos.loc[key.isin(bad_ids), "desk"].astype(str))
    messages = [f"{r.table} {r.key} on {day}: {r.reason}" for r in snap.rejected]
    rate_check = check_rates(rates, day)
    curve = ZeroCurve.from_points(rate_check.frame["tenor_years"],
                                  rate_check.frame["zero_rate"])
    if len(snap.positions) == 0:
        return pd.Series(dtype=float), bad_desks | set(pos["desk"].astype(str)), messages
    book = resolve_book(snap, curve, as_of=day, horizon_days=1, day_count=day_count)
    by_desk = np.bincount(book.desk_index, book.value, minlength=len(book.desks))
    return pd.Series(by_desk, index=list(book.desks)), bad_desks, messages


def hypothetical_pnl(positions_prev: pd.DataFrame, market_prev: pd.DataFrame,
                     rates_prev: pd.DataFrame, market_now: pd.DataFrame,
                     rates_now: pd.DataFrame, prev_date: dt.date, date: dt.date,
                     day_count: str = "trading_252") -> tuple[pd.DataFrame, list[str]]:
    """Hypothetical P&L of ``date`` per desk: the book of ``prev_date`` revalued.

    Parameters
    ----------
    positions_prev, market_prev, rates_prev
        The snapshot of ``prev_date`` (as in the input tables).
    market_now, rates_now
        The market and zero curve of ``date``.
    prev_date, date
        The two valuation dates.
    day_count
        ``trading_252`` or ``act_365`` (as ``time.day_count``).

    Returns
    -------
    pnl, messages
        Frame with columns ``date``, ``desk``, ``pnl`` (desks with a position not valued on
        either day left out), and why desks were left out.
    """
    v0, bad0, m0 = _values(positions_prev, market_prev, rates_prev, prev_date, day_count)
    v1, bad1, m1 = _values(positions_prev, market_now, rates_now, date, day_count)
    bad = bad0 | bad1
    desks = sorted((set(v0.index) | set(v1.index) | set(positions_prev["desk"].astype(str)))
                   - bad)
    rows = [(date, d, float(v1.get(d, 0.0) - v0.get(d, 0.0))) for d in desks]
    messages = [f"hypothetical P&L of {date}: desk {d} missing" for d in sorted(bad)]
    return pd.DataFrame(rows, columns=["date", "desk", "pnl"]), messages + m0 + m1
