"""Vol and rate risk factors of the scenario model: their inputs, checks and estimation.

The columns are those of :class:`~risk_engine.scenarios.factors.FactorLayout`: per underlying
and vol tenor the log relative shock of its ATM implied vol, and one parallel shift of the
zero curve (absolute, decimal). Both have **zero mean**; their annual covariance with each
other and with the log returns (the spot-vol correlation included) comes either from history
or is given.

**From history** (``scenario_model.source: history``):

* ATM vol of underlying ``u`` at configured tenor ``T_b`` (``tenor_days / 252`` years) on a
  date: the date's ``vol_history`` quotes of ``u`` (tenors ``tenor_days / 252``) read as a
  one-strike surface (log-moneyness 0) and interpolated by the engine's one surface rule,
  :class:`~risk_engine.vol_surface.VolSurface` (linear in total variance ``sigma^2 T``
  between quoted tenors, flat vol outside them).
* The vol factor series is the daily change of the log of that vol; the rate factor series
  is the daily parallel shift: the mean, over the tenors quoted on both days, of the change
  of the zero rate.
* Changes are taken between the consecutive dates of the spot history (the dates of
  ``history``), over the same window (the last ``history_window_days`` return dates), so
  each factor change lines up with that day's log returns; a date missing from a factor's
  history leaves that change and the next one missing (pairwise covariance skips them).
* Covariance is pairwise over shared dates, times 252; a pair sharing fewer than 2 dates
  has covariance 0 (said in the model's ``repair``). The spot block is the spot model's,
  bit for bit; the joint matrix is made positive semidefinite by
  :func:`~risk_engine.scenarios.model.joint_factor`.

**Given** (``scenario_model.source: factor_model``): the optional table ``factor_vols``
holds the annual volatility of each factor, named ``vol:<underlying>:<tenor_days>`` (of the
log vol shock) and ``rate`` (of the shift, decimal); the ``correlations`` table's rows may
name these factors in ``underlying_a`` / ``underlying_b`` (missing pairs are 0, as for
underlyings).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from risk_engine.book import MAX_VOLATILITY, Rejection, duplicate_rows
from risk_engine.errors import DataError
from risk_engine.input_checks import MAX_ZERO_RATE, TableCheck
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.scenarios.model import (
    PERIODS_PER_YEAR,
    ScenarioModel,
    history_closes,
    window_changes,
    with_factors,
)
from risk_engine.timeaxis import as_days
from risk_engine.types import FloatArray
from risk_engine.vol_surface import VolSurface

TENOR_DAYS_PER_YEAR = 252.0
"""Vol tenors are trading days; ``tenor_days / 252`` is the year fraction (252 is one year)."""
MAX_TENOR_DAYS = 2520
RATE_FACTOR = "rate"
"""Name of the rate factor in ``factor_vols`` and ``correlations``."""


def vol_factor_name(underlying: str, tenor_days: int) -> str:
    """Name of a vol factor in ``factor_vols`` / ``correlations``: ``vol:<u>:<days>``."""
    return f"vol:{underlying}:{int(tenor_days)}"


def factor_underlying(name: str) -> str | None:
    """The underlying of a vol factor name ``vol:<u>:<days>``; None for ``rate`` or others."""
    if name.startswith("vol:") and name.count(":") >= 2:
        return name[4:name.rindex(":")]
    return None


def factor_names(underlyings: tuple[str, ...], layout: FactorLayout,
                 tenors_days: tuple[int, ...]) -> list[str]:
    """Names of every column of the block, in layout order (spot columns: the underlying)."""
    names = list(underlyings)
    if layout.n_vol_buckets:
        names += [vol_factor_name(u, d) for u in underlyings for d in tenors_days]
    if layout.rate_factor:
        names.append(RATE_FACTOR)
    return names


# ----------------------------------------------------------------------------- checks


def _reject_rows(frame: pd.DataFrame, table: str, key: pd.Series,
                 checks: list[tuple[np.ndarray, str, str]], rej: list[Rejection]) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    for mask, column, reason in checks:
        for i in np.flatnonzero(mask & keep):
            rej.append(Rejection(table, str(key.iat[i]), column, frame[column].iat[i], reason))
        keep &= ~mask
    return keep


def check_vol_history(vol_history: pd.DataFrame, as_of: dt.date,
                      underlyings: tuple[str, ...]) -> TableCheck:
    """Check the daily ATM vols of the vol factors.

    Rows of the book's ``underlyings`` dated on or before ``as_of`` are checked; others are
    left out. Rejected (with the reason): a missing or non-date ``date``, a ``tenor_days``
    that is not a whole number in 1..2520, an ``atm_vol`` not finite or not in (0, 5], and
    every copy of a (date, underlying, tenor_days) given with different vols (identical
    copies collapse, with a warning). When a row of an underlying and date is rejected, that
    underlying's other tenors of the date are left out too, so a missing tenor never bends
    the interpolated term structure of a day. Rows with a missing underlying are rejected.
    An underlying short of history is found by :func:`estimate_factors_from_history`.
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    vol_history = vol_history.reset_index(drop=True)
    und = vol_history["underlying"].astype("string")
    days, not_date = as_days(vol_history["date"])
    tenor = pd.to_numeric(vol_history["tenor_days"], errors="coerce").astype(float).to_numpy()
    vol = pd.to_numeric(vol_history["atm_vol"], errors="coerce").astype(float).to_numpy()
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(tenor) & (np.abs(tenor) < 2**53) & (tenor == np.round(tenor))
    tenor_txt = pd.Series(np.where(whole, np.where(whole, tenor, 0).astype(np.int64).astype(str),
                                   vol_history["tenor_days"].astype(str).to_numpy(object)),
                          index=vol_history.index, dtype=object)
    key = (und.fillna("<missing>").astype(str) + "/" + pd.Series(days.astype(str),
           index=vol_history.index) + "/" + tenor_txt)
    with np.errstate(invalid="ignore"):
        bad_tenor = ~(np.isfinite(tenor) & (tenor == np.round(tenor)) & (tenor >= 1)
                      & (tenor <= MAX_TENOR_DAYS))
        bad_vol = ~(np.isfinite(vol) & (vol > 0) & (vol <= MAX_VOLATILITY))
    late = ~np.isnat(days) & (days > np.datetime64(as_of, "D"))
    held = und.isin(list(underlyings)).fillna(False).to_numpy(bool)
    keep = _reject_rows(vol_history, "vol_history", key, [
        (und.isna().to_numpy(bool), "underlying", "underlying is missing"),
        (~held | late, "underlying", ""),  # not used: left out, not rejected
        (not_date, "date", "date is not a date"),
        (np.isnat(days) & ~not_date, "date", "date is missing"),
        (bad_tenor, "tenor_days", f"tenor_days must be a whole number of trading days in "
                                  f"1..{MAX_TENOR_DAYS}"),
        (bad_vol, "atm_vol", f"atm_vol must be finite and in (0, {MAX_VOLATILITY:g}]"),
    ], rej)
    rej = [r for r in rej if r.reason]
    day_key = und.fillna("").astype(str) + "/" + pd.Series(days.astype(str),
                                                           index=vol_history.index)
    spoiled = set(day_key[~keep & held & ~late & ~np.isnat(days)
                          & und.notna().to_numpy(bool)])
    frame = vol_history[keep]
    fkey = key[keep]
    same, conflicts = duplicate_rows(frame.assign(atm_vol=vol[keep]), fkey, ["atm_vol"])
    drop = same.to_numpy(bool).copy()
    if same.any():
        warnings.append(f"vol_history: {int(same.sum())} identical duplicate row(s) collapsed")
    for j in np.flatnonzero(fkey.isin(list(conflicts)).to_numpy(bool)):
        k = fkey.iat[j]
        vals = " and ".join(conflicts[k][1])
        rej.append(Rejection("vol_history", k, "atm_vol", frame["atm_vol"].iat[j],
                             f"duplicate (date, underlying, tenor_days) with different "
                             f"atm_vol: {vals}"))
        drop[j] = True
        spoiled.add(day_key[keep].iat[j])
    drop |= day_key[keep].isin(list(spoiled)).to_numpy(bool)
    if spoiled:
        warnings.append(f"vol_history: {len(spoiled)} (underlying, date)(s) left out because "
                        "one of their rows was rejected")
    out = pd.DataFrame({"date": days[keep][~drop],
                        "underlying": und[keep][~drop].astype(str).to_numpy(object),
                        "tenor_days": tenor[keep][~drop].astype(np.int64),
                        "atm_vol": vol[keep][~drop]})
    return TableCheck(out.reset_index(drop=True), tuple(rej), {}, tuple(warnings))


