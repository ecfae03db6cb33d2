"""Row checks of the inputs beside the book, and the vol surfaces' arbitrage checks.

Tables: history, factor_model, correlations, rates, vol_surface.

Each check returns the rows to use, the rows set aside (as :class:`~risk_engine.book.Rejection`
with table, key, column, value and reason), the underlyings whose positions must be
rejected (with the reason) and warnings; a table that cannot be used at all is a
:class:`~risk_engine.errors.DataError` naming table, column, key and value. Every outcome is
independent of the order of the rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtr

from risk_engine.book import (
    MAX_EXPIRY_YEARS,
    MAX_PRICE,
    MAX_VOLATILITY,
    Rejection,
    duplicate_rows,
)
from risk_engine.errors import DataError
from risk_engine.timeaxis import as_days, year_fraction
from risk_engine.vol_surface import QuotedSurface

STALE_WARNING_DAYS = 5  # last close more than 5 trading days before the as-of date: warning
STALE_REJECT_DAYS = 21  # more than 21 trading days (a month): the positions are rejected
MAX_DRIFT = 10.0  # |annual drift| of a factor_model row, 1000% a year
MAX_ZERO_RATE = 1.0  # |zero rate| of the curve, 100% a year
CORRELATION_TOLERANCE = 1e-12  # copies of a pair closer than this are the same value
CALENDAR_TOLERANCE = 1e-9  # total variance may fall by this (relative) before it is arbitrage
BUTTERFLY_TOLERANCE = 1e-9  # call-price slope (per unit of strike) may fall by this
_LISTED = 10  # underlyings named in one warning


@dataclass(frozen=True)
class TableCheck:
    """The outcome of checking one input table.

    Attributes
    ----------
    frame
        The rows to use (original columns and values).
    rejected
        Rows set aside, with their reasons.
    bad_underlyings
        Underlyings whose positions must be rejected, with the reason.
    warnings
        Findings that do not set rows aside (collapsed identical copies, skipped values).
    """

    frame: pd.DataFrame
    rejected: tuple[Rejection, ...] = ()
    bad_underlyings: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def _counts(names: pd.Series) -> str:
    vc = names.value_counts()
    vc = vc.sort_index(kind="stable")
    parts = [f"{u} ({n})" for u, n in vc.items()][:_LISTED]
    more = f", and {len(vc) - _LISTED} more" if len(vc) > _LISTED else ""
    return ", ".join(parts) + more


def check_history(
    history: pd.DataFrame, as_of: dt.date, underlyings: tuple[str, ...]
) -> TableCheck:
    """Check the daily closes used for the scenario model.

    Rows with a missing underlying or date, or a date that is not a date, are rejected.
    Rows dated after ``as_of`` are left out. For the book's ``underlyings``: rows of one
    (date, underlying) with different closes are rejected and so are the positions on the
    underlying (identical copies collapse, with a warning); missing (NaN) closes are
    skipped with a warning counting them per underlying; a last close more than
    ``STALE_WARNING_DAYS`` trading days before ``as_of`` is a warning, more than
    ``STALE_REJECT_DAYS`` rejects the positions.

    Raises
    ------
    DataError
        If no row is dated on or before ``as_of``.
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    bad: dict[str, str] = {}
    und = history["underlying"].astype("string")
    days, not_date = as_days(history["date"])
    key = und.fillna("<missing>").astype(str) + "/" + pd.Series(days.astype(str),
                                                                 index=history.index)
    checks = [(und.isna().to_numpy(bool), "underlying", "underlying is missing"),
              (not_date, "date", "date is not a date"),
              (np.isnat(days) & ~not_date, "date", "date is missing")]
    keep = np.ones(len(history), dtype=bool)
    for mask, column, reason in checks:
        m = mask & keep
        for i in np.flatnonzero(m):
            rej.append(Rejection("history", key.iat[i], column, history[column].iat[i], reason))
        keep &= ~mask
    as_of_day = np.datetime64(as_of, "D")
    keep &= ~(days > as_of_day)
    if not keep.any():
        raise DataError(f"history: no rows on or before {as_of} ({len(history)} row(s) read, "
                        f"{len(rej)} rejected)")
    hist = history[keep]
    hdays = days[keep]
    held = hist["underlying"].astype(str).isin(list(underlyings)).to_numpy(bool)
    mine = hist[held]
    mkey = key[keep][held]
    same, conflicts = duplicate_rows(mine, mkey, ["close"])
    drop = pd.Series(False, index=hist.index)
    if same.any():
        warnings.append(f"history: {int(same.sum())} identical duplicate row(s) collapsed: "
                        + _counts(mine.loc[same, "underlying"].astype(str)))
        drop[same.index[same]] = True
    for i in mine.index[mkey.isin(list(conflicts)).to_numpy(bool)]:
        k = mkey[i]
        u = str(mine.at[i, "underlying"])
        vals = " and ".join(conflicts[k][1])
        rej.append(Rejection("history", k, "close", mine.at[i, "close"],
                             f"duplicate (date, underlying) with different close: {vals}"))
        bad.setdefault(u, f"history has conflicting closes for {k}: {vals}")
        drop[i] = True
    close = pd.to_numeric(mine["close"], errors="coerce").astype(float)
    nan = close.isna() & ~drop[mine.index]
    if nan.any():
        warnings.append(f"history: {int(nan.sum())} missing (NaN) close(s) skipped: "
                        + _counts(mine.loc[nan, "underlying"].astype(str)))
    valid = (np.isfinite(close) & (close > 0) & ~drop[mine.index]).to_numpy(bool)
    last = pd.Series(hdays[held][valid].astype(np.int64),
                     index=mine["underlying"].astype(str).to_numpy(object)[valid])
    stale_warn = []
    for u, d in last.groupby(level=0).max().items():
        day = np.datetime64(int(d), "D")
        n = int(np.busday_count(day + 1, as_of_day + 1))
        if n > STALE_REJECT_DAYS:
            bad.setdefault(str(u), f"history's last close is on {day}, {n} trading days before "
                                   f"the as-of date (more than {STALE_REJECT_DAYS})")
        elif n > STALE_WARNING_DAYS:
            stale_warn.append(f"{u} ({day}, {n} trading days)")
    if stale_warn:
        warnings.append(f"history: last close more than {STALE_WARNING_DAYS} trading days "
                        f"before {as_of} for " + ", ".join(sorted(stale_warn)))
    return TableCheck(hist[~drop].reset_index(drop=True), tuple(rej), bad, tuple(warnings))


