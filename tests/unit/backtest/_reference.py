"""The backtest stage as it was before its speed-ups (commit 9bffe96), the tests' reference.

Verbatim copies of ``hypothetical_series`` (and ``_by_date``), ``firm_pnl``,
``aligned_series``, ``_with_rtpl`` and ``backtest_tables``; the helpers they call that did
not change are imported from the package. Tests compare the package's tables with these,
bit for bit.
"""
# ruff: noqa

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.backtest.hypothetical import (
    SPOT_ONLY,
    DayMoves,
    RtplFactors,
    day_moves,
    day_pnl,
)
from risk_engine.backtest.series import (
    FIRM,
    SERIES,
    SERIES_COLUMNS,
    daily_pnl,
    previous_business_day,
    published_var,
    window_dates,
)
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.stage import HYPOTHETICAL_MISSING, PLA_MISSING, _typed
from risk_engine.backtest.statistics import coverage_tests, pnl_attribution, traffic_light
from risk_engine.governance.alerts import Alert


def _by_date(frame: pd.DataFrame | None) -> dict[dt.date, pd.DataFrame]:
    if frame is None or len(frame) == 0:
        return {}
    days = pd.to_datetime(frame["as_of_date"]).dt.date
    return {d: g.assign(as_of_date=d) for d, g in frame.groupby(days.to_numpy(object))}


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
    pos, mkt, rts = _by_date(positions), _by_date(market), _by_date(rates)
    hpl, rtpl, messages, absent = [], [], [], []
    known = _by_date(None if cached is None else cached.rename(columns={"date": "as_of_date"}))
    if known:
        known = {d: g for d, g in known.items()
                 if set(g.get("rtpl_factors", pd.Series([SPOT_ONLY])).fillna(SPOT_ONLY))
                 == {label}}
    todo = [(prev, day) for prev, day in days if day not in known]
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
                              day_count, moves.get(day))
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


def firm_pnl(desk_pnl: pd.DataFrame, var: pd.DataFrame, dates: Sequence[dt.date]
             ) -> pd.DataFrame:
    """The firm's P&L per day: the sum over the desks with a desk VaR for the day before.

    Missing (no row) when any of those desks has no P&L, or when no desk had a VaR.
    """
    desks_var = var[var["scope"] == "desk"][["var_date", "desk"]].drop_duplicates()
    rows = []
    by_date = {d: g for d, g in desk_pnl.groupby("date")} if len(desk_pnl) else {}
    by_var_date = {d: set(g["desk"]) for d, g in desks_var.groupby("var_date")}
    for t in dates:
        desks = by_var_date.get(previous_business_day(t))
        day = by_date.get(t)
        if not desks or day is None:
            continue
        got = day[day["desk"].isin(desks)]
        if len(got) == len(desks):
            rows.append({"date": t, "desk": FIRM, "pnl": float(got["pnl"].sum())})
    return pd.DataFrame(rows, columns=["date", "desk", "pnl"])


def aligned_series(published: pd.DataFrame | None, pnl: dict[str, pd.DataFrame | None],
                   as_of: dt.date, window: int, levels: Sequence[float]) -> pd.DataFrame:
    """The backtest series, one row per (scope, desk, level, P&L series, day of the window).

    Parameters
    ----------
    published
        Earlier published ``risk_measures`` rows (see :func:`published_var`); rows dated on
        or after ``as_of`` are ignored.
    pnl
        P&L per series name (``actual``, ``hypothetical``): a frame with columns ``date``,
        ``desk``, ``pnl`` (desk P&L), or None when the series is not available. Series that
        are None get no rows.
    as_of
        The run's as-of date, the last day of the window.
    window
        Business days in the window.
    levels
        Confidence levels backtested.

    Returns
    -------
    Frame with :data:`SERIES_COLUMNS` (``exception`` is True/False on ``ok`` days, None
    otherwise; ``var``/``pnl`` NaN where absent). Desks are those with a published VaR in
    the window or a P&L of an available series in it; the firm always.
    """
    dates = window_dates(as_of, window)
    var_dates = [previous_business_day(t) for t in dates]
    var = published_var(published, levels)
    var = var[var["var_date"].isin(set(var_dates)) & (var["var_date"] < as_of)]
    series_pnl: dict[str, pd.DataFrame] = {}
    for name in SERIES:
        frame = pnl.get(name)
        if frame is None:
            continue
        d = daily_pnl(frame, "pnl_history" if name == "actual" else f"{name}_pnl")
        d = d[d["date"].isin(set(dates)) & (d["desk"] != FIRM)]
        firm = firm_pnl(d, var, dates)
        series_pnl[name] = pd.concat([d, firm], ignore_index=True) if len(firm) else d
    desks = set(var.loc[var["scope"] == "desk", "desk"])
    for d in series_pnl.values():
        desks |= set(d["desk"]) - {FIRM}
    keys = [("desk", k) for k in sorted(desks)] + [("firm", FIRM)]
    one_day = var[var["horizon_days"].astype(int) == 1]
    other = var[var["horizon_days"].astype(int) != 1]
    v1 = {(r.desk, float(r.confidence_level), r.var_date): float(r.var)
          for r in one_day.itertuples()}
    vh = {(r.desk, float(r.confidence_level), r.var_date): int(r.horizon_days)
          for r in other.itertuples()}
    out = []
    for name, sp in series_pnl.items():
        p = {(r.desk, r.date): float(r.pnl) for r in sp.itertuples()}
        for scope, desk in keys:
            for alpha in levels:
                a = float(alpha)
                for t, tv in zip(dates, var_dates, strict=True):
                    v = v1.get((desk, a, tv), np.nan)
                    h = 1 if not np.isnan(v) else vh.get((desk, a, tv))
                    x = p.get((desk, t), np.nan)
                    if h is not None and h != 1:
                        status = "not_applicable"
                    elif np.isnan(v):
                        status = "missing" if np.isnan(x) else "missing_var"
                    else:
                        status = "missing_pnl" if np.isnan(x) else "ok"
                    out.append((scope, None if scope == "firm" else desk, a, name, t, tv,
                                v, x, bool(x < -v) if status == "ok" else None, status))
    return pd.DataFrame(out, columns=SERIES_COLUMNS)