def check_rate_history(rate_history: pd.DataFrame, as_of: dt.date) -> TableCheck:
    """Check the daily zero curves of the rate factor.

    Rows dated after ``as_of`` are left out. Rejected (with the reason): a missing or
    non-date ``date``, a ``tenor_years`` not finite or <= 0, a ``zero_rate`` not finite or
    beyond +-1 (100% a year), and every copy of a (date, tenor_years) given with different
    rates (identical copies collapse).
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    rate_history = rate_history.reset_index(drop=True)
    days, not_date = as_days(rate_history["date"])
    tenor = pd.to_numeric(rate_history["tenor_years"], errors="coerce").astype(float).to_numpy()
    rate = pd.to_numeric(rate_history["zero_rate"], errors="coerce").astype(float).to_numpy()
    key = (pd.Series(days.astype(str), index=rate_history.index) + "/"
           + rate_history["tenor_years"].astype(str))
    with np.errstate(invalid="ignore"):
        bad_tenor = ~(np.isfinite(tenor) & (tenor > 0))
        bad_rate = ~(np.isfinite(rate) & (np.abs(rate) <= MAX_ZERO_RATE))
    late = ~np.isnat(days) & (days > np.datetime64(as_of, "D"))
    keep = _reject_rows(rate_history, "rate_history", key, [
        (late, "date", ""),
        (not_date, "date", "date is not a date"),
        (np.isnat(days) & ~not_date, "date", "date is missing"),
        (bad_tenor, "tenor_years", "tenor_years must be finite and > 0"),
        (bad_rate, "zero_rate", f"zero_rate must be finite and within +-{MAX_ZERO_RATE:g}"),
    ], rej)
    rej = [r for r in rej if r.reason]
    frame = rate_history[keep].assign(zero_rate=rate[keep])
    fkey = key[keep]
    same, conflicts = duplicate_rows(frame, fkey, ["zero_rate"])
    drop = same.to_numpy(bool).copy()
    if same.any():
        warnings.append(f"rate_history: {int(same.sum())} identical duplicate row(s) collapsed")
    for j in np.flatnonzero(fkey.isin(list(conflicts)).to_numpy(bool)):
        k = fkey.iat[j]
        rej.append(Rejection("rate_history", k, "zero_rate", frame["zero_rate"].iat[j],
                             "duplicate (date, tenor_years) with different zero_rate: "
                             + " and ".join(conflicts[k][1])))
        drop[j] = True
    out = pd.DataFrame({"date": days[keep][~drop], "tenor_years": tenor[keep][~drop],
                        "zero_rate": rate[keep][~drop]})
    return TableCheck(out.reset_index(drop=True), tuple(rej), {}, tuple(warnings))


# ----------------------------------------------------------------------------- series


def atm_vol_levels(vol_history: pd.DataFrame, underlyings: tuple[str, ...],
                   tenors_days: tuple[int, ...]) -> pd.DataFrame:
    """ATM vol of each underlying at the configured tenors, per date of ``vol_history``.

    ``vol_history`` is a checked frame (:func:`check_vol_history`): ``date``
    (datetime64[D]), ``underlying``, ``tenor_days`` (int), ``atm_vol``. Each (date,
    underlying) is interpolated by :class:`~risk_engine.vol_surface.VolSurface` at
    log-moneyness 0 (linear in total variance between the quoted tenors, flat vol outside).
    The rule is linear in the quoted total variances, so the days quoting the same tenors
    share one weight matrix, read off the surface rule once (:func:`_tenor_weights`).

    Returns
    -------
    DataFrame
        Index: dates (datetime64[D], sorted); columns ``(underlying, tenor_days)`` for every
        underlying in ``underlyings`` and tenor (NaN where the date has no quotes).
    """
    tenors = np.asarray(tenors_days, dtype=float) / TENOR_DAYS_PER_YEAR
    n_b = len(tenors)
    cols = pd.MultiIndex.from_tuples([(u, d) for u in underlyings for d in tenors_days])
    frame = vol_history[vol_history["underlying"].isin(list(underlyings))]
    frame = pd.DataFrame({"u": frame["underlying"].astype(str).to_numpy(object),
                          "d": np.asarray(frame["date"], dtype="datetime64[D]"),
                          "t": frame["tenor_days"].to_numpy(np.int64),
                          "v": frame["atm_vol"].to_numpy(float)})
    frame = frame.sort_values(["u", "d", "t"], kind="stable").reset_index(drop=True)
    dates = np.unique(frame["d"].to_numpy("datetime64[D]"))
    values = np.full((len(dates), len(cols)), np.nan)
    if len(frame):
        gid = frame.groupby(["u", "d"], sort=False).ngroup().to_numpy()
        first = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
        size = np.diff(np.r_[first, len(frame)])
        t_all = frame["t"].to_numpy()
        n0 = int(size[0])
        if (size == n0).all() and (t_all.reshape(-1, n0) == t_all[:n0]).all():
            signature = [tuple(t_all[:n0])] * len(first)  # every day quotes the same tenors
        else:
            signature = [tuple(t_all[a:a + n]) for a, n in zip(first, size, strict=True)]
        row_of = np.searchsorted(dates, frame["d"].to_numpy("datetime64[D]")[first])
        ucol = {u: i * n_b for i, u in enumerate(underlyings)}
        col_of = np.array([ucol[u] for u in frame["u"].to_numpy(object)[first]], dtype=np.int64)
        groups: dict[tuple[int, ...], list[int]] = {}
        for g, sig in enumerate(signature):
            groups.setdefault(sig, []).append(g)
        v_all = frame["v"].to_numpy(float)
        for sig, members in groups.items():
            quoted = np.asarray(sig, dtype=float) / TENOR_DAYS_PER_YEAR
            idx = (first[members][:, None] + np.arange(len(sig))[None, :])
            w = v_all[idx] ** 2 * quoted  # (groups, quotes)
            vol = np.sqrt((w @ _tenor_weights(quoted, tenors).T) / tenors)
            for b in range(n_b):
                values[row_of[members], col_of[members] + b] = vol[:, b]
    return pd.DataFrame(values, index=pd.Index(dates), columns=cols)


def _tenor_weights(quoted: FloatArray, tenors: FloatArray) -> FloatArray:
    """``W`` (B, n) with ``w(tenors) = W @ w(quoted)`` under the VolSurface rule at ``k = 0``.

    Column ``j`` is the rule applied to total variance 1 at quoted tenor ``j`` and 0 at the
    others (the rule is linear in the quoted total variances).
    """
    n = len(quoted)
    out = np.empty((len(tenors), n))
    zeros = np.zeros(len(tenors))
    for j in range(n):
        unit = np.zeros(n)
        unit[j] = 1.0
        surf = VolSurface.from_quotes(quoted, np.zeros(n), np.sqrt(unit / quoted))
        out[:, j] = surf.total_variance_at(zeros, tenors)
    return out


def parallel_shifts(rate_history: pd.DataFrame, dates: np.ndarray) -> pd.Series:
    """Daily parallel shift of the zero curve between consecutive ``dates``.

    The shift from date ``d_{i-1}`` to ``d_i`` is the mean, over the tenors quoted on both,
    of ``r(d_i, tenor) - r(d_{i-1}, tenor)`` (NaN without a common tenor). Indexed by
    ``dates[1:]``.
    """
    curves = rate_history.pivot_table(index="date", columns="tenor_years", values="zero_rate",
                                      aggfunc="last")
    curves.index = pd.Index(np.asarray(curves.index, dtype="datetime64[D]"))
    on_dates = curves.reindex(pd.Index(dates))
    return on_dates.diff().iloc[1:].mean(axis=1, skipna=True)


def _annual_cov(frame: pd.DataFrame) -> tuple[FloatArray, int]:
    cov = frame.cov(min_periods=2).to_numpy(float) * PERIODS_PER_YEAR
    n_nan = int((~np.isfinite(cov)).sum())
    return np.where(np.isfinite(cov), cov, 0.0), n_nan


def estimate_factors_from_history(
    spot: ScenarioModel,
    history: pd.DataFrame,
    history_underlyings: tuple[str, ...],
    as_of: dt.date,
    *,
    vol_history: pd.DataFrame | None,
    rate_history: pd.DataFrame | None,
    tenors_days: tuple[int, ...],
    rate_factor: bool,
    window_days: int,
    min_days: int,
) -> tuple[ScenarioModel, dict[str, str]]:
    """Extend the spot model estimated from history with vol and rate factors.

    Parameters
    ----------
    spot
        From :func:`~risk_engine.scenarios.model.estimate_from_history` (kept bit for bit).
    history, history_underlyings
        The checked closes and the underlyings passed to that estimate (they fix the date
        axis of the returns).
    as_of
        The run's date.
    vol_history, rate_history
        Checked frames (:func:`check_vol_history`, :func:`check_rate_history`); None when the
        table is absent.
    tenors_days
        The vol factor tenors in trading days (empty: vol factors off).
    rate_factor
        Whether the rate factor is on.
    window_days, min_days
        ``scenario_model.history_window_days`` and ``min_history_days``.

    Returns
    -------
    model, missing
        The model over the underlyings that have vol history (all of ``spot``'s when vol
        factors are off), and ``{underlying: reason}`` for the others: no ``vol_history``
        rows, fewer than ``min_days`` changes at a tenor, or a constant ATM vol.

    Raises
    ------
    DataError
        With the rate factor on, if ``rate_history`` is absent, has fewer than ``min_days``
        shifts in the window or a constant curve level.
    """
    if not tenors_days and not rate_factor:
        return spot, {}
    closes = history_closes(history, history_underlyings, as_of)
    dates = np.asarray(closes.index, dtype="datetime64[D]")
    rets = window_changes(np.log(closes.where(closes > 0)), window_days)
    window = pd.Index(dates[-len(rets):] if len(rets) else dates[:0])
    missing: dict[str, str] = {}
    vol_changes = pd.DataFrame(index=window)
    if tenors_days:
        frame = vol_history if vol_history is not None else pd.DataFrame(
            {"date": np.array([], dtype="datetime64[D]"), "underlying": [], "tenor_days": [],
             "atm_vol": []})
        levels = atm_vol_levels(frame, spot.underlyings, tenors_days)
        on_dates = np.log(levels.reindex(pd.Index(dates)))
        changes = window_changes(on_dates, window_days)
        changes.index = window
        has_rows = set(frame["underlying"].astype(str))
        for u in spot.underlyings:
            sub = changes[u]
            counts = sub.notna().sum()
            if u not in has_rows:
                missing[u] = "no vol_history rows (scenario_model.vol_factors is on)"
            elif int(counts.min()) < min_days:
                d = int(counts.idxmin())
                missing[u] = (f"only {int(counts.min())} daily ATM vol changes in vol_history "
                              f"at tenor {d} days (need {min_days})")
            elif not bool((sub.var() > 0).all()):
                d = int(sub.var().idxmin())
                missing[u] = (f"vol_history has a constant ATM vol at tenor {d} days "
                              "(zero vol of vol)")
        kept = tuple(u for u in spot.underlyings if u not in missing)
        vol_changes = changes[list(kept)]
        vol_changes.columns = [vol_factor_name(u, d) for u, d in vol_changes.columns]
    else:
        kept = spot.underlyings
    if kept != spot.underlyings:
        spot = spot.subset(kept)
    parts = [rets[list(kept)].set_axis(window, axis=0), vol_changes]
    if rate_factor:
        if rate_history is None:
            raise DataError("rate_history: table not found but scenario_model.rate_factor "
                            "is enabled")
        shifts = parallel_shifts(rate_history, dates).tail(window_days)
        shifts.index = window
        n = int(shifts.notna().sum())
        if n < min_days:
            raise DataError(f"rate_history: only {n} daily parallel shifts in the history "
                            f"window (need scenario_model.min_history_days = {min_days})")
        if not float(shifts.var()) > 0:
            raise DataError("rate_history: the zero curve's level is constant over the "
                            "history window (zero rate volatility)")
        parts.append(shifts.rename(RATE_FACTOR).to_frame())
    joint = pd.concat(parts, axis=1)
    n_u = len(kept)
    cov, n_nan = _annual_cov(joint)
    layout = FactorLayout(n_u, tuple(d / TENOR_DAYS_PER_YEAR for d in tenors_days), rate_factor)
    model = with_factors(spot, layout, cov[n_u:, :n_u], cov[n_u:, n_u:])
    if n_nan:
        note = (f"{n_nan // 2} factor pair(s) share fewer than 2 dates in the history "
                "window; their covariance is taken as 0")
        model = _with_repair(model, note)
    return model, missing


def _with_repair(model: ScenarioModel, note: str) -> ScenarioModel:
    repair = f"{model.repair}; {note}" if model.repair else note
    return ScenarioModel(model.underlyings, model.mu, model.cov, model.factor, model.source,
                         model.n_observations, repair, model.factor_layout)


# ----------------------------------------------------------------------------- given


def factors_from_factor_model(
    spot: ScenarioModel,
    factor_vols: pd.DataFrame | None,
    correlations: pd.DataFrame,
    *,
    tenors_days: tuple[int, ...],
    rate_factor: bool,
) -> tuple[ScenarioModel, dict[str, str]]:
    """Extend the given spot model with given vol and rate factors.

    Parameters
    ----------
    spot
        From :func:`~risk_engine.scenarios.model.from_factor_model` (kept bit for bit).
    factor_vols
        Checked ``factor_vols`` rows (``factor``, ``volatility``); None when absent.
    correlations
        Checked ``correlations`` rows; rows naming a factor (``vol:<u>:<days>``, ``rate``)
        give its correlation with an underlying or another factor; missing pairs are 0.
    tenors_days, rate_factor
        The layout (vol tenors in trading days, rate factor on).

    Returns
    -------
    model, missing
        The model over the underlyings with every vol factor given, and
        ``{underlying: reason}`` for the others.

    Raises
    ------
    DataError
        With the rate factor on and no ``rate`` row in ``factor_vols``.
    """
    if not tenors_days and not rate_factor:
        return spot, {}
    vols: dict[str, float] = {}
    if factor_vols is not None:
        vols = {str(f): float(v) for f, v in zip(factor_vols["factor"],
                                                 factor_vols["volatility"], strict=True)}
    missing: dict[str, str] = {}
    for u in spot.underlyings:
        absent = [vol_factor_name(u, d) for d in tenors_days if vol_factor_name(u, d) not in vols]
        if absent:
            missing[u] = (f"factor_vols has no row for {', '.join(absent)} "
                          "(scenario_model.vol_factors is on)")
    if rate_factor and RATE_FACTOR not in vols:
        raise DataError("factor_vols: no row for factor 'rate' but scenario_model.rate_factor "
                        "is enabled")
    kept = tuple(u for u in spot.underlyings if u not in missing)
    if kept != spot.underlyings:
        spot = spot.subset(kept)
    layout = FactorLayout(len(kept), tuple(d / TENOR_DAYS_PER_YEAR for d in tenors_days),
                          rate_factor)
    names = factor_names(kept, layout, tenors_days)
    n_u = len(kept)
    pos = {n: i for i, n in enumerate(names)}
    corr = np.eye(len(names))
    for a, b, c in correlations[["underlying_a", "underlying_b", "correlation"]].itertuples(
            index=False):
        if a in pos and b in pos and a != b and (pos[a] >= n_u or pos[b] >= n_u):
            corr[pos[a], pos[b]] = corr[pos[b], pos[a]] = float(c)
    sd = np.array([vols[n] for n in names[n_u:]])
    cross = corr[n_u:, :n_u] * np.outer(sd, spot.volatility)
    other = corr[n_u:, n_u:] * np.outer(sd, sd)
    return with_factors(spot, layout, cross, other), missing


def check_factor_vols(factor_vols: pd.DataFrame) -> TableCheck:
    """Check the given factor volatilities.

    Rejected (with the reason): a missing factor name, a volatility not finite or not in
    (0, 5], and every copy of a factor given with different volatilities (identical copies
    collapse). The underlying of a rejected ``vol:<u>:<days>`` row loses its positions when
    vol factors are on (its factor is then missing, see :func:`factors_from_factor_model`).
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    factor_vols = factor_vols.reset_index(drop=True)
    name = factor_vols["factor"].astype("string")
    vol = pd.to_numeric(factor_vols["volatility"], errors="coerce").astype(float).to_numpy()
    key = name.fillna("<missing>").astype(str)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(vol) & (vol > 0) & (vol <= MAX_VOLATILITY))
    keep = _reject_rows(factor_vols, "factor_vols", key, [
        (name.isna().to_numpy(bool), "factor", "factor is missing"),
        (bad, "volatility", f"volatility must be finite and in (0, {MAX_VOLATILITY:g}]"),
    ], rej)
    frame = factor_vols[keep].assign(volatility=vol[keep])
    fkey = key[keep]
    same, conflicts = duplicate_rows(frame, fkey, ["volatility"])
    drop = same.to_numpy(bool).copy()
    if same.any():
        warnings.append(f"factor_vols: {int(same.sum())} identical duplicate row(s) collapsed")
    for j in np.flatnonzero(fkey.isin(list(conflicts)).to_numpy(bool)):
        k = fkey.iat[j]
        rej.append(Rejection("factor_vols", k, "volatility", frame["volatility"].iat[j],
                             "factor given twice with different volatility: "
                             + " and ".join(conflicts[k][1])))
        drop[j] = True
    out = pd.DataFrame({"factor": fkey[~drop].to_numpy(object),
                        "volatility": frame["volatility"].to_numpy(float)[~drop]})
    return TableCheck(out.reset_index(drop=True), tuple(rej), {}, tuple(warnings))


