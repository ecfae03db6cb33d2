"""The one cvxpy layer of the core: solver names, statuses, problem cache, solve with fallback.

Worst-case VaR (:mod:`risk_engine.worst_case`) and portfolio construction
(:mod:`risk_engine.portfolio`) build their problems through :func:`cached_problem` and solve
them through :func:`solve`, so both read solver outcomes the same way.

Statuses (DESIGN section 4)
---------------------------
``optimal``
    Solved to the solver's tolerances; the answer is usable.
``inaccurate``
    The solver stopped with reduced accuracy (cvxpy ``optimal_inaccurate``): the answer is
    returned but flagged, never used silently.
``not_applicable``
    The inputs do not define the problem (set by the callers, with the reason).
``infeasible`` / ``unbounded``
    Also from cvxpy's ``*_inaccurate`` variants.
``solver_error``
    The solver raised, hit a limit (``user_limit``), returned no values, or anything else.

Problems are parametrized (DPP) and cached by a key naming their shape, so desks, confidence
levels and frontier points of the same shape reuse one compiled problem and only assign
parameter values. Curvature and DPP compliance are checked when a problem is built. The
cache is per process, least-recently-used, and guarded by a lock; each problem carries its
own lock, held by :meth:`CompiledProblem.solve` while it assigns parameters and solves.
Solves never warm-start, so a problem's answer depends on its data only, not on what the
process solved before.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import cvxpy as cp
import numpy as np

Status = Literal[
    "optimal", "inaccurate", "not_applicable", "infeasible", "unbounded", "solver_error"
]

STATUSES: tuple[str, ...] = (
    "optimal",
    "inaccurate",
    "not_applicable",
    "infeasible",
    "unbounded",
    "solver_error",
)
"""Every status a solved figure can carry (DESIGN section 4)."""

USABLE_STATUSES: frozenset[str] = frozenset({"optimal", "inaccurate"})
"""Statuses that come with a number (``inaccurate`` is flagged, not hidden)."""

CONE_SOLVERS: tuple[str, ...] = ("CLARABEL", "SCS", "MOSEK")
"""Solvers accepted for the worst-case problems: each handles SOC and PSD cones."""

QP_SOLVERS: tuple[str, ...] = ("CLARABEL", "SCS")
"""Solvers accepted for the portfolio problems (quadratic programs and LPs)."""

DEFAULT_SOLVERS: tuple[str, ...] = ("CLARABEL", "SCS")
"""Default order of preference: Clarabel (interior point), then SCS as the fallback."""

SolverOptions = Mapping[str, Mapping[str, object]]
"""Keyword options per solver name, passed to ``cvxpy.Problem.solve``."""

CONE_SOLVER_OPTIONS: SolverOptions = {
    "CLARABEL": {},
    "SCS": {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 20_000},
    "MOSEK": {},
}
"""Options of the worst-case problems (SCS tightened from its loose defaults)."""

_STATUS_MAP: dict[str, Status] = {
    cp.OPTIMAL: "optimal",
    cp.OPTIMAL_INACCURATE: "inaccurate",
    cp.INFEASIBLE: "infeasible",
    cp.INFEASIBLE_INACCURATE: "infeasible",
    cp.UNBOUNDED: "unbounded",
    cp.UNBOUNDED_INACCURATE: "unbounded",
}

_FINAL_CVXPY_STATUSES = {cp.OPTIMAL, cp.INFEASIBLE, cp.UNBOUNDED}

_CACHE_SIZE = 64


def map_status(cvxpy_status: str | None) -> Status:
    """Map a cvxpy problem status onto :data:`Status`.

    Parameters
    ----------
    cvxpy_status : str or None
        ``problem.status`` after ``solve``.

    Returns
    -------
    Status
        ``optimal``, ``inaccurate`` (``optimal_inaccurate``), ``infeasible`` (also
        ``infeasible_inaccurate``), ``unbounded`` (also ``unbounded_inaccurate``) or
        ``solver_error`` for anything else (``user_limit``, ``infeasible_or_unbounded``, None).
    """
    if cvxpy_status is None:
        return "solver_error"
    return _STATUS_MAP.get(cvxpy_status, "solver_error")


def check_solver(name: str, accepted: tuple[str, ...], key: str) -> str:
    """Return ``name`` upper-cased if it is one of ``accepted``.

    Parameters
    ----------
    name : str
        Solver name as configured (any case).
    accepted : tuple of str
        :data:`CONE_SOLVERS` or :data:`QP_SOLVERS`.
    key : str
        Setting that named the solver, for the error message.

    Raises
    ------
    ValueError
        If the solver is not accepted.
    """
    upper = str(name).upper()
    if upper not in accepted:
        raise ValueError(f"{key}={name!r} must be one of {accepted}")
    return upper


@dataclass(frozen=True)
class CompiledProblem:
    """A parametrized cvxpy problem with named parameters and variables."""

    problem: cp.Problem
    parameters: Mapping[str, cp.Parameter]
    variables: Mapping[str, cp.Variable]
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def assign(self, **values: object) -> None:
        """Set parameter values by name (every parameter must be known)."""
        for name, value in values.items():
            self.parameters[name].value = value

    def solve(
        self,
        values: Mapping[str, object],
        solvers: tuple[str, ...],
        capture: tuple[str, ...] = (),
        options: SolverOptions | None = None,
    ) -> SolveRun:
        """Assign ``values`` and :func:`solve`, holding the problem's lock throughout."""
        with self.lock:
            self.assign(**values)
            return solve(self, solvers, capture, options)


