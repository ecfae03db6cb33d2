"""Minimum-variance allocations: closed forms and the bounded problem (cvxpy, with Parameters).

Weights are capital weights of the desk's underlyings, fully invested (``sum w = 1``). The
moments are annualized: ``mu`` (U,) mean simple returns, ``Sigma`` (U,U) covariance.

Closed forms (no bounds, Sigma positive definite), with ``A = 1' S^-1 1``, ``B = 1' S^-1 mu``,
``C = mu' S^-1 mu``, ``D = A C - B^2``:

* global minimum variance: ``w = S^-1 1 / A``, return ``B / A``, variance ``1 / A``;
* with target return ``r`` (two-fund theorem): ``w = S^-1 (lam 1 + gam mu)`` with
  ``lam = (C - B r) / D`` and ``gam = (A r - B) / D``; variance ``(A r^2 - 2 B r + C) / D``.

The bounded problem is solved by cvxpy, built once per shape with Parameters (DPP):
``minimize ||F w||`` (the volatility) with ``F' F = Sigma`` subject to ``sum w = 1``,
optional ``mu' w = r`` or ``mu' w >= r``, optional ``lower <= w <= upper``; the solver's
weights are then polished to the exact optimum on their active set (:func:`polish_weights`).
The maximum return under the bounds is exact in closed form (:func:`max_return`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from risk_engine.portfolio._moments import (
    Moments,
    portfolio_return,
    portfolio_volatility,
    validate_moments,
)
from risk_engine.portfolio.results import PortfolioResult, failed_result
from risk_engine.portfolio.settings import LONG_ONLY, Bounds, TargetMode
from risk_engine.solvers import (
    QP_SOLVERS,
    USABLE_STATUSES,
    CompiledProblem,
    cached_problem,
    check_solver,
)
from risk_engine.types import BoolArray, FloatArray

#: Relative threshold below which the smallest eigenvalue makes Sigma "singular" for the
#: closed forms (which need ``Sigma^-1``).
SINGULAR_RTOL = 1e-12

# --------------------------------------------------------------------------- closed forms
def _closed_form_scalars(
    m: Moments,
) -> tuple[float, float, float, FloatArray, FloatArray]:
    ones = np.ones(m.n_assets)
    s_inv_1 = np.asarray(np.linalg.solve(m.sigma, ones), dtype=np.float64)
    s_inv_mu = np.asarray(np.linalg.solve(m.sigma, m.mu), dtype=np.float64)
    a = float(ones @ s_inv_1)
    b = float(ones @ s_inv_mu)
    c = float(m.mu @ s_inv_mu)
    return a, b, c, s_inv_1, s_inv_mu


def _singular(m: Moments) -> bool:
    top = float(np.max(np.linalg.eigvalsh(m.sigma)))
    return not (m.min_eigenvalue > SINGULAR_RTOL * top)


def min_variance_closed_form(mu: ArrayLike | None, sigma: ArrayLike) -> PortfolioResult:
    """Global minimum-variance weights without bounds: ``w = Sigma^-1 1 / (1' Sigma^-1 1)``.

    Parameters
    ----------
    mu : array_like, shape (U,), or None
        Annualized mean returns (only used to report the expected return; None = zeros).
    sigma : array_like, shape (U,U)
        Annualized covariance, must be positive definite.

    Returns
    -------
    PortfolioResult
        ``solver="closed_form"``; status ``not_applicable`` if Sigma is singular.

    Raises
    ------
    DataError
        Invalid moments (see :func:`validate_moments`).
    """
    m = validate_moments(mu, sigma)
    if _singular(m):
        return failed_result(
            m.n_assets, "not_applicable", "covariance is singular: no unique closed form",
            "closed_form",
        )
    a, _, _, s_inv_1, _ = _closed_form_scalars(m)
    w = s_inv_1 / a
    return PortfolioResult(
        "optimal", "", w, portfolio_return(w, m.mu), portfolio_volatility(w, m.sigma),
        "closed_form",
    )


def two_fund_closed_form(mu: ArrayLike, sigma: ArrayLike, target_return: float) -> PortfolioResult:
    """Minimum-variance weights with ``mu' w = target_return`` and no bounds (two-fund form).

    Parameters
    ----------
    mu : array_like, shape (U,)
        Annualized mean returns; not all equal (else ``D = 0``).
    sigma : array_like, shape (U,U)
        Annualized covariance, positive definite.
    target_return : float
        Annual target return (fraction).

    Returns
    -------
    PortfolioResult
        ``solver="closed_form"``; ``not_applicable`` if Sigma is singular or all means are
        equal (any target other than that common mean is then infeasible).

    Raises
    ------
    DataError
        Invalid moments.
    """
    m = validate_moments(mu, sigma)
    if _singular(m):
        return failed_result(
            m.n_assets, "not_applicable", "covariance is singular: no unique closed form",
            "closed_form",
        )
    a, b, c, s_inv_1, s_inv_mu = _closed_form_scalars(m)
    d = a * c - b * b
    if not d > 1e-12 * max(a * c, 1e-300):
        return failed_result(
            m.n_assets, "not_applicable",
            "expected returns are all equal (A C - B^2 = 0): a target return does not "
            "define a two-fund portfolio", "closed_form",
        )
    lam = (c - b * target_return) / d
    gam = (a * target_return - b) / d
    w = lam * s_inv_1 + gam * s_inv_mu
    return PortfolioResult(
        "optimal", "", w, portfolio_return(w, m.mu), portfolio_volatility(w, m.sigma),
        "closed_form",
    )


# --------------------------------------------------------------------------- exact polish
#: A solver weight within this distance of a bound is first taken as sitting on it.
POLISH_ACTIVE_TOL = 1e-6
#: KKT tolerance of a polished answer: bounds and equalities (weight units) and the signs of
#: the bound multipliers (relative to the largest covariance entry).
POLISH_KKT_TOL = 1e-10


def polish_weights(
    sigma: FloatArray,
    mu: FloatArray,
    bounds: Bounds,
    target_return: float | None,
    target_mode: TargetMode,
    start: FloatArray,
) -> FloatArray | None:
    """Exact minimizer of ``w' Sigma w`` from the active set of an approximate solution.

    The bounds a solver's weights sit on (within :data:`POLISH_ACTIVE_TOL`) fix those weights;
    the other weights and the multipliers of ``sum w = 1`` (and of a binding target return)
    come from the KKT linear system. The active set is then corrected one index at a time
    (a free weight outside its bounds is fixed at the bound; a bound whose multiplier has the
    wrong sign is released) until every KKT condition of the convex problem holds to
    :data:`POLISH_KKT_TOL`, which makes the answer the exact optimum up to the rounding of
    one linear solve.

    Parameters
    ----------
    sigma : ndarray, shape (U,U)
        Covariance (symmetric positive semidefinite).
    mu : ndarray, shape (U,)
        Mean returns (used when a target return is given).
    bounds : Bounds
        Weight bounds.
    target_return : float or None
        Target return, if any.
    target_mode : {"eq", "ge"}
        How the target binds.
    start : ndarray, shape (U,)
        The solver's weights.

    Returns
    -------
    ndarray or None
        The polished weights, or None when no active set satisfying the KKT conditions was
        found (singular KKT system, or no convergence within ``3 U + 3`` corrections).
    """
    n = start.shape[0]
    lo = -np.inf if bounds.lower is None else float(bounds.lower)
    hi = np.inf if bounds.upper is None else float(bounds.upper)
    at_lo = start - lo <= POLISH_ACTIVE_TOL
    at_hi = ~at_lo & (hi - start <= POLISH_ACTIVE_TOL)
    binding = target_return is not None and (
        target_mode == "eq" or float(mu @ start) - target_return <= POLISH_ACTIVE_TOL
    )
    scale = max(float(np.max(np.abs(sigma))), 1e-300)
    tol = POLISH_KKT_TOL
    for _ in range(3 * n + 3):
        fixed = at_lo | at_hi
        free = np.flatnonzero(~fixed)
        w = np.where(at_lo, lo, np.where(at_hi, hi, 0.0))
        rows = [np.ones(n)] + ([mu] if binding else [])
        rhs_eq = [1.0] + ([float(target_return)] if binding else [])  # type: ignore[arg-type]
        a = np.array(rows)
        m = a.shape[0]
        k = free.size
        kkt = np.zeros((k + m, k + m))
        kkt[:k, :k] = sigma[np.ix_(free, free)]
        kkt[:k, k:] = -a[:, free].T
        kkt[k:, :k] = a[:, free]
        w_fixed = np.where(fixed, w, 0.0)
        rhs = np.concatenate([-(sigma[free] @ w_fixed), np.array(rhs_eq) - a @ w_fixed])
        singular = k + m == 0 or np.linalg.cond(kkt) > 1e12
        if singular:  # degenerate vertex (e.g. the top of the frontier): least squares
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
        else:
            sol = np.linalg.solve(kkt, rhs)
        if not np.all(np.isfinite(sol)):
            return None
        w[free] = sol[:k]
        nu = sol[k:]
        grad = sigma @ w - a.T @ nu  # = z_lower - z_upper at a KKT point
        below = np.where(~fixed, lo - w, -np.inf)
        above = np.where(~fixed, w - hi, -np.inf)
        if max(below.max(initial=-np.inf), above.max(initial=-np.inf)) > tol:
            if below.max() >= above.max():
                at_lo[int(np.argmax(below))] = True
            else:
                at_hi[int(np.argmax(above))] = True
            continue
        if target_return is not None and target_mode == "ge":
            if binding and nu[1] < -tol * scale:
                binding = False
                continue
            if not binding and float(mu @ w) < target_return - tol:
                binding = True
                continue
        if not singular:
            wrong = np.where(at_lo, -grad, np.where(at_hi, grad, -np.inf)) / scale
            if wrong.max(initial=-np.inf) > tol:
                i = int(np.argmax(wrong))
                at_lo[i] = at_hi[i] = False
                continue
        if float(np.max(np.abs(a @ w - np.array(rhs_eq)))) > tol:
            return None
        if singular and not _dual_certificate(sigma @ w, a, at_lo, at_hi,
                                              target_mode == "ge" and binding, tol * scale):
            return None
        return w
    return None


def _dual_certificate(
    gradient: FloatArray,
    a: FloatArray,
    at_lo: BoolArray,
    at_hi: BoolArray,
    ge_target: bool,
    tol: float,
) -> bool:
    """True if multipliers with the right signs make ``gradient`` stationary.

    Looks for ``nu`` (free for equalities, >= 0 for a binding ``ge`` target) and bound
    multipliers ``z >= 0`` with ``gradient = a' nu + z_lower - z_upper`` by non-negative least
    squares; used when the multipliers are not unique (degenerate vertex).
    """
    cols = [a[0], -a[0]]
    if a.shape[0] > 1:
        cols += [a[1]] if ge_target else [a[1], -a[1]]
    eye = np.eye(gradient.shape[0])
    cols += [eye[i] for i in np.flatnonzero(at_lo)] + [-eye[i] for i in np.flatnonzero(at_hi)]
    residual = nnls(np.array(cols).T, gradient)[1]
    return bool(residual <= tol * np.sqrt(gradient.shape[0]))


# --------------------------------------------------------------------------- cvxpy problems
@dataclass(frozen=True)
class _ProblemKey:
    n: int
    target: TargetMode | None
    has_lower: bool
    has_upper: bool


def _build(key: _ProblemKey) -> CompiledProblem:
    n = key.n
    w = cp.Variable(n, name="w")
    factor = cp.Parameter((n, n), name="factor")
    mu = cp.Parameter(n, name="mu")
    target_return = cp.Parameter(name="target_return")
    lower = cp.Parameter(n, name="lower")
    upper = cp.Parameter(n, name="upper")
    constraints: list[cp.Constraint] = [cp.sum(w) == 1]
    if key.target == "eq":
        constraints.append(mu @ w == target_return)
    elif key.target == "ge":
        constraints.append(mu @ w >= target_return)
    if key.has_lower:
        constraints.append(w >= lower)
    if key.has_upper:
        constraints.append(w <= upper)
    # The volatility ||F w|| (a second-order cone), not the variance ||F w||^2 (a quadratic
    # objective): same minimizer, and Clarabel's quadratic-objective path stalls on some
    # well-posed frontier points (duality gap stuck, MaxIterations).
    obj = cp.Minimize(cp.norm(factor @ w, 2))
    params = {"factor": factor, "mu": mu, "target_return": target_return,
              "lower": lower, "upper": upper}
    return CompiledProblem(cp.Problem(obj, constraints), params, {"w": w})


class MeanVarianceProblem:
    """A fully-invested minimum-variance problem over U assets, compiled once per shape.

    Minimizes the volatility ``||F w||`` (``F' F = Sigma``, so the minimizer is that of
    ``w' Sigma w``) subject to ``sum w = 1`` and optionally a target return (``"eq"`` or
    ``"ge"``), a lower and an upper bound on every weight; the solver's weights are then
    polished to the exact optimum (:func:`polish_weights`).
    The cvxpy problem is built with Parameters (DPP) and held in the shared cache of
    :mod:`risk_engine.solvers`; :meth:`solve` assigns a desk's values and solves under the
    problem's lock, so instances may be shared between threads.

    Parameters
    ----------
    n : int
        Number of assets U.
    target : {"eq", "ge"} or None
        Target return constraint, if any.
    has_lower, has_upper : bool
        Whether the weight bounds are present.
    """

    def __init__(
        self,
        n: int,
        target: TargetMode | None = None,
        has_lower: bool = True,
        has_upper: bool = False,
    ) -> None:
        self.key = _ProblemKey(n, target, has_lower, has_upper)
        key = self.key
        self.compiled = cached_problem(
            ("min_variance", n, target, has_lower, has_upper), lambda: _build(key)
        )

    def solve(
        self,
        moments: Moments,
        bounds: Bounds,
        target_return: float | None,
        solvers: str | tuple[str, ...],
    ) -> PortfolioResult:
        """Assign parameters from ``moments``/``bounds``/``target_return`` and solve.

        Parameters
        ----------
        moments : Moments
            Validated moments with U assets.
        bounds : Bounds
            Weight bounds; must match ``has_lower``/``has_upper`` of the problem.
        target_return : float or None
            Target return when the problem has one.
        solvers : str or tuple of str
            cvxpy solver name, or names in order of preference (the next one is tried when
            one fails; see :func:`risk_engine.solvers.solve`).

        Returns
        -------
        PortfolioResult
            Typed outcome; exceptions from the solver become ``solver_error``.
        """
        n = self.key.n
        names = (solvers,) if isinstance(solvers, str) else solvers
        names = tuple(x.upper() for x in names)
        values = {
            "factor": moments.factor,
            "mu": moments.mu,
            "target_return": 0.0 if target_return is None else float(target_return),
            "lower": np.full(n, 0.0 if bounds.lower is None else bounds.lower),
            "upper": np.full(n, 1.0 if bounds.upper is None else bounds.upper),
        }
        run = self.compiled.solve(values, names, capture=("w",))
        if run.status not in USABLE_STATUSES:
            return failed_result(n, run.status, run.message, run.solver)
        w_value = run.values["w"]
        status, message = run.status, run.message
        polished = polish_weights(moments.sigma, moments.mu, bounds, target_return,
                                  self.key.target or "eq", w_value)
        if polished is not None:
            w_value = polished
            status = "optimal"
        else:
            note = ("weights not polished: no active set met the KKT conditions, "
                    "accuracy is the solver's tolerance")
            message = f"{message}; {note}" if message else note
        return PortfolioResult(
            status,
            message,
            w_value,
            portfolio_return(w_value, moments.mu),
            portfolio_volatility(w_value, moments.sigma),
            run.solver,
        )


def get_problem(n: int, target: TargetMode | None, bounds: Bounds) -> MeanVarianceProblem:
    """Return the :class:`MeanVarianceProblem` for this shape (compiled once, then cached)."""
    return MeanVarianceProblem(n, target, bounds.lower is not None, bounds.upper is not None)


def _check_solver(solver: str) -> str:
    return check_solver(solver, QP_SOLVERS, "solver")


def solver_order(solver: str, fallback_solver: str | None) -> tuple[str, ...]:
    """Checked solver names in the order they are tried (the fallback only if it differs).

    Raises
    ------
    ValueError
        Unknown solver name.
    """
    first = _check_solver(solver)
    if fallback_solver is None:
        return (first,)
    second = check_solver(fallback_solver, QP_SOLVERS, "fallback_solver")
    return (first,) if second == first else (first, second)


def min_variance(
    mu: ArrayLike | None,
    sigma: ArrayLike,
    *,
    target_return: float | None = None,
    target_mode: TargetMode = "eq",
    bounds: Bounds = LONG_ONLY,
    solver: str = "CLARABEL",
    fallback_solver: str | None = "SCS",
) -> PortfolioResult:
    """Minimum-variance fully-invested weights, optionally with a target return and bounds.

    Parameters
    ----------
    mu : array_like, shape (U,), or None
        Annualized mean returns; required when ``target_return`` is given.
    sigma : array_like, shape (U,U)
        Annualized covariance (positive semidefinite).
    target_return : float, optional
        Annual target return (fraction).
    target_mode : {"eq", "ge"}
        ``"eq"``: ``mu' w == target_return``; ``"ge"``: ``mu' w >= target_return``.
    bounds : Bounds
        Per-weight bounds; long-only (``lower=0``) by default, :meth:`Bounds.unbounded` for
        none (then the result matches :func:`min_variance_closed_form` /
        :func:`two_fund_closed_form`).
    solver : {"CLARABEL", "SCS"}
        cvxpy solver.
    fallback_solver : {"SCS", "CLARABEL"} or None
        Solver tried when ``solver`` fails (raises, hits a limit, or is inaccurate).

    Returns
    -------
    PortfolioResult
        Weights (U,), expected return and volatility (annualized), status and message.
        The solver's weights are polished to the exact optimum (:func:`polish_weights`);
        when that fails the message says so and the accuracy is the solver's.
        A target above the maximum achievable return under the bounds gives ``infeasible``.

    Raises
    ------
    DataError
        Invalid moments.
    ValueError
        Unknown ``target_mode`` or solver, or a target return without ``mu``.
    """
    if target_mode not in ("eq", "ge"):
        raise ValueError(f"target_mode={target_mode!r} must be 'eq' or 'ge'")
    if target_return is not None and mu is None:
        raise ValueError("a target return needs the mean vector mu")
    solvers = solver_order(solver, fallback_solver)
    m = validate_moments(mu, sigma)
    target = None if target_return is None else target_mode
    prob = get_problem(m.n_assets, target, bounds)
    return prob.solve(m, bounds, target_return, solvers)


def max_return(
    mu: ArrayLike,
    *,
    bounds: Bounds = LONG_ONLY,
    sigma: ArrayLike | None = None,
    solver: str = "CLARABEL",
) -> PortfolioResult:
    """Maximum achievable expected return of a fully-invested portfolio under the bounds.

    Parameters
    ----------
    mu : array_like, shape (U,)
        Annualized mean returns.
    bounds : Bounds
        Weight bounds. Without an upper bound and with short sales allowed the maximum is
        unbounded (status ``unbounded``) unless all means are equal.
    sigma : array_like, shape (U,U), optional
        Covariance, only to report the volatility of the solution (zeros if omitted).
    solver : {"CLARABEL", "SCS"}
        Checked for compatibility; no solver runs: the LP over ``sum w = 1`` and the same
        bounds on every weight is solved exactly by filling the best assets first.

    Returns
    -------
    PortfolioResult
        The return-maximizing weights (one optimal vertex if several exist; ties keep the
        first asset), ``solver="closed_form"``; ``infeasible`` when the bounds cannot sum to 1.

    Raises
    ------
    DataError
        Invalid inputs.
    """
    solver = _check_solver(solver)
    mu_arr = np.asarray(mu, dtype=np.float64)
    sig = np.zeros((mu_arr.size, mu_arr.size)) if sigma is None else sigma
    m = validate_moments(mu_arr, sig)
    if bounds.lower is None and bounds.upper is None:
        if np.ptp(m.mu) == 0.0:
            w = np.full(m.n_assets, 1.0 / m.n_assets)
            return PortfolioResult(
                "optimal", "all expected returns are equal", w,
                portfolio_return(w, m.mu), portfolio_volatility(w, m.sigma), "closed_form",
            )
        return failed_result(
            m.n_assets, "unbounded",
            "maximum return is unbounded without weight bounds (short sales unlimited)",
            "closed_form",
        )
    best = _greedy_max_return(m.mu, bounds)
    if best is None:
        return failed_result(
            m.n_assets, "infeasible",
            f"bounds lower={bounds.lower}, upper={bounds.upper} cannot hold with sum w = 1 "
            f"over {m.n_assets} assets", "closed_form",
        )
    return PortfolioResult(
        "optimal", "", best, portfolio_return(best, m.mu), portfolio_volatility(best, m.sigma),
        "closed_form",
    )


def _greedy_max_return(mu: FloatArray, bounds: Bounds) -> FloatArray | None:
    """Exact maximizer of ``mu' w`` over ``sum w = 1`` and the same bounds on every weight.

    Every weight starts at its lower bound (at its upper bound when there is no lower bound)
    and the rest of the budget goes to the assets in decreasing order of ``mu`` up to their
    upper bound (without an upper bound, all of it to the best asset; without a lower bound,
    the shortfall is taken from the worst asset). Ties keep the first asset. Needs at least
    one bound; None when ``n lower > 1`` or ``n upper < 1`` (infeasible).
    """
    n = mu.shape[0]
    order = np.argsort(-mu, kind="stable")
    lo, hi = bounds.lower, bounds.upper
    if lo is not None and n * lo > 1.0 + 1e-12:
        return None
    if hi is not None and n * hi < 1.0 - 1e-12:
        return None
    if lo is None:
        assert hi is not None
        w = np.full(n, float(hi))
        w[order[-1]] += 1.0 - float(w.sum())
        return w
    w = np.full(n, float(lo))
    left = 1.0 - n * float(lo)
    for i in order:
        if left <= 0.0:
            break
        room = np.inf if hi is None else float(hi) - float(lo)
        step = min(room, left)
        w[i] += step
        left -= step
    return w
