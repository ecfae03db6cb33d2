"""Hypothetical and risk-theoretical P&L of one day: yesterday's book revalued.

``HPL_t = V(book_{t-1}; market_t, rates_t, as of t) - V(book_{t-1}; market_{t-1},
rates_{t-1}, as of t-1)`` per desk, by full revaluation (Black-Scholes for options, spot for
stock; times to expiry of the valuation date, so the option's one-day time decay is in the
P&L). Positions are those of day t-1, unchanged: trades of day t are not in it.

The risk-theoretical P&L (FRTB's RTPL) is the model's own revaluation on the day's realized
moves of *its* risk factors. With the scenario model's spot factors only,
``RTPL_t = V(book_{t-1}; spots_t with the volatilities, dividend yields and rates of t-1,
as of t) - V(book_{t-1}; market_{t-1}, rates_{t-1}, as of t-1)``. With vol and/or rate
factors on (:class:`RtplFactors`), the same revaluation also moves them by their realized
moves, exactly as the model defines them (:mod:`risk_engine.scenarios.factor_history`):

* vol: each option's implied vol of t-1 times ``exp(x)``, ``x`` the log change from t-1 to
  t of its underlying's ATM vol at each vol tenor (:func:`~risk_engine.scenarios.
  factor_history.atm_vol_levels` of ``vol_history``), interpolated linearly in the
  option's remaining life at t between the tenors and flat outside them;
* rate: the zero rate of t-1 at the option's remaining life plus the parallel shift of t
  (:func:`~risk_engine.scenarios.factor_history.parallel_shifts` of ``rate_history``:
  the mean change over the tenors quoted on both days).

A move the history does not have (a (underlying, day) without ATM vols, a day pair without
a common rate tenor) is never taken as zero: the RTPL of every desk with an option that
needs it is missing that day, with the reason in the messages. The difference HPL - RTPL
is the P&L of what the model leaves out (dividends, smile, curve shape, and the factors
that are off).
The firm's rows (desk ``""``, :data:`risk_engine.backtest.series.FIRM`) are the sum over
desks, on days where every desk was valued.

A desk with a position that cannot be valued on either day (rejected by
:func:`risk_engine.book.validate_snapshot`: e.g. an underlying missing from today's
market, an option expired by today) has no hypothetical P&L that day (``missing``, with
the reason in the returned messages), never a partial one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.backtest.series import FIRM
from risk_engine.book import ResolvedBook, resolve_book, validate_snapshot
from risk_engine.input_checks import check_rates
from risk_engine.pricing import black_scholes_price
from risk_engine.scenarios.factor_history import (
    TENOR_DAYS_PER_YEAR,
    atm_vol_levels,
    check_rate_history,
    check_vol_history,
    parallel_shifts,
)
from risk_engine.timeaxis import ZeroCurve
from risk_engine.types import CALL, EQUITY, FloatArray

SPOT_ONLY = "spot"
"""Label of the RTPL's factors when the model moves spots only."""


@dataclass(frozen=True)
class RtplFactors:
    """The model's factors the risk-theoretical P&L moves besides the spots.

    Attributes
    ----------
    vol_tenors_days : tuple of int
        ``scenario_model.vol_factors.tenors_days`` when vol factors are on; empty: off.
    rate : bool
        ``scenario_model.rate_factor.enabled``.
    vol_history, rate_history
        The raw ``vol_history`` / ``rate_history`` inputs (None: absent; every move of
        that factor is then unknown and the RTPL that needs it missing).
    """

    vol_tenors_days: tuple[int, ...] = ()
    rate: bool = False
    vol_history: pd.DataFrame | None = None
    rate_history: pd.DataFrame | None = None

    @property
    def spot_only(self) -> bool:
        """True when neither vol nor rate factors are on (the RTPL of spots only)."""
        return not self.vol_tenors_days and not self.rate

    @property
    def label(self) -> str:
        """``spot``, ``spot+vol``, ``spot+rate`` or ``spot+vol+rate``."""
        return "+".join([SPOT_ONLY] + (["vol"] if self.vol_tenors_days else [])
                        + (["rate"] if self.rate else []))


