"""Allocations minimizing WCVaR, WCPVaR and WCQVaR.

Each problem chooses weights ``w`` (m,), fractions of the desk's net capital
``V > 0``, with

* ``sum(w) == 1``;
* ``weight_lower <= w <= weight_upper`` (bounds dropped when infinite);
* ``mu_r' w >= mu_r' w_current`` when a return floor is given (``mu_r`` the
  instruments' expected returns over the horizon);
* under WCPVaR, option weights ``>= 0`` (implied by ``0 <= g <= leverage w``).

The solver's answer is then checked independently: the constraints are
re-evaluated at the returned weights and the model is evaluated there by the
fixed-book code of :mod:`risk_engine.worst_case.models` (closed form, SOCP or
spectral reduction). The reported ``value`` is that evaluation; a mismatch
with the solver objective, a violated constraint, or a result worse than a
feasible current allocation turns ``optimal`` into ``inaccurate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import cvxpy as cp
import numpy as np
import numpy.typing as npt

from risk_engine.covariance import cov_factor
from risk_engine.solvers import (
    CONE_SOLVER_OPTIONS,
    CompiledProblem,
    SolveRun,
    cached_problem,
    solve,
)
from risk_engine.types import FloatArray

from .containers import OptimizationOutcome, SolveOutcome, WorstCaseSettings
from .models import _rows, wcpvar, wcqvar, wcvar
from .moments import kappa, tail_probability
from .structures import LinearStructure, PolyhedralStructure, QuadraticStructure


@dataclass(frozen=True)
class AllocationProblem:
    """Inputs shared by the three minimizations of one desk.

    Attributes
    ----------
    net_value : float
        Net capital ``V > 0`` in currency.
    current_weights : ndarray, shape (m,)
        Current exposures divided by ``V``.
    expected_returns : ndarray, shape (m,), or None
        Instrument expected returns for the return floor; None for no floor.
    """

    net_value: float
    current_weights: FloatArray
    expected_returns: FloatArray | None = None


def _bounds(settings: WorstCaseSettings) -> tuple[bool, bool]:
    return bool(np.isfinite(settings.weight_lower)), bool(np.isfinite(settings.weight_upper))


def _allocation_constraints(
    w: cp.Variable, m: int, has_lower: bool, has_upper: bool, floor: bool
) -> tuple[list[cp.Constraint], dict[str, cp.Parameter]]:
    constraints: list[cp.Constraint] = [cp.sum(w) == 1]
    params: dict[str, cp.Parameter] = {}
    if has_lower:
        params["lower"] = cp.Parameter(m, name="lower")
        constraints.append(w >= params["lower"])
    if has_upper:
        params["upper_w"] = cp.Parameter(m, name="upper_w")
        constraints.append(w <= params["upper_w"])
    if floor:
        params["mean_return"] = cp.Parameter(m, name="mean_return")
        params["floor"] = cp.Parameter(name="floor")
        constraints.append(params["mean_return"] @ w >= params["floor"])
    return constraints, params


def _allocation_values(
    problem: AllocationProblem, settings: WorstCaseSettings, m: int
) -> dict[str, object]:
    values: dict[str, object] = {}
    has_lower, has_upper = _bounds(settings)
    if has_lower:
        values["lower"] = np.full(m, settings.weight_lower)
    if has_upper:
        values["upper_w"] = np.full(m, settings.weight_upper)
    if problem.expected_returns is not None:
        values["mean_return"] = problem.expected_returns
        values["floor"] = float(problem.expected_returns @ problem.current_weights)
    return values


def _violation(
    w: FloatArray,
    problem: AllocationProblem,
    settings: WorstCaseSettings,
    nonneg: npt.NDArray[np.int64] | None,
) -> float:
    """Largest constraint violation at ``w`` (weight units)."""
    worst = abs(float(w.sum()) - 1.0)
    worst = max(worst, float(np.max(settings.weight_lower - w, initial=0.0)))
    worst = max(worst, float(np.max(w - settings.weight_upper, initial=0.0)))
    if problem.expected_returns is not None:
        mu = problem.expected_returns
        worst = max(worst, float(mu @ problem.current_weights - mu @ w))
    if nonneg is not None and nonneg.size:
        worst = max(worst, float(np.max(-w[nonneg], initial=0.0)))
    return worst


def _finish(
    model: str,
    level: float,
    run: SolveRun,
    problem: AllocationProblem,
    settings: WorstCaseSettings,
    evaluate: Callable[[FloatArray], SolveOutcome],
    nonneg: npt.NDArray[np.int64] | None = None,
) -> OptimizationOutcome:
    """Check a solver answer independently and wrap it."""
    v = problem.net_value
    if run.status not in ("optimal", "inaccurate"):
        return OptimizationOutcome(
            model, level, math.nan, math.nan, None, run.status, run.solver, run.message
        )
    weights = run.values["w"]
    weights.setflags(write=False)
    objective = run.objective * v
    notes = [run.message] if run.message else []
    status = run.status
    check = evaluate(weights * v)
    if check.status not in ("optimal", "inaccurate"):
        notes.append(f"evaluation at the optimum failed: {check.status} {check.message}")
        return OptimizationOutcome(
            model, level, math.nan, objective, None, "solver_error", run.solver, "; ".join(notes)
        )
    value = check.value
    tolerance = settings.atol * v + settings.rtol * abs(value)
    if abs(value - objective) > tolerance:
        status = "inaccurate"
        notes.append(f"solver objective {objective:.6g} != evaluation {value:.6g} at its weights")
    violation = _violation(weights, problem, settings, nonneg)
    if violation > settings.atol:
        status = "inaccurate"
        notes.append(f"constraint violated by {violation:.3g} at the returned weights")
    current_ok = _violation(problem.current_weights, problem, settings, nonneg) <= settings.atol
    if current_ok:
        current = evaluate(problem.current_weights * v)
        if current.status == "optimal" and value > current.value + tolerance:
            status = "inaccurate"
            notes.append(f"optimum {value:.6g} worse than the feasible current {current.value:.6g}")
    else:
        notes.append("current weights violate the allocation constraints")
    return OptimizationOutcome(
        model, level, value, objective, weights, status, run.solver, "; ".join(notes)
    )


# ---------------------------------------------------------------- WCVaR


def _build_min_wcvar(
    k: int, m: int, has_lower: bool, has_upper: bool, floor: bool
) -> CompiledProblem:
    w = cp.Variable(m, name="w")
    mean = cp.Parameter(m, name="mean")
    loading = cp.Parameter((k, m), name="loading")
    constraints, params = _allocation_constraints(w, m, has_lower, has_upper, floor)
    problem = cp.Problem(cp.Minimize(-mean @ w + cp.norm(loading @ w, 2)), constraints)
    params.update(mean=mean, loading=loading)
    return CompiledProblem(problem, params, {"w": w})


def minimize_wcvar(
    structure: LinearStructure,
    problem: AllocationProblem,
    confidence_level: float,
    settings: WorstCaseSettings,
) -> OptimizationOutcome:
    """Weights minimizing ``-mu_r' w + kappa ||Sigma_r^(1/2) w||``.

    Parameters
    ----------
    structure : LinearStructure
        Instrument return moments (m instruments).
    problem : AllocationProblem
        Net value, current weights and return floor.
    confidence_level : float
        alpha in (0, 1).
    settings : WorstCaseSettings
        Bounds, solvers and tolerances.

    Returns
    -------
    OptimizationOutcome
        Figures in currency (``V`` times the per-capital figure).
    """
    factor = _rows(structure.factor)
    k, m = factor.shape
    has_lower, has_upper = _bounds(settings)
    floor = problem.expected_returns is not None
    key = ("min_wcvar", k, m, has_lower, has_upper, floor)
    compiled = cached_problem(key, lambda: _build_min_wcvar(k, m, has_lower, has_upper, floor))
    compiled.assign(
        mean=structure.mean,
        loading=kappa(confidence_level) * factor,
        **_allocation_values(problem, settings, m),
    )
    run = solve(compiled, settings.solvers, capture=("w",), options=CONE_SOLVER_OPTIONS)
    return _finish(
        "WCVaR",
        confidence_level,
        run,
        problem,
        settings,
        lambda x: wcvar(x, structure, confidence_level),
    )


# ---------------------------------------------------------------- WCPVaR


def _build_min_wcpvar(
    k: int, m_eq: int, p: int, has_lower: bool, has_upper: bool, floor: bool
) -> CompiledProblem:
    """Min-WCPVaR over weights ordered equities first, then options."""
    m = m_eq + p
    w = cp.Variable(m, name="w")
    constraints, params = _allocation_constraints(w, m, has_lower, has_upper, floor)
    linear_terms: list[cp.Expression] = []
    cone_terms: list[cp.Expression] = []
    if m_eq:
        linear_eq = cp.Parameter(m_eq, name="linear_eq")
        loading_eq = cp.Parameter((k, m_eq), name="loading_eq")
        linear_terms.append(linear_eq @ w[:m_eq])
        cone_terms.append(loading_eq @ w[:m_eq])
        params.update(linear_eq=linear_eq, loading_eq=loading_eq)
    if p:
        g = cp.Variable(p, name="g")
        linear_g = cp.Parameter(p, name="linear_g")
        loading_g = cp.Parameter((k, p), name="loading_g")
        leverage = cp.Parameter(p, nonneg=True, name="leverage")
        linear_terms += [cp.sum(w[m_eq:]), linear_g @ g]
        cone_terms.append(loading_g @ g)
        constraints += [g >= 0, g <= cp.multiply(leverage, w[m_eq:])]
        params.update(linear_g=linear_g, loading_g=loading_g, leverage=leverage)
    objective = cp.sum(cp.hstack(linear_terms)) + cp.norm(cp.sum(cp.vstack(cone_terms), axis=0), 2)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    return CompiledProblem(problem, params, {"w": w})


def minimize_wcpvar(
    structure: PolyhedralStructure,
    problem: AllocationProblem,
    confidence_level: float,
    settings: WorstCaseSettings,
) -> OptimizationOutcome:
    """Weights minimizing WCPVaR jointly over weights and hedge variables.

    ``min over w, 0 <= g <= w_eta of -mu'(w_xi + B'g) + kappa ||Sigma^(1/2)(w_xi + B'g)||
    - a'g + e'w_eta``, jointly convex (an SOCP); option weights stay >= 0.
    Instruments are reordered equities first so the problem's parameters stay
    small (no m-wide selection matrices) and its shape is (U, #equities, #options).
    """
    factor = _rows(structure.factor)
    k = factor.shape[0]
    m = structure.equity_loading.shape[1]
    cols = structure.option_columns
    is_option = np.zeros(m, dtype=bool)
    is_option[cols] = True
    equities = np.flatnonzero(~is_option)
    order = np.concatenate([equities, cols])
    m_eq, p = equities.size, cols.size
    has_lower, has_upper = _bounds(settings)
    floor = problem.expected_returns is not None
    key = ("min_wcpvar", k, m_eq, p, has_lower, has_upper, floor)
    compiled = cached_problem(
        key, lambda: _build_min_wcpvar(k, m_eq, p, has_lower, has_upper, floor)
    )
    k_mult = kappa(confidence_level)
    values = _allocation_values(problem, settings, m)
    if "mean_return" in values:
        values["mean_return"] = np.asarray(values["mean_return"])[order]
    loading = structure.equity_loading[:, equities]
    if m_eq:
        values.update(
            linear_eq=-(loading.T @ structure.mean), loading_eq=k_mult * (factor @ loading)
        )
    if p:
        und = structure.option_underlying
        values.update(
            linear_g=-(structure.option_sign * structure.mean[und] + structure.option_moneyness),
            loading_g=k_mult * factor[:, und] * structure.option_sign,
            leverage=structure.option_leverage,
        )
    compiled.assign(**values)
    run = solve(compiled, settings.solvers, capture=("w",), options=CONE_SOLVER_OPTIONS)
    if "w" in run.values:
        weights = np.empty(m)
        weights[order] = run.values["w"]
        run = replace(run, values={"w": weights})
    return _finish(
        "WCPVaR",
        confidence_level,
        run,
        problem,
        settings,
        lambda x: wcpvar(x, structure, confidence_level, solvers=settings.solvers),
        nonneg=cols,
    )


# ---------------------------------------------------------------- WCQVaR


@dataclass(frozen=True)
class _ReducedQuadratic:
    """WCQVaR data in scaled, reduced coordinates (see :func:`_reduce`)."""

    omega: FloatArray  # (p, p): second-moment matrix of (zeta_B, eta, 1)
    curvature: FloatArray  # (g, m): diagonal of the scaled Gamma per unit weight
    linear: FloatArray  # (g, m): coefficient of zeta_B per unit weight
    perpendicular: FloatArray  # (q, m): factor of the eta coefficient, t >= ||perpendicular @ w||
    constant: FloatArray  # (m,): constant term per unit weight


def _reduce(structure: QuadraticStructure) -> _ReducedQuadratic:
    """Shrink the WCQVaR SDP to the underlyings the P&L bends in.

    Scale and centre the returns, ``xi = mu + diag(s) zeta`` with ``s`` the
    return volatilities, so ``zeta`` has mean 0 and covariance ``R`` (the
    correlation matrix) and the P&L of weights ``w`` is
    ``c'w + (D w)' zeta + 1/2 zeta' diag(G w) zeta`` (Gamma stays diagonal).
    Split ``zeta`` into underlyings carrying gamma (B) and the rest (N):
    ``zeta_N = A zeta_B + e`` with ``A = R_NB R_BB^+`` and ``e`` uncorrelated
    with ``zeta_B`` (covariance ``S``, the Schur complement). The linear term
    on N becomes ``(A' d_N)' zeta_B`` plus one scalar ``||S^(1/2) d_N|| eta``
    with ``eta`` of mean 0, variance 1, uncorrelated with ``zeta_B``; every
    such ``(zeta_B, eta)`` lifts back to a ``zeta`` with the right moments, so
    the worst case is unchanged and the SDP has size ``|B| + 2`` instead of
    ``U + 1``. The coefficient of ``eta`` enters as ``t >= ||S^(1/2) d_N||``:
    WCQVaR is even and convex, hence nondecreasing, in it.
    """
    mu = structure.mean
    cov = structure.factor.T @ structure.factor
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    sd = np.where(sd > 0, sd, 1.0)
    corr = cov / np.outer(sd, sd)
    curvature = (sd**2)[:, None] * structure.gamma
    linear = sd[:, None] * (structure.delta + mu[:, None] * structure.gamma)
    constant = structure.theta_h + structure.delta.T @ mu + 0.5 * structure.gamma.T @ (mu * mu)
    bends = np.any(structure.gamma != 0, axis=1)
    b, n = np.flatnonzero(bends), np.flatnonzero(~bends)
    r_bb = corr[np.ix_(b, b)]
    if n.size:
        r_nb = corr[np.ix_(n, b)]
        a = r_nb @ np.linalg.pinv(r_bb, hermitian=True) if b.size else np.zeros((n.size, 0))
        schur = corr[np.ix_(n, n)] - a @ r_nb.T
        s_factor = np.ascontiguousarray(cov_factor(schur, method="cholesky").T)
        lin_b = linear[b] + a.T @ linear[n]
        perpendicular = s_factor @ linear[n]
    else:
        lin_b = linear[b]
        perpendicular = np.zeros((0, linear.shape[1]))
    q = 1 if perpendicular.shape[0] else 0
    size = b.size + q + 1
    omega = np.zeros((size, size))
    omega[: b.size, : b.size] = r_bb
    omega[b.size :, b.size :] = np.eye(q + 1)
    return _ReducedQuadratic(0.5 * (omega + omega.T), curvature[b], lin_b, perpendicular, constant)


def _build_min_wcqvar(
    m: int, g: int, q: int, has_lower: bool, has_upper: bool, floor: bool
) -> CompiledProblem:
    """Build the WCQVaR SDP with ``tau`` eliminated (better conditioned than the paper's).

    ``min <Omega, M> / eps - s`` s.t. ``M >= 0`` and
    ``M + [[Gamma(w)/2, Delta(w)/2], [Delta(w)'/2, theta(w) h - s]] >= 0``:
    the paper's SDP with ``s = tau - gamma`` and ``tau = <Omega, M> / eps``
    (the least ``tau`` its constraint allows).
    """
    w = cp.Variable(m, name="w")
    constraints, params = _allocation_constraints(w, m, has_lower, has_upper, floor)
    size = g + (1 if q else 0) + 1
    m_var = cp.Variable((size, size), PSD=True, name="M")
    shift = cp.Variable(name="s")
    omega_over_eps = cp.Parameter((size, size), symmetric=True, name="omega_over_eps")
    constant = cp.Parameter(m, name="constant")
    corner = cp.reshape(constant @ w - shift, (1, 1), order="F")
    rows: list[list[object]] = []
    last_row: list[object] = []
    if g:
        curvature = cp.Parameter((g, m), name="curvature")
        linear = cp.Parameter((g, m), name="linear")
        d_col = cp.reshape(linear @ w, (g, 1), order="F")
        rows.append([cp.diag(curvature @ w) / 2] + ([np.zeros((g, 1))] if q else []) + [d_col / 2])
        last_row.append(d_col.T / 2)
        params.update(curvature=curvature, linear=linear)
    if q:
        perpendicular = cp.Parameter((q, m), name="perpendicular")
        t = cp.Variable(nonneg=True, name="t")
        constraints.append(cp.norm(perpendicular @ w, 2) <= t)
        t_cell = cp.reshape(t, (1, 1), order="F")
        rows.append(([np.zeros((1, g))] if g else []) + [np.zeros((1, 1)), t_cell / 2])
        last_row.append(t_cell / 2)
        params["perpendicular"] = perpendicular
    rows.append(last_row + [corner])
    constraints.append(m_var + cp.bmat(rows) >> 0)
    params.update(omega_over_eps=omega_over_eps, constant=constant)
    objective = cp.trace(omega_over_eps @ m_var) - shift
    problem = cp.Problem(cp.Minimize(objective), constraints)
    return CompiledProblem(problem, params, {"w": w})


def minimize_wcqvar(
    structure: QuadraticStructure,
    problem: AllocationProblem,
    confidence_level: float,
    settings: WorstCaseSettings,
) -> OptimizationOutcome:
    """Weights minimizing WCQVaR (an SDP, jointly convex in weights).

    The paper's SDP with ``Delta(w)``, ``Gamma(w)``, ``theta(w)`` linear in the
    weights, solved in volatility-scaled coordinates reduced to the
    underlyings carrying gamma (:func:`_reduce`), so the PSD blocks have size
    ``(#underlyings carrying gamma) + 2`` at most. Shorts are allowed if the
    weight bounds allow them.
    """
    reduced = _reduce(structure)
    m = structure.theta_h.size
    g = reduced.curvature.shape[0]
    q = reduced.perpendicular.shape[0]
    size = g + (1 if q else 0) + 1
    if size > settings.max_sdp_size:
        message = (
            f"SDP block of size {size} exceeds worst_case.max_sdp_size={settings.max_sdp_size} "
            "(cost grows like size**6); raise it to optimize this desk"
        )
        return OptimizationOutcome(
            "WCQVaR", confidence_level, math.nan, math.nan, None, "not_applicable", "", message
        )
    has_lower, has_upper = _bounds(settings)
    floor = problem.expected_returns is not None
    key = ("min_wcqvar", m, g, q, has_lower, has_upper, floor)
    compiled = cached_problem(key, lambda: _build_min_wcqvar(m, g, q, has_lower, has_upper, floor))
    values = _allocation_values(problem, settings, m)
    eps = tail_probability(confidence_level)
    values.update(omega_over_eps=reduced.omega / eps, constant=reduced.constant)
    if g:
        values.update(curvature=reduced.curvature, linear=reduced.linear)
    if q:
        values["perpendicular"] = reduced.perpendicular
    compiled.assign(**values)
    run = solve(compiled, settings.solvers, capture=("w",), options=CONE_SOLVER_OPTIONS)
    return _finish(
        "WCQVaR",
        confidence_level,
        run,
        problem,
        settings,
        lambda x: wcqvar(x, structure, confidence_level),
    )
