"""Position-level revaluation with the general pricer (reference path, not the MC kernel).

Used where individual positions matter on a limited set of scenarios: attribution on tail
scenarios, hypothetical P&L over history, moment estimation for worst-case models, tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.pricing import black_scholes_price
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.types import CALL, EQUITY, FloatArray, IntArray
from risk_engine.vol_surface import VolSurface

#: Positions whose values are added pairwise as one group by
#: :func:`summed_position_values`; the groups' sums are then added one after the other. A
#: fixed constant, not a tile size, so the bits never depend on how positions are tiled.
SUM_GROUP_POSITIONS = 4096


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
    x, lay = _scenarios(book, log_returns, layout)
    return _values(book, x, _spot_scenarios(book, x), at_horizon=at_horizon, layout=lay,
                   smile=smile, surfaces=surfaces)


def _scenarios(book: ResolvedBook, log_returns: FloatArray,
               layout: FactorLayout | None) -> tuple[FloatArray, FactorLayout]:
    """The scenarios as float64 and their layout, checked against the book."""
    x = np.asarray(log_returns, dtype=np.float64)
    n_u = len(book.underlyings)
    lay = layout or FactorLayout(n_u)
    if x.ndim != 2 or x.shape[1] != lay.width or lay.n_underlyings != n_u:
        raise ValueError(f"scenarios of shape {x.shape} for {n_u} underlyings and a factor "
                         f"layout of {lay.width} columns")
    return x, lay


def _spot_scenarios(book: ResolvedBook, x: FloatArray) -> FloatArray:
    """Each underlying's spot on each scenario, shape (n, U) (elementwise in ``x``)."""
    return book.spot * np.exp(x[:, :len(book.underlyings)])


def _values(book: ResolvedBook, x: FloatArray, s: FloatArray, *, at_horizon: bool,
            layout: FactorLayout, smile: str,
            surfaces: Mapping[str, VolSurface] | None) -> FloatArray:
    """:func:`position_values` given the checked scenarios ``x`` and their spots ``s``.

    Every operation is elementwise per (scenario, position), so a position's values do not
    depend on which other positions or scenarios are valued with it.
    """
    n_u = len(book.underlyings)
    lay = layout
    sg = s[:, book.underlying_index]
    unit = sg.copy()  # C order (``sg`` may not be): the layout of the values returned
    opt = book.kind != EQUITY
    tau = book.tau_h if at_horizon else book.expiry_years
    rate = book.rate_h if at_horizon else book.rate
    live = opt & (tau > 0)
    if live.any():
        # One vol per option unless the surface or the vol factors move it per scenario
        # (the pricer broadcasts it, with the same bits).
        vol: FloatArray = book.volatility[live]
        on_surface = (np.array([book.underlyings[u] in surfaces
                                for u in book.underlying_index[live].tolist()], dtype=bool)
                      if smile == "sticky_moneyness" and surfaces
                      else np.zeros(int(live.sum()), dtype=bool))
        if on_surface.any():
            assert surfaces is not None
            vol = np.broadcast_to(vol, (x.shape[0], vol.size)).copy()
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


