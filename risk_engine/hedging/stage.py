"""The ``hedging`` stage of the nightly run, per desk or for the firm, on the driver.

For each desk (``scope: desk``) or for the whole book (``scope: firm``):

1. exposure: delta-equivalent shares per underlying, ``sum(delta x quantity)`` over the
   positions (quantities include the contract multiplier, deltas are per unit);
2. baskets: mean-reverting baskets within each sector of the scope's underlyings, from
   the closes in ``history`` (:mod:`risk_engine.hedging.baskets`);
3. decomposition: integer lots of the kept baskets leaving the smallest residual variance
   under the scenario model's covariance over the run's horizon
   (:mod:`risk_engine.hedging.decomposition`);
4. hedge: whole-lot single-underlying trades minimizing the residual's risk plus their
   cost (:mod:`risk_engine.hedging.hedge`).

Risks are standard deviations of the delta-equivalent P&L over the run's horizon, in
currency. A scope's failure is a summary row with its status, never a crashed run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.book import ResolvedBook
from risk_engine.hedging.baskets import Basket, clean_closes, estimate_baskets
from risk_engine.hedging.decomposition import (
    decompose,
    decompose_cvar,
    lot_box,
    residual_variance,
    scenario_share_pnl,
    share_factor,
)
from risk_engine.hedging.hedge import HedgeProblem, hedge_trades
from risk_engine.hedging.settings import HedgingSettings
from risk_engine.scenarios import ScenarioModel
from risk_engine.scenarios.generator import ScenarioSource


def desk_exposures(book: ResolvedBook) -> dict[str, np.ndarray]:
    """Delta-equivalent shares per underlying (book order) of every desk."""
    shares = book.delta * book.quantity
    u = len(book.underlyings)
    return {desk: np.bincount(book.underlying_index[book.desk_mask(desk)],
                              shares[book.desk_mask(desk)], minlength=u).astype(np.float64)
            for desk in book.desks}


def _frame(table: schemas.Table, rows: list[dict[str, Any]]) -> pd.DataFrame:
    dtypes = table.pandas_dtypes()
    frame = pd.DataFrame(rows, columns=list(dtypes))
    return frame.astype(dtypes)


def _scopes(book: ResolvedBook, settings: HedgingSettings
            ) -> list[tuple[str, np.ndarray, list[int]]]:
    """(name, exposure (U,), indices of the scope's underlyings) per desk or for the firm."""
    expo = desk_exposures(book)
    if settings.scope == "firm":
        total = np.sum([expo[d] for d in book.desks], axis=0)
        return [("firm", total, sorted(set(book.underlying_index.tolist())))]
    out = []
    for desk in book.desks:
        idx = sorted(set(book.underlying_index[book.desk_mask(desk)].tolist()))
        out.append((desk, expo[desk], idx))
    return out


def hedging_tables(book: ResolvedBook, model: ScenarioModel, history: pd.DataFrame | None,
                   settings: HedgingSettings, *, position_history: pd.DataFrame | None = None,
                   source: ScenarioSource | None = None
                   ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Baskets, decomposition and hedge of every desk (or of the firm).

    Parameters
    ----------
    book : ResolvedBook
        The run's book (deltas per unit, quantities with multipliers, spots, sectors).
    model : ScenarioModel
        The run's scenario model over ``book.underlyings`` (its ``factor`` gives the
        covariance of annual log returns).
    history : DataFrame or None
        Closes (``date``, ``underlying``, ``close``); dates after the as-of date are
        ignored. Without it no basket is estimated (a warning) and the hedge covers the
        whole exposure.
    settings : HedgingSettings
        The ``hedging`` config section.
    position_history : DataFrame, optional
        Daily net shares (``date``, ``desk``, ``underlying``, ``shares``); when given, the
        last ``history_days`` dates up to the as-of date are decomposed on each scope's
        kept baskets with today's covariance (``hedge_history``). Rows on underlyings
        outside the book (no covariance) are left out, with a warning.
    source : ScenarioSource, optional
        The run's Monte Carlo scenarios; with ``objective: cvar`` its first
        ``cvar_blocks`` blocks are regenerated and the lots minimize the residual's
        expected shortfall on them. Without it ``cvar`` falls back to ``variance`` (a
        warning).

    Returns
    -------
    tables, warnings
        Frames ``hedge_baskets``, ``hedge_recommendations``, ``hedge_summary`` and, with
        ``position_history``, ``hedge_history`` (without ``run_id`` and ``as_of_date``),
        and warnings for the run's manifest.
    """
    warnings: list[str] = []
    if tuple(model.underlyings) != tuple(book.underlyings):
        model = model.subset(book.underlyings)
    a_full = share_factor(book.spot, model.factor, book.horizon_years)
    closes: pd.DataFrame | None = None
    if history is None:
        warnings.append("hedging: no history table: no mean-reverting basket estimated")
    else:
        past = history[pd.to_datetime(history["date"], errors="coerce")
                       <= pd.Timestamp(book.as_of)]
        closes = clean_closes(past, book.underlyings)
    pnl_full = None
    if settings.objective == "cvar":
        pnl_full = _scenario_pnl(book, source, settings, warnings)
    cache: dict[tuple[str, tuple[str, ...]], list[Basket]] = {}
    basket_rows: list[dict[str, Any]] = []
    rec_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    history_rows: list[dict[str, Any]] = []
    daily = None if position_history is None else _daily_positions(
        book, position_history, settings, warnings)
    for name, exposure, idx in _scopes(book, settings):
        names = [book.underlyings[i] for i in idx]
        baskets: list[Basket] = []
        if closes is not None:
            groups: dict[str, list[str]] = {}
            for i in idx:
                groups.setdefault(book.sectors[i], []).append(book.underlyings[i])
            for group, members in sorted(groups.items()):
                key = (group, tuple(sorted(members)))
                if key not in cache:
                    found, notes = estimate_baskets(closes, {group: members}, settings)
                    cache[key] = found
                    warnings.extend(notes)
                baskets += cache[key]
        summary = _scope_rows(name, settings, book, a_full, exposure, idx, names, baskets,
                              basket_rows, rec_rows, pnl_full)
        summary_rows.append(summary)
        if daily is not None:
            history_rows += _history_rows(name, settings, book, a_full, idx, baskets, daily)
        msg = summary["message"] or ""
        if (str(summary["decomposition_method"]).startswith("cvar:")
                and summary["decomposition_status"] != "optimal"):
            warnings.append(f"hedging: {name}: cvar decomposition status "
                            f"{summary['decomposition_status']} "
                            f"({summary['decomposition_method']}): {msg}")
        if summary["status"] == "solver_error" or "time limit" in msg:
            warnings.append(f"hedging: {name}: hedge status {summary['status']}"
                            f" ({summary['method']}): {summary['message']}")
    tables = {
        "hedge_baskets": _frame(schemas.HEDGE_BASKETS, basket_rows),
        "hedge_recommendations": _frame(schemas.HEDGE_RECOMMENDATIONS, rec_rows),
        "hedge_summary": _frame(schemas.HEDGE_SUMMARY, summary_rows),
    }
    if daily is not None:
        tables["hedge_history"] = _frame(schemas.HEDGE_HISTORY, history_rows)
    return tables, warnings


def _scenario_pnl(book: ResolvedBook, source: ScenarioSource | None,
                  settings: HedgingSettings, warnings: list[str]) -> np.ndarray | None:
    """P&L of one share of each book underlying in the first ``cvar_blocks`` blocks."""
    if source is None:
        warnings.append("hedging: objective cvar without the run's scenarios: "
                        "the variance objective is used")
        return None
    col = {n: j for j, n in enumerate(source.model.underlyings)}
    missing = [n for n in book.underlyings if n not in col]
    if missing:
        warnings.append(f"hedging: objective cvar: underlyings {', '.join(missing[:5])} not "
                        "in the scenarios: the variance objective is used")
        return None
    blocks = range(min(settings.cvar_blocks, source.n_blocks))
    x = np.concatenate([source.block(b) for b in blocks], axis=0)
    x = x[:, [col[n] for n in book.underlyings]]
    return scenario_share_pnl(book.spot, x)


def _daily_positions(book: ResolvedBook, position_history: pd.DataFrame,
                     settings: HedgingSettings, warnings: list[str]
                     ) -> dict[str, pd.DataFrame]:
    """Per desk (or 'firm'): a (date x book underlying) frame of net shares, last dates."""
    ph = position_history
    dates = pd.to_datetime(ph["date"], errors="coerce")
    shares = pd.to_numeric(ph["shares"], errors="coerce").astype(float)
    ok = dates.notna() & (dates <= pd.Timestamp(book.as_of)) & np.isfinite(shares)
    known = ph["underlying"].isin(list(book.underlyings))
    n_out = int((ok & ~known).sum())
    n_bad = int((~ok).sum())
    if n_out or n_bad:
        warnings.append(f"hedging: position_history: {n_out} row(s) on underlyings outside "
                        f"the book and {n_bad} row(s) with a bad date or shares left out")
    rows = pd.DataFrame({"date": dates[ok & known].dt.date,
                         "desk": ph.loc[ok & known, "desk"].astype(str),
                         "underlying": ph.loc[ok & known, "underlying"].astype(str),
                         "shares": shares[ok & known]})
    if settings.scope == "firm":
        rows = rows.assign(desk="firm")
    else:
        other = sorted(set(rows["desk"]) - set(book.desks))
        if other:
            warnings.append(f"hedging: position_history: desk(s) {', '.join(other)} not in "
                            "today's book left out (no baskets)")
    out: dict[str, pd.DataFrame] = {}
    for desk, frame in rows.groupby("desk", sort=True):
        wide = frame.pivot_table(index="date", columns="underlying", values="shares",
                                 aggfunc="sum").sort_index()
        out[str(desk)] = wide.reindex(columns=list(book.underlyings)).fillna(0.0) \
            .tail(settings.history_days)
    return out


def _history_rows(name: str, settings: HedgingSettings, book: ResolvedBook,
                  a_full: np.ndarray, idx: list[int], baskets: list[Basket],
                  daily: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """The decomposition of each past date's net shares on the scope's kept baskets.

    Exact by enumeration when the exact box holds at most 20,000 points, else the
    deterministic fallback (rounding + local search): one SCIP solve per day would not
    fit a nightly run.
    """
    frame = daily.get(name)
    if frame is None or frame.empty:
        return []
    kept = [b for b in baskets if b.kept]
    pos = {book.underlyings[i]: i for i in idx}
    b = np.zeros((len(book.underlyings), len(kept)))
    for k, basket in enumerate(kept):
        for n, w in zip(basket.names, basket.weights, strict=True):
            b[pos[n], k] = float(w)
    out = []
    for date, row in frame.iterrows():
        e = row.to_numpy(float)
        y = a_full @ e
        f0 = float(y @ y)
        sol = decompose(a_full, e, b, time_limit=settings.time_limit_seconds,
                        max_lots=settings.max_lots, exact_max_variables=0,
                        max_enumeration=20_000)
        residual = e - b @ sol.lots.astype(np.float64)
        risk0, risk1 = math.sqrt(f0), math.sqrt(max(sol.variance, 0.0))
        out.append({
            "desk": name, "date": date, "n_underlyings": int(np.count_nonzero(e)),
            "gross_shares": float(np.abs(e).sum()), "exposure_risk": risk0,
            "risk_after_baskets": risk1,
            "basket_risk_share": 1.0 - risk1 / risk0 if risk0 > 0 else math.nan,
            "n_baskets_used": int(np.count_nonzero(sol.lots)),
            "gross_lots": int(np.abs(sol.lots).sum()),
            "residual_gross_shares": float(np.abs(residual).sum()),
            "method": sol.method, "status": sol.status,
        })
    return out


def _scope_rows(name: str, settings: HedgingSettings, book: ResolvedBook, a_full: np.ndarray,
                exposure: np.ndarray, idx: list[int], names: list[str], baskets: list[Basket],
                basket_rows: list[dict[str, Any]], rec_rows: list[dict[str, Any]],
                pnl_full: np.ndarray | None = None) -> dict[str, Any]:
    """Decompose and hedge one scope; append its basket and trade rows; its summary row.

    With ``pnl_full`` (objective cvar) the lots minimize the residual's expected shortfall
    within the variance path's exact box; the risks reported stay standard deviations and
    the message gives both expected shortfalls.
    """
    kept = [b for b in baskets if b.kept]
    half_life = sum(1 for b in baskets if not b.kept and b.reason.startswith("half-life"))
    row: dict[str, Any] = {
        "desk": name, "scope": settings.scope, "n_underlyings": len(idx),
        "n_baskets": len(baskets), "n_kept": len(kept),
        "n_dropped_not_significant": len(baskets) - len(kept) - half_life,
        "n_dropped_half_life": half_life,
        "exposure_risk": math.nan, "risk_after_baskets": math.nan,
        "basket_risk_share": math.nan, "risk_after_hedge": math.nan,
        "continuous_bound": math.nan, "gap": math.nan, "cost": math.nan,
        "decomposition_method": "none", "decomposition_status": "solver_error",
        "method": "none", "status": "solver_error", "solver": None, "message": None,
    }
    lots = np.zeros(len(kept), dtype=np.int64)
    try:
        a = a_full[:, idx]
        e = exposure[idx]
        pos = {n: j for j, n in enumerate(names)}
        b = np.zeros((len(idx), len(kept)))
        for k, basket in enumerate(kept):
            for n, w in zip(basket.names, basket.weights, strict=True):
                b[pos[n], k] = float(w)
        y = a @ e
        f0 = float(y @ y)
        sol = decompose(a, e, b, time_limit=settings.time_limit_seconds,
                        max_lots=settings.max_lots,
                        exact_max_variables=settings.exact_max_variables)
        lots = sol.lots
        variance, method, status = sol.variance, sol.method, sol.status
        messages = [sol.message]
        if pnl_full is not None and kept:
            lo, hi, _, _ = lot_box(a, e, b, settings.max_lots)
            cv = decompose_cvar(pnl_full[:, idx], e, b, lo, hi, sol.lots,
                                settings.cvar_level,
                                time_limit=settings.cvar_time_limit_seconds,
                                exact_max_variables=settings.exact_max_variables)
            lots = cv.lots
            variance = residual_variance(a, e, b, lots)
            method, status = f"cvar:{cv.method}", cv.status
            messages = [f"ES({settings.cvar_level:g}) of the exposure {cv.exposure_es:.6g}, "
                        f"of the residual {cv.es:.6g} on {pnl_full.shape[0]} scenarios",
                        cv.message]
        held = b @ lots.astype(np.float64)
        residual = e - held
        spot = book.spot[idx]
        lot_size = np.array([settings.lot_size(n) for n in names], dtype=np.int64)
        cost = settings.cost_per_share + settings.cost_bps * 1e-4 * spot
        problem = HedgeProblem(a=a, residual=residual, spot=spot, lot_size=lot_size,
                               cost_per_share=cost,
                               max_gross_notional=settings.max_gross_notional,
                               max_underlyings=settings.max_underlyings_traded,
                               max_lots=settings.max_lots)
        res = hedge_trades(problem, time_limit=settings.time_limit_seconds,
                           exact_max_variables=settings.exact_max_variables)
        risk0, risk1 = math.sqrt(f0), math.sqrt(max(variance, 0.0))
        row.update({
            "exposure_risk": risk0, "risk_after_baskets": risk1,
            "basket_risk_share": 1.0 - risk1 / risk0 if risk0 > 0 else math.nan,
            "risk_after_hedge": res.risk, "continuous_bound": res.bound, "gap": res.gap,
            "cost": res.cost, "decomposition_method": method,
            "decomposition_status": status, "method": res.method, "status": res.status,
            "solver": res.solver or None,
            "message": "; ".join(t for t in (*messages, res.message) if t) or None,
        })
        for j, n in enumerate(names):
            shares = int(res.lots[j]) * int(lot_size[j])
            rec_rows.append({
                "desk": name, "underlying": n, "exposure_shares": float(e[j]),
                "basket_shares": float(held[j]), "residual_shares": float(residual[j]),
                "lot_size": int(lot_size[j]), "lots": int(res.lots[j]), "shares": shares,
                "notional": shares * float(spot[j]),
                "cost": abs(shares) * float(cost[j]),
            })
    except Exception as exc:  # noqa: BLE001 - a scope's failure is a row
        row["message"] = f"{type(exc).__name__}: {exc}"[:500]
    lot_of = {bk.basket_id: int(n) for bk, n in zip(kept, lots, strict=False)}
    for basket in baskets:
        for n, w in zip(basket.names, basket.weights, strict=True):
            basket_rows.append({
                "desk": name, "basket_id": basket.basket_id, "method": basket.method,
                "test": basket.test, "underlying": n, "weight": int(w),
                "lots": lot_of.get(basket.basket_id, 0),
                "statistic": basket.statistic, "critical_value": basket.critical_value,
                "adf_statistic": basket.adf_statistic,
                "adf_critical_value": basket.adf_critical_value,
                "mean_reversion_speed": basket.speed,
                "half_life_days": (basket.half_life_days
                                   if math.isfinite(basket.half_life_days) else math.nan),
                "spread_volatility": basket.spread_volatility, "kept": basket.kept,
                "reason": basket.reason or None,
            })
    return row