def _with_rtpl(series: pd.DataFrame, rtpl: pd.DataFrame | None, var: pd.DataFrame,
               dates: list[dt.date], label: str = SPOT_ONLY) -> pd.DataFrame:
    """``series`` with columns ``rtpl`` and ``rtpl_factors`` set on the hypothetical rows.

    The firm's RTPL follows the rule of its P&L: the sum over the desks with a VaR the day
    before. ``rtpl_factors`` is ``label`` on every hypothetical row (the factors the RTPL
    moves, even on a day it is missing), None on the others.
    """
    out = series.assign(rtpl=np.nan, rtpl_factors=None)
    if rtpl is None or len(out) == 0:
        return out
    out["rtpl_factors"] = out["series"].map({"hypothetical": label})
    rt = rtpl[rtpl["desk"] != FIRM]
    firm = firm_pnl(rt, var, dates)
    rt = pd.concat([rt, firm], ignore_index=True) if len(firm) else rt
    value = {(r.desk, r.date): float(r.pnl) for r in rt.itertuples()}
    hyp = out["series"] == "hypothetical"
    keys = zip(out["desk"].where(out["desk"].notna(), FIRM), out["date"], strict=True)
    out["rtpl"] = [value.get(k, np.nan) if h else np.nan for k, h in zip(keys, hyp, strict=True)]
    return out


