"""Worst-case VaR of a fixed book: WCVaR, WCPVaR, WCQVaR.

Zymler, Kuhn & Rustem, "Worst-Case Value-at-Risk of Non-Linear Portfolios",
Management Science 59(1), 2013. Every function takes exposures ``x`` (m,) in
currency and returns a positive loss in currency. All three models are
positively homogeneous in ``x``, so problems are solved for ``x / sum|x|``
(well scaled for the solvers) and the figure is scaled back.

Sign conventions: P&L = value at horizon minus value today, loss = -P&L; a
worst-case VaR is the smallest ``gamma`` with ``P(loss >= gamma) <= eps`` for
every distribution of the risk factors with the given mean and covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import numpy.typing as npt

from risk_engine.solvers import (
    CONE_SOLVER_OPTIONS,
    DEFAULT_SOLVERS,
    CompiledProblem,
    cached_problem,
    solve,
)
from risk_engine.types import FloatArray

from .containers import SolveOutcome
from .moments import kappa, tail_probability
from .structures import LinearStructure, PolyhedralStructure, QuadraticStructure


def _exposures(exposures: npt.ArrayLike, m: int) -> tuple[FloatArray, float]:
    x = np.asarray(exposures, dtype=np.float64)
    if x.shape != (m,):
        raise ValueError(f"exposures must have shape ({m},), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("exposures must be finite")
    return x, float(np.sum(np.abs(x)))


def _rows(factor: FloatArray) -> FloatArray:
    """Return the factor with at least one (zero) row, so norms never have size 0."""
    if factor.shape[0] == 0:
        return np.zeros((1, factor.shape[1]))
    return factor


def _zero_book(solver: str) -> SolveOutcome:
    return SolveOutcome(0.0, "optimal", solver, "empty book")


def _outcome(value: float, status: str, solver: str, message: str, scale: float) -> SolveOutcome:
    if status in ("optimal", "inaccurate"):
        return SolveOutcome(value * scale, status, solver, message)
    return SolveOutcome(math.nan, status, solver, message)


# ---------------------------------------------------------------- WCVaR


def wcvar(
    exposures: npt.ArrayLike, structure: LinearStructure, confidence_level: float
) -> SolveOutcome:
    """WCVaR in closed form: ``-mu_r' x + kappa ||Sigma_r^(1/2) x||``.

    Parameters
    ----------
    exposures : array_like, shape (m,)
        Exposures in currency.
    structure : LinearStructure
        Moments of the m instruments' returns.
    confidence_level : float
        alpha in (0, 1).

    Returns
    -------
    SolveOutcome
        Figure in currency, solver ``closed_form``.
    """
    x, _ = _exposures(exposures, structure.mean.size)
    value = -float(structure.mean @ x) + kappa(confidence_level) * float(
        np.linalg.norm(structure.factor @ x)
    )
    return SolveOutcome(value, "optimal", "closed_form")


def _build_wcvar_robust(k: int, m: int) -> CompiledProblem:
    u = cp.Variable(k, name="u")
    loading = cp.Parameter(k, name="loading")
    mean_return = cp.Parameter(name="mean_return")
    radius = cp.Parameter(nonneg=True, name="kappa")
    problem = cp.Problem(cp.Maximize(-mean_return - loading @ u), [cp.norm(u, 2) <= radius])
    return CompiledProblem(
        problem, {"loading": loading, "mean_return": mean_return, "kappa": radius}, {"u": u}
    )


def wcvar_robust(
    exposures: npt.ArrayLike,
    structure: LinearStructure,
    confidence_level: float,
    *,
    solvers: tuple[str, ...] = DEFAULT_SOLVERS,
) -> SolveOutcome:
    """WCVaR as the worst loss over the ellipsoid of returns (cvxpy).

    ``max -x' r`` over ``r = mu_r + F' u``, ``||u|| <= kappa``, i.e. the set
    ``(r - mu_r)' Sigma_r^-1 (r - mu_r) <= kappa**2`` (also for singular
    ``Sigma_r = F' F``). Agrees with :func:`wcvar` to solver tolerance.
    """
    x, scale = _exposures(exposures, structure.mean.size)
    if scale == 0:
        return _zero_book("closed_form")
    xs = x / scale
    factor = _rows(structure.factor)
    compiled = cached_problem(
        ("wcvar_robust", factor.shape[0]), lambda: _build_wcvar_robust(factor.shape[0], xs.size)
    )
    compiled.assign(
        loading=factor @ xs,
        mean_return=float(structure.mean @ xs),
        kappa=kappa(confidence_level),
    )
    run = solve(compiled, solvers, options=CONE_SOLVER_OPTIONS)
    return _outcome(run.objective, run.status, run.solver, run.message, scale)


# ---------------------------------------------------------------- WCPVaR


def _build_wcpvar(k: int, p: int) -> CompiledProblem:
    g = cp.Variable(p, name="g")
    linear = cp.Parameter(p, name="linear")
    loading = cp.Parameter((k, p), name="loading")
    offset = cp.Parameter(k, name="offset")
    upper = cp.Parameter(p, nonneg=True, name="upper")
    constant = cp.Parameter(name="constant")
    objective = linear @ g + cp.norm(offset + loading @ g, 2) + constant
    problem = cp.Problem(cp.Minimize(objective), [g >= 0, g <= upper])
    params = {
        "linear": linear,
        "loading": loading,
        "offset": offset,
        "upper": upper,
        "constant": constant,
    }
    return CompiledProblem(problem, params, {"g": g})


@dataclass(frozen=True)
class PolyhedralBook:
    """The current book of a WCPVaR problem, scaled to unit gross exposure.

    ``equity`` holds the equity exposures per underlying, ``options`` the (long) option
    exposures, and ``base`` the constant ``-mu' x_xi + sum x_eta``. All are divided by
    ``scale = sum |x|``. ``factor`` is ``Sigma^(1/2)`` with at least one row, and ``kappa``
    the level's multiplier.
    """

    scale: float
    kappa: float
    factor: FloatArray
    equity: FloatArray
    options: FloatArray
    base: float


def polyhedral_book(exposures: npt.ArrayLike, structure: PolyhedralStructure,
                    confidence_level: float) -> PolyhedralBook | SolveOutcome:
    """The scaled book of a WCPVaR problem, or its outcome when no SOCP is needed.

    The outcome is returned when the book is empty, holds a short option (not applicable),
    or holds no option (closed form ``base + kappa ||F x_xi||``).
    """
    x, scale = _exposures(exposures, structure.equity_loading.shape[1])
    if scale == 0:
        return _zero_book("closed_form")
    xs = x / scale
    k_mult = kappa(confidence_level)
    factor = _rows(structure.factor)
    equity = structure.equity_loading @ xs
    options = xs[structure.option_columns]
    if np.any(options < 0):
        return SolveOutcome(math.nan, "not_applicable", "", "short option exposure")
    base = -float(structure.mean @ equity) + float(options.sum())
    if structure.n_options == 0:
        value = base + k_mult * float(np.linalg.norm(factor @ equity))
        return SolveOutcome(value * scale, "optimal", "closed_form")
    return PolyhedralBook(scale, k_mult, factor, equity, options, base)


def wcpvar(
    exposures: npt.ArrayLike,
    structure: PolyhedralStructure,
    confidence_level: float,
    *,
    solvers: tuple[str, ...] = DEFAULT_SOLVERS,
) -> SolveOutcome:
    """WCPVaR by its SOCP (paper, Theorem "SOCP reformulation").

    ``min over 0 <= g <= x_eta of -mu'(x_xi + B'g) + kappa ||Sigma^(1/2)(x_xi + B'g)||
    - a'g + e'x_eta`` with ``x_xi`` the equity exposures per underlying and
    ``x_eta`` the (long) option exposures. Solved in the scaled hedge
    variables ``g_hat = leverage * g`` (see :class:`PolyhedralStructure`).

    Parameters
    ----------
    exposures : array_like, shape (m,)
        Exposures in currency; option exposures must be >= 0.
    structure : PolyhedralStructure
        Payoff map and underlyings' moments.
    confidence_level : float
        alpha in (0, 1).
    solvers : tuple of str
        cvxpy solvers in order of preference.
    """
    book = polyhedral_book(exposures, structure, confidence_level)
    if isinstance(book, SolveOutcome):
        return book
    factor, k_mult, equity, options, base, scale = (
        book.factor, book.kappa, book.equity, book.options, book.base, book.scale)
    p = structure.n_options
    compiled = cached_problem(
        ("wcpvar", factor.shape[0], p), lambda: _build_wcpvar(factor.shape[0], p)
    )
    und = structure.option_underlying
    compiled.assign(
        linear=-(structure.option_sign * structure.mean[und] + structure.option_moneyness),
        loading=k_mult * factor[:, und] * structure.option_sign,
        offset=k_mult * (factor @ equity),
        upper=structure.option_leverage * options,
        constant=base,
    )
    run = solve(compiled, solvers, options=CONE_SOLVER_OPTIONS)
    return _outcome(run.objective, run.status, run.solver, run.message, scale)


def second_moment_matrix(mean: FloatArray, factor: FloatArray) -> FloatArray:
    """``Omega = [[Sigma + mu mu', mu], [mu', 1]]`` with ``Sigma = F' F``, shape (U+1, U+1)."""
    n = mean.size
    omega = np.empty((n + 1, n + 1))
    omega[:n, :n] = factor.T @ factor + np.outer(mean, mean)
    omega[:n, n] = mean
    omega[n, :n] = mean
    omega[n, n] = 1.0
    return 0.5 * (omega + omega.T)


def _build_wcpvar_sdp(n: int, p: int) -> CompiledProblem:
    m_var = cp.Variable((n + 1, n + 1), PSD=True, name="M")
    tau = cp.Variable(nonneg=True, name="tau")
    gamma = cp.Variable(name="gamma")
    y = cp.Variable(p, name="y")
    omega = cp.Parameter((n + 1, n + 1), symmetric=True, name="omega")
    eps = cp.Parameter(nonneg=True, name="eps")
    equity = cp.Parameter(n, name="equity")
    payoff = cp.Parameter((n, p), name="payoff")
    intercept = cp.Parameter(p, name="intercept")
    upper = cp.Parameter(p, nonneg=True, name="upper")
    premium = cp.Parameter(name="premium")
    v = cp.reshape(equity + payoff @ y, (n, 1), order="F")
    corner = cp.reshape(gamma + intercept @ y - premium - tau, (1, 1), order="F")
    lmi = m_var + cp.bmat([[np.zeros((n, n)), v / 2], [v.T / 2, corner]])
    constraints = [
        cp.trace(omega @ m_var) <= eps * tau,
        lmi >> 0,
        y >= 0,
        y <= upper,
    ]
    problem = cp.Problem(cp.Minimize(gamma), constraints)
    params = {
        "omega": omega,
        "eps": eps,
        "equity": equity,
        "payoff": payoff,
        "intercept": intercept,
        "upper": upper,
        "premium": premium,
    }
    return CompiledProblem(problem, params, {"gamma": gamma, "y": y})


def wcpvar_sdp(
    exposures: npt.ArrayLike,
    structure: PolyhedralStructure,
    confidence_level: float,
    *,
    solvers: tuple[str, ...] = DEFAULT_SOLVERS,
) -> SolveOutcome:
    """WCPVaR by the paper's SDP (Theorem "SDP reformulation of WCPVaR").

    ``min gamma`` s.t. ``<Omega, M> <= eps tau``, ``M >= 0``, ``tau >= 0``,
    ``0 <= y <= x_eta`` and
    ``M + [[0, v/2], [v'/2, gamma + a'y - e'x_eta - tau]] >= 0`` with
    ``v = x_xi + B'y`` (the paper's matrix halved). A cross-check of
    :func:`wcpvar`: the two agree to solver tolerance; the SOCP scales better.
    """
    x, scale = _exposures(exposures, structure.equity_loading.shape[1])
    if scale == 0:
        return _zero_book("closed_form")
    xs = x / scale
    options = xs[structure.option_columns]
    if np.any(options < 0):
        return SolveOutcome(math.nan, "not_applicable", "", "short option exposure")
    n = structure.mean.size
    a, b = structure.paper_coefficients()
    if structure.n_options == 0:  # one inert dummy option keeps the shapes non-empty
        a, b, options = np.zeros(1), np.zeros((1, n)), np.zeros(1)
    p = a.size
    compiled = cached_problem(("wcpvar_sdp", n, p), lambda: _build_wcpvar_sdp(n, p))
    compiled.assign(
        omega=second_moment_matrix(structure.mean, structure.factor),
        eps=tail_probability(confidence_level),
        equity=structure.equity_loading @ xs,
        payoff=b.T,
        intercept=a,
        upper=options,
        premium=float(options.sum()),
    )
    run = solve(compiled, solvers, options=CONE_SOLVER_OPTIONS)
    return _outcome(run.objective, run.status, run.solver, run.message, scale)


# ---------------------------------------------------------------- WCQVaR


def whitened_quadratic(
    structure: QuadraticStructure, exposures: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, float]:
    """Write the delta-gamma P&L in whitened factors ``zeta`` (mean 0, covariance I).

    With ``xi = mu + F' zeta``:
    ``P&L = c + d' zeta + 1/2 zeta' H zeta`` where ``c = theta h + Delta' mu +
    1/2 mu' Gamma mu``, ``d = F (Delta + Gamma mu)``, ``H = F Gamma F'``.

    Returns
    -------
    H : ndarray, shape (k, k)
    d : ndarray, shape (k,)
    c : float
    """
    delta, gamma, theta_h = structure.greeks(exposures)
    mu, factor = structure.mean, structure.factor
    c = theta_h + float(delta @ mu) + 0.5 * float(gamma @ (mu * mu))
    d = factor @ (delta + gamma * mu)
    h = (factor * gamma) @ factor.T
    return 0.5 * (h + h.T), d, c


def spectral_wcqvar(h: FloatArray, d: FloatArray, c: float, eps: float) -> tuple[float, int]:
    """Worst-case VaR of the P&L ``c + d' z + 1/2 z' H z``, ``E z = 0``, ``Cov z = I``.

    The WCQVaR SDP with ``Omega = I`` reads ``min gamma`` s.t.
    ``M >= 0``, ``M >= A``, ``tr M <= eps tau`` with
    ``A = A0 + (tau - gamma) e e'`` and ``A0 = -[[H/2, d/2], [d'/2, c]]``.
    For fixed ``A`` the least trace of such ``M`` is the sum of the positive
    eigenvalues of ``A``, so with ``s = tau - gamma``
    ``WCQVaR = min over s of  tr((A0 + s e e')_+) / eps - s``,
    a convex function of one variable whose slope
    ``||P_+ e||**2 / eps - 1`` (``P_+`` projector on the positive eigenspace)
    increases from -1 to ``1/eps - 1``; the minimum is found by bisection on
    the slope.

    Parameters
    ----------
    h : ndarray, shape (k, k)
        Symmetric quadratic coefficient.
    d : ndarray, shape (k,)
        Linear coefficient.
    c : float
        Constant.
    eps : float
        Tail probability in (0, 1).

    Returns
    -------
    value : float
        The worst-case VaR (loss units of the inputs).
    evaluations : int
        Number of eigen-decompositions used.
    """
    k = d.size
    a0 = np.empty((k + 1, k + 1))
    a0[:k, :k] = -0.5 * h
    a0[:k, k] = -0.5 * d
    a0[k, :k] = -0.5 * d
    a0[k, k] = -c
    evaluations = 0

    def phi(s: float) -> tuple[float, float]:
        nonlocal evaluations
        evaluations += 1
        shifted = a0.copy()
        shifted[k, k] += s
        values, vectors = np.linalg.eigh(shifted)
        positive = values > 0
        value = float(values[positive].sum()) / eps - s
        slope = float(np.sum(vectors[k, positive] ** 2)) / eps - 1.0
        return value, slope

    width = float(np.linalg.norm(a0)) + 1.0
    lo, hi = -width, width
    for _ in range(200):
        if phi(lo)[1] < 0:
            break
        lo *= 2.0
    for _ in range(200):
        if phi(hi)[1] > 0:
            break
        hi *= 2.0
    best = min(phi(lo)[0], phi(hi)[0])
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        value, slope = phi(mid)
        best = min(best, value)
        if slope < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(lo), abs(hi)):
            break
    return best, evaluations


