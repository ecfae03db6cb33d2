"""The aligned backtest series: VaR published for day t-1 against the P&L of day t.

Conventions
-----------
* Dates are business days Monday to Friday. The window is the last ``window`` business days
  ending at the run's as-of date (included); day t's VaR is the one published for the
  previous business day. A holiday is a day without P&L (and without VaR): ``missing``.
* Only 1-day VaR is backtested (``horizon_days == 1`` rows of the published
  ``risk_measures``): a daily P&L is compared with the 1-day loss quantile, never with a
  scaled or overlapping figure. A day whose previous business day has VaR of another horizon
  only is ``not_applicable``.
* If one date holds rows of several runs (never the case with the date-level commit), the
  rows of the latest ``run_id`` (ids sort by start time) are used.
* P&L series: ``actual`` from the ``pnl_history`` input; ``hypothetical`` (yesterday's book
  revalued on today's market) when a frame of it is given. A day of a series without a P&L
  value (no row, or a non-finite value) is ``missing`` for that series.
* The firm's P&L of day t is the sum of the P&L of the desks that had a published desk VaR
  for day t-1; it is missing if any of them has no P&L for day t.
* Status of a day: ``ok`` (VaR and P&L present), ``missing_var``, ``missing_pnl``,
  ``missing`` (neither), ``not_applicable`` (the VaR of t-1 has another horizon). Only
  ``ok`` days are observations; the exception flag is null on every other day.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.errors import DataError

SERIES = ("actual", "hypothetical")
FIRM = ""
"""Internal desk key of the firm's rows (a desk is never empty: positions reject it)."""
SERIES_COLUMNS = ["scope", "desk", "confidence_level", "series", "date", "var_date", "var",
                  "pnl", "exception", "status"]


def window_dates(as_of: dt.date, window: int) -> list[dt.date]:
    """The last ``window`` business days (Monday to Friday) up to ``as_of``, oldest first."""
    days = pd.bdate_range(end=as_of, periods=window)
    return [d.date() for d in days]


@functools.lru_cache(maxsize=8192)
def previous_business_day(day: dt.date) -> dt.date:
    """The business day (Monday to Friday) before ``day``."""
    return (pd.Timestamp(day) - pd.offsets.BDay(1)).date()


def published_var(published: pd.DataFrame | None, levels: Sequence[float]) -> pd.DataFrame:
    """The published VaR rows of the given levels, one run per date.

    Parameters
    ----------
    published
        Rows of earlier ``risk_measures`` partitions (columns ``run_id``, ``as_of_date``,
        ``scope``, ``desk``, ``measure``, ``confidence_level``, ``horizon_days``,
        ``value``), or None.
    levels
        Confidence levels to keep.

    Returns
    -------
    Frame with columns ``var_date``, ``scope``, ``desk`` (``"firm"`` for the firm),
    ``confidence_level``, ``horizon_days``, ``var``.
    """
    cols = ["var_date", "scope", "desk", "confidence_level", "horizon_days", "var"]
    if published is None or len(published) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    rm = published[published["measure"] == "VaR"].copy()
    rm["confidence_level"] = rm["confidence_level"].astype(float)
    rm = rm[rm["confidence_level"].isin([float(a) for a in levels])]
    rm["var_date"] = pd.to_datetime(rm["as_of_date"]).dt.date
    latest = rm.groupby("var_date")["run_id"].transform("max")
    rm = rm[rm["run_id"] == latest]
    rm["desk"] = np.where(rm["scope"] == "firm", FIRM, rm["desk"].astype(object))
    rm = rm.rename(columns={"value": "var"})[cols]
    return rm.reset_index(drop=True)


def daily_pnl(pnl_history: pd.DataFrame | None, table: str = "pnl_history") -> pd.DataFrame:
    """Desk P&L per date (columns ``date``, ``desk``, ``pnl``), non-finite values dropped.

    Raises
    ------
    DataError
        If a (date, desk) key appears twice, naming the table, the key and the values.
    """
    if pnl_history is None or len(pnl_history) == 0:
        return pd.DataFrame({"date": pd.Series(dtype=object), "desk": pd.Series(dtype=object),
                             "pnl": pd.Series(dtype=float)})
    f = pd.DataFrame({"date": pd.to_datetime(pnl_history["date"]).dt.date,
                      "desk": pnl_history["desk"].astype(object),
                      "pnl": pd.to_numeric(pnl_history["pnl"], errors="coerce").astype(float)})
    dup = f.duplicated(["date", "desk"], keep=False)
    if dup.any():
        row = f[dup].sort_values(["date", "desk"]).iloc[0]
        values = f.loc[dup & (f["date"] == row["date"]) & (f["desk"] == row["desk"]), "pnl"]
        raise DataError(f"{table}: column pnl, key date={row['date']}, desk={row['desk']}: "
                        f"{len(values)} rows ({', '.join(map(str, values))}); one per key")
    return f[np.isfinite(f["pnl"])].reset_index(drop=True)