def contract_ids(book: ResolvedBook) -> IntArray:
    """Contract of each position: positions with the same terms share one id.

    Two positions share a contract when every term :func:`position_values` reads (the
    underlying, type, strike, times to expiry, volatility, rates, dividend yield) has the
    same bits, so their unit values are equal on every scenario.
    """
    terms = np.column_stack([
        book.underlying_index.astype(np.float64), book.kind.astype(np.float64), book.strike,
        book.tau_h, book.expiry_years, book.volatility, book.dividend_yield, book.rate,
        book.rate_h,
    ]).view(np.int64)
    if terms.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(terms, axis=0, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def position_pnl(book: ResolvedBook, log_returns: FloatArray, contract: IntArray, *,
                 at_horizon: bool = True, minus_value: bool = True,
                 max_values: int = 1 << 18, layout: FactorLayout | None = None,
                 smile: str = "sticky_strike",
                 surfaces: Mapping[str, VolSurface] | None = None) -> FloatArray:
    """Row-major ``position_values(book, log_returns, ...) - book.value``, bit for bit.

    The unit value of each distinct ``contract`` (from :func:`contract_ids`) is computed
    once, times a quantity of 1 (exact), and scaled by each position's quantity; the pricer
    sees about ``max_values`` values at once (the scenarios by a slice of the contracts).
    ``minus_value=False`` returns the values themselves; ``at_horizon``, ``layout``,
    ``smile`` and ``surfaces`` are :func:`position_values`'.

    Returns
    -------
    ndarray, shape (n, P), C order.
    """
    ids, first, local = np.unique(contract, return_index=True, return_inverse=True)
    units = select_positions(book, first)
    units = dataclasses.replace(units, quantity=np.ones(first.size))
    n = log_returns.shape[0]
    unit = np.empty((n, ids.size))
    if ids.size:
        x, lay = _scenarios(book, log_returns, layout)
        s = _spot_scenarios(book, x)  # once for every slice of contracts
    step = max(1, max_values // max(n, 1))
    for c0 in range(0, ids.size, step):
        part = select_positions(units, np.arange(c0, min(c0 + step, ids.size)))
        unit[:, c0:c0 + step] = _values(part, x, s, at_horizon=at_horizon, layout=lay,
                                        smile=smile, surfaces=surfaces)
    # In place, elementwise: the bits of ``unit[:, local] * book.quantity - book.value``.
    values = np.take(unit, local.reshape(-1), axis=1)
    del unit
    np.multiply(values, book.quantity, out=values)
    if minus_value:
        np.subtract(values, book.value, out=values)
    return values


def summed_position_values(book: ResolvedBook, log_returns: FloatArray,
                           contract: IntArray | None = None, *, at_horizon: bool = True,
                           minus_value: bool = False,
                           max_values: int = 1 << 18, layout: FactorLayout | None = None,
                           smile: str = "sticky_strike",
                           surfaces: Mapping[str, VolSurface] | None = None) -> FloatArray:
    """Sum over the positions of :func:`position_pnl` per scenario, shape (n,), in tiles.

    Each scenario's positions are added pairwise (numpy's sum of one contiguous row)
    within consecutive groups of :data:`SUM_GROUP_POSITIONS` in book order, and the groups'
    sums one after the other: up to that many positions, the bits of
    ``position_values(book, log_returns).sum(axis=1)``. Never more than one tile of about
    ``max_values`` (scenarios x a group) values is held.
    """
    if contract is None:
        contract = contract_ids(book)
    n, p = log_returns.shape[0], book.n_positions
    total = np.zeros(n)
    groups = [np.arange(g0, min(g0 + SUM_GROUP_POSITIONS, p))
              for g0 in range(0, p, SUM_GROUP_POSITIONS)]
    books = [select_positions(book, g) for g in groups]
    step = max(1, max_values // SUM_GROUP_POSITIONS)
    for r0 in range(0, n, step):
        r1 = min(r0 + step, n)
        acc: FloatArray | None = None
        for g, part in zip(groups, books, strict=True):
            tile = position_pnl(part, log_returns[r0:r1], contract[g], at_horizon=at_horizon,
                                minus_value=minus_value, max_values=max_values,
                                layout=layout, smile=smile, surfaces=surfaces)
            acc = _add_group(acc, tile)
        if acc is not None:
            total[r0:r1] = acc
    return total


def _add_group(acc: FloatArray | None, tile: FloatArray) -> FloatArray:
    """``acc`` plus the row sums of one group's C-contiguous (rows, group) ``tile``.

    numpy adds a contiguous row pairwise, whatever the number of rows; the groups' sums
    are added one after the other, the first one taken as is.
    """
    s = np.asarray(tile.sum(axis=1), dtype=np.float64)
    return s if acc is None else acc + s


def summed_positions(values: FloatArray) -> FloatArray:
    """Row sums of a position matrix (n, P) as :func:`summed_position_values` adds them.

    ``values`` holds the book's positions in book order (e.g. from :func:`position_pnl`);
    the result has the bits of :func:`summed_position_values` on the same book and
    scenarios, whatever its ``max_values``: groups of :data:`SUM_GROUP_POSITIONS`
    positions, each summed pairwise per row, then the groups one after the other.
    """
    n, p = values.shape
    acc: FloatArray | None = None
    for g0 in range(0, p, SUM_GROUP_POSITIONS):
        acc = _add_group(acc, np.ascontiguousarray(values[:, g0:g0 + SUM_GROUP_POSITIONS]))
    return np.zeros(n) if acc is None else np.asarray(acc, dtype=np.float64)