def backtest_tables(
    published: pd.DataFrame | None, pnl_history: pd.DataFrame | None,
    settings: BacktestSettings, as_of: dt.date,
    snapshots: Mapping[str, pd.DataFrame | None] | None = None,
    day_count: str = "trading_252",
    factors: RtplFactors | None = None,
) -> tuple[dict[str, pd.DataFrame], list[Alert], list[str]]:
    """Backtest the VaR published on earlier dates against the P&L that followed.

    Parameters
    ----------
    published
        Rows of the ``risk_measures`` published for earlier dates (completed runs only),
        with ``run_id`` and ``as_of_date``; None if there are none.
    pnl_history
        Actual daily P&L per desk (``date``, ``desk``, ``pnl``), or None.
    settings
        The ``backtest`` config section.
    as_of
        The run's as-of date (the last P&L day of the window).
    snapshots
        Input snapshots of the window's dates (``positions``, ``market``, ``rates`` with
        their ``as_of_date``) for the hypothetical P&L
        (:func:`risk_engine.backtest.hypothetical.hypothetical_series`), and optionally
        ``hypothetical``: the desk rows earlier runs published (``date``, ``desk``,
        ``pnl``, ``rtpl``), reused instead of revalued; None: that series is missing.
    day_count
        ``time.day_count``, for the revaluation.
    factors
        The scenario model's vol and rate factors, moved by their realized moves in the
        risk-theoretical P&L (:class:`~risk_engine.backtest.hypothetical.RtplFactors`);
        None: spots only. Column ``rtpl_factors`` says which.

    Returns
    -------
    tables, alerts, warnings
        ``backtest`` and ``backtest_series`` (without ``run_id`` and ``as_of_date``), the
        alerts of yellow and red zones, and run warnings.
    """
    levels = settings.confidence_levels
    dates = window_dates(as_of, settings.window)
    warnings: list[str] = []
    hypothetical = rtpl = None
    if snapshots is not None:
        hypothetical, rtpl, messages = hypothetical_series(
            snapshots.get("positions"), snapshots.get("market"), snapshots.get("rates"),
            [(previous_business_day(t), t) for t in dates], day_count,
            cached=snapshots.get("hypothetical"), factors=factors)
        warnings.extend(f"backtest: {m}" for m in messages[:5])
        if len(messages) > 5:
            warnings.append(f"backtest: {len(messages) - 5} more hypothetical P&L message(s)")
    pnl = {"actual": pnl_history, "hypothetical": hypothetical}
    series = aligned_series(published, pnl, as_of, settings.window, levels)
    var = published_var(published, levels)
    label = SPOT_ONLY if factors is None else factors.label
    series = _with_rtpl(series, rtpl, var, dates, label)
    horizons = sorted({int(h) for h in var["horizon_days"]} - {1}) if len(var) else []
    if len(var) == 0:
        warnings.append(f"backtest: no VaR published for the {settings.window} business days "
                        f"before {as_of}; every day is missing")
    if pnl_history is None:
        warnings.append("backtest: no pnl_history input; the actual P&L series is missing")
    keys = [("desk", d) for d in sorted(set(series.loc[series["scope"] == "desk", "desk"]))]
    keys.append(("firm", None))
    rows, alerts = [], []
    for scope, desk in keys:
        for alpha in levels:
            a = float(alpha)
            for name in SERIES:
                base = {"scope": scope, "desk": desk, "confidence_level": a, "series": name,
                        "window_days": settings.window, "start_date": dates[0],
                        "end_date": dates[-1],
                        "expected_exceptions": np.nan, "pla_spearman": np.nan,
                        "pla_ks": np.nan, "pla_zone": None}
                if pnl[name] is None:
                    reason = (HYPOTHETICAL_MISSING if name == "hypothetical"
                              else "no pnl_history input")
                    rows.append({**base, "observations": 0, "missing": settings.window,
                                 "exceptions": 0, "status": "missing", "message": reason})
                    continue
                key = series["desk"].isna() if desk is None else series["desk"] == desk
                s = series[key & (series["confidence_level"] == a) & (series["series"] == name)]
                flag = np.array([e is True for e in s["exception"]], dtype=float)
                hits = np.where(s["status"] == "ok", flag, np.nan)
                t = coverage_tests(hits, a)
                zone, addon = traffic_light(t.observations, t.exceptions, a)
                na = int((s["status"] == "not_applicable").sum())
                if t.observations > 0:
                    status, message = "ok", None
                    if t.missing:
                        message = f"{t.missing} of {len(s)} day(s) missing"
                elif na:
                    status = "not_applicable"
                    message = (f"published VaR has horizon_days {horizons}; only 1-day VaR "
                               "is backtested against daily P&L")
                else:
                    status, message = "missing", "no day with both a published VaR and a P&L"
                row = {**base, "observations": t.observations, "missing": t.missing,
                       "exceptions": t.exceptions,
                       "expected_exceptions": t.observations * (1.0 - a),
                       "exception_rate": t.exception_rate, "kupiec_lr": t.kupiec_lr,
                       "kupiec_p": t.kupiec_p, "independence_lr": t.independence_lr,
                       "independence_p": t.independence_p, "cc_lr": t.cc_lr, "cc_p": t.cc_p,
                       "zone": zone[()], "multiplier_addon": float(addon),
                       "status": status, "message": message}
                if name == "hypothetical":
                    pla = pnl_attribution(s["pnl"].to_numpy(float), s["rtpl"].to_numpy(float))
                    row.update(pla_spearman=pla.spearman, pla_ks=pla.ks, pla_zone=pla.zone,
                               rtpl_factors=label)
                    no_rt = int((np.isfinite(s["pnl"].to_numpy(float))
                                 & ~np.isfinite(s["rtpl"].to_numpy(float))).sum())
                    if no_rt:
                        row["message"] = "; ".join(m for m in (
                            row["message"], f"RTPL ({label}) missing on {no_rt} of "
                            f"{len(s)} day(s) with a P&L (see the run warnings)") if m)
                    if pla.zone is None:
                        row["message"] = "; ".join(m for m in (row["message"], PLA_MISSING)
                                                   if m)
                rows.append(row)
                if settings.alerts and zone[()] in ("yellow", "red"):
                    who = f"desk {desk}" if desk is not None else "firm"
                    alerts.append(Alert(
                        "critical" if zone[()] == "red" else "warning", "backtest", desk,
                        f"backtest_{a:g}",
                        f"{who}: {t.exceptions} VaR {a:g} exception(s) in {t.observations} "
                        f"day(s) of {name} P&L (expected {t.observations * (1 - a):.1f}): "
                        f"{zone[()]} zone, multiplier add-on {float(addon):.2f}",
                        as_of, subject=name))
    backtest = _typed(pd.DataFrame(rows), schemas.BACKTEST)
    return ({"backtest": backtest,
             "backtest_series": _typed(series, schemas.BACKTEST_SERIES)}, alerts, warnings)
