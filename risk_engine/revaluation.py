"""Full Black-Scholes revaluation of a book on a block of scenarios, streamed in chunks.

:func:`plan_revaluation` resolves everything that depends only on the position (log strike,
discount factors, ``sigma sqrt(tau)``, desk weights) once; :func:`desk_pnl` then revalues
each chunk of scenarios and accumulates P&L per desk with a matrix product, so no
scenario-by-position matrix larger than one chunk ever exists.

Valuation at the horizon follows DESIGN.md section 3: stocks at the horizon spot; options
with life left ``tau = T - h > 0`` by Black-Scholes with the same implied volatility,
dividend yield and zero curve; options expiring at or before the horizon at intrinsic value
on the horizon spot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from risk_engine.book import CALL, EQUITY, ResolvedBook
from risk_engine.pricing import black_scholes_price

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class RevaluationPlan:
    """Per-position constants of the revaluation kernel; shapes in the attribute names.

    Live options (``tau_h > 0``) are priced as ``A S N(a ln S + b) - B N(a ln S + b - c)``
    with ``a = sign / (sigma sqrt tau)``, ``b = sign (-ln K + (r - q) tau) / (sigma sqrt tau)
    + sign sigma sqrt(tau) / 2``, ``c = sign sigma sqrt tau``, ``A = sign e^{-q tau}`` and
    ``B = sign K e^{-r tau}`` (``sign`` +1 call, -1 put), which is Black-Scholes exactly.
    """

    n_desks: int
    ln_spot: FloatArray  # (U,)
    equity_weights: FloatArray  # (U, D) stock quantity per underlying and desk
    live_underlying: NDArray[np.int64]  # (L,)
    live_a: FloatArray
    live_b: FloatArray
    live_c: FloatArray
    live_fwd: FloatArray  # A
    live_pvk: FloatArray  # B
    live_weights: FloatArray  # (L, D) quantity at [position, desk]
    expired_underlying: NDArray[np.int64]  # (E,)
    expired_sign: FloatArray
    expired_strike: FloatArray
    expired_weights: FloatArray  # (E, D)
    value_today: FloatArray  # (D,) desk value today

    @property
    def n_live(self) -> int:
        """Number of options still alive at the horizon."""
        return int(self.live_a.size)


def _desk_weights(book: ResolvedBook, mask: NDArray[np.bool_]) -> FloatArray:
    idx = np.flatnonzero(mask)
    w = np.zeros((idx.size, len(book.desks)))
    w[np.arange(idx.size), book.desk_index[idx]] = book.quantity[idx]
    return w


def plan_revaluation(book: ResolvedBook) -> RevaluationPlan:
    """Resolve the per-position constants of the revaluation kernel for ``book``."""
    n_u, n_d = len(book.underlyings), len(book.desks)
    eq = book.kind == EQUITY
    equity_w = np.zeros((n_u, n_d))
    np.add.at(equity_w, (book.underlying_index[eq], book.desk_index[eq]), book.quantity[eq])
    live = (book.kind != EQUITY) & (book.tau_h > 0)
    expired = (book.kind != EQUITY) & ~(book.tau_h > 0)

    sign = np.where(book.kind == CALL, 1.0, -1.0)
    tau = book.tau_h[live]
    sd = book.volatility[live] * np.sqrt(tau)
    s = sign[live]
    r, q, k = book.rate_h[live], book.dividend_yield[live], book.strike[live]
    with np.errstate(divide="ignore"):
        inv = np.where(sd > 0, 1.0 / sd, np.inf)
    # sd > 0 always here: validated volatility > 0 and tau > 0.
    a = s * inv
    b = s * ((-np.log(k) + (r - q) * tau) * inv + 0.5 * sd)
    value_today = np.bincount(book.desk_index, book.value, minlength=n_d)
    return RevaluationPlan(
        n_desks=n_d,
        ln_spot=np.log(book.spot),
        equity_weights=equity_w,
        live_underlying=book.underlying_index[live],
        live_a=a,
        live_b=b,
        live_c=s * sd,
        live_fwd=s * np.exp(-q * tau),
        live_pvk=s * k * np.exp(-r * tau),
        live_weights=_desk_weights(book, live),
        expired_underlying=book.underlying_index[expired],
        expired_sign=sign[expired],
        expired_strike=book.strike[expired],
        expired_weights=_desk_weights(book, expired),
        value_today=value_today,
    )


def desk_values(plan: RevaluationPlan, log_returns: FloatArray) -> FloatArray:
    """Value of every desk at the horizon for each scenario of one chunk.

    Parameters
    ----------
    plan
        From :func:`plan_revaluation`.
    log_returns : ndarray, shape (n, U)
        Log returns of the underlyings over the horizon.

    Returns
    -------
    ndarray, shape (n, D)
    """
    ln_s = log_returns + plan.ln_spot
    s = np.exp(ln_s)
    out = s @ plan.equity_weights
    if plan.n_live:
        ln_g = ln_s[:, plan.live_underlying]
        z1 = ln_g * plan.live_a
        z1 += plan.live_b
        z2 = z1 - plan.live_c
        v = ndtr(z1)
        v *= s[:, plan.live_underlying]
        v *= plan.live_fwd
        v -= ndtr(z2) * plan.live_pvk
        out += v @ plan.live_weights
    if plan.expired_strike.size:
        sg = s[:, plan.expired_underlying]
        intrinsic = np.maximum(plan.expired_sign * (sg - plan.expired_strike), 0.0)
        out += intrinsic @ plan.expired_weights
    return out


def desk_pnl(plan: RevaluationPlan, log_returns: FloatArray, chunk_size: int = 1024) -> FloatArray:
    """P&L per (scenario, desk) = value at horizon - value today, revalued chunk by chunk.

    Parameters
    ----------
    plan
        From :func:`plan_revaluation`.
    log_returns : ndarray, shape (n, U)
    chunk_size
        Scenarios revalued at once; bounds memory at about ``chunk_size x P`` doubles.

    Returns
    -------
    ndarray, shape (n, D)
    """
    n = log_returns.shape[0]
    out = np.empty((n, plan.n_desks))
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        out[start:stop] = desk_values(plan, log_returns[start:stop])
    out -= plan.value_today
    return out


def position_values(book: ResolvedBook, log_returns: FloatArray) -> FloatArray:
    """Reference revaluation: value of every position at the horizon, shape (n, P).

    Uses the general pricer :func:`black_scholes_price` per position; this materializes
    ``n x P`` and is meant for tests, attribution on a few scenarios and moment estimation,
    not for the Monte Carlo stage.
    """
    s = book.spot * np.exp(log_returns)  # (n, U)
    sg = s[:, book.underlying_index]  # (n, P)
    unit = sg.copy()
    opt = book.kind != EQUITY
    live = opt & (book.tau_h > 0)
    if live.any():
        unit[:, live] = black_scholes_price(
            spots=sg[:, live], strikes=book.strike[live], expiries=book.tau_h[live],
            volatilities=book.volatility[live], rates=book.rate_h[live],
            dividend_yields=book.dividend_yield[live], is_call=book.kind[live] == CALL,
        )
    dead = opt & ~live
    if dead.any():
        sign = np.where(book.kind[dead] == CALL, 1.0, -1.0)
        unit[:, dead] = np.maximum(sign * (sg[:, dead] - book.strike[dead]), 0.0)
    return unit * book.quantity