def wcqvar(
    exposures: npt.ArrayLike, structure: QuadraticStructure, confidence_level: float
) -> SolveOutcome:
    """WCQVaR of the delta-gamma P&L by the exact spectral reduction.

    Equal to the paper's SDP (:func:`wcqvar_sdp`) - the SDP's ``M`` is
    eliminated in whitened coordinates, see :func:`spectral_wcqvar` - but
    costs a few dozen eigen-decompositions of size U+1 instead of an
    interior-point SDP, which grows like U**6.

    Parameters
    ----------
    exposures : array_like, shape (m,)
        Exposures in currency (shorts allowed).
    structure : QuadraticStructure
        Greeks in return space and underlyings' moments.
    confidence_level : float
        alpha in (0, 1).
    """
    x, scale = _exposures(exposures, structure.theta_h.size)
    if scale == 0:
        return _zero_book("spectral")
    eps = tail_probability(confidence_level)
    h, d, c = whitened_quadratic(structure, x / scale)
    try:
        value, _ = spectral_wcqvar(h, d, c, eps)
    except np.linalg.LinAlgError as exc:
        return SolveOutcome(math.nan, "solver_error", "spectral", f"eigh failed: {exc}")
    if not math.isfinite(value):
        return SolveOutcome(math.nan, "solver_error", "spectral", "non-finite value")
    return SolveOutcome(value * scale, "optimal", "spectral")