def manifest_entry(model: ScenarioModel) -> dict[str, object]:
    """The scenario model's factor parameters for the run manifest (small, JSON-ready).

    Keys: ``source``, ``n_observations``, ``vol_tenors_days`` (empty: vol factors off),
    ``rate_factor``; with vol factors on ``vol_of_vol`` and ``spot_vol_correlation``
    (``{underlying: {tenor_days: value}}``, annual; the correlation of the underlying's log
    return with its own vol factor); with the rate factor on ``rate_volatility`` (annual,
    decimal). Values to 6 significant digits.
    """
    lay = model.layout
    days = [int(round(t * TENOR_DAYS_PER_YEAR)) for t in lay.vol_tenors_years]
    out: dict[str, object] = {"source": model.source, "n_observations": model.n_observations,
                              "vol_tenors_days": days, "rate_factor": lay.rate_factor}
    sd, corr = model.factor_volatility, model.correlation
    if days:
        out["vol_of_vol"] = {u: {str(d): float(f"{sd[lay.vol_column(i, b)]:.6g}")
                                 for b, d in enumerate(days)}
                             for i, u in enumerate(model.underlyings)}
        out["spot_vol_correlation"] = {
            u: {str(d): float(f"{corr[i, lay.vol_column(i, b)]:.6g}")
                for b, d in enumerate(days)}
            for i, u in enumerate(model.underlyings)}
    if lay.rate_column is not None:
        out["rate_volatility"] = float(f"{sd[lay.rate_column]:.6g}")
    return out
