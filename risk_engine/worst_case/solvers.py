"""cvxpy plumbing: problems built once per shape, solved with a fallback.

Problems are parametrized (DPP) and cached by a key naming their shape, so a
desk's confidence levels, and desks of the same shape, reuse one compiled
problem and only assign parameter values. Curvature and DPP compliance are
checked when a problem is built. The cache is per process and not
thread-safe: the worst-case stage runs desk after desk on the driver.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from .containers import USABLE_STATUSES

_SOLVER_OPTIONS: dict[str, dict[str, object]] = {
    "CLARABEL": {},
    "SCS": {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 20_000},
    "MOSEK": {},
}

_STATUS_MAP: dict[str, str] = {
    cp.OPTIMAL: "optimal",
    cp.OPTIMAL_INACCURATE: "inaccurate",
    cp.INFEASIBLE: "infeasible",
    cp.INFEASIBLE_INACCURATE: "infeasible",
    cp.UNBOUNDED: "unbounded",
    cp.UNBOUNDED_INACCURATE: "unbounded",
}

_FINAL_CVXPY_STATUSES = {cp.OPTIMAL, cp.INFEASIBLE, cp.UNBOUNDED}

_CACHE_SIZE = 64


@dataclass(frozen=True)
class CompiledProblem:
    """A parametrized cvxpy problem with named parameters and variables."""

    problem: cp.Problem
    parameters: Mapping[str, cp.Parameter]
    variables: Mapping[str, cp.Variable]

    def assign(self, **values: object) -> None:
        """Set parameter values by name (every parameter must be known)."""
        for name, value in values.items():
            self.parameters[name].value = value


_cache: OrderedDict[tuple[object, ...], CompiledProblem] = OrderedDict()


def cached_problem(
    key: tuple[object, ...], build: Callable[[], CompiledProblem]
) -> CompiledProblem:
    """Return the problem cached under ``key``, building it on first use.

    Raises
    ------
    RuntimeError
        If the built problem is not DCP or not DPP (a programming error).
    """
    found = _cache.get(key)
    if found is not None:
        _cache.move_to_end(key)
        return found
    compiled = build()
    if not compiled.problem.is_dcp(dpp=True):  # type: ignore[call-arg]
        raise RuntimeError(f"worst-case problem {key[0]!r} is not DCP/DPP as built")
    _cache[key] = compiled
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return compiled


def clear_problem_cache() -> None:
    """Forget every cached problem (e.g. between benchmark runs)."""
    _cache.clear()


@dataclass(frozen=True)
class SolveRun:
    """What one solve produced.

    Attributes
    ----------
    status : str
        Mapped status (``optimal``, ``inaccurate``, ``infeasible``,
        ``unbounded``, ``solver_error``).
    solver : str
        Solver whose answer is reported ('' when none ran).
    objective : float
        Optimal objective (NaN unless status is usable).
    values : dict of str to ndarray
        Values of the requested variables at the reported answer.
    message : str
        Solver diagnostics (attempts that failed or were inaccurate).
    """

    status: str
    solver: str
    objective: float
    values: Mapping[str, np.ndarray]
    message: str


def _attempt(
    compiled: CompiledProblem, solver: str, capture: tuple[str, ...]
) -> tuple[str, str, SolveRun]:
    problem = compiled.problem
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem.solve(solver=solver, **_SOLVER_OPTIONS.get(solver, {}))
    except Exception as exc:  # noqa: BLE001 - any solver failure becomes a status row
        text = f"{solver}: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        return "", text, SolveRun("solver_error", solver, math.nan, {}, text)
    raw = problem.status
    status = _STATUS_MAP.get(raw, "solver_error")
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
    text = f"{solver}: {raw}"
    return raw or "", text, SolveRun(status, solver, objective, values, text)


_PREFERENCE = {"optimal": 0, "inaccurate": 1, "infeasible": 2, "unbounded": 2, "solver_error": 3}


def solve(
    compiled: CompiledProblem, solvers: tuple[str, ...], capture: tuple[str, ...] = ()
) -> SolveRun:
    """Solve with each solver in turn until one gives a definite answer.

    An answer is definite when cvxpy reports ``optimal``, ``infeasible`` or
    ``unbounded``. Otherwise (exception, ``*_inaccurate``, iteration limit) the
    next solver is tried and the best answer seen is returned, preferring
    optimal over inaccurate over infeasible/unbounded over errors. Never raises
    for solver trouble.

    Parameters
    ----------
    compiled : CompiledProblem
        Problem with every parameter assigned.
    solvers : tuple of str
        cvxpy solver names in order of preference.
    capture : tuple of str
        Names of variables whose values to copy out of the reported answer.
    """
    best: SolveRun | None = None
    notes: list[str] = []
    for solver in solvers:
        raw, text, run = _attempt(compiled, solver, capture)
        notes.append(text)
        if best is None or _PREFERENCE[run.status] < _PREFERENCE[best.status]:
            best = run
        if raw in _FINAL_CVXPY_STATUSES and run.status != "solver_error":
            break
    if best is None:
        return SolveRun("solver_error", "", math.nan, {}, "no solver configured")
    message = "" if best.status == "optimal" and len(notes) == 1 else "; ".join(notes)
    return SolveRun(best.status, best.solver, best.objective, best.values, message)
