"""User stress scenarios and the spot-vol grid: deterministic full revaluations, now.

Both apply instantaneous shocks to today's market and revalue every position exactly with
Black-Scholes (:func:`risk_engine.pricing.black_scholes.black_scholes_price`) at its full time
to expiry: stocks at the shocked spot, options at the shocked spot, implied vol and zero
rate. P&L is the shocked value minus the value by the same pricer on today's inputs (so a
zero shock gives zero).

**Stress scenarios** (optional input ``stress_scenarios``). A row moves the underlyings of its
scope: ``all`` (every underlying of the book), ``sector`` (``target`` is a sector),
``underlying`` (``target`` is an underlying) or ``historical`` (every underlying, by its
relative close change from the last close on or before ``start_date`` to the last close on
or before ``end_date``). ``spot_shock`` is relative, ``vol_shock`` in vol points (5 means
``sigma + 0.05``), ``rate_shock`` in basis points and moves the zero rates of the options on
the scope's underlyings; null shocks are 0. Rows with one ``scenario_id`` combine: spot
moves compound (``(1 + a)(1 + b) - 1``), vol and rate moves add. A bad row (unknown scope
or target, a non-finite shock, a shock that takes a spot to zero or below or an option's
vol below zero, a historical range without closes) goes to ``rejected_rows`` with its
reason, and so do the other rows of its scenario, which is not run; the other scenarios run.

**Spot-vol grid** per desk and underlying: every (spot move, vol move) pair of the
``stress`` section moves the underlying's spot and every option's vol on it; vols are
floored at zero. The row with a null underlying moves every underlying of the desk at once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.book import Rejection, ResolvedBook
from risk_engine.pricing.black_scholes import black_scholes_price
from risk_engine.scenarios.historical import close_matrix
from risk_engine.stress.settings import StressSettings
from risk_engine.types import CALL, EQUITY, FloatArray

SCOPES = ("all", "sector", "underlying", "historical")


def shocked_values(book: ResolvedBook, spot_factor: FloatArray, vol_shift: FloatArray,
                   rate_shift: FloatArray) -> FloatArray:
    """Value of every position now under per-underlying shocks, shape (G, P).

    Parameters
    ----------
    book
        The resolved book.
    spot_factor, vol_shift, rate_shift : ndarray, shape (G, U)
        Per shock ``g`` and underlying: the spot multiplier ``S -> S f``, the absolute
        implied-vol move (decimal; the shocked vol is floored at zero) and the absolute
        zero-rate move (decimal) of the options on the underlying.
    """
    u = book.underlying_index
    s = book.spot[u] * spot_factor[:, u]
    out = s * book.quantity
    opt = book.kind != EQUITY
    if opt.any():
        vol = np.maximum(book.volatility[opt] + vol_shift[:, u[opt]], 0.0)
        unit = black_scholes_price(
            spots=s[:, opt], strikes=book.strike[opt], expiries=book.expiry_years[opt],
            volatilities=vol, rates=book.rate[opt] + rate_shift[:, u[opt]],
            dividend_yields=book.dividend_yield[opt], is_call=book.kind[opt] == CALL)
        out[:, opt] = unit * book.quantity[opt]
    result: FloatArray = out
    return result


def base_values(book: ResolvedBook) -> FloatArray:
    """Value of every position today by the stress pricer, shape (P,)."""
    n_u = len(book.underlyings)
    one = np.ones((1, n_u))
    zero = np.zeros((1, n_u))
    return shocked_values(book, one, zero, zero)[0]


@dataclass(frozen=True)
class StressScenario:
    """One combined stress scenario: per-underlying spot multiplier, vol and rate moves."""

    scenario_id: str
    description: str | None
    spot_factor: FloatArray
    vol_shift: FloatArray
    rate_shift: FloatArray


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def _number(value: object) -> float:
    if value is None or value is pd.NA:
        return 0.0
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return 0.0 if math.isnan(x) else x


def _day(value: object) -> dt.date | None:
    if value is None or value is pd.NA:
        return None
    try:
        ts = pd.Timestamp(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if pd.isna(ts) else ts.date()


def build_scenarios(frame: pd.DataFrame, book: ResolvedBook, history: pd.DataFrame | None,
                    as_of: dt.date) -> tuple[list[StressScenario], list[Rejection]]:
    """Combine the ``stress_scenarios`` rows per id; reject bad rows (and their scenario).

    Returns
    -------
    scenarios, rejected
        The valid scenarios in order of first appearance of their id, and a rejection per
        row of every invalid scenario (the row at fault with its own reason, the others
        naming it).
    """
    n_u = len(book.underlyings)
    und = {u: i for i, u in enumerate(book.underlyings)}
    sectors = np.asarray(book.sectors, dtype=object)
    opt = book.kind != EQUITY
    min_vol = np.full(n_u, np.inf)
    if opt.any():
        np.minimum.at(min_vol, book.underlying_index[opt], book.volatility[opt])
    closes = close_matrix(history, book.underlyings, as_of) if history is not None else None
    order: list[str] = []
    rows_of: dict[str, list[int]] = {}
    ids = frame["scenario_id"] if "scenario_id" in frame else pd.Series([None] * len(frame))
    rejected: list[Rejection] = []
    for i in range(len(frame)):
        sid = _text(ids.iat[i])
        if sid is None:
            rejected.append(Rejection("stress_scenarios", f"row {i}", "scenario_id", None,
                                      "scenario_id is missing"))
            continue
        if sid not in rows_of:
            order.append(sid)
            rows_of[sid] = []
        rows_of[sid].append(i)
    out: list[StressScenario] = []
    for sid in order:
        factor = np.ones(n_u)
        vol = np.zeros(n_u)
        rate = np.zeros(n_u)
        fault: tuple[int, str, object, str] | None = None
        description = None
        for i in rows_of[sid]:
            row = frame.iloc[i]
            description = description or _text(row.get("description"))
            scope = _text(row.get("scope"))
            target = _text(row.get("target"))
            shocks = {c: _number(row.get(c)) for c in ("spot_shock", "vol_shock", "rate_shock")}
            bad = [c for c, x in shocks.items() if not math.isfinite(x)]
            mask = np.zeros(n_u, dtype=bool)
            hist_factor = None
            if scope not in SCOPES:
                fault = (i, "scope", scope, f"unknown scope (one of {', '.join(SCOPES)})")
            elif bad:
                fault = (i, bad[0], row.get(bad[0]), f"{bad[0]} is not a finite number")
            elif scope == "all":
                mask[:] = True
            elif scope == "sector":
                mask = sectors == target
                if not mask.any():
                    fault = (i, "target", target, "unknown target: no underlying of the book "
                             "is in this sector")
            elif scope == "underlying":
                if target not in und:
                    fault = (i, "target", target, "unknown target: not an underlying of the book")
                else:
                    mask[und[target]] = True
            else:
                mask[:] = True
                hist_factor, why = _replay(closes, row, as_of)
                if hist_factor is None:
                    fault = (i, why[0], row.get(why[0]), why[1])
            if fault is not None:
                break
            f = 1.0 + shocks["spot_shock"]
            if f <= 0.0:
                fault = (i, "spot_shock", shocks["spot_shock"],
                         "the shock takes the spot to zero or below")
                break
            factor[mask] *= f
            if hist_factor is not None:
                factor *= hist_factor
            vol[mask] += shocks["vol_shock"] / 100.0
            rate[mask] += shocks["rate_shock"] / 10_000.0
            neg = np.flatnonzero(mask & (min_vol + vol < 0.0))
            if neg.size:
                fault = (i, "vol_shock", shocks["vol_shock"],
                         f"the shock takes an implied vol of {book.underlyings[neg[0]]} below zero")
                break
        if fault is None and not (np.isfinite(factor).all() and (factor > 0).all()):
            fault = (rows_of[sid][-1], "spot_shock", None,
                     "the combined shocks take a spot to zero or below")
        if fault is None:
            out.append(StressScenario(sid, description, factor, vol, rate))
            continue
        at, column, value, reason = fault
        for i in rows_of[sid]:
            key = f"{sid}/row {i}"
            if i == at:
                rejected.append(Rejection("stress_scenarios", key, column, value, reason))
            else:
                rejected.append(Rejection("stress_scenarios", key, "scenario_id", sid,
                                          f"another row of scenario {sid} is rejected (row {at})"))
    return out, rejected


def _replay(closes: pd.DataFrame | None, row: pd.Series, as_of: dt.date
            ) -> tuple[FloatArray | None, tuple[str, str]]:
    """The spot multipliers ``close(end) / close(start)`` of a historical replay row."""
    start, end = _day(row.get("start_date")), _day(row.get("end_date"))
    if start is None:
        return None, ("start_date", "scope historical needs a start_date")
    if end is None:
        return None, ("end_date", "scope historical needs an end_date")
    if not start < end <= as_of:
        return None, ("end_date", f"need start_date < end_date <= as-of date {as_of}")
    if closes is None or len(closes) == 0:
        return None, ("start_date", "no history table to replay")
    idx = closes.index
    a = idx.searchsorted(pd.Timestamp(start), side="right") - 1
    b = idx.searchsorted(pd.Timestamp(end), side="right") - 1
    if a < 0:
        return None, ("start_date", "no history on or before start_date")
    # The last close on or before each date, per underlying.
    upto_a = closes.iloc[:a + 1].ffill().iloc[-1]
    upto_b = closes.iloc[:b + 1].ffill().iloc[-1]
    ratio = (upto_b / upto_a).to_numpy(float)
    missing = [str(u) for u, r in zip(closes.columns, ratio, strict=True) if not np.isfinite(r)]
    if missing:
        return None, ("start_date", f"no close on or before start_date or end_date for "
                      f"{', '.join(missing[:5])}")
    return ratio, ("", "")


def _worst(pnl: FloatArray, ids: np.ndarray, k: int) -> tuple[str, list[float]]:
    order = np.argsort(pnl, kind="stable")[:k]
    return ",".join(str(x) for x in ids[order]), [float(x) for x in pnl[order]]


def stress_results(book: ResolvedBook, scenarios: Sequence[StressScenario],
                   worst_positions: int = 5) -> pd.DataFrame:
    """The ``stress_results`` rows (without run_id and as_of_date).

    Per scenario, each desk and the firm: base value, stressed value, P&L and the
    ``worst_positions`` positions with the lowest P&L (ties in position id order).
    """
    columns = schemas.STRESS_RESULTS.pandas_dtypes()
    base = base_values(book)
    rows = []
    d_idx = book.desk_index
    n_d = len(book.desks)
    for sc in scenarios:
        value = shocked_values(book, sc.spot_factor[None], sc.vol_shift[None],
                               sc.rate_shift[None])[0]
        pnl = value - base
        scopes: list[tuple[str, str | None, np.ndarray]] = [
            ("desk", desk, d_idx == d) for d, desk in enumerate(book.desks)]
        scopes.append(("firm", None, np.ones(book.n_positions, dtype=bool)))
        b_desk = np.bincount(d_idx, base, minlength=n_d)
        v_desk = np.bincount(d_idx, value, minlength=n_d)
        for j, (scope, desk, mask) in enumerate(scopes):
            bv = float(b_desk[j]) if scope == "desk" else float(b_desk.sum())
            sv = float(v_desk[j]) if scope == "desk" else float(v_desk.sum())
            ids, worst = _worst(pnl[mask], book.position_id[mask], worst_positions)
            rows.append({"scenario_id": sc.scenario_id, "description": sc.description,
                         "scope": scope, "desk": desk, "base_value": bv, "stressed_value": sv,
                         "pnl": sv - bv, "worst_positions": ids, "worst_pnl": worst})
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def stress_grid(book: ResolvedBook, settings: StressSettings) -> pd.DataFrame:
    """The ``stress_grid`` rows (without run_id and as_of_date): see the module docstring."""
    columns = schemas.STRESS_GRID.pandas_dtypes()
    spots = np.asarray(settings.spot_shocks, float)
    vols = np.asarray(settings.vol_shocks, float)
    n_u = len(book.underlyings)
    g_s = np.repeat(spots, vols.size)
    g_v = np.tile(vols, spots.size)
    factor = np.repeat((1.0 + g_s)[:, None], n_u, axis=1)
    vshift = np.repeat((g_v / 100.0)[:, None], n_u, axis=1)
    base = base_values(book)
    pnl = shocked_values(book, factor, vshift, np.zeros_like(factor)) - base
    cell = book.desk_index * n_u + book.underlying_index
    frames = []
    for d, desk in enumerate(book.desks):
        in_desk = book.desk_index == d
        groups: list[tuple[str | None, np.ndarray]] = [
            (u, in_desk & (book.underlying_index == i))
            for i, u in enumerate(book.underlyings)
            if np.any(cell[in_desk] == d * n_u + i)]
        groups.append((None, in_desk))
        for u, mask in groups:
            frames.append(pd.DataFrame({
                "desk": desk, "underlying": u, "spot_shock": g_s, "vol_shock": g_v,
                "base_value": float(base[mask].sum()), "pnl": pnl[:, mask].sum(axis=1)}))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return pd.concat(frames, ignore_index=True)[list(columns)].astype(columns)