def firm_pnl(desk_pnl: pd.DataFrame, var: pd.DataFrame, dates: Sequence[dt.date]
             ) -> pd.DataFrame:
    """The firm's P&L per day: the sum over the desks with a desk VaR for the day before.

    Missing (no row) when any of those desks has no P&L, or when no desk had a VaR.
    """
    desks_var = var[var["scope"] == "desk"][["var_date", "desk"]].drop_duplicates()
    rows = []
    by_date = desk_pnl.groupby("date").indices if len(desk_pnl) else {}
    by_var_date: dict[object, set[object]] = {}
    for d, k in zip(desks_var["var_date"], desks_var["desk"], strict=True):
        if not pd.isna(d):  # as a groupby by var_date: no group of a missing date
            by_var_date.setdefault(d, set()).add(k)
    desk_of = desk_pnl["desk"].to_numpy(object)
    pnl = desk_pnl["pnl"].to_numpy()
    for t in dates:
        desks = by_var_date.get(previous_business_day(t))
        day = by_date.get(t)
        if not desks or day is None:
            continue
        # the day's rows of those desks, in their order, summed as a pandas column sums
        got = day[[d in desks for d in desk_of[day]]]
        if len(got) == len(desks):
            rows.append({"date": t, "desk": FIRM, "pnl": float(pd.Series(pnl[got]).sum())})
    return pd.DataFrame(rows, columns=["date", "desk", "pnl"])


def aligned_series(published: pd.DataFrame | None, pnl: dict[str, pd.DataFrame | None],
                   as_of: dt.date, window: int, levels: Sequence[float], *,
                   var: pd.DataFrame | None = None) -> pd.DataFrame:
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
    var
        ``published_var(published, levels)`` if the caller has it (computed here if None).

    Returns
    -------
    Frame with :data:`SERIES_COLUMNS` (``exception`` is True/False on ``ok`` days, None
    otherwise; ``var``/``pnl`` NaN where absent). Desks are those with a published VaR in
    the window or a P&L of an available series in it; the firm always.
    """
    dates = window_dates(as_of, window)
    var_dates = [previous_business_day(t) for t in dates]
    if var is None:
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
    pnl_of = {name: {(r.desk, r.date): float(r.pnl) for r in sp.itertuples()}
              for name, sp in series_pnl.items()}
    blocks = [(name, scope, desk, float(alpha)) for name in series_pnl
              for scope, desk in keys for alpha in levels]
    if not blocks or not dates:
        return pd.DataFrame([], columns=SERIES_COLUMNS)
    n = len(dates)
    var_all, pnl_all, other = [], [], []
    for name, _, desk, a in blocks:  # one block of the window's days per key
        p = pnl_of[name]
        var_all.append([v1.get((desk, a, tv), np.nan) for tv in var_dates])
        pnl_all.append([p.get((desk, t), np.nan) for t in dates])
        other.append([vh.get((desk, a, tv), 1) != 1 for tv in var_dates])
    v, x = np.array(var_all, dtype=float).ravel(), np.array(pnl_all, dtype=float).ravel()
    # a 1-day VaR wins over another horizon of the same day
    na = np.array(other, dtype=bool).ravel() & np.isnan(v)
    status = np.where(na, "not_applicable", np.where(
        np.isnan(v), np.where(np.isnan(x), "missing", "missing_var"),
        np.where(np.isnan(x), "missing_pnl", "ok"))).astype(object)
    ok = status == "ok"
    exception = np.full(v.size, None, dtype=object)
    exception[ok] = (x[ok] < -v[ok]).tolist()
    if ok.all():  # as a frame of rows infers a column of booleans only
        exception = exception.astype(bool)
    return pd.DataFrame({
        "scope": np.repeat(_objects([b[1] for b in blocks]), n),
        "desk": np.repeat(_objects([None if b[1] == "firm" else b[2] for b in blocks]), n),
        "confidence_level": np.repeat(np.array([b[3] for b in blocks], dtype=float), n),
        "series": np.repeat(_objects([b[0] for b in blocks]), n),
        "date": np.tile(_objects(dates), len(blocks)),
        "var_date": np.tile(_objects(var_dates), len(blocks)),
        "var": v, "pnl": x, "exception": exception, "status": status,
    }, columns=SERIES_COLUMNS)


def _objects(values: Sequence[object]) -> NDArray[np.object_]:
    """``values`` as a 1-D object array (dates and tuples stay whole)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out