@dataclass(frozen=True)
class DayMoves:
    """Realized moves of the vol and rate factors from t-1 to t (see the module docstring).

    Attributes
    ----------
    vol_tenors_years : tuple of float
        The vol tenors (``tenor_days / 252``); empty when vol factors are off.
    vol_shock : dict
        Underlying -> log ATM vol change per tenor, shape (B,); NaN (or absent) where the
        history lacks the day or the day before.
    rate_shift : float or None
        The parallel shift (decimal); None when the rate factor is off, NaN when unknown.
    """

    vol_tenors_years: tuple[float, ...] = ()
    vol_shock: dict[str, FloatArray] | None = None
    rate_shift: float | None = None


def _values(positions: pd.DataFrame, market: pd.DataFrame, rates: pd.DataFrame,
            day: dt.date, day_count: str) -> tuple[pd.Series, set[str], list[str]]:
    """Desk values of ``positions`` on ``day``'s market, the desks with rejected positions."""
    book, bad_desks, messages = _resolved(positions, market, rates, day, day_count)
    if book is None:
        return pd.Series(dtype=float), bad_desks, messages
    by_desk = np.bincount(book.desk_index, book.value, minlength=len(book.desks))
    return pd.Series(by_desk, index=list(book.desks)), bad_desks, messages


def _resolved(positions: pd.DataFrame, market: pd.DataFrame, rates: pd.DataFrame,
              day: dt.date, day_count: str) -> tuple[ResolvedBook | None, set[str], list[str]]:
    """``positions`` resolved on ``day``'s market (None: nothing valid), the bad desks."""
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
        return None, bad_desks | set(pos["desk"].astype(str)), messages
    book = resolve_book(snap, curve, as_of=day, horizon_days=1, day_count=day_count)
    return book, bad_desks, messages


