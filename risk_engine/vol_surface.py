"""Implied-volatility surface of one underlying, and the interpolation rule the engine uses.

A surface is a set of quoted expiries ``T_1 < ... < T_n`` (year fractions of the configured
day count); expiry ``i`` has quotes at log-forward-moneyness ``k = ln(K / F(T_i))`` with
total implied variance ``w = sigma^2 T_i``. The implied vol at any ``(k, t)`` is:

1. **within a quoted expiry**, ``w_i(k)`` is linear in ``k`` between the quoted points and
   flat beyond the first and last quote (at fixed ``T_i``, flat ``w`` is flat vol);
2. **between quoted expiries** ``T_i <= t <= T_{i+1}``, ``w(k, t)`` is linear in ``t``
   between ``w_i(k)`` and ``w_{i+1}(k)`` (linear in total variance at fixed moneyness);
3. **before the first or after the last expiry**, vol is flat in ``t``: ``w(k, t) =
   w_1(k) t / T_1`` for ``t < T_1`` and ``w_n(k) t / T_n`` for ``t > T_n``;
4. ``sigma(k, t) = sqrt(w(k, t) / t)``.

The rule only reads the quotes; it never repairs them. Arbitrage checks live with the
surface's input validation (:func:`risk_engine.input_checks.surface_arbitrage`).

:func:`surfaces_from_quotes` builds the surfaces of a run from the checked rows of the
``vol_surface`` input table: quote ``(expiry, strike, implied_vol)`` of underlying ``u`` is
the point ``T`` = year fraction of the expiry (the run's day count), ``k = ln(K / F(T))``
with the forward ``F(T) = S exp((r(T) - q) T)`` from the market's spot ``S`` and dividend
yield ``q`` and the run's zero curve ``r``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from risk_engine.timeaxis import ZeroCurve, year_fraction
from risk_engine.types import FloatArray


@dataclass(frozen=True)
class VolSurface:
    """Quotes of one underlying's surface, ready to interpolate.

    Attributes
    ----------
    expiry_years:
        Quoted expiries ``T_i`` in years, strictly increasing, shape (n,).
    log_moneyness:
        Per expiry, the quoted ``k = ln(K / F(T_i))``, strictly increasing.
    total_variance:
        Per expiry, ``w = sigma^2 T_i`` at those ``k``.
    """

    expiry_years: FloatArray
    log_moneyness: tuple[FloatArray, ...]
    total_variance: tuple[FloatArray, ...]

    @staticmethod
    def from_quotes(expiry_years: FloatArray, log_moneyness: FloatArray,
                    vol: FloatArray) -> VolSurface:
        """Build from flat arrays of quotes ``(T, k, sigma)``, one row per quote.

        Quotes must be finite with ``T > 0`` and ``sigma > 0`` and unique in ``(T, k)``
        (input validation rejects the others before this is called).
        """
        t = np.asarray(expiry_years, dtype=np.float64)
        k = np.asarray(log_moneyness, dtype=np.float64)
        s = np.asarray(vol, dtype=np.float64)
        if t.size == 0:
            raise ValueError("a volatility surface needs at least one quote")
        order = np.lexsort((k, t))
        t, k, s = t[order], k[order], s[order]
        expiries, start = np.unique(t, return_index=True)
        bounds = [*start.tolist(), t.size]
        ks = tuple(k[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        ws = tuple((s[a:b] ** 2) * expiries[i]
                   for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)))
        return VolSurface(expiries, ks, ws)

    def total_variance_at(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """Total implied variance ``w(k, t)`` by the module's rule; ``k``, ``t`` broadcast."""
        k_b, t_b = np.broadcast_arrays(np.asarray(k, dtype=np.float64),
                                       np.asarray(t, dtype=np.float64))
        kf, tf = k_b.ravel(), t_b.ravel()
        te = self.expiry_years
        # w_i(k) for every expiry: np.interp is linear inside and flat outside the quotes.
        w_exp = np.stack([np.interp(kf, ki, wi)
                          for ki, wi in zip(self.log_moneyness, self.total_variance, strict=True)])
        out = np.empty_like(tf)
        before, after = tf <= te[0], tf >= te[-1]
        out[before] = w_exp[0, before] * (tf[before] / te[0])
        out[after] = w_exp[-1, after] * (tf[after] / te[-1])
        inside = ~(before | after)
        if inside.any():
            ti = tf[inside]
            hi = np.searchsorted(te, ti, side="right")
            lo = hi - 1
            cols = np.flatnonzero(inside)
            w_lo, w_hi = w_exp[lo, cols], w_exp[hi, cols]
            frac = (ti - te[lo]) / (te[hi] - te[lo])
            out[inside] = w_lo + (w_hi - w_lo) * frac
        return out.reshape(k_b.shape)

    def vol_at(self, k: FloatArray, t: FloatArray) -> FloatArray:
        """Implied vol ``sqrt(w(k, t) / t)`` for ``t > 0``; ``k``, ``t`` broadcast."""
        t_arr = np.asarray(t, dtype=np.float64)
        return np.sqrt(self.total_variance_at(k, t_arr) / t_arr)