def check_factor_model(factor_model: pd.DataFrame) -> TableCheck:
    """Check the given drifts and volatilities.

    Rows with a missing underlying, a drift that is not finite or beyond ``MAX_DRIFT``, a
    volatility not in (0, ``MAX_VOLATILITY``], or that differ from another row of the same
    underlying are rejected, and the positions on the underlying with them (identical copies
    collapse, with a warning).
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    bad: dict[str, str] = {}
    fm = factor_model
    und = fm["underlying"].astype("string")
    rej.extend(Rejection("factor_model", "<missing>", "underlying", None,
                         "underlying is missing") for _ in range(int(und.isna().sum())))
    fm = fm[und.notna().to_numpy(bool)]
    und = und[fm.index].astype(str)
    same, conflicts = duplicate_rows(fm, und, [c for c in fm.columns if c != "underlying"])
    if same.any():
        warnings.append(f"factor_model: {int(same.sum())} identical duplicate row(s) "
                        "collapsed: " + _counts(und[same]))
    fm = fm[~same]
    und = und[fm.index]
    keep = pd.Series(True, index=fm.index)
    for i in fm.index[und.isin(list(conflicts)).to_numpy(bool)]:
        col, vals = conflicts[und[i]]
        reason = f"duplicate underlying in factor_model with different {col}: " \
                 + " and ".join(vals)
        rej.append(Rejection("factor_model", und[i], col, fm.at[i, col], reason))
        bad.setdefault(und[i], f"factor_model row rejected: {reason}")
        keep[i] = False
    drift = pd.to_numeric(fm["drift"], errors="coerce").astype(float)
    vol = pd.to_numeric(fm["volatility"], errors="coerce").astype(float)
    for mask, col, values, reason in (
        (~(np.isfinite(drift) & (drift.abs() <= MAX_DRIFT)), "drift", drift,
         f"drift must be finite and within +-{MAX_DRIFT:g}"),
        (~(np.isfinite(vol) & (vol > 0) & (vol <= MAX_VOLATILITY)), "volatility", vol,
         f"volatility must be in (0, {MAX_VOLATILITY:g}]"),
    ):
        for i in fm.index[mask & keep]:
            rej.append(Rejection("factor_model", und[i], col, values[i], reason))
            bad.setdefault(und[i], f"factor_model row rejected: {col} {values[i]:g}; {reason}")
            keep[i] = False
    return TableCheck(fm[keep].reset_index(drop=True), tuple(rej), bad, tuple(warnings))


def check_correlations(correlations: pd.DataFrame) -> TableCheck:
    """Check the pairwise correlations.

    Rows with a missing name, a correlation that is not finite or outside [-1, 1], a
    diagonal other than 1, or a pair given again (in either order) with a different value
    are rejected, and the positions on the underlyings concerned with them. Copies of a
    pair within ``CORRELATION_TOLERANCE`` collapse to the smallest, with a warning.
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    bad: dict[str, str] = {}
    corr = correlations[["underlying_a", "underlying_b", "correlation"]].reset_index(drop=True)
    a = corr["underlying_a"].astype("string")
    b = corr["underlying_b"].astype("string")
    c = pd.to_numeric(corr["correlation"], errors="coerce").astype(float)
    a_txt, b_txt = a.fillna("<missing>").astype(str), b.fillna("<missing>").astype(str)
    swap = (a_txt > b_txt).to_numpy(bool)
    key = pd.Series(np.where(swap, b_txt + "/" + a_txt, a_txt + "/" + b_txt), index=corr.index)
    keep = pd.Series(True, index=corr.index)

    def reject(mask: pd.Series, reason: str) -> None:
        for i in corr.index[mask & keep]:
            rej.append(Rejection("correlations", str(key[i]), "correlation", c[i], reason))
            for u in (a[i], b[i]):
                if not pd.isna(u):
                    bad.setdefault(str(u), f"correlations row {key[i]} rejected: {reason}")
        keep[mask] = False

    names_missing = (a.isna() | b.isna()).to_numpy(bool)
    for i in corr.index[names_missing]:
        rej.append(Rejection("correlations", str(key[i]), "underlying_a", None,
                             "underlying_a or underlying_b is missing"))
    keep[names_missing] = False
    reject(~(np.isfinite(c) & (c.abs() <= 1.0)), "correlation must be finite and in [-1, 1]")
    reject((a == b).fillna(False).astype(bool) & ((c - 1.0).abs() > CORRELATION_TOLERANCE),
           "diagonal correlation must be 1")
    spread = c[keep].groupby(key[keep]).agg(["min", "max", "size"])
    conflict = spread.index[(spread["max"] - spread["min"]) > CORRELATION_TOLERANCE]
    for k in conflict:
        vals = " and ".join(sorted({f"{v:g}" for v in c[keep & (key == k)]}))
        reject(keep & (key == k), f"pair given twice with different values: {vals}")
    copies = spread.index[(spread["size"] > 1)
                          & ((spread["max"] - spread["min"]) <= CORRELATION_TOLERANCE)]
    if len(copies):
        warnings.append(f"correlations: pairs given more than once collapsed: "
                        f"{', '.join(sorted(map(str, copies))[:_LISTED])}")
    out = corr[keep].assign(correlation=c[keep], _key=key[keep])
    out = out.sort_values(["_key", "correlation"], kind="stable").drop_duplicates("_key")
    return TableCheck(out.drop(columns="_key").reset_index(drop=True), tuple(rej), bad,
                      tuple(warnings))


