"""Per-desk entry points: portfolio analytics as pandas DataFrames (one desk per call).

These functions never raise on a desk's data or a solver outcome: a failed desk is a row with
a ``status`` and a ``message`` (``underlying`` is None on such rows). The column names and
pandas dtypes are declared in ``*_COLUMNS``; string columns are ``object`` holding ``str`` or
None. The caller (the Spark stage) adds ``run_id`` and ``as_of_date``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from risk_engine import schemas
from risk_engine.errors import DataError
from risk_engine.portfolio.frontier import current_book, efficient_frontier
from risk_engine.portfolio.min_variance import min_variance
from risk_engine.portfolio.results import CurrentBook
from risk_engine.portfolio.risk_contributions import equal_risk_adjustments, risk_contributions
from risk_engine.portfolio.risk_parity import risk_parity
from risk_engine.portfolio.settings import DEFAULT_PORTFOLIO_SETTINGS, PortfolioSettings

logger = logging.getLogger(__name__)

#: min_variance table: one row per (desk, underlying).
MIN_VARIANCE_COLUMNS: dict[str, str] = schemas.MIN_VARIANCE.pandas_dtypes()

#: frontier table: one row per (desk, point, underlying).
FRONTIER_COLUMNS: dict[str, str] = schemas.FRONTIER.pandas_dtypes()

#: risk_parity table: one row per (desk, portfolio, underlying); portfolio is
#: ``risk_parity`` (the solved weights) or ``current`` (the desk's weights, evaluated only).
RISK_PARITY_COLUMNS: dict[str, str] = schemas.RISK_PARITY.pandas_dtypes()


def _frame(rows: list[dict[str, Any]], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns)


def _underlyings(underlyings: Sequence[str], n: int | None = None) -> list[str]:
    names = [str(u) for u in underlyings]
    if len(names) == 0:
        raise DataError("the desk has no underlyings")
    if len(set(names)) != len(names):
        dup = sorted({u for u in names if names.count(u) > 1})
        raise DataError(f"duplicate underlyings {dup}")
    if n is not None and len(names) != n:
        raise DataError(f"{len(names)} underlyings but moments of size {n}")
    return names


def _size(sigma: ArrayLike) -> int:
    return int(np.shape(sigma)[0]) if np.ndim(sigma) >= 1 else -1


def _failure_status(exc: Exception) -> str:
    return "not_applicable" if isinstance(exc, (DataError, ValueError)) else "solver_error"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def min_variance_table(
    desk: str,
    underlyings: Sequence[str],
    mu: ArrayLike,
    sigma: ArrayLike,
    settings: PortfolioSettings = DEFAULT_PORTFOLIO_SETTINGS,
) -> pd.DataFrame:
    """Minimum-variance weights of one desk (columns :data:`MIN_VARIANCE_COLUMNS`).

    Parameters
    ----------
    desk : str
        Desk name.
    underlyings : sequence of str, length U
        Names in the order of ``mu``/``sigma``.
    mu : array_like, shape (U,)
        Annualized mean returns.
    sigma : array_like, shape (U,U)
        Annualized covariance.
    settings : PortfolioSettings
        Bounds, optional target return and mode, solver.

    Returns
    -------
    DataFrame
        U rows, or one row with ``underlying`` None when the desk fails.
    """
    target = settings.target_return
    mode = None if target is None else settings.target_mode
    base = {"desk": desk, "target_return": np.nan if target is None else target,
            "target_mode": mode}
    try:
        names = _underlyings(underlyings, _size(sigma))
        res = min_variance(mu, sigma, target_return=target, target_mode=settings.target_mode,
                           bounds=settings.bounds, solver=settings.solver,
                           fallback_solver=settings.fallback_solver)
    except Exception as exc:  # noqa: BLE001 - a failed desk is a row
        logger.warning("desk %s: min-variance failed: %s", desk, _describe(exc))
        return _frame([{**base, "underlying": None, "weight": np.nan, "expected_return": np.nan,
                        "volatility": np.nan, "status": _failure_status(exc),
                        "message": _describe(exc), "solver": settings.solver}],
                      MIN_VARIANCE_COLUMNS)
    rows = [
        {**base, "underlying": u, "weight": float(res.weights[i]),
         "expected_return": res.expected_return, "volatility": res.volatility,
         "status": res.status, "message": res.message, "solver": res.solver}
        for i, u in enumerate(names)
    ]
    return _frame(rows, MIN_VARIANCE_COLUMNS)


def frontier_table(
    desk: str,
    underlyings: Sequence[str],
    mu: ArrayLike,
    sigma: ArrayLike,
    settings: PortfolioSettings = DEFAULT_PORTFOLIO_SETTINGS,
    *,
    current_weights: ArrayLike | None = None,
) -> pd.DataFrame:
    """Efficient frontier of one desk (columns :data:`FRONTIER_COLUMNS`).

    Point 0 is the min-variance portfolio (its ``target_return`` is its own return). Each
    row carries its point's ``status`` and the frontier's ``frontier_status``; ``message``
    is the point's message, or the frontier's when the point is fine but the frontier is not
    (e.g. ``unbounded`` maximum return: only point 0 is present). ``sharpe`` is
    ``(expected_return - risk_free_rate) / volatility`` (NaN at zero volatility).

    The ``current_*`` columns place the current book in the same plane
    (:func:`~risk_engine.portfolio.frontier.current_book`: the same ``mu`` and ``Sigma``,
    ``mu' w`` and ``sqrt(w' Sigma w)``), repeated on every row of the desk;
    ``current_weight`` is the current weight of the row's underlying (NaN on a failed
    desk's row). Without ``current_weights`` they are NaN with status ``no_weights``.

    Parameters
    ----------
    desk, underlyings, mu, sigma
        As in :func:`min_variance_table`.
    settings : PortfolioSettings
        ``n_frontier_points``, ``max_frontier_return``, ``risk_free_rate``, bounds, solver.
    current_weights : array_like, shape (U,), optional
        The desk's current capital weights (fractions summing to 1), in the order of
        ``underlyings``.

    Returns
    -------
    DataFrame
        ``P x U`` rows, or one row (point 0, ``underlying`` None) when the desk fails.
    """
    return _frontier_frame(desk, underlyings, mu, sigma, settings, current_weights)[0]


def _current_columns(cur: CurrentBook, i: int | None) -> dict[str, Any]:
    """The ``current_*`` columns of a frontier row (``i``: the row's underlying, or None)."""
    weight = float(cur.weights[i]) if i is not None and i < cur.weights.shape[0] else np.nan
    return {"current_weight": weight, "current_expected_return": cur.expected_return,
            "current_volatility": cur.volatility, "current_status": cur.status}


def _frontier_frame(
    desk: str,
    underlyings: Sequence[str],
    mu: ArrayLike,
    sigma: ArrayLike,
    settings: PortfolioSettings,
    current_weights: ArrayLike | None = None,
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """:func:`frontier_table` and a warning per failed frontier or point, or solver note."""
    head = f"portfolio: desk {desk}: frontier"
    cur = current_book(mu, sigma, current_weights, bounds=settings.bounds)
    none = _current_columns(cur, None)
    try:
        names = _underlyings(underlyings, _size(sigma))
        fr = efficient_frontier(mu, sigma, n_points=settings.n_frontier_points,
                                risk_free_rate=settings.risk_free_rate, bounds=settings.bounds,
                                max_target_return=settings.max_frontier_return,
                                solver=settings.solver,
                                fallback_solver=settings.fallback_solver)
    except Exception as exc:  # noqa: BLE001 - a failed desk is a row
        status = _failure_status(exc)
        return _frame([{"desk": desk, "point": 0, "underlying": None, "weight": np.nan,
                        "target_return": np.nan, "expected_return": np.nan,
                        "volatility": np.nan, "sharpe": np.nan, "status": status,
                        "frontier_status": status, "message": _describe(exc), **none}],
                      FRONTIER_COLUMNS), (f"{head} {status}: {_describe(exc)}",)
    warnings: list[str] = []
    if fr.status != "optimal":
        warnings.append(f"{head} {fr.status}: {fr.message}")
    if not fr.points:
        return _frame([{"desk": desk, "point": 0, "underlying": None, "weight": np.nan,
                        "target_return": np.nan, "expected_return": np.nan,
                        "volatility": np.nan, "sharpe": np.nan, "status": fr.status,
                        "frontier_status": fr.status, "message": fr.message, **none}],
                      FRONTIER_COLUMNS), tuple(warnings)
    sharpe = fr.sharpe_ratios
    rows = []
    for k, p in enumerate(fr.points):
        if p.status != "optimal" or p.message:
            warnings.append(f"{head} point {k} (target {fr.target_returns[k]:.6g}) "
                            f"{p.status}: {p.message}")
        msg = p.message or fr.message
        for i, u in enumerate(names):
            rows.append({"desk": desk, "point": k, "underlying": u,
                         "weight": float(p.weights[i]),
                         "target_return": float(fr.target_returns[k]),
                         "expected_return": p.expected_return, "volatility": p.volatility,
                         "sharpe": float(sharpe[k]), "status": p.status,
                         "frontier_status": fr.status, "message": msg,
                         **_current_columns(cur, i)})
    return _frame(rows, FRONTIER_COLUMNS), tuple(warnings)


def risk_parity_table(
    desk: str,
    underlyings: Sequence[str],
    sigma: ArrayLike,
    *,
    current_weights: ArrayLike | None = None,
    risk_budgets: ArrayLike | None = None,
    settings: PortfolioSettings = DEFAULT_PORTFOLIO_SETTINGS,
) -> pd.DataFrame:
    """Risk parity weights and risk decomposition of one desk (:data:`RISK_PARITY_COLUMNS`).

    Rows with ``portfolio="risk_parity"`` hold the solved weights, their Euler risk
    contributions (annualized volatility units), shares, budgets and
    ``adjustment = budget / share`` (about 1 at the solution). Rows with
    ``portfolio="current"`` (only when ``current_weights`` is given) decompose the desk's
    current weights and give the seed's adjustment factors toward the same budgets; their
    ``status`` is ``evaluated`` (no optimization) or ``not_applicable`` (zero volatility),
    and ``note`` flags zero or negative contributions whose factor is NaN.

    Parameters
    ----------
    desk : str
        Desk name.
    underlyings : sequence of str, length U
        Names in the order of ``sigma``.
    sigma : array_like, shape (U,U)
        Annualized covariance.
    current_weights : array_like, shape (U,), optional
        The desk's current weights (e.g. delta-equivalent exposures / their sum; any sign).
    risk_budgets : array_like, shape (U,), optional
        Positive budgets; default from ``settings.budgets_for(underlyings)`` (equal if unset).
    settings : PortfolioSettings
        Newton tolerance and iteration cap, default budgets.

    Returns
    -------
    DataFrame
        ``U`` (or ``2U``) rows; one row with ``underlying`` None per failed portfolio.
    """
    rows: list[dict[str, Any]] = []
    nan_row = {"underlying": None, "weight": np.nan, "risk_budget": np.nan,
               "risk_contribution": np.nan, "risk_share": np.nan, "adjustment": np.nan,
               "note": None, "volatility": np.nan}
    budgets: np.ndarray | None = None
    try:
        names = _underlyings(underlyings, _size(sigma))
        b = risk_budgets if risk_budgets is not None else settings.budgets_for(names)
        res = risk_parity(sigma, risk_budgets=b, tol=settings.risk_parity_tol,
                          max_iter=settings.risk_parity_max_iter)
        budgets = res.budgets
    except Exception as exc:  # noqa: BLE001 - a failed desk is a row
        logger.warning("desk %s: risk parity failed: %s", desk, _describe(exc))
        return _frame([{"desk": desk, "portfolio": "risk_parity", **nan_row,
                        "status": _failure_status(exc), "message": _describe(exc),
                        "solver": "newton"}], RISK_PARITY_COLUMNS)
    if res.contributions is None:
        rows.append({"desk": desk, "portfolio": "risk_parity", **nan_row,
                     "status": res.status, "message": res.message, "solver": res.solver})
    else:
        rc = res.contributions
        adj = equal_risk_adjustments(res.weights, sigma, target_shares=budgets)
        for i, u in enumerate(names):
            rows.append({"desk": desk, "portfolio": "risk_parity", "underlying": u,
                         "weight": float(res.weights[i]), "risk_budget": float(budgets[i]),
                         "risk_contribution": float(rc.contributions[i]),
                         "risk_share": float(rc.shares[i]),
                         "adjustment": float(adj.adjustments[i]), "note": adj.notes[i],
                         "volatility": rc.volatility, "status": res.status,
                         "message": res.message, "solver": res.solver})
    if current_weights is not None:
        try:
            cur = risk_contributions(current_weights, sigma)
            cadj = equal_risk_adjustments(current_weights, sigma, target_shares=budgets)
        except Exception as exc:  # noqa: BLE001 - a failed desk is a row
            rows.append({"desk": desk, "portfolio": "current", **nan_row,
                         "status": _failure_status(exc), "message": _describe(exc),
                         "solver": "none"})
        else:
            zero = cur.volatility == 0.0
            for i, u in enumerate(names):
                rows.append({"desk": desk, "portfolio": "current", "underlying": u,
                             "weight": float(cur.weights[i]),
                             "risk_budget": float(budgets[i]),
                             "risk_contribution": float(cur.contributions[i]),
                             "risk_share": float(cur.shares[i]),
                             "adjustment": float(cadj.adjustments[i]), "note": cadj.notes[i],
                             "volatility": cur.volatility,
                             "status": "not_applicable" if zero else "evaluated",
                             "message": "current weights have zero volatility" if zero else "",
                             "solver": "none"})
    return _frame(rows, RISK_PARITY_COLUMNS)


@dataclass(frozen=True)
class PortfolioTables:
    """The three portfolio tables of one desk, and the warnings they raise.

    Attributes
    ----------
    min_variance, frontier, risk_parity : DataFrame
        The tables (:data:`MIN_VARIANCE_COLUMNS`, :data:`FRONTIER_COLUMNS`,
        :data:`RISK_PARITY_COLUMNS`).
    warnings : tuple of str
        One line per problem that did not end ``optimal`` or needed help (a failed desk, a
        failed frontier point, a fallback solver, weights left unpolished), each starting
        ``portfolio: desk <desk>:``; meant for the run manifest's warnings.
    """

    min_variance: pd.DataFrame
    frontier: pd.DataFrame
    risk_parity: pd.DataFrame
    warnings: tuple[str, ...] = ()


def desk_portfolio_tables(
    desk: str,
    underlyings: Sequence[str],
    mu: ArrayLike,
    sigma: ArrayLike,
    *,
    current_weights: ArrayLike | None = None,
    risk_budgets: ArrayLike | None = None,
    settings: PortfolioSettings = DEFAULT_PORTFOLIO_SETTINGS,
    frontier_weights: ArrayLike | None = None,
) -> PortfolioTables:
    """Run min-variance, the frontier and risk parity for one desk; never raises on data.

    Parameters
    ----------
    desk : str
        Desk name.
    underlyings : sequence of str, length U
        Names in the order of ``mu``/``sigma``.
    mu : array_like, shape (U,)
        Annualized mean returns.
    sigma : array_like, shape (U,U)
        Annualized covariance.
    current_weights : array_like, shape (U,), optional
        Current weights to decompose in the risk parity table, and to place on the
        frontier (its ``current_*`` columns) unless ``frontier_weights`` is given.
    risk_budgets : array_like, shape (U,), optional
        Risk parity budgets (default from settings, else equal).
    settings : PortfolioSettings
        All settings.
    frontier_weights : array_like, shape (U,), optional
        The current book's weights to place on the frontier when they differ from
        ``current_weights`` (e.g. signed net weights of a long-short desk, while risk
        parity only decomposes a long-only book).

    Returns
    -------
    PortfolioTables
        The tables and their :attr:`~PortfolioTables.warnings`: one line per problem that
        did not end ``optimal`` or whose solver had something to say.
    """
    head = f"portfolio: desk {desk}:"
    minvar = min_variance_table(desk, underlyings, mu, sigma, settings)
    on_frontier = current_weights if frontier_weights is None else frontier_weights
    frontier, warnings = _frontier_frame(desk, underlyings, mu, sigma, settings, on_frontier)
    parity = risk_parity_table(desk, underlyings, sigma, current_weights=current_weights,
                               risk_budgets=risk_budgets, settings=settings)
    lines: list[str] = []
    mv = minvar.iloc[0]
    if mv["status"] != "optimal" or mv["message"]:
        lines.append(f"{head} min_variance {mv['status']}: {mv['message']}")
    lines.extend(warnings)
    rp = parity[parity["portfolio"] == "risk_parity"].iloc[0]
    if rp["status"] != "optimal":
        lines.append(f"{head} risk_parity {rp['status']}: {rp['message']}")
    for line in lines:
        logger.warning("%s", line)
    return PortfolioTables(minvar, frontier, parity, tuple(lines))
