"""Hypothetical and risk-theoretical P&L of one day: yesterday's book revalued.

``HPL_t = V(book_{t-1}; market_t, rates_t, as of t) - V(book_{t-1}; market_{t-1},
rates_{t-1}, as of t-1)`` per desk, by full revaluation (Black-Scholes for options, spot for
stock; times to expiry of the valuation date, so the option's one-day time decay is in the
P&L). Positions are those of day t-1, unchanged: trades of day t are not in it.

The risk-theoretical P&L (FRTB's RTPL) is the model's own revaluation on the day's realized
moves of *its* risk factors: the scenario model moves the spots only, so
``RTPL_t = V(book_{t-1}; spots_t with the volatilities, dividend yields and rates of t-1,
as of t) - V(book_{t-1}; market_{t-1}, rates_{t-1}, as of t-1)``. The difference HPL - RTPL
is the P&L of the factors the model leaves out (implied volatility, rates, dividends).
The firm's rows (desk ``""``, :data:`risk_engine.backtest.series.FIRM`) are the sum over
desks, on days where every desk was valued.

A desk with a position that cannot be valued on either day (rejected by
:func:`risk_engine.book.validate_snapshot`: e.g. an underlying missing from today's
market, an option expired by today) has no hypothetical P&L that day (``missing``, with
the reason in the returned messages), never a partial one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from risk_engine.backtest.series import FIRM
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
    hpl, rtpl, messages = day_pnl(positions_prev, market_prev, rates_prev, market_now,
                                  rates_now, prev_date, date, day_count)
    return hpl[hpl["desk"] != FIRM].reset_index(drop=True), messages


def _model_market(market_prev: pd.DataFrame, market_now: pd.DataFrame) -> pd.DataFrame:
    """Yesterday's market rows with today's spots (NaN where today has none: rejected)."""
    spots = market_now.drop_duplicates("underlying").set_index("underlying")["spot"]
    return market_prev.assign(spot=market_prev["underlying"].map(spots).astype(float))


def day_pnl(positions_prev: pd.DataFrame, market_prev: pd.DataFrame,
            rates_prev: pd.DataFrame, market_now: pd.DataFrame, rates_now: pd.DataFrame,
            prev_date: dt.date, date: dt.date, day_count: str = "trading_252"
            ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Hypothetical and risk-theoretical P&L of ``date`` per desk, and the firm's.

    Returns
    -------
    hpl, rtpl, messages
        Frames with columns ``date``, ``desk``, ``pnl`` (desk ``""`` for the firm when
        every desk was valued); desks with a position not valued on a day are left out of
        both, with the reason in ``messages``.
    """
    v0, bad0, m0 = _values(positions_prev, market_prev, rates_prev, prev_date, day_count)
    v1, bad1, m1 = _values(positions_prev, market_now, rates_now, date, day_count)
    model_mkt = _model_market(market_prev, market_now).assign(as_of_date=date)
    vm, badm, _ = _values(positions_prev, model_mkt, rates_prev.assign(as_of_date=date), date,
                          day_count)
    bad = bad0 | bad1 | badm
    all_desks = set(positions_prev["desk"].astype(str))
    desks = sorted(all_desks - bad)
    out = []
    for v in (v1, vm):
        rows = [(date, d, float(v.get(d, 0.0) - v0.get(d, 0.0))) for d in desks]
        if desks and not bad:
            rows.append((date, FIRM, float(sum(r[2] for r in rows))))
        out.append(pd.DataFrame(rows, columns=["date", "desk", "pnl"]))
    messages = [f"hypothetical P&L of {date}: desk {d} missing" for d in sorted(bad)]
    return out[0], out[1], messages + m0 + m1


def _by_date(frame: pd.DataFrame | None) -> dict[dt.date, pd.DataFrame]:
    if frame is None or len(frame) == 0:
        return {}
    days = pd.to_datetime(frame["as_of_date"]).dt.date
    return {d: g.assign(as_of_date=d) for d, g in frame.groupby(days.to_numpy(object))}


def hypothetical_series(positions: pd.DataFrame | None, market: pd.DataFrame | None,
                        rates: pd.DataFrame | None, days: list[tuple[dt.date, dt.date]],
                        day_count: str = "trading_252", cached: pd.DataFrame | None = None,
                        ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Hypothetical and risk-theoretical P&L per desk for each ``(t-1, t)`` business day pair.

    Parameters
    ----------
    positions, market, rates
        Input snapshots of several dates (column ``as_of_date``), e.g. the backtest
        window's, or None.
    days
        ``(previous business day, day)`` pairs.
    day_count
        As ``time.day_count``.
    cached
        Desk rows computed before (columns ``date``, ``desk``, ``pnl``, ``rtpl``: the
        hypothetical rows that earlier runs published in ``backtest_series``); a day with
        cached rows is taken from them instead of revalued, so a nightly run revalues only
        the days it is the first to see.

    Returns
    -------
    hpl, rtpl, messages
        Desk rows with columns ``date``, ``desk``, ``pnl``; a day whose two snapshots are
        not both there, or that cannot be valued, has no rows (``missing``), and a message
        says why.
    """
    from risk_engine.errors import DataError

    pos, mkt, rts = _by_date(positions), _by_date(market), _by_date(rates)
    hpl, rtpl, messages, absent = [], [], [], []
    known = _by_date(None if cached is None else cached.rename(columns={"date": "as_of_date"}))
    for prev, day in days:
        if day in known:
            rows = known[day].rename(columns={"as_of_date": "date"})
            hpl.append(rows[["date", "desk", "pnl"]])
            rtpl.append(rows[["date", "desk", "rtpl"]].rename(columns={"rtpl": "pnl"}))
            continue
        if prev not in pos or prev not in mkt or prev not in rts or day not in mkt \
                or day not in rts:
            absent.append(day)
            continue
        try:
            h, r, m = day_pnl(pos[prev], mkt[prev], rts[prev], mkt[day], rts[day], prev, day,
                              day_count)
        except DataError as exc:
            messages.append(f"hypothetical P&L of {day}: {exc}")
            continue
        hpl.append(h[h["desk"] != FIRM])
        rtpl.append(r[r["desk"] != FIRM])
        messages.extend(m)
    if absent:
        messages.insert(0, f"hypothetical P&L: {len(absent)} day(s) without the snapshots "
                           f"of the day and the day before (first {absent[0]})")
    empty = pd.DataFrame({"date": pd.Series(dtype=object), "desk": pd.Series(dtype=object),
                          "pnl": pd.Series(dtype=float)})
    if not hpl:
        return empty, empty.copy(), messages
    return pd.concat(hpl, ignore_index=True), pd.concat(rtpl, ignore_index=True), messages
