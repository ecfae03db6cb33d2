"""The governance stage of the nightly run, per desk, on the driver.

Limits and alerts, portfolio construction over each desk's underlyings (moments from the
scenario model), and performance: hypothetical (the current book revalued at each
historical close, with today's times to expiry and volatilities) and, when a
``pnl_history`` table is given, realized. A desk's failure is a row, never a crash.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.governance.alerts import (
    Alert,
    alerts_from_limit_checks,
    alerts_from_performance,
)
from risk_engine.governance.limits import check_desk_limits
from risk_engine.governance.performance import performance_table
from risk_engine.governance.settings import GovernanceSettings
from risk_engine.portfolio._moments import memoized_moments
from risk_engine.portfolio.tables import desk_portfolio_tables
from risk_engine.scenarios import ScenarioModel
from risk_engine.valuation import summed_position_values


def history_closes(history: pd.DataFrame) -> pd.DataFrame:
    """The closes of ``history`` as a (date x underlying) frame, dates ascending.

    One close per (date, underlying): the last row's; a (date, underlying) given twice with
    different closes is NaN (that date is left out wherever the underlying is needed),
    whatever the order of the rows. Computed once, it serves every desk
    (:func:`hypothetical_values`).
    """
    closes = history.pivot_table(index="date", columns="underlying", values="close",
                                 aggfunc="last").sort_index()
    if history.duplicated(["date", "underlying"]).any():
        lo = history.pivot_table(index="date", columns="underlying", values="close",
                                 aggfunc="min").reindex_like(closes)
        hi = history.pivot_table(index="date", columns="underlying", values="close",
                                 aggfunc="max").reindex_like(closes)
        closes = closes.where(lo == hi)
    return closes


def hypothetical_values(
    book: ResolvedBook, desk: str, history: pd.DataFrame, lookback_days: int | None = None,
    *, closes: pd.DataFrame | None = None,
) -> pd.Series:
    """Value of ``desk``'s current positions at each historical date's closes.

    Options are valued with today's times to expiry, implied volatilities and rates (the
    current book under each day's prices). Only dates where every underlying of the desk
    has one close (or identical copies of it) are used.

    ``closes``: :func:`history_closes` of ``history`` when the caller has it (several
    desks); the same values as pivoting the desk's rows of ``history`` here.

    Returns
    -------
    Series indexed by date (ascending), currency.
    """
    idx = np.flatnonzero(book.desk_mask(desk))
    sub = select_positions(book, idx)
    names = [book.underlyings[u] for u in np.unique(sub.underlying_index)]
    if closes is None:
        closes = history_closes(history[history["underlying"].isin(names)])
    closes = closes.reindex(columns=names).dropna()
    closes = closes[(closes > 0).all(axis=1)]
    if lookback_days is not None:
        closes = closes.tail(lookback_days + 1)
    # Underlyings of other desks keep today's spot (log return 0); no price is used as a
    # marker, so a stock that really closed at 1.00 is revalued at 1.00.
    log_ret = np.zeros((len(closes), len(book.underlyings)))
    for name in names:
        u = book.underlyings.index(name)
        log_ret[:, u] = np.log(closes[name].to_numpy(float) / book.spot[u])
    # In tiles, never a dates x positions matrix; the bits of a row sum over the positions.
    values = summed_position_values(sub, log_ret, at_horizon=False)
    return pd.Series(values, index=pd.Index(closes.index, name="date"))


def _net_weights(book: ResolvedBook, desk: str, names: list[str]) -> np.ndarray | None:
    """Delta-equivalent exposure per underlying over the desk's net sum (any sign).

    Capital weights summing to 1, the frontier's weights definition; None unless the net
    sum is > 0 (a net short desk has no fully invested representation).
    """
    m = book.desk_mask(desk)
    expo = np.zeros(len(names))
    for j, name in enumerate(names):
        u = book.underlyings.index(name)
        sel = m & (book.underlying_index == u)
        expo[j] = float((book.delta[sel] * book.quantity[sel]).sum() * book.spot[u])
    total = expo.sum()
    if total <= 0:
        return None
    return expo / total


def _current_weights(net: np.ndarray | None) -> np.ndarray | None:
    """The net weights when all are >= 0 (the risk parity decomposition's), else None."""
    if net is None or np.any(net < 0):
        return None
    return net


def governance_tables(
    book: ResolvedBook,
    model: ScenarioModel,
    risk_measures: pd.DataFrame,
    settings: GovernanceSettings,
    as_of: dt.date,
    *,
    history: pd.DataFrame | None = None,
    pnl_history: pd.DataFrame | None = None,
) -> tuple[dict[str, pd.DataFrame], list[Alert], list[str]]:
    """Run limits, portfolio construction, performance and alerts for every desk.

    Returns
    -------
    tables, alerts, warnings
        Frames ``limit_checks``, ``min_variance``, ``frontier``, ``risk_parity`` and
        ``performance`` (without ``run_id``), and the alerts raised (the run's ``alerts``
        table is built from every stage's alerts by the pipeline). The
        caller sends them (:func:`risk_engine.governance.alerts.dispatch_alerts`) once the
        date is published, never before: nobody is told of numbers they cannot read.
        ``warnings`` are the portfolio problems' (failed or fallback solves), for the run's
        manifest.
    """
    checks, minvar, frontier, parity, perf = [], [], [], [], []
    warnings: list[str] = []
    desk_rm = risk_measures[risk_measures["scope"] == "desk"]
    gross = dict(zip(book.desks, book.gross_value(), strict=True))
    sector = np.asarray(book.sectors, dtype=object)[book.underlying_index]
    closes = None
    if history is not None:
        try:  # the closes of every desk's underlyings, pivoted once
            closes = history_closes(history)
        except Exception:  # noqa: BLE001 - each desk fails as before, as its own row
            closes = None
    for desk in book.desks:
        m = book.desk_mask(desk)
        limits = settings.limits.for_desk(desk)
        positions = pd.DataFrame({"position_id": book.position_id[m], "sector": sector[m],
                                  "market_value": book.value[m]})
        checks.append(check_desk_limits(desk, positions, limits=limits,
                                        risk_figures=desk_rm[desk_rm["desk"] == desk]))
        names = sorted({book.underlyings[u] for u in book.underlying_index[m]})
        sub = model.subset(tuple(names))
        net = _net_weights(book, desk, names)
        with memoized_moments():  # the desk's covariance validated once for its problems
            tables = desk_portfolio_tables(desk, names, sub.mu, sub.cov,
                                           current_weights=_current_weights(net),
                                           frontier_weights=net, settings=settings.portfolio)
        minvar.append(tables.min_variance)
        warnings.extend(tables.warnings)
        frontier.append(tables.frontier)
        parity.append(tables.risk_parity)
        capital = limits.capital or gross[desk]
        if history is not None:
            try:
                values = hypothetical_values(book, desk, history,
                                             settings.performance.lookback_days,
                                             closes=closes)
                row = performance_table(desk, values.diff().dropna(), kind="pnl",
                                        capital=capital, settings=settings.performance)
            except Exception as exc:  # noqa: BLE001 - a desk's failure is a row
                row = performance_table(desk, pd.Series(dtype=float), kind="pnl",
                                        capital=capital, settings=settings.performance)
                row["status"], row["message"] = "error", f"hypothetical P&L failed: {exc}"
            perf.append(row.assign(source="hypothetical"))
        if pnl_history is not None:
            realized = pnl_history[pnl_history["desk"] == desk]
            series = realized.groupby("date")["pnl"].sum().sort_index()
            perf.append(performance_table(desk, series, kind="pnl", capital=capital,
                                          settings=settings.performance)
                        .assign(source="realized"))
    limit_checks = pd.concat(checks, ignore_index=True)
    performance = pd.concat(perf, ignore_index=True) if perf else None
    alerts = alerts_from_limit_checks(limit_checks, as_of, settings.alerts)
    if performance is not None:
        alerts += alerts_from_performance(performance, as_of, settings.alerts)
    out = {
        "limit_checks": limit_checks,
        "min_variance": pd.concat(minvar, ignore_index=True),
        "frontier": pd.concat(frontier, ignore_index=True),
        "risk_parity": pd.concat(parity, ignore_index=True),
    }
    if performance is not None:
        out["performance"] = performance
    return out, alerts, warnings