def _factor_values(book: ResolvedBook, moves: DayMoves, prev_date: dt.date, date: dt.date
                   ) -> tuple[pd.Series, dict[str, str]]:
    """Desk values of ``book`` with its options repriced under the day's factor moves.

    ``book`` is yesterday's book resolved as of ``date`` on yesterday's market with today's
    spots and yesterday's curve. Each option's vol is multiplied by ``exp`` of its
    underlying's shock interpolated in its remaining life (``expiry_years``; linear between
    the tenors, flat outside), its zero rate shifted by the parallel shift. Desks with an
    option whose move is unknown are returned with the reason (their value is not usable).
    """
    unit = book.unit_value.copy()
    opt = np.flatnonzero(book.kind != EQUITY)
    life = book.expiry_years[opt]
    u_idx = book.underlying_index[opt]
    known = np.ones(opt.size, dtype=bool)
    reasons: dict[int, str] = {}
    vol = book.volatility[opt]
    if moves.vol_tenors_years:
        tenors = np.asarray(moves.vol_tenors_years, dtype=float)
        n_b = tenors.size
        shocks = moves.vol_shock or {}
        x = np.array([shocks.get(u, np.full(n_b, np.nan)) for u in book.underlyings],
                     dtype=float).reshape(len(book.underlyings), n_b)
        eye = np.eye(n_b)
        shock = np.zeros(opt.size)
        for b in range(n_b):  # the model's rule: linear in the life left, flat outside
            shock += x[u_idx, b] * np.interp(life, tenors, eye[b])
        for j in np.flatnonzero(~np.isfinite(shock)).tolist():
            known[j] = False
            reasons[j] = (f"no ATM vol move of {book.underlyings[int(u_idx[j])]} in "
                          f"vol_history from {prev_date} to {date}")
        vol = vol * np.exp(np.where(known, shock, 0.0))
    rate = book.rate[opt]
    if moves.rate_shift is not None:
        shift = float(moves.rate_shift)
        if not np.isfinite(shift):
            for j in np.flatnonzero(known).tolist():
                reasons[j] = (f"no parallel rate shift in rate_history from {prev_date} to "
                              f"{date} (no tenor quoted on both days)")
            known[:] = False
            shift = 0.0
        rate = rate + shift
    if known.any():
        k = opt[known]
        unit[k] = black_scholes_price(
            spots=book.spot[u_idx[known]], strikes=book.strike[k], expiries=life[known],
            volatilities=vol[known], rates=rate[known],
            dividend_yields=book.dividend_yield[k], is_call=book.kind[k] == CALL)
    by_desk = np.bincount(book.desk_index, unit * book.quantity, minlength=len(book.desks))
    bad: dict[str, str] = {}
    for j, why in sorted(reasons.items()):
        bad.setdefault(book.desks[int(book.desk_index[opt[j]])], why)
    return pd.Series(by_desk, index=list(book.desks)), bad


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
            prev_date: dt.date, date: dt.date, day_count: str = "trading_252",
            moves: DayMoves | None = None,
            ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Hypothetical and risk-theoretical P&L of ``date`` per desk, and the firm's.

    Parameters
    ----------
    positions_prev, market_prev, rates_prev
        The snapshot of ``prev_date``.
    market_now, rates_now
        The market and zero curve of ``date``.
    prev_date, date
        The two valuation dates.
    day_count
        ``trading_252`` or ``act_365``.
    moves
        The day's realized vol and rate factor moves for the RTPL (:func:`day_moves`);
        None: the RTPL moves spots only.

    Returns
    -------
    hpl, rtpl, messages
        Frames with columns ``date``, ``desk``, ``pnl`` (desk ``""`` for the firm when
        every desk was valued); desks with a position not valued on a day are left out of
        both, desks whose options need a factor move the history lacks are left out of
        ``rtpl``, with the reason in ``messages``.
    """
    v0, bad0, m0 = _values(positions_prev, market_prev, rates_prev, prev_date, day_count)
    v1, bad1, m1 = _values(positions_prev, market_now, rates_now, date, day_count)
    model_mkt = _model_market(market_prev, market_now).assign(as_of_date=date)
    model_rates = rates_prev.assign(as_of_date=date)
    rt_bad: dict[str, str] = {}
    if moves is None:
        vm, badm, _ = _values(positions_prev, model_mkt, model_rates, date, day_count)
    else:
        book, badm, _ = _resolved(positions_prev, model_mkt, model_rates, date, day_count)
        vm = pd.Series(dtype=float)
        if book is not None:
            vm, rt_bad = _factor_values(book, moves, prev_date, date)
    bad = bad0 | bad1 | badm
    all_desks = set(positions_prev["desk"].astype(str))
    desks = sorted(all_desks - bad)
    out = []
    for v, skip in ((v1, {}), (vm, rt_bad)):
        rows = [(date, d, float(v.get(d, 0.0) - v0.get(d, 0.0))) for d in desks
                if d not in skip]
        if desks and not bad and not skip:
            rows.append((date, FIRM, float(sum(r[2] for r in rows))))
        out.append(pd.DataFrame(rows, columns=["date", "desk", "pnl"]))
    messages = [f"hypothetical P&L of {date}: desk {d} missing" for d in sorted(bad)]
    rt_messages = [f"risk-theoretical P&L of {date}: desk {d} missing: {why}"
                   for d, why in sorted(rt_bad.items()) if d in desks]
    return out[0], out[1], messages + rt_messages + m0 + m1


def day_moves(factors: RtplFactors, underlyings: tuple[str, ...],
              days: list[tuple[dt.date, dt.date]]) -> dict[dt.date, DayMoves]:
    """The realized vol and rate factor moves of each ``(t-1, t)`` pair, keyed by t.

    Parameters
    ----------
    factors
        Which factors are on, and their history tables.
    underlyings
        The underlyings whose vol moves are needed.
    days
        ``(previous business day, day)`` pairs.

    Returns
    -------
    dict
        Day -> :class:`DayMoves`. Vol moves are the change of the log ATM vol at each tenor
        between the two dates' :func:`~risk_engine.scenarios.factor_history.atm_vol_levels`
        (rows checked by :func:`~risk_engine.scenarios.factor_history.check_vol_history`:
        a (underlying, date) with a rejected row has no level); the rate move is
        :func:`~risk_engine.scenarios.factor_history.parallel_shifts` over the two dates.
        NaN where the history lacks either date.
    """
    if not days:
        return {}
    last = max(d for _, d in days)
    tenors = factors.vol_tenors_days
    levels = None
    if tenors and factors.vol_history is not None:
        vh = check_vol_history(factors.vol_history, last, underlyings).frame
        levels = np.log(atm_vol_levels(vh, underlyings, tenors))
    curves = None
    if factors.rate and factors.rate_history is not None:
        curves = check_rate_history(factors.rate_history, last).frame
    out: dict[dt.date, DayMoves] = {}
    for prev, day in days:
        shocks: dict[str, FloatArray] = {}
        pair = np.array([prev, day], dtype="datetime64[D]")
        if levels is not None:
            both = levels.reindex(pd.Index(pair))
            for u in underlyings:
                shocks[u] = (both[u].iloc[1] - both[u].iloc[0]).to_numpy(float)
        shift: float | None = None
        if factors.rate:
            shift = np.nan if curves is None else float(parallel_shifts(curves, pair).iloc[0])
        out[day] = DayMoves(tuple(d / TENOR_DAYS_PER_YEAR for d in tenors), shocks, shift)
    return out


def _days(values: pd.Series) -> tuple[NDArray[np.intp], list[Any]]:
    """Each row's day as codes into a list of ``datetime.date`` (NaT: not a day).

    The same days as ``pd.to_datetime(values).dt.date`` row by row, converting each
    distinct value once (a window's snapshots hold a few hundred dates in 10^5 rows).
    """
    codes, uniques = pd.factorize(values)
    days = pd.to_datetime(pd.Series(np.asarray(uniques, dtype=object))).dt.date
    return codes, list(days)


def _by_date(frame: pd.DataFrame | None, keep: Collection[dt.date] | None = None,
             column: str = "as_of_date") -> dict[dt.date, pd.DataFrame]:
    """The rows of ``frame`` per day of ``column`` (set to the day), in their order.

    ``keep``: only these days (the others are not split off). Rows without a day are left
    out.
    """
    if frame is None or len(frame) == 0:
        return {}
    codes, days = _days(frame[column])
    wanted = [k for k, d in enumerate(days) if not pd.isna(d) and (keep is None or d in keep)]
    if not wanted:
        return {}
    rows = np.flatnonzero(np.isin(codes, wanted))
    day_of = np.array(days, dtype=object)[codes[rows]]
    sub = frame.iloc[rows]
    out: dict[dt.date, pd.DataFrame] = {}
    for d in sorted(set(day_of)):
        out[d] = sub[day_of == d].assign(**{column: d})
    return out


def _cached_days(cached: pd.DataFrame | None, label: str, days: Collection[dt.date]
                 ) -> tuple[pd.DataFrame | None, NDArray[np.object_]]:
    """Cached rows of ``days`` whose day was computed with RTPL factors ``label``.

    A day is taken from the cache only when every cached row of it has ``label`` (no
    ``rtpl_factors``: ``spot``). Returns the rows (cached order) and their days.
    """
    empty = np.array([], dtype=object)
    if cached is None or len(cached) == 0:
        return None, empty
    codes, uniq = _days(cached["date"])
    day_of = np.array(uniq + [pd.NaT], dtype=object)[codes]  # code -1: no day
    if "rtpl_factors" in cached.columns:
        same = (cached["rtpl_factors"].fillna(SPOT_ONLY) == label).to_numpy(bool)
    else:
        same = np.full(len(cached), label == SPOT_ONLY)
    in_days = np.array([not pd.isna(d) and d in days for d in day_of], dtype=bool)
    bad = set(day_of[in_days & ~same])
    use = in_days & np.array([d not in bad for d in day_of], dtype=bool)
    if not use.any():
        return None, empty
    return cached.iloc[np.flatnonzero(use)].reset_index(drop=True), day_of[use]


def hypothetical_series(positions: pd.DataFrame | None, market: pd.DataFrame | None,
                        rates: pd.DataFrame | None, days: list[tuple[dt.date, dt.date]],
                        day_count: str = "trading_252", cached: pd.DataFrame | None = None,
                        factors: RtplFactors | None = None,
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
        Desk rows computed before (columns ``date``, ``desk``, ``pnl``, ``rtpl`` and
        optionally ``rtpl_factors``: the hypothetical rows that earlier runs published in
        ``backtest_series``); a day with cached rows is taken from them instead of
        revalued, so a nightly run revalues only the days it is the first to see. A day
        whose cached rows were computed with other RTPL factors (no ``rtpl_factors``:
        ``spot``) is revalued.
    factors
        The vol and rate factors the RTPL moves besides spots (None or
        :attr:`RtplFactors.spot_only`: spots only, as before).

    Returns
    -------
    hpl, rtpl, messages
        Desk rows with columns ``date``, ``desk``, ``pnl``; a day whose two snapshots are
        not both there, or that cannot be valued, has no rows (``missing``), and a message
        says why; a desk whose RTPL needs a factor move the history lacks has no ``rtpl``
        row that day.
    """
    from risk_engine.errors import DataError

    if factors is not None and factors.spot_only:
        factors = None
    label = SPOT_ONLY if factors is None else factors.label
    hpl, rtpl, messages, absent = [], [], [], []
    h_at: list[NDArray[np.intp]] = []  # each piece's rows' place in ``days``
    r_at: list[NDArray[np.intp]] = []
    place = {day: i for i, (_, day) in enumerate(days)}
    reused, reused_days = _cached_days(cached, label, set(place))
    known = set(reused_days)
    todo = [(prev, day) for prev, day in days if day not in known]
    # only the snapshots of the days revalued are split off the window's
    needed = {d for pair in todo for d in pair}
    pos, mkt, rts = (_by_date(positions, needed), _by_date(market, needed),
                     _by_date(rates, needed))
    if reused is not None:
        dates = pd.Series(reused_days, dtype=object)
        hpl.append(pd.DataFrame({"date": dates, "desk": reused["desk"], "pnl": reused["pnl"]}))
        rtpl.append(pd.DataFrame({"date": dates, "desk": reused["desk"],
                                  "pnl": reused["rtpl"]}))
        h_at.append(np.array([place[d] for d in reused_days], dtype=np.intp))
        r_at.append(h_at[0])
    moves: dict[dt.date, DayMoves] = {}
    if factors is not None:
        und = () if positions is None or len(positions) == 0 else tuple(
            sorted(set(positions["underlying"].astype(str))))
        moves = day_moves(factors, und, todo)
        for name, on, table in (("vol_factors", bool(factors.vol_tenors_days),
                                 factors.vol_history),
                                ("rate_factor", factors.rate, factors.rate_history)):
            if on and table is None:
                messages.append(f"risk-theoretical P&L: scenario_model.{name} is on but its "
                                "history table was not given; the RTPL of desks with options "
                                "is missing")
    for prev, day in todo:
        if prev not in pos or prev not in mkt or prev not in rts or day not in mkt \
                or day not in rts:
            absent.append(day)
            continue
        try:
            h, r, m = day_pnl(pos[prev], mkt[prev], rts[prev], mkt[day], rts[day], prev, day,
                              day_count, moves.get(day))
        except DataError as exc:
            messages.append(f"hypothetical P&L of {day}: {exc}")
            continue
        h, r = h[h["desk"] != FIRM], r[r["desk"] != FIRM]
        hpl.append(h)
        rtpl.append(r)
        h_at.append(np.full(len(h), place[day], dtype=np.intp))
        r_at.append(np.full(len(r), place[day], dtype=np.intp))
        messages.extend(m)
    if absent:
        messages.insert(0, f"hypothetical P&L: {len(absent)} day(s) without the snapshots "
                           f"of the day and the day before (first {absent[0]})")
    empty = pd.DataFrame({"date": pd.Series(dtype=object), "desk": pd.Series(dtype=object),
                          "pnl": pd.Series(dtype=float)})
    if not hpl:
        return empty, empty.copy(), messages
    # day by day as ``days`` orders them, each day's rows in their order
    return _in_day_order(hpl, h_at), _in_day_order(rtpl, r_at), messages


def _in_day_order(pieces: list[pd.DataFrame], place: list[NDArray[np.intp]]) -> pd.DataFrame:
    """``pieces`` concatenated, rows stably sorted by their day's place."""
    frame = pd.concat(pieces, ignore_index=True)
    return frame.take(np.argsort(np.concatenate(place), kind="stable")).reset_index(drop=True)
