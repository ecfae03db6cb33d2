"""Position-level revaluation with the general pricer (reference path, not the MC kernel).

Used where individual positions matter on a limited set of scenarios: attribution on tail
scenarios, hypothetical P&L over history, moment estimation for worst-case models, tests.
"""

from __future__ import annotations

import numpy as np

from risk_engine.book import ResolvedBook
from risk_engine.pricing import black_scholes_price
from risk_engine.types import CALL, EQUITY, FloatArray


def position_values(
    book: ResolvedBook, log_returns: FloatArray, *, at_horizon: bool = True
) -> FloatArray:
    """Value of every position for each scenario, shape (n, P).

    Parameters
    ----------
    book
        The resolved book.
    log_returns : ndarray, shape (n, U)
        Log returns of the underlyings from today's spots.
    at_horizon
        True: options are valued at the horizon (life left ``tau_h``; expired ones at
        intrinsic value on the scenario spot). False: valued today (time to expiry ``T``),
        i.e. an instantaneous shock, as for hypothetical P&L over history.
    """
    s = book.spot * np.exp(log_returns)
    sg = s[:, book.underlying_index]
    unit = sg.copy()
    opt = book.kind != EQUITY
    tau = book.tau_h if at_horizon else book.expiry_years
    rate = book.rate_h if at_horizon else book.rate
    live = opt & (tau > 0)
    if live.any():
        unit[:, live] = black_scholes_price(
            spots=sg[:, live], strikes=book.strike[live], expiries=tau[live],
            volatilities=book.volatility[live], rates=rate[live],
            dividend_yields=book.dividend_yield[live], is_call=book.kind[live] == CALL,
        )
    dead = opt & ~live
    if dead.any():
        sign = np.where(book.kind[dead] == CALL, 1.0, -1.0)
        unit[:, dead] = np.maximum(sign * (sg[:, dead] - book.strike[dead]), 0.0)
    return unit * book.quantity