_cache: OrderedDict[tuple[object, ...], CompiledProblem] = OrderedDict()
_cache_lock = threading.Lock()


def cached_problem(
    key: tuple[object, ...], build: Callable[[], CompiledProblem]
) -> CompiledProblem:
    """Return the problem cached under ``key``, building it on first use.

    Parameters
    ----------
    key : tuple
        Names the problem's family (first item) and shape; equal keys must build
        identical problems.
    build : callable
        Builds the problem when it is not cached.

    Raises
    ------
    RuntimeError
        If the built problem is not DCP or not DPP (a programming error).
    """
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
        compiled = build()
        if not compiled.problem.is_dcp(dpp=True):  # type: ignore[call-arg]
            raise RuntimeError(f"problem {key[0]!r} is not DCP/DPP as built")
        _cache[key] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return compiled


def clear_problem_cache() -> None:
    """Forget every cached problem (e.g. between benchmark runs)."""
    with _cache_lock:
        _cache.clear()


@dataclass(frozen=True)
class SolveRun:
    """What one solve produced.

    Attributes
    ----------
    status : Status
        Mapped status (``optimal``, ``inaccurate``, ``infeasible``, ``unbounded``,
        ``solver_error``).
    solver : str
        Solver whose answer is reported ('' when none ran).
    objective : float
        Optimal objective (NaN unless status is usable).
    values : dict of str to ndarray
        Values of the requested variables at the reported answer.
    message : str
        Solver diagnostics (attempts that failed or were inaccurate); empty when the
        first solver answered ``optimal``.
    """

    status: Status
    solver: str
    objective: float
    values: Mapping[str, np.ndarray]
    message: str


def _attempt(
    compiled: CompiledProblem,
    solver: str,
    capture: tuple[str, ...],
    options: SolverOptions,
) -> tuple[str, SolveRun]:
    problem = compiled.problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # No warm start: cvxpy's default would start from the previous solve of the
            # cached problem, and the answer's last bits would depend on what this process
            # solved before (a desk's weights differed by 1e-14 between two runs).
            problem.solve(solver=solver, warm_start=False, **options.get(solver, {}))
    except Exception as exc:  # noqa: BLE001 - any solver failure becomes a status
        text = f"{solver}: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return "", SolveRun("solver_error", solver, math.nan, {}, text)
    raw = problem.status
    status = map_status(raw)
    objective = math.nan
    values: dict[str, np.ndarray] = {}
    if status in USABLE_STATUSES:
        objective = float(problem.value)
        for name in capture:
            value = compiled.variables[name].value
            if value is None:
                status = "solver_error"
                break
            values[name] = np.array(value, dtype=np.float64, copy=True)
        if not math.isfinite(objective):
            status = "solver_error"
    text = f"{solver} returned status {raw}"
    return raw or "", SolveRun(status, solver, objective, values, text)


_PREFERENCE = {"optimal": 0, "inaccurate": 1, "infeasible": 2, "unbounded": 2, "solver_error": 3}


def solve(
    compiled: CompiledProblem,
    solvers: tuple[str, ...],
    capture: tuple[str, ...] = (),
    options: SolverOptions | None = None,
) -> SolveRun:
    """Solve with each solver in turn until one gives a definite answer.

    An answer is definite when cvxpy reports ``optimal``, ``infeasible`` or
    ``unbounded``. Otherwise (exception, ``*_inaccurate``, iteration limit) the
    next solver (the fallback) is tried and the best answer seen is returned,
    preferring optimal over inaccurate over infeasible/unbounded over errors.
    Never raises for solver trouble.

    Parameters
    ----------
    compiled : CompiledProblem
        Problem with every parameter assigned.
    solvers : tuple of str
        cvxpy solver names in order of preference.
    capture : tuple of str
        Names of variables whose values to copy out of the reported answer.
    options : mapping of solver name to keyword options, optional
        Passed to ``Problem.solve``; solvers not listed run with cvxpy's defaults.

    Returns
    -------
    SolveRun
        The reported answer; its ``message`` lists every attempt unless the first
        solver answered ``optimal``.
    """
    opts: SolverOptions = {} if options is None else options
    best: SolveRun | None = None
    notes: list[str] = []
    for solver in solvers:
        raw, run = _attempt(compiled, solver, capture, opts)
        notes.append(run.message)
        if best is None or _PREFERENCE[run.status] < _PREFERENCE[best.status]:
            best = run
        if raw in _FINAL_CVXPY_STATUSES and run.status != "solver_error":
            break
    if best is None:
        return SolveRun("solver_error", "", math.nan, {}, "no solver configured")
    message = "" if best.status == "optimal" and len(notes) == 1 else "; ".join(notes)
    return SolveRun(best.status, best.solver, best.objective, best.values, message)