@dataclass(frozen=True)
class QuotedSurface:
    """A surface with the quotes it was built from, in the surface's order.

    Attributes
    ----------
    underlying:
        The underlying's name.
    surface:
        The surface (:class:`VolSurface`).
    expiry_dates:
        Per quoted expiry ``T_i``, its date.
    forwards:
        Per quoted expiry, ``F(T_i)``, shape (n,).
    strikes:
        Per quoted expiry, the quoted strikes ``K = F(T_i) exp(k)``, increasing (in the
        order of ``surface.log_moneyness[i]``).
    """

    underlying: str
    surface: VolSurface
    expiry_dates: tuple[dt.date, ...]
    forwards: FloatArray
    strikes: tuple[FloatArray, ...]


def forward(spot: ArrayLike, rate: ArrayLike, dividend_yield: ArrayLike,
            expiry_years: ArrayLike) -> FloatArray:
    """The forward ``S exp((r - q) T)`` that defines log-forward-moneyness; inputs broadcast."""
    return np.asarray(spot, dtype=np.float64) * np.exp(
        (np.asarray(rate, dtype=np.float64) - np.asarray(dividend_yield, dtype=np.float64))
        * np.asarray(expiry_years, dtype=np.float64))


def surfaces_from_quotes(
    quotes: pd.DataFrame,
    market: pd.DataFrame,
    curve: ZeroCurve,
    *,
    as_of: dt.date,
    day_count: str = "trading_252",
) -> dict[str, QuotedSurface]:
    """One :class:`QuotedSurface` per underlying of the checked ``vol_surface`` rows.

    Parameters
    ----------
    quotes
        Checked quote rows (:func:`risk_engine.input_checks.check_vol_surface`): columns
        ``underlying``, ``expiry``, ``strike``, ``implied_vol``; expiries after ``as_of``
        with a positive year fraction, unique in (underlying, year fraction, strike).
    market
        Market rows with ``underlying``, ``spot``, ``dividend_yield``. Underlyings without
        a row with a finite positive spot and a finite dividend yield get no surface.
    curve
        The run's zero curve (``r(T)`` of the forwards).
    as_of, day_count
        The as-of date and the day count of year fractions (``time.day_count``).

    Returns
    -------
    dict
        Underlying name -> its surface, names sorted.
    """
    out: dict[str, QuotedSurface] = {}
    if len(quotes) == 0:
        return out
    mkt = market.assign(underlying=market["underlying"].astype(str)).drop_duplicates(
        "underlying").set_index("underlying")
    spot = pd.to_numeric(mkt["spot"], errors="coerce").astype(float)
    div = pd.to_numeric(mkt["dividend_yield"], errors="coerce").astype(float)
    und = quotes["underlying"].astype(str).to_numpy(object)
    expiry = pd.Series(quotes["expiry"]).to_numpy("datetime64[D]")
    strike = pd.to_numeric(quotes["strike"], errors="coerce").to_numpy(float)
    vol = pd.to_numeric(quotes["implied_vol"], errors="coerce").to_numpy(float)
    t = np.asarray(year_fraction(as_of, expiry, day_count), dtype=np.float64)
    groups = pd.Series(np.arange(und.size)).groupby(und, sort=True).indices
    for name in sorted(groups):
        rows = groups[name]
        if name not in spot.index:
            continue
        s, q = float(spot[name]), float(div[name])
        if not (np.isfinite(s) and s > 0 and np.isfinite(q)):
            continue
        ti, ki, si, ei = t[rows], strike[rows], vol[rows], expiry[rows]
        f = forward(s, curve.zero_rate(ti), q, ti)
        k = np.log(ki / f)
        surface = VolSurface.from_quotes(ti, k, si)
        order = np.lexsort((k, ti))
        _, start = np.unique(ti[order], return_index=True)
        bounds = [*start.tolist(), int(ti.size)]
        dates = tuple(dt.date.fromisoformat(str(ei[order][a])) for a in start.tolist())
        strikes = tuple(ki[order][a:b].copy()
                        for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        forwards = f[order][start]
        out[name] = QuotedSurface(name, surface, dates, forwards, strikes)
    return out


def surface_vols(
    surfaces: Mapping[str, VolSurface],
    underlying: NDArray[np.object_],
    strike: FloatArray,
    forward_price: FloatArray,
    expiry_years: FloatArray,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Implied vol of each option from its underlying's surface, where it has one.

    The vol is ``vol_at(ln(K / F), T)``; for ``T <= 0`` (an option expiring today) it is the
    rule's limit ``t -> 0``, the vol at the first quoted expiry (flat vol before it).

    Returns
    -------
    vol, has_surface
        Shape (P,) each; ``vol`` is NaN where ``has_surface`` is False.
    """
    und = np.asarray(underlying, dtype=object)
    vol = np.full(und.shape, np.nan)
    has = np.zeros(und.shape, dtype=bool)
    groups = pd.Series(np.arange(und.size)).groupby(und, sort=False).indices
    for name, rows in groups.items():
        surface = surfaces.get(name)
        if surface is None:
            continue
        t = np.asarray(expiry_years, dtype=np.float64)[rows]
        k = np.log(np.asarray(strike, dtype=np.float64)[rows]
                   / np.asarray(forward_price, dtype=np.float64)[rows])
        vol[rows] = surface.vol_at(k, np.where(t > 0, t, surface.expiry_years[0]))
        has[rows] = True
    return vol, has