def check_rates(rates: pd.DataFrame, as_of: dt.date) -> TableCheck:
    """Check the zero curve's points.

    Rows whose ``as_of_date`` is missing or another day are rejected. A zero rate beyond
    ``MAX_ZERO_RATE`` is a :class:`DataError` (the curve prices every option); a missing,
    negative or repeated tenor is one too, raised when the curve is built
    (:meth:`risk_engine.timeaxis.ZeroCurve.from_points`).

    Raises
    ------
    DataError
        Naming table ``rates``, the column, the tenor and the value.
    """
    rej: list[Rejection] = []
    keep = np.ones(len(rates), dtype=bool)
    if "as_of_date" in rates.columns:
        days, not_date = as_days(rates["as_of_date"])
        for mask, reason in ((np.isnat(days) & ~not_date, "as_of_date is missing"),
                             (not_date, "as_of_date is not a date"),
                             (~np.isnat(days) & (days != np.datetime64(as_of, "D")),
                              f"as_of_date is not the run's as-of date {as_of}")):
            for i in np.flatnonzero(mask & keep):
                rej.append(Rejection("rates", f"tenor_years={rates['tenor_years'].iat[i]}",
                                     "as_of_date", rates["as_of_date"].iat[i], reason))
            keep &= ~mask
    out = rates[keep].reset_index(drop=True)
    r = pd.to_numeric(out["zero_rate"], errors="coerce").astype(float)
    big = np.isfinite(r) & (r.abs() > MAX_ZERO_RATE)
    if big.any():
        j = int(np.flatnonzero(big.to_numpy(bool))[0])
        raise DataError(f"rates: column zero_rate, key tenor_years={out['tenor_years'].iat[j]}: "
                        f"value {r.iat[j]} beyond the plausibility bound +-{MAX_ZERO_RATE:g}")
    return TableCheck(out, tuple(rej))


