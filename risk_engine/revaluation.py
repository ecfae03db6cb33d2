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
class Segments:
    """Columns ``start[i]:stop[i]`` of a group's value matrix belong to desk ``desk[i]``."""

    desk: NDArray[np.int64]
    start: NDArray[np.int64]
    stop: NDArray[np.int64]


@dataclass(frozen=True)
class RevaluationPlan:
    """Per-position constants of the revaluation kernel, each group sorted by desk.

    Stocks are netted per (desk, underlying). Live options (``tau_h > 0``) are priced as
    ``A S N(a ln S + b) - B N(a ln S + b - c)`` with ``a = sign / (sigma sqrt tau)``,
    ``b = sign (-ln K + (r - q) tau) / (sigma sqrt tau) + sign sigma sqrt(tau) / 2``,
    ``c = sign sigma sqrt tau``, ``A = sign e^{-q tau}`` and ``B = sign K e^{-r tau}``
    (``sign`` +1 call, -1 put), which is Black-Scholes exactly. Options expired by the horizon
    are worth ``max(sign (S - K), 0)``.

    Desk sums are fixed-order reductions over contiguous column segments, never BLAS
    products, so results are bit-identical whatever the BLAS threading of the process.
    """

    n_desks: int
    ln_spot: FloatArray  # (U,)
    equity_underlying: NDArray[np.int64]  # (Q,) netted stock lines
    equity_quantity: FloatArray
    equity_segments: Segments
    live_underlying: NDArray[np.int64]  # (L,)
    live_a: FloatArray
    live_b: FloatArray
    live_c: FloatArray
    live_fwd: FloatArray  # A
    live_pvk: FloatArray  # B
    live_quantity: FloatArray
    live_segments: Segments
    expired_underlying: NDArray[np.int64]  # (E,)
    expired_sign: FloatArray
    expired_strike: FloatArray
    expired_quantity: FloatArray
    expired_segments: Segments
    value_today: FloatArray  # (D,) desk value today

    @property
    def n_live(self) -> int:
        """Number of options still alive at the horizon."""
        return int(self.live_a.size)

    @property
    def n_positions(self) -> int:
        """Number of lines revalued per scenario (netted stocks + options)."""
        return int(self.equity_quantity.size + self.live_a.size + self.expired_strike.size)


def _segments(desk_of_column: NDArray[np.int64]) -> Segments:
    """Segments of a desk-sorted column list."""
    if desk_of_column.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Segments(empty, empty, empty)
    cut = np.flatnonzero(np.diff(desk_of_column)) + 1
    start = np.concatenate([[0], cut]).astype(np.int64)
    stop = np.concatenate([cut, [desk_of_column.size]]).astype(np.int64)
    return Segments(desk_of_column[start].astype(np.int64), start, stop)


def plan_revaluation(book: ResolvedBook) -> RevaluationPlan:
    """Resolve the per-position constants of the revaluation kernel for ``book``."""
    n_u, n_d = len(book.underlyings), len(book.desks)
    eq = book.kind == EQUITY
    netted = np.zeros((n_d, n_u))
    np.add.at(netted, (book.desk_index[eq], book.underlying_index[eq]), book.quantity[eq])
    has = np.zeros((n_d, n_u), dtype=bool)
    has[book.desk_index[eq], book.underlying_index[eq]] = True
    eq_desk, eq_und = np.nonzero(has)  # row-major: sorted by desk, then underlying

    def by_desk(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(book.desk_index[idx], kind="stable")]

    live = by_desk((book.kind != EQUITY) & (book.tau_h > 0))
    expired = by_desk((book.kind != EQUITY) & ~(book.tau_h > 0))
    sign = np.where(book.kind == CALL, 1.0, -1.0)
    tau = book.tau_h[live]
    sd = book.volatility[live] * np.sqrt(tau)  # > 0: validated volatility > 0 and tau > 0
    s = sign[live]
    r, q, k = book.rate_h[live], book.dividend_yield[live], book.strike[live]
    inv = 1.0 / sd
    return RevaluationPlan(
        n_desks=n_d,
        ln_spot=np.log(book.spot),
        equity_underlying=eq_und.astype(np.int64),
        equity_quantity=netted[eq_desk, eq_und],
        equity_segments=_segments(eq_desk.astype(np.int64)),
        live_underlying=book.underlying_index[live],
        live_a=s * inv,
        live_b=s * ((-np.log(k) + (r - q) * tau) * inv + 0.5 * sd),
        live_c=s * sd,
        live_fwd=s * np.exp(-q * tau),
        live_pvk=s * k * np.exp(-r * tau),
        live_quantity=book.quantity[live],
        live_segments=_segments(book.desk_index[live]),
        expired_underlying=book.underlying_index[expired],
        expired_sign=sign[expired],
        expired_strike=book.strike[expired],
        expired_quantity=book.quantity[expired],
        expired_segments=_segments(book.desk_index[expired]),
        value_today=np.bincount(book.desk_index, book.value, minlength=n_d),
    )


def _add_segment_sums(out: FloatArray, values: FloatArray, seg: Segments) -> None:
    for d, a, b in zip(seg.desk, seg.start, seg.stop, strict=True):
        out[:, d] += values[:, a:b].sum(axis=1)


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
    out = np.zeros((log_returns.shape[0], plan.n_desks))
    if plan.equity_quantity.size:
        _add_segment_sums(out, s[:, plan.equity_underlying] * plan.equity_quantity,
                          plan.equity_segments)
    if plan.n_live:
        z1 = ln_s[:, plan.live_underlying]
        z1 *= plan.live_a
        z1 += plan.live_b
        z2 = z1 - plan.live_c
        v = ndtr(z1)
        v *= s[:, plan.live_underlying]
        v *= plan.live_fwd
        v -= ndtr(z2) * plan.live_pvk
        v *= plan.live_quantity
        _add_segment_sums(out, v, plan.live_segments)
    if plan.expired_strike.size:
        sg = s[:, plan.expired_underlying]
        sg -= plan.expired_strike
        sg *= plan.expired_sign
        np.maximum(sg, 0.0, out=sg)
        sg *= plan.expired_quantity
        _add_segment_sums(out, sg, plan.expired_segments)
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
