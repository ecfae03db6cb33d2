"""Black-Scholes-Merton prices and Greeks of European options, vectorized.

Conventions (DESIGN.md section 3): continuous rate ``r`` and dividend yield ``q``,
time in years. Greeks are raw derivatives of the value of ONE unit:

* delta ``dV/dS``, gamma ``d2V/dS2``,
* vega ``dV/dsigma`` per 1.00 of volatility,
* theta ``dV/dt`` per year of calendar time passing (``-dV/dT``; negative for decay),
* rho ``dV/dr`` per 1.00 of rate,
* vanna ``d2V/dS dsigma`` (per unit of spot and 1.00 of volatility),
* volga ``d2V/dsigma2`` (per 1.00 of volatility, squared).

Expiry 0 gives intrinsic value ``max(S - K, 0)`` (call) / ``max(K - S, 0)`` (put); volatility 0
with time left gives the discounted intrinsic value of the forward,
``max(S e^{-qT} - K e^{-rT}, 0)``. In both limits gamma, vega, vanna and volga are 0 and
delta is the
slope of that payoff (at the kink the right-hand derivative is taken).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from risk_engine.types import FloatArray

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


@dataclass(frozen=True)
class Greeks:
    """Price and Greeks per unit, each an array of the broadcast shape of the inputs."""

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray
    vanna: FloatArray
    volga: FloatArray


def _check(name: str, values: FloatArray, *, positive: bool) -> None:
    bad = ~np.isfinite(values) | ((values <= 0.0) if positive else (values < 0.0))
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        rule = "finite and > 0" if positive else "finite and >= 0"
        raise ValueError(f"{name} must be {rule}; got {values[idx]!r} at index {idx}")


def _prepare(
    spots: ArrayLike,
    strikes: ArrayLike,
    expiries: ArrayLike,
    volatilities: ArrayLike,
    rates: ArrayLike,
    dividend_yields: ArrayLike,
    is_call: ArrayLike,
) -> tuple[FloatArray, ...]:
    arrays = np.broadcast_arrays(
        np.asarray(spots, dtype=np.float64),
        np.asarray(strikes, dtype=np.float64),
        np.asarray(expiries, dtype=np.float64),
        np.asarray(volatilities, dtype=np.float64),
        np.asarray(rates, dtype=np.float64),
        np.asarray(dividend_yields, dtype=np.float64),
        np.asarray(is_call, dtype=np.float64),
    )
    s, k, t, v, r, q, c = arrays
    _check("spots", s, positive=True)
    _check("strikes", k, positive=True)
    _check("expiries", t, positive=False)
    _check("volatilities", v, positive=False)
    for name, arr in (("rates", r), ("dividend_yields", q)):
        if not np.all(np.isfinite(arr)):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"{name} must be finite; got {arr[idx]!r} at index {idx}")
    return s, k, t, v, r, q, c.astype(bool)


def _fine(values: FloatArray, *, positive: bool | None) -> bool:
    """True when every value is finite and (``positive``) > 0, (False) >= 0, (None) any sign.

    Two reductions instead of :func:`_check`'s element masks: NaN propagates through
    ``min``/``max`` and fails both comparisons. A False sends the caller to :func:`_prepare`,
    which finds and names the offending value.
    """
    if values.size == 0:
        return True
    lo, hi = values.min(), values.max()
    if positive is None:
        return bool(lo > -np.inf) and bool(hi < np.inf)
    return bool(lo > 0.0 if positive else lo >= 0.0) and bool(hi < np.inf)


def black_scholes_price(
    *,
    spots: ArrayLike,
    strikes: ArrayLike,
    expiries: ArrayLike,
    volatilities: ArrayLike,
    rates: ArrayLike,
    dividend_yields: ArrayLike = 0.0,
    is_call: ArrayLike = True,
) -> FloatArray:
    """Black-Scholes-Merton value of one European option.

    The price of :func:`black_scholes_greeks` bit for bit (the same operations in the same
    order on every element), without its Greeks: the arguments are not broadcast up front,
    so a term that depends only on per-option arguments (discount factors, ``sigma sqrt T``)
    is computed once per option, not once per scenario, and the argument checks are two
    reductions per argument unless one fails.

    Parameters
    ----------
    spots, strikes : array_like
        Underlying price and strike, > 0.
    expiries : array_like
        Time to expiry in years, >= 0.
    volatilities : array_like
        Annual volatility, >= 0.
    rates, dividend_yields : array_like
        Continuously compounded annual rate and dividend yield.
    is_call : array_like of bool
        True for calls, False for puts.

    Returns
    -------
    ndarray
        Value per unit, of the broadcast shape of the inputs.

    Raises
    ------
    ValueError
        Naming the first offending argument, value and index (NaN is never accepted), or
        if the arguments do not broadcast together.
    """
    s = np.asarray(spots, dtype=np.float64)
    k = np.asarray(strikes, dtype=np.float64)
    t = np.asarray(expiries, dtype=np.float64)
    v = np.asarray(volatilities, dtype=np.float64)
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(dividend_yields, dtype=np.float64)
    c = np.asarray(is_call, dtype=np.float64)
    shape = np.broadcast_shapes(s.shape, k.shape, t.shape, v.shape, r.shape, q.shape, c.shape)
    if not (_fine(s, positive=True) and _fine(k, positive=True)
            and _fine(t, positive=False) and _fine(v, positive=False)
            and _fine(r, positive=None) and _fine(q, positive=None)):
        # The detailed checks on the broadcast arguments name the first offending value
        # (nothing is raised if it falls outside an empty broadcast).
        _prepare(s, k, t, v, r, q, c)
    call = c.astype(bool)
    # As black_scholes_greeks, each operation on its arguments' own shapes: elementwise, so
    # every element has the bits of the broadcast computation.
    sign = np.where(call, 1.0, -1.0)
    df_r = np.exp(-r * t)
    df_q = np.exp(-q * t)
    fwd_s = s * df_q
    pv_k = k * df_r
    sd = v * np.sqrt(t)
    regular = sd > 0.0
    price: FloatArray
    if not np.any(regular):
        price = np.maximum(sign * (fwd_s - pv_k), 0.0)
    else:
        every = bool(np.all(regular))
        sdr = sd if every else np.where(regular, sd, 1.0)
        # d1 = (log(s / k) + (r - q) t) / sdr + sdr / 2, d2 = d1 - sdr,
        # price = sign (fwd_s N(sign d1) - pv_k N(sign d2)): the same operations in the same
        # order, on two arrays of the broadcast shape updated in place.
        a = np.divide(s, k, out=np.empty(shape))
        d1 = np.log(a, out=np.empty(shape))  # an array even if 0-d
        d1 += (r - q) * t
        d1 /= sdr
        d1 += 0.5 * sdr
        d2 = np.subtract(d1, sdr, out=a)
        nd1 = ndtr(np.multiply(sign, d1, out=d1), out=d1)
        nd2 = ndtr(np.multiply(sign, d2, out=d2), out=d2)
        np.multiply(fwd_s, nd1, out=nd1)
        np.multiply(pv_k, nd2, out=nd2)
        reg_price = np.multiply(sign, np.subtract(nd1, nd2, out=nd1), out=nd1)
        price = (reg_price if every else
                 np.where(regular, reg_price, np.maximum(sign * (fwd_s - pv_k), 0.0)))
    if np.shape(price) != shape:  # an argument that only the Greeks read is wider
        price = np.broadcast_to(price, shape).copy()
    return price


def black_scholes_greeks(
    *,
    spots: ArrayLike,
    strikes: ArrayLike,
    expiries: ArrayLike,
    volatilities: ArrayLike,
    rates: ArrayLike,
    dividend_yields: ArrayLike = 0.0,
    is_call: ArrayLike = True,
    price_only: bool = False,
) -> Greeks:
    """Price and Greeks of one European option; arguments as in :func:`black_scholes_price`.

    With ``price_only=True`` the Greek arrays are left as zeros (cheaper).
    """
    s, k, t, v, r, q, call = _prepare(
        spots, strikes, expiries, volatilities, rates, dividend_yields, is_call
    )
    sign = np.where(call, 1.0, -1.0)
    df_r = np.exp(-r * t)
    df_q = np.exp(-q * t)
    fwd_s = s * df_q  # spot discounted at the dividend yield
    pv_k = k * df_r
    sd = v * np.sqrt(t)
    regular = sd > 0.0

    price = np.maximum(sign * (fwd_s - pv_k), 0.0)
    # Degenerate limits: slope of the (discounted) intrinsic payoff, right-hand at the kink.
    itm = sign * (fwd_s - pv_k) > 0.0
    atm_call = (fwd_s == pv_k) & call
    exercised = itm | atm_call
    delta = np.where(exercised, sign * df_q, 0.0)
    gamma = np.zeros_like(price)
    vega = np.zeros_like(price)
    theta = np.where(exercised, sign * (q * fwd_s - r * pv_k), 0.0)
    rho = np.where(exercised, sign * t * pv_k, 0.0)
    vanna = np.zeros_like(price)
    volga = np.zeros_like(price)

    if np.any(regular):
        sdr = np.where(regular, sd, 1.0)
        d1 = (np.log(s / k) + (r - q) * t) / sdr + 0.5 * sdr
        d2 = d1 - sdr
        nd1 = ndtr(sign * d1)
        nd2 = ndtr(sign * d2)
        reg_price = sign * (fwd_s * nd1 - pv_k * nd2)
        price = np.where(regular, reg_price, price)
        if not price_only:
            pdf1 = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
            sqrt_t = np.sqrt(np.where(regular, t, 1.0))
            delta = np.where(regular, sign * df_q * nd1, delta)
            gamma = np.where(regular, df_q * pdf1 / (s * sdr), gamma)
            vega = np.where(regular, fwd_s * pdf1 * sqrt_t, vega)
            reg_theta = (
                -fwd_s * pdf1 * v / (2.0 * sqrt_t) + sign * (q * fwd_s * nd1 - r * pv_k * nd2)
            )
            theta = np.where(regular, reg_theta, theta)
            rho = np.where(regular, sign * t * pv_k * nd2, rho)
            # vanna = -e^{-qT} phi(d1) d2 / sigma, volga = vega d1 d2 / sigma (calls and puts)
            sig = np.where(regular, v, 1.0)
            vanna = np.where(regular, -df_q * pdf1 * d2 / sig, vanna)
            volga = np.where(regular, fwd_s * pdf1 * sqrt_t * d1 * d2 / sig, volga)
    return Greeks(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho,
                  vanna=vanna, volga=volga)
