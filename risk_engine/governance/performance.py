"""Performance metrics of a desk from a daily P&L or value series.

Conventions:

* Input is a pandas Series indexed by date (one row per trading day, sorted or not, no
  duplicates, no NaN): either daily **P&L** in currency (``kind="pnl"``) or the **value** of
  the book / equity in currency (``kind="value"``).
* Equity: for ``kind="value"`` the series itself; for ``kind="pnl"``
  ``equity_t = capital + cumulative P&L up to t``, starting from ``capital`` (> 0, currency)
  on the trading day (Mon-Fri) before the first P&L date.
* Daily return ``r_t = equity_t / equity_{t-1} - 1`` (for P&L: ``pnl_t / equity_{t-1}``).
* Annualized volatility ``std(r, ddof=1) * sqrt(252)``; annualized return ``mean(r) * 252``;
  Sharpe ``(mean(r) - rf / 252) / std(r, ddof=1) * sqrt(252)`` with ``rf`` the annual
  risk-free rate (a simple fraction). 252 is ``periods_per_year`` (configurable).
* Drawdown ``(peak equity - equity) / peak equity`` with the running peak including the
  starting equity; maximum drawdown with the dates of its peak (last date the peak level was
  reached before the trough), its trough (first date of the maximum) and its recovery (first
  date after the trough with equity back at or above the peak; None if not yet recovered);
  current drawdown is the drawdown on the last date.
* Hit ratio: share of days with strictly positive P&L (a flat day is not a hit).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.errors import DataError
from risk_engine.settings import require

logger = logging.getLogger(__name__)

SeriesKind = Literal["pnl", "value"]
TRADING_DAYS_PER_YEAR = 252
MAX_LOOKBACK_DAYS = 10_000
"""Longest performance lookback in trading days (about 40 years of history is read)."""

#: performance table: one row per desk (``source`` is added by the governance stage).
PERFORMANCE_COLUMNS: dict[str, str] = schemas.PERFORMANCE.pandas_dtypes(
    drop=("run_id", "as_of_date", "source"))


@dataclass(frozen=True)
class PerformanceSettings:
    """Performance settings.

    Attributes
    ----------
    risk_free_rate : float
        Annual risk-free rate for the Sharpe ratio (simple fraction, 0.02 for 2%).
    periods_per_year : int
        Trading days per year for annualization; default 252.
    lookback_days : int or None
        Use only the last ``lookback_days`` observations (None: the whole series).
    """

    risk_free_rate: float = 0.0
    periods_per_year: int = TRADING_DAYS_PER_YEAR
    lookback_days: int | None = None

    def __post_init__(self) -> None:
        require(math.isfinite(self.risk_free_rate) and abs(self.risk_free_rate) < 1,
                "risk_free_rate", self.risk_free_rate, "a fraction (0.02 for 2%)")
        require(not isinstance(self.periods_per_year, bool)
                and isinstance(self.periods_per_year, int) and self.periods_per_year >= 1,
                "periods_per_year", self.periods_per_year, "a positive integer")
        require(self.lookback_days is None or (
            not isinstance(self.lookback_days, bool) and isinstance(self.lookback_days, int)
            and 2 <= self.lookback_days <= MAX_LOOKBACK_DAYS), "lookback_days",
            self.lookback_days, f"an integer >= 2 and <= {MAX_LOOKBACK_DAYS:_}, or null")


@dataclass(frozen=True)
class DrawdownResult:
    """Drawdown statistics of an equity curve.

    Attributes
    ----------
    max_drawdown : float
        Largest ``(peak - equity) / peak``, fraction (0 if equity never fell).
    peak_date, trough_date : datetime.date or None
        Dates of the maximum drawdown's peak and trough (None when ``max_drawdown == 0``).
    recovery_date : datetime.date or None
        First date after the trough with equity >= the peak (None: not recovered).
    current_drawdown : float
        Drawdown on the last date, fraction.
    drawdown : Series
        Drawdown per date (fraction), same index as the equity curve.
    """

    max_drawdown: float
    peak_date: dt.date | None
    trough_date: dt.date | None
    recovery_date: dt.date | None
    current_drawdown: float
    drawdown: pd.Series


@dataclass(frozen=True)
class PerformanceSummary:
    """All metrics of one series; fields as in :data:`PERFORMANCE_COLUMNS` (except desk)."""

    kind: SeriesKind
    start_date: dt.date
    end_date: dt.date
    n_days: int
    capital: float
    total_pnl: float
    total_return: float
    annualized_return: float
    annualized_volatility: float
    pnl_volatility: float
    sharpe: float
    max_drawdown: float
    peak_date: dt.date | None
    trough_date: dt.date | None
    recovery_date: dt.date | None
    current_drawdown: float
    hit_ratio: float
    status: str
    message: str


# --------------------------------------------------------------------------- helpers
def _clean(series: pd.Series, what: str) -> pd.Series:
    if not isinstance(series, pd.Series):
        raise DataError(f"{what} must be a pandas Series indexed by date, got {type(series)}")
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(series.index)).normalize()
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} index must be dates: {exc}") from exc
    s = pd.Series(pd.to_numeric(series.to_numpy(), errors="coerce"), index=idx,
                  dtype="float64").sort_index()
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()].date.tolist()[:5]
        raise DataError(f"{what} has duplicate dates {dup}")
    bad = s.index[~np.isfinite(s.to_numpy())]
    if len(bad):
        raise DataError(f"{what} has missing or non-finite values on {bad.date.tolist()[:5]}")
    return s


def _date(ts: Any) -> dt.date:
    return pd.Timestamp(ts).date()


def previous_trading_day(date: Any) -> pd.Timestamp:
    """Return the weekday (Mon-Fri, no holidays) before ``date``."""
    return pd.Timestamp(date) - pd.offsets.BDay(1)


def equity_from_pnl(pnl: pd.Series, capital: float) -> pd.Series:
    """Equity curve ``capital + cumulative P&L``, starting with ``capital``.

    Parameters
    ----------
    pnl : Series
        Daily P&L in currency, indexed by date.
    capital : float
        Capital base in currency, > 0.

    Returns
    -------
    Series
        ``len(pnl) + 1`` values: ``capital`` on the trading day before the first date, then
        ``capital + cumsum(pnl)``.

    Raises
    ------
    DataError
        Bad series or capital.
    """
    if not (math.isfinite(capital) and capital > 0):
        raise DataError(f"capital={capital!r} must be a positive amount in currency")
    s = _clean(pnl, "P&L series")
    if s.empty:
        raise DataError("P&L series is empty")
    start = pd.Series([float(capital)], index=pd.DatetimeIndex([previous_trading_day(s.index[0])]))
    return pd.concat([start, float(capital) + s.cumsum()])


def returns_from_values(values: pd.Series) -> pd.Series:
    """Daily simple returns ``v_t / v_{t-1} - 1`` of a positive value series (first dropped)."""
    v = _clean(values, "value series")
    if np.any(v.to_numpy() <= 0):
        raise DataError("value series must be positive to define returns")
    return (v / v.shift(1) - 1.0).iloc[1:]


def returns_from_pnl(pnl: pd.Series, capital: float) -> pd.Series:
    """Daily returns ``pnl_t / equity_{t-1}`` on the equity ``capital + cumulative P&L``."""
    eq = equity_from_pnl(pnl, capital)
    prev = eq.shift(1).iloc[1:]
    if np.any(prev.to_numpy() <= 0):
        raise DataError("equity fell to zero or below: returns are undefined afterwards")
    return eq.diff().iloc[1:] / prev


def annualized_volatility(returns: pd.Series, periods_per_year: int = TRADING_DAYS_PER_YEAR
                          ) -> float:
    """``std(returns, ddof=1) * sqrt(periods_per_year)``; NaN with fewer than 2 returns."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return float("nan")
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def sharpe_ratio(returns: pd.Series, risk_free_rate: float = 0.0,
                 periods_per_year: int = TRADING_DAYS_PER_YEAR) -> float:
    """Annualized Sharpe ratio ``(mean(r) - rf/P) / std(r, ddof=1) * sqrt(P)``.

    Parameters
    ----------
    returns : Series or array_like, shape (T,)
        Daily simple returns.
    risk_free_rate : float
        Annual risk-free rate (simple fraction), spread evenly over ``P`` periods.
    periods_per_year : int
        ``P``, 252 by default.

    Returns
    -------
    float
        NaN with fewer than 2 returns or zero volatility.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return float("nan")
    sd = float(np.std(r, ddof=1))
    if not sd > 0:
        return float("nan")
    return float((np.mean(r) - risk_free_rate / periods_per_year) / sd
                 * math.sqrt(periods_per_year))


def hit_ratio(pnl: pd.Series) -> float:
    """Share of days with strictly positive P&L; NaN for an empty series."""
    p = np.asarray(pnl, dtype=np.float64)
    return float(np.mean(p > 0)) if p.size else float("nan")


def drawdowns(equity: pd.Series) -> DrawdownResult:
    """Maximum and current drawdown of an equity curve with the dates.

    Parameters
    ----------
    equity : Series
        Equity in currency indexed by date (positive first value).

    Returns
    -------
    DrawdownResult

    Raises
    ------
    DataError
        Bad series, or a non-positive running peak (drawdown undefined).
    """
    e = _clean(equity, "equity series")
    if e.empty:
        raise DataError("equity series is empty")
    x = e.to_numpy()
    peak = np.maximum.accumulate(x)
    if peak[0] <= 0:
        raise DataError(f"starting equity {x[0]!r} must be positive to define drawdowns")
    dd = (peak - x) / peak
    series = pd.Series(dd, index=e.index)
    k = int(np.argmax(dd))
    mdd = float(dd[k])
    dates = e.index
    if mdd <= 0:
        return DrawdownResult(0.0, None, None, None, float(dd[-1]), series)
    peak_level = peak[k]
    p = int(np.flatnonzero(x[: k + 1] >= peak_level)[-1])
    after = np.flatnonzero(x[k + 1:] >= peak_level)
    rec = None if after.size == 0 else _date(dates[k + 1 + int(after[0])])
    return DrawdownResult(mdd, _date(dates[p]), _date(dates[k]), rec, float(dd[-1]), series)


# --------------------------------------------------------------------------- summary
def performance_summary(
    series: pd.Series,
    *,
    kind: SeriesKind = "pnl",
    capital: float | None = None,
    settings: PerformanceSettings = PerformanceSettings(),
) -> PerformanceSummary:
    """Compute every metric of one P&L or value series.

    Parameters
    ----------
    series : Series
        Daily P&L (``kind="pnl"``) or value (``kind="value"``) in currency, by date.
    kind : {"pnl", "value"}
        What the series holds.
    capital : float, optional
        Capital base in currency (required and > 0 for ``kind="pnl"``; ignored for
        ``"value"``, whose first value is the base).
    settings : PerformanceSettings
        Risk-free rate, annualization, lookback.

    Returns
    -------
    PerformanceSummary
        ``status="ok"``; ``"not_applicable"`` with fewer than 2 daily returns (volatility
        and Sharpe NaN, the rest filled).

    Raises
    ------
    DataError
        Bad series, missing capital or a non-positive equity.
    """
    if kind not in ("pnl", "value"):
        raise DataError(f"kind={kind!r} must be 'pnl' or 'value'")
    what = "P&L series" if kind == "pnl" else "value series"
    s = _clean(series, what)
    if settings.lookback_days is not None:
        s = s.iloc[-settings.lookback_days:]
    if kind == "pnl":
        if capital is None:
            raise DataError("a P&L series needs the capital base (capital > 0, currency)")
        if s.empty:
            raise DataError("P&L series is empty")
        equity = equity_from_pnl(s, float(capital))
        pnl = s
        rets = returns_from_pnl(s, float(capital))
    else:
        if len(s) < 1:
            raise DataError("value series is empty")
        equity = s
        pnl = s.diff().iloc[1:]
        rets = returns_from_values(s)
    base = float(equity.iloc[0])
    dd = drawdowns(equity)
    n = int(len(rets))
    periods = settings.periods_per_year
    status, message = "ok", ""
    if n < 2:
        status, message = "not_applicable", f"{n} daily return(s): volatility and Sharpe need 2"
    pnl_vol = float(np.std(pnl.to_numpy(), ddof=1) * math.sqrt(periods)) if len(pnl) >= 2 \
        else float("nan")
    return PerformanceSummary(
        kind=kind,
        start_date=_date(rets.index[0]) if n else _date(equity.index[0]),
        end_date=_date(equity.index[-1]),
        n_days=n,
        capital=base,
        total_pnl=float(pnl.sum()),
        total_return=float(equity.iloc[-1] / base - 1.0),
        annualized_return=float(rets.mean() * periods) if n else float("nan"),
        annualized_volatility=annualized_volatility(rets, periods),
        pnl_volatility=pnl_vol,
        sharpe=sharpe_ratio(rets, settings.risk_free_rate, periods),
        max_drawdown=dd.max_drawdown,
        peak_date=dd.peak_date,
        trough_date=dd.trough_date,
        recovery_date=dd.recovery_date,
        current_drawdown=dd.current_drawdown,
        hit_ratio=hit_ratio(pnl),
        status=status,
        message=message,
    )


def performance_table(
    desk: str,
    series: pd.Series,
    *,
    kind: SeriesKind = "pnl",
    capital: float | None = None,
    settings: PerformanceSettings = PerformanceSettings(),
) -> pd.DataFrame:
    """One desk's performance row (columns :data:`PERFORMANCE_COLUMNS`); never raises.

    Parameters
    ----------
    desk : str
        Desk name.
    series, kind, capital, settings
        As in :func:`performance_summary`.

    Returns
    -------
    DataFrame
        One row; on bad input ``status="error"``, NaN metrics and the reason in ``message``.
    """
    try:
        s = performance_summary(series, kind=kind, capital=capital, settings=settings)
        row: dict[str, Any] = {"desk": desk, **{k: getattr(s, k) for k in PERFORMANCE_COLUMNS
                                                if k != "desk"}}
    except Exception as exc:  # noqa: BLE001 - a failed desk is a row
        logger.warning("desk %s: performance failed: %s: %s", desk, type(exc).__name__, exc)
        row = {k: float("nan") for k in PERFORMANCE_COLUMNS}
        row.update({"desk": desk, "kind": kind, "start_date": None, "end_date": None,
                    "n_days": 0, "peak_date": None, "trough_date": None,
                    "recovery_date": None, "status": "error",
                    "message": f"{type(exc).__name__}: {exc}"})
        if capital is not None:
            row["capital"] = float(capital)
    return pd.DataFrame([row], columns=list(PERFORMANCE_COLUMNS)).astype(PERFORMANCE_COLUMNS)


# --------------------------------------------------------------------------- hypothetical P&L
def hypothetical_pnl(position_values: pd.DataFrame) -> pd.Series:
    """Daily P&L of today's book revalued over history.

    Parameters
    ----------
    position_values : DataFrame, shape (D, J)
        Value in currency of each current position (columns) on each historical date (index),
        e.g. equities as ``close * quantity * multiplier`` (see
        :func:`position_values_from_prices`) and options revalued by the pricer. No NaN.

    Returns
    -------
    Series, shape (D-1,)
        ``P&L_t = sum_j (V_{t,j} - V_{t-1,j})`` on each date after the first, named ``pnl``.

    Raises
    ------
    DataError
        Fewer than 2 dates, duplicate dates, or missing values (naming position and date).
    """
    if not isinstance(position_values, pd.DataFrame):
        raise DataError("position_values must be a DataFrame (dates x positions)")
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(position_values.index)).normalize()
    except (TypeError, ValueError) as exc:
        raise DataError(f"position_values index must be dates: {exc}") from exc
    v = pd.DataFrame(position_values.to_numpy(dtype=np.float64), index=idx,
                     columns=position_values.columns).sort_index()
    if v.index.has_duplicates:
        raise DataError(f"position_values has duplicate dates "
                        f"{v.index[v.index.duplicated()].date.tolist()[:5]}")
    if len(v) < 2:
        raise DataError("position_values needs at least 2 dates to form a P&L")
    bad = ~np.isfinite(v.to_numpy())
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"position {v.columns[j]!r} has no finite value on "
                        f"{v.index[i].date()} ({int(bad.sum())} missing values in total)")
    total = v.sum(axis=1)
    return total.diff().iloc[1:].rename("pnl")


def position_values_from_prices(
    prices: pd.DataFrame,
    holdings: Mapping[str, tuple[str, float]],
) -> pd.DataFrame:
    """Historical values of linear (equity) positions: ``close * units``.

    Parameters
    ----------
    prices : DataFrame, shape (D, U)
        Close prices by date (index) and underlying (columns).
    holdings : mapping position_id -> (underlying, units)
        ``units = quantity * multiplier`` (signed).

    Returns
    -------
    DataFrame, shape (D, J)
        Values in currency, columns in the order of ``holdings``.

    Raises
    ------
    DataError
        An underlying without prices.
    """
    missing = sorted({u for u, _ in holdings.values() if u not in prices.columns})
    if missing:
        raise DataError(f"no price history for underlyings {missing}")
    cols = {pid: prices[u].astype("float64") * float(units)
            for pid, (u, units) in holdings.items()}
    return pd.DataFrame(cols, index=prices.index)
