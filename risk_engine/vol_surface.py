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
surface's input validation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