def last_closes(history: pd.DataFrame | None, names: list[str],
                 as_of: dt.date) -> pd.Series:
    """Last close on or before ``as_of`` of each of ``names`` that has one.

    Only finite closes in (0, ``MAX_PRICE``] count; several closes on the last date (a
    conflict) give the largest, whatever the order of the rows.
    """
    if history is None or not names or len(history) == 0:
        return pd.Series(dtype=float)
    hist = history[history["underlying"].astype("string").isin(names).fillna(False)
                   .astype(bool)]
    days, _ = as_days(hist["date"])
    close = pd.to_numeric(hist["close"], errors="coerce").astype(float).to_numpy()
    ok = ~np.isnat(days) & (days <= np.datetime64(as_of, "D")) & np.isfinite(close) \
        & (close > 0) & (close <= MAX_PRICE)
    frame = pd.DataFrame({"u": hist["underlying"].astype(str).to_numpy(object)[ok],
                          "d": days[ok].astype(np.int64), "close": close[ok]})
    frame = frame.sort_values(["u", "d", "close"], kind="stable")
    return frame.groupby("u")["close"].last()


def snapshot_date(frame: pd.DataFrame) -> dt.date | None:
    """The latest ``as_of_date`` of the rows (None without one)."""
    if "as_of_date" not in frame.columns:
        return None
    days, _ = as_days(frame["as_of_date"])
    days = days[~np.isnat(days)]
    return dt.date.fromisoformat(str(days.max())) if days.size else None


