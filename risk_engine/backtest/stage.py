"""The nightly run's ``backtest`` stage: tables ``backtest`` and ``backtest_series``.

For each desk and the firm, each confidence level and each P&L series (``actual`` from
``pnl_history``; ``hypothetical`` from the window's input snapshots, with the FRTB P&L
attribution test against the risk-theoretical P&L), over the window's business days: the aligned
series (:mod:`risk_engine.backtest.series`), then exceptions, Kupiec, Christoffersen, the
traffic-light zone and its multiplier add-on (:mod:`risk_engine.backtest.statistics`). A
series that is not available is one ``backtest`` row with status ``missing`` and the
reason. A yellow zone raises a ``warning`` alert, a red zone a ``critical`` one (source
``backtest``, check ``backtest_<level>``, subject the series).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.backtest.hypothetical import SPOT_ONLY, RtplFactors, hypothetical_series
from risk_engine.backtest.series import (
    FIRM,
    SERIES,
    aligned_series,
    firm_pnl,
    previous_business_day,
    published_var,
    window_dates,
)
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.statistics import (
    coverage_tests,
    pnl_attribution,
    traffic_light,
)
from risk_engine.governance.alerts import Alert

HYPOTHETICAL_MISSING = ("hypothetical P&L (yesterday's book revalued on today's market) "
                        "needs the input snapshots of the window's dates; none were given")
PLA_MISSING = "P&L attribution needs hypothetical and risk-theoretical P&L"


def _typed(frame: pd.DataFrame, table: schemas.Table) -> pd.DataFrame:
    dtypes = table.pandas_dtypes()
    out = frame.reindex(columns=list(dtypes))
    return out.astype({k: v for k, v in dtypes.items() if v != "bool"})


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
    var = published_var(published, levels)
    series = aligned_series(published, pnl, as_of, settings.window, levels, var=var)
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
    # each (desk, level, series)'s days: the rows, in order, of the series frame
    desk_key = series["desk"].to_numpy(object).copy()
    desk_key[series["desk"].isna().to_numpy(bool)] = None
    block: dict[tuple[object, float, object], list[int]] = {}
    for i, k in enumerate(zip(desk_key, series["confidence_level"].to_numpy(float).tolist(),
                              series["series"].to_numpy(object), strict=True)):
        block.setdefault(k, []).append(i)
    status_of = series["status"].to_numpy(object)
    exception_of = series["exception"].to_numpy(object)
    pnl_of = series["pnl"].to_numpy(float)
    rtpl_of = series["rtpl"].to_numpy(float)
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
                ix = np.array(block.get((desk, a, name), []), dtype=np.intp)
                status = status_of[ix]
                flag = np.array([e is True for e in exception_of[ix]], dtype=float)
                hits = np.where(status == "ok", flag, np.nan)
                t = coverage_tests(hits, a)
                zone, addon = traffic_light(t.observations, t.exceptions, a)
                na = int((status == "not_applicable").sum())
                if t.observations > 0:
                    status, message = "ok", None
                    if t.missing:
                        message = f"{t.missing} of {ix.size} day(s) missing"
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
                    hpl, rt = pnl_of[ix], rtpl_of[ix]
                    pla = pnl_attribution(hpl, rt)
                    row.update(pla_spearman=pla.spearman, pla_ks=pla.ks, pla_zone=pla.zone,
                               rtpl_factors=label)
                    no_rt = int((np.isfinite(hpl) & ~np.isfinite(rt)).sum())
                    if no_rt:
                        row["message"] = "; ".join(m for m in (
                            row["message"], f"RTPL ({label}) missing on {no_rt} of "
                            f"{ix.size} day(s) with a P&L (see the run warnings)") if m)
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
