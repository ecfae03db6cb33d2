"""Stressed VaR: today's book revalued once per historical date, then every rolling window.

Over the longest trailing run of dates (at most ``stressed_var.history_days`` daily changes)
on which every underlying of the book has a close, scenario ``j`` is the historical change
of the window starting at date ``j`` (the ``historical`` section's horizon method and spot
shift, never filtered), applied to today's market. The book is revalued once per scenario,
in blocks of ``stressed_var.block_size`` dates distributed by the engine's block pass
(:meth:`risk_engine.engine.ScenarioBlocks.fold`); the P&L per (date, desk) is all that comes
back. Every rolling window of ``window_days`` daily changes then holds the ``m`` scenarios
whose changes lie inside it (``window_days - h + 1`` overlapping h-day changes, or
``window_days`` scaled one-day changes); its VaR and ES are the exact estimators of
:mod:`risk_engine.measures` over those ``m`` losses. Every window reuses the same
revaluations: the windows' sorted losses come from one vectorized sort of the sliding
windows, so searching 2,500 windows costs a sort of ``2,500 x m`` numbers.

Per desk and the firm and per measure and level, the window with the largest value (the
earliest among equals) gives the ``stressed_var`` row: its first and last date and value.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from risk_engine import schemas
from risk_engine.book import ResolvedBook
from risk_engine.measures import tail_rank
from risk_engine.revaluation import plan_revaluation
from risk_engine.scenarios.historical import (
    ABSOLUTE,
    CHANGE,
    HistoricalData,
    HistoricalSettings,
    HistoricalSource,
    close_matrix,
    historical_source,
)
from risk_engine.scenarios.model import ScenarioModel
from risk_engine.simulation import SimulationSpec, simulate_block
from risk_engine.stress.settings import StressedVarSettings
from risk_engine.types import FloatArray

Fold = Callable[[Callable[[int], FloatArray], Callable[[FloatArray, FloatArray], FloatArray],
                 int], FloatArray]


def trailing_data(history: pd.DataFrame, book: ResolvedBook, as_of: dt.date,
                  max_days: int, hist: HistoricalSettings) -> HistoricalData:
    """The levels of the longest trailing run of dates where every book underlying has a close.

    At most ``max_days + 1`` dates, ending at the last history date on or before ``as_of``.
    """
    closes = close_matrix(history, book.underlyings, as_of).iloc[-(max_days + 1):]
    gaps = np.flatnonzero(closes.isna().any(axis=1).to_numpy(bool))
    if gaps.size:
        closes = closes.iloc[int(gaps[-1]) + 1:]
    values = closes.to_numpy(float).reshape(len(closes), len(book.underlyings))
    if hist.spot_shift == "absolute":
        levels, base = values, book.spot.copy()
        shift = np.full(values.shape[1], ABSOLUTE, np.int8)
    else:
        levels, base = np.log(values), np.ones(values.shape[1])
        shift = np.full(values.shape[1], CHANGE, np.int8)
    return HistoricalData(closes.index.to_numpy("datetime64[D]"), book.underlyings, levels,
                          shift, base)


def _stack(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.concatenate([a, b])


def date_pnl(book: ResolvedBook, source: HistoricalSource, fold: Fold,
             chunk_size: int = 1024) -> FloatArray:
    """P&L per (historical scenario, desk) of today's book, shape (n, D), by the block pass.

    ``fold`` is the engine's :meth:`~risk_engine.engine.ScenarioBlocks.fold`: blocks are
    revalued where the engine runs them (executors for Spark), stacked in block order.
    """
    spec = SimulationSpec(plan=plan_revaluation(book), source=source, chunk_size=chunk_size)
    return fold(functools.partial(simulate_block, spec), _stack, source.n_blocks)


def rolling_tails(loss: FloatArray, m: int, levels: Sequence[float]
                  ) -> tuple[FloatArray, FloatArray]:
    """Exact VaR and ES of every window of ``m`` consecutive losses, per level.

    Returns
    -------
    var, es : ndarray, shape (len(levels), n - m + 1)
        ``var[i, s]`` is ``L(k)`` of window ``s`` (``k = ceil(alpha m)``); ``es`` the
        estimator of :mod:`risk_engine.measures` over the same window.
    """
    windows = np.sort(sliding_window_view(loss, m), axis=1)
    var = np.empty((len(levels), windows.shape[0]))
    es = np.empty_like(var)
    for i, alpha in enumerate(levels):
        k = tail_rank(m, alpha)
        lk = windows[:, k - 1]
        var[i] = lk
        es[i] = (windows[:, k:].sum(axis=1) + max(k - alpha * m, 0.0) * lk) / (m * (1 - alpha))
    return var, es


def stressed_var_table(book: ResolvedBook, history: pd.DataFrame, settings: StressedVarSettings,
                       hist: HistoricalSettings, levels: Sequence[float], *, as_of: dt.date,
                       horizon_days: int, model: ScenarioModel, fold: Fold
                       ) -> tuple[pd.DataFrame, list[str]]:
    """The ``stressed_var`` rows of today's book (without run_id and as_of_date), and warnings.

    Raises nothing for a short history: if fewer than ``window_days + 1`` dates have a close
    of every underlying of the book, the table is empty and a warning says why.
    """
    columns = schemas.STRESSED_VAR.pandas_dtypes()
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    w = settings.window_days
    data = trailing_data(history, book, as_of, settings.history_days, hist)
    t = data.levels.shape[0] - 1
    overlapping = hist.horizon_method == "overlapping"
    if t < w or (overlapping and w < horizon_days):
        return empty, [f"stressed_var: skipped: the history has {max(t, 0)} daily change(s) "
                       f"with a close of every underlying of the book up to {as_of}; a window "
                       f"needs stressed_var.window_days = {w} (and at least "
                       f"monte_carlo.horizon_days = {horizon_days})"]
    cfg = HistoricalSettings(window_days=t, horizon_method=hist.horizon_method,
                             spot_shift=hist.spot_shift, block_size=settings.block_size)
    source = historical_source(data, cfg, horizon_days=horizon_days, model=model,
                               horizon_years=book.horizon_years)
    pnl = date_pnl(book, source, fold)
    m = w - horizon_days + 1 if overlapping else w
    loss = -pnl
    series: list[tuple[str, str | None, FloatArray]] = [
        ("desk", d, loss[:, i]) for i, d in enumerate(book.desks)]
    series.append(("firm", None, loss.sum(axis=1)))
    n_windows = source.n_scenarios - m + 1
    rows = []
    for scope, desk, x in series:
        var, es = rolling_tails(np.ascontiguousarray(x), m, levels)
        for measure, values in (("VaR", var), ("ES", es)):
            for i, alpha in enumerate(levels):
                s = int(np.argmax(values[i]))
                rows.append({
                    "scope": scope, "desk": desk, "measure": measure,
                    "confidence_level": float(alpha), "horizon_days": horizon_days,
                    "window_days": w, "window_start": _date(data.dates[s]),
                    "window_end": _date(data.dates[s + w]), "value": float(values[i, s]),
                    "window_scenarios": m, "n_windows": n_windows,
                    "history_start": _date(data.dates[0]), "history_end": _date(data.dates[-1]),
                })
    warnings = []
    if (1 - min(levels)) * m < 10:
        warnings.append(f"stressed_var: {m} scenarios per window leave fewer than 10 beyond "
                        f"the {min(levels)} quantile; the window's ES rests on few losses")
    frame = pd.DataFrame(rows, columns=list(columns)).astype(columns)
    if math.isnan(float(frame["value"].sum())):
        raise ValueError("stressed_var: a window's measure is not finite")
    return frame, warnings


def _date(day: np.datetime64) -> dt.date:
    out: dt.date = pd.Timestamp(day).date()
    return out