def check_vol_surface(
    quotes: pd.DataFrame, as_of: dt.date, market_underlyings: Iterable[str],
    *, day_count: str = "trading_252",
) -> TableCheck:
    """Check the implied-vol quotes of the ``vol_surface`` table.

    Rejected (key ``underlying/expiry/strike``): ``as_of_date`` missing or another day; a
    missing underlying or one not in ``market_underlyings`` (the date's valid market rows);
    an expiry that is missing, not a date, on or before ``as_of``, more than
    ``MAX_EXPIRY_YEARS`` after it, or with year fraction 0 under ``day_count`` (no trading
    day before it); a strike not finite or not in (0, ``MAX_PRICE``]; an implied vol not
    finite or not in (0, ``MAX_VOLATILITY``]; quotes of one (underlying, expiry, strike):
    extra identical copies (one copy is used) and all copies that differ; quotes of one
    underlying and strike whose different expiry dates have the same year fraction. No
    quote rejection rejects a position: the underlying's other quotes make its surface.

    Returns
    -------
    TableCheck
        ``frame`` with columns ``underlying`` (str), ``expiry`` (``datetime64[D]``),
        ``strike``, ``implied_vol`` (float) of the quotes to use.
    """
    rej: list[Rejection] = []
    n = len(quotes)
    und = quotes["underlying"].astype("string").reset_index(drop=True)
    days, not_date = as_days(quotes["expiry"])
    strike = pd.to_numeric(quotes["strike"], errors="coerce").astype(float).to_numpy()
    vol = pd.to_numeric(quotes["implied_vol"], errors="coerce").astype(float).to_numpy()
    key = [f"{u}/{d}/{k}" for u, d, k in zip(
        und.fillna("<missing>").astype(str), np.where(not_date, "<not a date>", days.astype(str)),
        strike, strict=True)]
    keep = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, column: str, reason: str) -> None:
        for i in np.flatnonzero(mask & keep):
            rej.append(Rejection("vol_surface", key[i], column, quotes[column].iat[i], reason))
        keep[mask] = False

    as_of_day = np.datetime64(as_of, "D")
    if "as_of_date" in quotes.columns:
        a_days, a_bad = as_days(quotes["as_of_date"])
        reject(np.isnat(a_days) & ~a_bad, "as_of_date", "as_of_date is missing")
        reject(a_bad, "as_of_date", "as_of_date is not a date")
        reject(~np.isnat(a_days) & (a_days != as_of_day),
               "as_of_date", f"as_of_date is not the run's as-of date {as_of}")
    known = {str(u) for u in market_underlyings}
    reject(und.isna().to_numpy(bool), "underlying", "underlying is missing")
    reject(~und.isin(list(known)).fillna(False).to_numpy(bool), "underlying",
           "underlying has no valid market row for this date (missing or rejected)")
    reject(not_date, "expiry", "expiry is not a date")
    reject(np.isnat(days), "expiry", "expiry is missing")
    reject(~np.isnat(days) & (days <= as_of_day), "expiry",
           f"expiry on or before the as-of date {as_of}")
    latest = as_of_day + int(MAX_EXPIRY_YEARS * 365.25)
    reject(~np.isnat(days) & (days > latest), "expiry",
           f"expiry out of range: more than {MAX_EXPIRY_YEARS} years after the as-of date "
           f"{as_of} (latest {latest})")
    t = np.zeros(n)
    if keep.any():
        t[keep] = year_fraction(as_of, days[keep], day_count)
    reject(keep & ~(t > 0), "expiry",
           f"expiry has year fraction 0 under time.day_count {day_count} (no trading day "
           "between the as-of date and it)")
    reject(~(np.isfinite(strike) & (strike > 0) & (strike <= MAX_PRICE)), "strike",
           f"strike must be finite, > 0 and <= {MAX_PRICE:g}")
    reject(~np.isfinite(vol) | (vol <= 0), "implied_vol",
           "implied_vol must be finite and > 0")
    reject(vol > MAX_VOLATILITY, "implied_vol",
           f"implied_vol above the plausibility bound {MAX_VOLATILITY:g}")
    frame = pd.DataFrame({"underlying": und.astype(object), "expiry": days,
                          "strike": strike, "implied_vol": vol})
    keys = pd.Series(key, dtype=object)
    idx = np.flatnonzero(keep)
    same, conflicts = duplicate_rows(frame.iloc[idx], keys.iloc[idx], ["implied_vol"])
    reject(np.isin(np.arange(n), idx[same.to_numpy(bool)]), "implied_vol",
           "identical duplicate of another quote of this (underlying, expiry, strike); "
           "one copy used")
    for i in np.flatnonzero(keep & keys.isin(list(conflicts)).to_numpy(bool)):
        vals = " and ".join(conflicts[keys.iat[i]][1])
        reject(np.arange(n) == i, "implied_vol",
               f"duplicate quote of this (underlying, expiry, strike) with different "
               f"implied_vol: {vals}")
    same_t = pd.Series([f"{u}/{tt!r}/{k!r}" for u, tt, k in zip(
        frame["underlying"], t, strike, strict=True)], dtype=object)
    clash = keep & same_t.where(keep).duplicated(keep=False).to_numpy(bool)
    reject(clash, "expiry",
           f"another expiry date of this underlying has the same year fraction under "
           f"time.day_count {day_count} and a quote at the same strike")
    return TableCheck(frame[keep].reset_index(drop=True), tuple(rej))


