"""Efficient frontier between the minimum-variance return and the maximum achievable return."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from risk_engine.errors import DataError
from risk_engine.portfolio._moments import (
    portfolio_return,
    portfolio_volatility,
    validate_moments,
)
from risk_engine.portfolio.min_variance import get_problem, max_return, solver_order
from risk_engine.portfolio.results import CurrentBook, FrontierResult, PortfolioResult
from risk_engine.portfolio.settings import LONG_ONLY, Bounds

#: Absolute tolerance on ``sum w = 1`` and on the bounds when deciding whether the current
#: book is feasible for the frontier's problem (weights are fractions, so 1e-9 is rounding).
FEASIBILITY_ATOL = 1e-9


def efficient_frontier(
    mu: ArrayLike,
    sigma: ArrayLike,
    *,
    n_points: int = 20,
    risk_free_rate: float = 0.0,
    bounds: Bounds = LONG_ONLY,
    max_target_return: float | None = None,
    solver: str = "CLARABEL",
    fallback_solver: str | None = "SCS",
) -> FrontierResult:
    """Minimum-variance portfolios for ``n_points`` target returns, evenly spaced.

    Point 0 is the minimum-variance portfolio (solved without a target constraint); points
    ``1..P-1`` minimize variance subject to ``mu' w = target`` for targets evenly spaced from
    the min-variance return ``r_min`` to ``r_max``, the maximum achievable return under the
    bounds (an LP), or ``max_target_return`` if that is lower. Only the efficient (upper) half
    of the frontier is traced, so the volatility increases with the return.

    Parameters
    ----------
    mu : array_like, shape (U,)
        Annualized mean returns.
    sigma : array_like, shape (U,U)
        Annualized covariance.
    n_points : int
        Number of points P >= 2 (including the min-variance point).
    risk_free_rate : float
        Annual risk-free rate, for the Sharpe ratios of :class:`FrontierResult`.
    bounds : Bounds
        Weight bounds (long-only by default).
    max_target_return : float, optional
        Cap on the highest target; required when the maximum return is unbounded
        (:meth:`Bounds.unbounded`), otherwise the frontier status is ``unbounded``.
    solver : {"CLARABEL", "SCS"}
        cvxpy solver.
    fallback_solver : {"SCS", "CLARABEL"} or None
        Solver tried for a point when ``solver`` fails on it.

    Returns
    -------
    FrontierResult
        ``P`` points when ``r_max > r_min``; a single point (the min-variance portfolio)
        when the frontier degenerates (``r_max <= r_min``, e.g. all means equal); no point
        and the failing status when the min-variance problem itself fails. Each point
        carries its own status; a failed target point does not change the frontier's
        status (see :class:`FrontierResult`) but is named in its message.

    Raises
    ------
    DataError
        Invalid moments.
    ValueError
        ``n_points < 2`` or unknown solver.
    """
    if isinstance(n_points, bool) or int(n_points) != n_points or n_points < 2:
        raise ValueError(f"n_points={n_points!r} must be an integer >= 2")
    solvers = solver_order(solver, fallback_solver)
    m = validate_moments(mu, sigma)
    n = m.n_assets

    def _result(status: str, message: str, r_min: float, r_max: float,
                targets: list[float], points: list[PortfolioResult]) -> FrontierResult:
        return FrontierResult(
            status=status,  # type: ignore[arg-type]
            message=message,
            min_return=r_min,
            max_return=r_max,
            target_returns=np.array(targets, dtype=np.float64),
            points=tuple(points),
            risk_free_rate=float(risk_free_rate),
        )

    mv = get_problem(n, None, bounds).solve(m, bounds, None, solvers)
    if mv.status != "optimal":
        return _result(mv.status, f"min-variance point: {mv.message}", float("nan"),
                       float("nan"), [], [])
    r_min = mv.expected_return

    top = max_return(m.mu, bounds=bounds, sigma=m.sigma, solver=solvers[0])
    if top.status == "optimal":
        r_max = top.expected_return
        if max_target_return is not None:
            r_max = min(r_max, float(max_target_return))
    elif top.status == "unbounded" and max_target_return is not None:
        r_max = float(max_target_return)
    else:
        msg = top.message
        if top.status == "unbounded":
            msg += "; set max_target_return to cap the frontier"
        return _result(top.status, f"maximum return: {msg}", r_min, float("nan"),
                       [r_min], [mv])

    if not r_max > r_min + 1e-12 * max(1.0, abs(r_min)):
        return _result("optimal", "frontier degenerates to the min-variance point "
                       f"(max return {r_max:.6g} <= min-variance return {r_min:.6g})",
                       r_min, r_min, [r_min], [mv])

    targets = np.linspace(r_min, r_max, int(n_points))
    points: list[PortfolioResult] = [mv]
    prob = get_problem(n, "eq", bounds)
    for t in targets[1:]:
        points.append(prob.solve(m, bounds, float(t), solvers))
    bad = [(i, p) for i, p in enumerate(points) if p.status != "optimal"]
    if bad:
        i, p = bad[0]
        return _result("optimal", f"{len(bad)} of {len(points)} points not optimal; first: "
                       f"point {i}: {p.status}: {p.message}", r_min, r_max, list(targets),
                       points)
    return _result("optimal", "", r_min, r_max, list(targets), points)


def current_book(
    mu: ArrayLike,
    sigma: ArrayLike,
    weights: ArrayLike | None,
    *,
    bounds: Bounds = LONG_ONLY,
) -> CurrentBook:
    """The current book on the frontier's basis: ``mu' w`` and ``sqrt(w' Sigma w)``.

    The same moments as :func:`efficient_frontier` (validated and symmetrized by the same
    rule) and the same formulas as its points, so the current book and the frontier are
    points of one plane. No optimization.

    Parameters
    ----------
    mu : array_like, shape (U,)
        Annualized mean returns, as given to :func:`efficient_frontier`.
    sigma : array_like, shape (U,U)
        Annualized covariance, as given to :func:`efficient_frontier`.
    weights : array_like, shape (U,), or None
        The current book's capital weights (fractions of the desk's invested value, summing
        to 1, e.g. delta-equivalent exposure over its sum). None: no current book.
    bounds : Bounds
        The frontier's bounds: a book within them (and fully invested) is a feasible point
        of every frontier problem, so it lies on or inside the frontier (status
        ``evaluated``); otherwise ``outside_bounds``, still evaluated.

    Returns
    -------
    CurrentBook
        Never raises on data: invalid moments or weights give ``not_applicable`` with NaN
        figures and the reason in ``message``.
    """
    nan = float("nan")
    if weights is None:
        return CurrentBook("no_weights", "no current weights", np.full(0, np.nan), nan, nan)
    try:
        w = np.array(weights, dtype=np.float64, copy=True)
        m = validate_moments(mu, sigma)
        if w.shape != (m.n_assets,):
            raise DataError(f"current weights must have shape ({m.n_assets},), got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise DataError("current weights have non-finite entries at positions "
                            f"{np.flatnonzero(~np.isfinite(w)).tolist()}")
    except (DataError, ValueError, TypeError) as exc:
        return CurrentBook("not_applicable", f"{type(exc).__name__}: {exc}",
                           np.full(0, np.nan), nan, nan)
    ret, vol = portfolio_return(w, m.mu), portfolio_volatility(w, m.sigma)
    problems = []
    if abs(float(w.sum()) - 1.0) > FEASIBILITY_ATOL:
        problems.append(f"weights sum to {float(w.sum()):.12g}, not 1")
    if bounds.lower is not None and float(w.min()) < bounds.lower - FEASIBILITY_ATOL:
        problems.append(f"smallest weight {float(w.min()):.6g} < lower bound {bounds.lower}")
    if bounds.upper is not None and float(w.max()) > bounds.upper + FEASIBILITY_ATOL:
        problems.append(f"largest weight {float(w.max()):.6g} > upper bound {bounds.upper}")
    if problems:
        return CurrentBook("outside_bounds", "; ".join(problems) + ": the point may lie "
                           "above the frontier", w, ret, vol)
    return CurrentBook("evaluated", "", w, ret, vol)
