"""Position-level revaluation with the general pricer (reference path, not the MC kernel).

Used where individual positions matter on a limited set of scenarios: attribution on tail
scenarios, hypothetical P&L over history, moment estimation for worst-case models, tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from risk_engine.book import ResolvedBook
from risk_engine.pricing import black_scholes_price
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.types import CALL, EQUITY, FloatArray
from risk_engine.vol_surface import VolSurface


def position_values(
    book: ResolvedBook, log_returns: FloatArray, *, at_horizon: bool = True,
    layout: FactorLayout | None = None, smile: str = "sticky_strike",
    surfaces: Mapping[str, VolSurface] | None = None,
) -> FloatArray:
    """Value of every position for each scenario, shape (n, P).

    Parameters
    ----------
    book
        The resolved book.
    log_returns : ndarray, shape (n, U), or (n, layout.width) with ``layout``
        Log returns of the underlyings from today's spots (then the vol and rate factor
        columns of :mod:`risk_engine.scenarios.factors`).
    at_horizon
        True: options are valued at the horizon (life left ``tau_h``; expired ones at
        intrinsic value on the scenario spot). False: valued today (time to expiry ``T``),
        i.e. an instantaneous shock, as for hypothetical P&L over history.
    layout, smile, surfaces
        The scenarios' factor columns and how vols move, as in
        :func:`risk_engine.revaluation.plan_revaluation` (the vol shock interpolated in the
        option's life left, the rate shift added to its zero rate). Default: spot only.

    Raises
    ------
    ValueError
        If the scenarios' columns do not match the book's underlyings and ``layout``.
    """
    x = np.asarray(log_returns, dtype=np.float64)
    n_u = len(book.underlyings)
    lay = layout or FactorLayout(n_u)
    if x.ndim != 2 or x.shape[1] != lay.width or lay.n_underlyings != n_u:
        raise ValueError(f"scenarios of shape {x.shape} for {n_u} underlyings and a factor "
                         f"layout of {lay.width} columns")
    s = book.spot * np.exp(x[:, :n_u])
    sg = s[:, book.underlying_index]
    unit = sg.copy()
    opt = book.kind != EQUITY
    tau = book.tau_h if at_horizon else book.expiry_years
    rate = book.rate_h if at_horizon else book.rate
    live = opt & (tau > 0)
    if live.any():
        vol: FloatArray = np.broadcast_to(book.volatility[live], (x.shape[0], int(live.sum())))
        on_surface = (np.array([book.underlyings[u] in surfaces
                                for u in book.underlying_index[live].tolist()], dtype=bool)
                      if smile == "sticky_moneyness" and surfaces
                      else np.zeros(int(live.sum()), dtype=bool))
        if on_surface.any():
            assert surfaces is not None
            vol = vol.copy()
            idx = np.flatnonzero(live)
            for j in np.flatnonzero(on_surface).tolist():
                p = int(idx[j])
                t = book.expiry_years[p]
                k = (np.log(book.strike[p] / sg[:, p])
                     - (book.rate[p] - book.dividend_yield[p]) * t)
                surface = surfaces[book.underlyings[int(book.underlying_index[p])]]
                vol[:, j] = surface.vol_at(k, np.full(k.shape, t))
        if lay.n_vol_buckets:  # the tenors' shocks, linear in the life left, flat outside
            idx = np.flatnonzero(live)
            n_b = lay.n_vol_buckets
            eye = np.eye(n_b)
            shock = np.zeros((x.shape[0], idx.size))
            for b in range(n_b):  # fixed order, no BLAS
                w_b = np.interp(tau[idx], lay.vol_tenors_years, eye[b])
                shock += x[:, n_u + book.underlying_index[idx] * n_b + b] * w_b
            vol = vol * np.exp(shock)
        r = rate[live] if lay.rate_column is None else \
            rate[live] + x[:, lay.rate_column][:, None]
        unit[:, live] = black_scholes_price(
            spots=sg[:, live], strikes=book.strike[live], expiries=tau[live],
            volatilities=vol, rates=r,
            dividend_yields=book.dividend_yield[live], is_call=book.kind[live] == CALL,
        )
    dead = opt & ~live
    if dead.any():
        sign = np.where(book.kind[dead] == CALL, 1.0, -1.0)
        unit[:, dead] = np.maximum(sign * (sg[:, dead] - book.strike[dead]), 0.0)
    return unit * book.quantity
