"""Trading-day calendar (Mon-Fri, no holidays), year fractions and the zero curve."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

TRADING_DAYS_PER_YEAR = 252.0


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
        """Build a curve from unsorted points; duplicate or non-finite points are an error."""
        t = np.asarray(tenors, dtype=np.float64)
        r = np.asarray(rates, dtype=np.float64)
        if t.size == 0:
            raise ValueError("rates: the zero curve has no points for this date")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
            raise ValueError("rates: tenor_years and zero_rate must be finite")
        if np.any(t < 0):
            raise ValueError(f"rates: tenor_years must be >= 0, got {t[t < 0][0]}")
        order = np.argsort(t, kind="stable")
        t, r = t[order], r[order]
        if np.any(np.diff(t) == 0):
            dup = t[1:][np.diff(t) == 0][0]
            raise ValueError(f"rates: duplicate tenor_years {dup}")
        return cls(tenors=t, rates=r)

    def zero_rate(self, tenors: ArrayLike) -> NDArray[np.float64]:
        """Interpolated zero rate at each tenor (years)."""
        return np.interp(np.asarray(tenors, dtype=np.float64), self.tenors, self.rates)