def _build_wcqvar_sdp(n: int) -> CompiledProblem:
    m_var = cp.Variable((n + 1, n + 1), PSD=True, name="M")
    tau = cp.Variable(nonneg=True, name="tau")
    gamma = cp.Variable(name="gamma")
    omega = cp.Parameter((n + 1, n + 1), symmetric=True, name="omega")
    eps = cp.Parameter(nonneg=True, name="eps")
    delta = cp.Parameter(n, name="delta")
    curvature = cp.Parameter(n, name="gamma_diag")
    theta_h = cp.Parameter(name="theta_h")
    column = cp.reshape(delta, (n, 1), order="F")
    corner = cp.reshape(theta_h + gamma - tau, (1, 1), order="F")
    lmi = m_var + cp.bmat([[cp.diag(curvature) / 2, column / 2], [column.T / 2, corner]])
    constraints = [cp.trace(omega @ m_var) <= eps * tau, lmi >> 0]
    problem = cp.Problem(cp.Minimize(gamma), constraints)
    params = {
        "omega": omega,
        "eps": eps,
        "delta": delta,
        "gamma_diag": curvature,
        "theta_h": theta_h,
    }
    return CompiledProblem(problem, params, {"gamma": gamma})


def wcqvar_sdp(
    exposures: npt.ArrayLike,
    structure: QuadraticStructure,
    confidence_level: float,
    *,
    solvers: tuple[str, ...] = DEFAULT_SOLVERS,
) -> SolveOutcome:
    """WCQVaR by the paper's SDP (Theorem "SDP reformulation of WCQVaR").

    ``min gamma`` s.t. ``M >= 0``, ``tau >= 0``, ``<Omega, M> <= eps tau``,
    ``M + [[Gamma/2, Delta/2], [Delta'/2, theta h + gamma - tau]] >= 0`` with
    ``Omega = [[Sigma + mu mu', mu], [mu', 1]]`` (the paper's matrix halved).
    """
    x, scale = _exposures(exposures, structure.theta_h.size)
    if scale == 0:
        return _zero_book("closed_form")
    n = structure.mean.size
    delta, gamma, theta_h = structure.greeks(x / scale)
    compiled = cached_problem(("wcqvar_sdp", n), lambda: _build_wcqvar_sdp(n))
    compiled.assign(
        omega=second_moment_matrix(structure.mean, structure.factor),
        eps=tail_probability(confidence_level),
        delta=delta,
        gamma_diag=gamma,
        theta_h=theta_h,
    )
    run = solve(compiled, solvers, options=CONE_SOLVER_OPTIONS)
    return _outcome(run.objective, run.status, run.solver, run.message, scale)