def surface_arbitrage(surfaces: Mapping[str, QuotedSurface], *, listed: int = 5) -> list[str]:
    """Calendar and butterfly arbitrage of the surfaces, one warning per finding.

    Detected, never repaired. **Calendar**: for adjacent quoted expiries ``T_i < T_j``, at
    every log-forward-moneyness quoted at either of them, the total variance by the rule
    (:meth:`risk_engine.vol_surface.VolSurface.total_variance_at`) must not fall from
    ``T_i`` to ``T_j`` (by more than ``CALENDAR_TOLERANCE`` relative). **Butterfly**: at each
    quoted expiry with three or more strikes, the undiscounted Black-Scholes call prices
    ``F N(d1) - K N(d2)`` at the quoted strikes (vol from the surface) must be convex in
    strike: the slope between neighbouring strikes must not fall (by more than
    ``BUTTERFLY_TOLERANCE``). A warning names the underlying, the expiry (or pair of
    expiries) and up to ``listed`` strikes.
    """
    out: list[str] = []
    for name in sorted(surfaces):
        qs = surfaces[name]
        surf = qs.surface
        te = surf.expiry_years
        for i in range(te.size - 1):
            k = np.unique(np.concatenate([surf.log_moneyness[i], surf.log_moneyness[i + 1]]))
            w_a = surf.total_variance_at(k, np.full(k.shape, te[i]))
            w_b = surf.total_variance_at(k, np.full(k.shape, te[i + 1]))
            bad = np.flatnonzero(w_b < w_a * (1.0 - CALENDAR_TOLERANCE))
            if bad.size == 0:
                continue
            d_a, d_b = qs.expiry_dates[i], qs.expiry_dates[i + 1]
            points = [f"k={k[j]:.4g} (strike {qs.forwards[i] * np.exp(k[j]):.6g} at {d_a}, "
                      f"{qs.forwards[i + 1] * np.exp(k[j]):.6g} at {d_b}; total variance "
                      f"{w_a[j]:.6g} -> {w_b[j]:.6g})" for j in bad[:listed]]
            more = f", and {bad.size - listed} more" if bad.size > listed else ""
            out.append(f"vol_surface: calendar arbitrage on {name} between expiries {d_a} and "
                       f"{d_b}: total variance decreases at fixed moneyness at "
                       f"{bad.size} point(s): " + "; ".join(points) + more)
        for i in range(te.size):
            strikes = qs.strikes[i]
            if strikes.size < 3:
                continue
            f = qs.forwards[i]
            w = surf.total_variance_at(surf.log_moneyness[i], np.full(strikes.shape, te[i]))
            sd = np.sqrt(w)
            d1 = (np.log(f / strikes) + 0.5 * w) / sd
            call = f * ndtr(d1) - strikes * ndtr(d1 - sd)
            slope = np.diff(call) / np.diff(strikes)
            bad = np.flatnonzero(np.diff(slope) < -BUTTERFLY_TOLERANCE)
            if bad.size == 0:
                continue
            points = [f"{strikes[j + 1]:.6g} (between {strikes[j]:.6g} and "
                      f"{strikes[j + 2]:.6g})" for j in bad[:listed]]
            more = f", and {bad.size - listed} more" if bad.size > listed else ""
            out.append(f"vol_surface: butterfly arbitrage on {name} at expiry "
                       f"{qs.expiry_dates[i]}: undiscounted call prices not convex in strike "
                       f"at strike(s) " + ", ".join(points) + more)
    return out
