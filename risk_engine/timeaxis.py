"""Trading-day calendar (Mon-Fri, no holidays), year fractions and the zero curve."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from risk_engine.errors import DataError

TRADING_DAYS_PER_YEAR = 252.0


def as_days(values: ArrayLike) -> tuple[NDArray[np.datetime64], NDArray[np.bool_]]:
    """Dates as ``datetime64[D]`` without the nanosecond range limit of pandas timestamps.

    Accepts ``datetime.date``/``datetime``, pandas timestamps, ``datetime64`` and ISO
    strings (an object column of dates as Arrow's ``date32`` arrives, year 1 to 9999).

    Returns
    -------
    days, not_a_date
        ``days`` is NaT where the value is missing or not a date; ``not_a_date`` marks
        values that are present but are not dates.
    """
    if isinstance(values, pd.Series) and pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.to_numpy("datetime64[D]"), np.zeros(len(values), dtype=bool)
    arr = values.to_numpy(object) if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind == "M":
        return arr.astype("datetime64[D]"), np.zeros(arr.shape[0], dtype=bool)
    arr = arr.astype(object).reshape(-1)
    days = np.full(arr.shape[0], np.datetime64("NaT"), dtype="datetime64[D]")
    bad = np.zeros(arr.shape[0], dtype=bool)
    todo: Iterable[int] = range(arr.shape[0])
    if arr.shape[0] > 1000 and all(isinstance(v, dt.date) for v in arr):
        # Fast path for a long column of dates; those beyond pandas' range are done below.
        days = pd.to_datetime(pd.Series(arr), errors="coerce").to_numpy("datetime64[D]")
        todo = np.flatnonzero(np.isnat(days)).tolist()
    for i in todo:
        v = arr[i]
        if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            continue
        try:
            if isinstance(v, np.datetime64):
                days[i] = v.astype("datetime64[D]")
            elif isinstance(v, dt.datetime):  # pd.Timestamp included
                days[i] = np.datetime64(v.date(), "D")
            elif isinstance(v, dt.date):
                days[i] = np.datetime64(v, "D")
            elif isinstance(v, str):
                days[i] = np.datetime64(dt.date.fromisoformat(v.strip()[:10]), "D")
            else:
                bad[i] = True
        except (ValueError, TypeError, OverflowError):
            bad[i] = True
    return days, bad


def _as_day(values: ArrayLike) -> NDArray[np.datetime64]:
    return np.asarray(values, dtype="datetime64[D]")


def trading_days_after(as_of: dt.date, dates: ArrayLike) -> NDArray[np.int64]:
    """Trading days after ``as_of`` up to and including each date (negative before it)."""
    start = np.datetime64(as_of, "D") + 1
    end = _as_day(dates) + 1
    return np.busday_count(start, end).astype(np.int64)


def horizon_date(as_of: dt.date, horizon_days: int) -> dt.date:
    """The date ``horizon_days`` trading days after ``as_of``."""
    day = np.busday_offset(np.datetime64(as_of, "D"), horizon_days, roll="backward")
    return dt.date.fromisoformat(str(day))


def year_fraction(
    as_of: dt.date, dates: ArrayLike, day_count: str = "trading_252"
) -> NDArray[np.float64]:
    """Year fraction from ``as_of`` to each date.

    ``trading_252``: trading days after ``as_of`` / 252; ``act_365``: calendar days / 365.
    """
    if day_count == "trading_252":
        return trading_days_after(as_of, dates) / TRADING_DAYS_PER_YEAR
    if day_count == "act_365":
        days = (_as_day(dates) - np.datetime64(as_of, "D")).astype(np.int64)
        return days / 365.0
    raise ValueError(f"unknown day_count {day_count!r}; use 'trading_252' or 'act_365'")


@dataclass(frozen=True)
class ZeroCurve:
    """Continuously compounded zero rates, linear in tenor, flat beyond both ends.

    Attributes
    ----------
    tenors : ndarray, shape (n,)
        Strictly increasing tenors in years.
    rates : ndarray, shape (n,)
        Zero rates at those tenors.
    """

    tenors: NDArray[np.float64]
    rates: NDArray[np.float64]

    @classmethod
    def from_points(cls, tenors: ArrayLike, rates: ArrayLike) -> ZeroCurve:
        """Build a curve from unsorted points.

        Raises
        ------
        DataError
            Naming table ``rates``, the column and the value, for no points, a tenor that is
            missing, not finite, negative or given twice, or a zero rate that is not finite.
        """
        t = np.asarray(tenors, dtype=np.float64)
        r = np.asarray(rates, dtype=np.float64)
        if t.size == 0:
            raise DataError("rates: the zero curve has no points for this date")
        if not np.all(np.isfinite(t)):
            bad = t[~np.isfinite(t)][0]
            raise DataError(f"rates: column tenor_years, key tenor_years={bad}: value {bad} "
                            "is missing or not finite")
        if np.any(t < 0):
            bad = t[t < 0][0]
            raise DataError(f"rates: column tenor_years, key tenor_years={bad}: value {bad} "
                            "must be >= 0")
        if not np.all(np.isfinite(r)):
            bad_t = t[~np.isfinite(r)][0]
            raise DataError(f"rates: column zero_rate, key tenor_years={bad_t}: value "
                            f"{r[~np.isfinite(r)][0]} is missing or not finite")
        order = np.argsort(t, kind="stable")
        t, r = t[order], r[order]
        if np.any(np.diff(t) == 0):
            dup = t[1:][np.diff(t) == 0][0]
            vals = sorted({float(x) for x in r[t == dup]})
            raise DataError(f"rates: column tenor_years, key tenor_years={dup}: value {dup} "
                            f"given twice (zero_rate {', '.join(map(str, vals))})")
        return cls(tenors=t, rates=r)

    def zero_rate(self, tenors: ArrayLike) -> NDArray[np.float64]:
        """Interpolated zero rate at each tenor (years)."""
        return np.interp(np.asarray(tenors, dtype=np.float64), self.tenors, self.rates)
