"""Per-desk entry point: every model, level and portfolio as typed rows.

:func:`evaluate_desk` never raises for solver or applicability trouble: a
model that does not apply, a solver failure or an infeasible allocation
problem is a row with a status and a message. It raises ``ValueError`` only
for wiring errors (moments of the wrong size or order, a bad horizon).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.solvers import USABLE_STATUSES

from .containers import (
    AllocationResult,
    DeskInstruments,
    OptimizationOutcome,
    ReturnMoments,
    SolveOutcome,
    WorstCaseResult,
    WorstCaseSettings,
)
from .models import wcpvar, wcqvar, wcqvar_sdp, wcvar, wcvar_robust
from .optimize import AllocationProblem, minimize_wcpvar, minimize_wcqvar, minimize_wcvar
from .reduced import (
    ReducedMoments,
    instrument_weights,
    pnl_wcvar,
    reduced_linear_structure,
    reduced_quadratic_structure,
    wcpvar_aggregated,
)
from .structures import (
    LinearStructure,
    NotApplicableError,
    PolyhedralStructure,
    QuadraticStructure,
    check_desk_values,
    linear_structure,
    polyhedral_structure,
    quadratic_structure,
)

WORST_CASE_VAR_COLUMNS: tuple[str, ...] = tuple(
    c for c in schemas.WORST_CASE_VAR.pandas_dtypes()
    if c not in ("horizon_days", "mc_var", "instrument_moments"))
"""Columns of ``worst_case_var`` produced here (the caller adds run metadata)."""

OPTIMAL_ALLOCATION_COLUMNS: tuple[str, ...] = tuple(schemas.OPTIMAL_ALLOCATIONS.pandas_dtypes())
"""Columns of ``optimal_allocations`` produced here (the caller adds run metadata)."""


@dataclass(frozen=True)
class DeskReport:
    """Worst-case figures and optimal allocations of one desk.

    Attributes
    ----------
    rows : tuple of WorstCaseResult
        One per model x portfolio (current, optimized) x confidence level.
    allocations : tuple of AllocationResult
        One per model x confidence level x instrument, for minimizations
        that produced weights (status ``optimal`` or ``inaccurate``).
    """

    rows: tuple[WorstCaseResult, ...]
    allocations: tuple[AllocationResult, ...]

    def worst_case_var_frame(self) -> pd.DataFrame:
        """Return the rows as a DataFrame with :data:`WORST_CASE_VAR_COLUMNS`."""
        return _frame(self.rows, WORST_CASE_VAR_COLUMNS)

    def optimal_allocations_frame(self) -> pd.DataFrame:
        """Return the allocations as a DataFrame with :data:`OPTIMAL_ALLOCATION_COLUMNS`."""
        return _frame(self.allocations, OPTIMAL_ALLOCATION_COLUMNS)


def _frame(items: Iterable[object], columns: tuple[str, ...]) -> pd.DataFrame:
    records = [{c: getattr(item, c) for c in columns} for item in items]
    frame = pd.DataFrame.from_records(records, columns=list(columns))
    for column in ("confidence_level", "value", "value_pct", "current_weight", "optimal_weight"):
        if column in frame:
            frame[column] = frame[column].astype("float64")
    return frame


def reports_to_frames(reports: Iterable[DeskReport]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate desk reports into ``worst_case_var`` and ``optimal_allocations`` frames."""
    reports = list(reports)
    rows = [r for report in reports for r in report.rows]
    allocations = [a for report in reports for a in report.allocations]
    return _frame(rows, WORST_CASE_VAR_COLUMNS), _frame(allocations, OPTIMAL_ALLOCATION_COLUMNS)


Structure = LinearStructure | PolyhedralStructure | QuadraticStructure
Portfolio = Literal["current", "optimized"]


def _resolve(
    model: str,
    desk: DeskInstruments,
    underlying_moments: ReturnMoments,
    instrument_moments: ReturnMoments | None,
    horizon_years: float,
    reduced: ReducedMoments | None = None,
) -> Structure:
    if model == "WCVaR":
        if reduced is not None:
            check_desk_values(desk)
            return reduced_linear_structure(reduced)
        if instrument_moments is None:
            raise NotApplicableError("instrument return moments not supplied")
        check_desk_values(desk)
        return linear_structure(desk, instrument_moments)
    if model == "WCPVaR":
        return polyhedral_structure(desk, underlying_moments)
    return quadratic_structure(desk, underlying_moments, horizon_years)


def _current(
    model: str, structure: Structure, x: np.ndarray, level: float, settings: WorstCaseSettings
) -> SolveOutcome:
    solver_path = settings.current_method == "solver"
    if isinstance(structure, LinearStructure):
        if solver_path:
            return wcvar_robust(x, structure, level, solvers=settings.solvers)
        return wcvar(x, structure, level)
    if isinstance(structure, PolyhedralStructure):
        return wcpvar(x, structure, level, solvers=settings.solvers)
    if solver_path:
        return wcqvar_sdp(x, structure, level, solvers=settings.solvers)
    return wcqvar(x, structure, level)


def _minimize(
    structure: Structure, problem: AllocationProblem, level: float, settings: WorstCaseSettings
) -> OptimizationOutcome:
    if isinstance(structure, LinearStructure):
        return minimize_wcvar(structure, problem, level, settings)
    if isinstance(structure, PolyhedralStructure):
        return minimize_wcpvar(structure, problem, level, settings)
    return minimize_wcqvar(structure, problem, level, settings)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _reduced_space(
    model: str, structure: Structure, reduced: ReducedMoments, large: str
) -> tuple[Structure | None, str]:
    """The structure a large desk's minimization runs on (None: not applicable) and why.

    ``structure`` is the model's structure of the current book (WCVaR: already over the
    buckets, see :func:`_resolve`).
    """
    buckets = reduced.buckets
    if isinstance(structure, PolyhedralStructure):
        return None, (f"{large}: WCPVaR has no reduced form here "
                      "(its hedge variables are per option)")
    if reduced.bucket_moments is None or buckets.n_buckets > reduced.max_instruments:
        return None, (f"{large}, and the {buckets.n_buckets} buckets "
                      f"({buckets.description}) also exceed it")
    note = (f"solved over {buckets.n_buckets} buckets ({buckets.description}, each bucket's "
            f"mix held; an upper bound on the minimum over instruments): {large}")
    if isinstance(structure, QuadraticStructure):
        return reduced_quadratic_structure(structure, buckets), note
    return structure, note


def evaluate_desk(
    desk: DeskInstruments,
    underlying_moments: ReturnMoments,
    instrument_moments: ReturnMoments | None,
    horizon_years: float,
    settings: WorstCaseSettings,
    *,
    reduced: ReducedMoments | None = None,
) -> DeskReport:
    """Worst-case VaR of a desk's current holdings and of its optimal allocations.

    Parameters
    ----------
    desk : DeskInstruments
        The desk's instruments (U underlyings, m instruments).
    underlying_moments : ReturnMoments
        Mean (U,) and covariance (U, U) of the underlyings' simple returns
        over the horizon, in ``desk.underlyings`` order (exact GBM moments or
        sample moments, as ``settings.moments`` says). Used by WCPVaR, WCQVaR.
    instrument_moments : ReturnMoments or None
        Mean (m,) and covariance (m, m) of the instruments' simple returns over
        the horizon, in ``desk.instrument_ids`` order (sample moments of the
        simulated revaluation). Needed by WCVaR and by the return floor; None
        makes WCVaR ``not_applicable`` and drops the floor (noted).
    horizon_years : float
        Horizon h in years (theta accrues over h in WCQVaR).
    settings : WorstCaseSettings
        Levels, models, solvers, bounds.
    reduced : ReducedMoments or None
        For a desk above ``worst_case.max_instruments`` (then ``instrument_moments`` must
        be None): WCVaR of the current book comes from the desk P&L's mean and variance,
        and the minimizations run over the instrument buckets of
        :mod:`risk_engine.worst_case.reduced` (WCPVaR's optimized rows are
        ``not_applicable``), each row's message says so. Allocation rows stay per
        instrument (a bucket's weight spread over its instruments by their shares).

    Returns
    -------
    DeskReport
        Rows for ``worst_case_var`` and ``optimal_allocations``. Values are in
        currency; ``value_pct`` divides by the portfolio's gross value
        ``sum |x|`` (for the optimized portfolio ``V * sum |w|``).

    Notes
    -----
    Optimized rows need net capital ``V = sum x > 0`` (weights are fractions of
    it); otherwise they are ``not_applicable`` with the reason and no
    allocation rows are written. The optimum depends on the confidence level,
    so allocations carry ``confidence_level``.
    """
    x = desk.exposures
    x.setflags(write=False)
    gross = desk.gross_value
    net = desk.net_value
    rows: list[WorstCaseResult] = []
    allocations: list[AllocationResult] = []

    def row(
        model: str,
        portfolio: Portfolio,
        level: float,
        outcome: SolveOutcome | OptimizationOutcome,
        gross_value: float,
        message: str,
    ) -> None:
        value = outcome.value
        pct = value / gross_value if gross_value > 0 and math.isfinite(value) else math.nan
        rows.append(
            WorstCaseResult(
                desk.desk,
                model,
                portfolio,
                level,
                settings.moments,
                float(value),
                float(pct),
                outcome.status,
                outcome.solver,
                message,
            )
        )

    def not_applicable(model: str, level: float, portfolio: Portfolio, reason: str) -> None:
        row(
            model,
            portfolio,
            level,
            SolveOutcome(math.nan, "not_applicable", "", reason),
            0.0,
            reason,
        )

    common = ""
    if not np.all(np.isfinite(x)):
        common = "exposures not finite"
    elif gross == 0:
        common = "desk has zero gross value"
    floor_note = ""
    expected = None
    if reduced is not None and instrument_moments is not None:
        raise ValueError(f"desk {desk.desk!r}: give instrument moments or reduced moments, "
                         "not both")
    large = ""
    if reduced is not None:
        large = (f"{desk.n_instruments} instruments > "
                 f"worst_case.max_instruments={reduced.max_instruments}")
        if settings.return_floor and reduced.bucket_moments is not None:
            expected = reduced.bucket_moments.mean
    elif instrument_moments is not None:
        if instrument_moments.dim != desk.n_instruments:
            raise ValueError(
                f"desk {desk.desk!r}: instrument moments have {instrument_moments.dim} assets, "
                f"desk has {desk.n_instruments}"
            )
        if settings.return_floor:
            expected = instrument_moments.mean
    elif settings.return_floor:
        floor_note = "return floor skipped: instrument moments not supplied"

    for model in settings.models:
        reason = common
        structure: Structure | None = None
        notes: tuple[str, ...] = ()
        if not reason:
            try:
                structure = _resolve(
                    model, desk, underlying_moments, instrument_moments, horizon_years, reduced
                )
            except NotApplicableError as exc:
                reason = str(exc)
        if isinstance(structure, QuadraticStructure):
            notes = structure.notes
        space, reduced_note = structure, ""
        if reduced is not None and structure is not None:
            space, reduced_note = _reduced_space(model, structure, reduced, large)
        for level in settings.confidence_levels:
            if structure is None:
                not_applicable(model, level, "current", reason)
                if settings.optimize:
                    not_applicable(model, level, "optimized", reason)
                continue
            try:
                if reduced is not None and model == "WCVaR":
                    current = pnl_wcvar(reduced, level)
                    current = replace(current, message=(
                        f"from the mean and variance of the desk's P&L ({large})"))
                elif reduced is not None and isinstance(structure, PolyhedralStructure):
                    current = wcpvar_aggregated(x, structure, level, solvers=settings.solvers)
                else:
                    current = _current(model, structure, x, level, settings)
            except (np.linalg.LinAlgError, ArithmeticError) as exc:
                current = SolveOutcome(math.nan, "solver_error", "", f"{type(exc).__name__}: {exc}")
            row(model, "current", level, current, gross, _join(*notes, current.message))
            if not settings.optimize:
                continue
            if not net > 0:
                not_applicable(
                    model, level, "optimized", f"net capital {net:.6g} <= 0: weights undefined"
                )
                continue
            if space is None:
                not_applicable(model, level, "optimized", reduced_note)
                continue
            if reduced is None:
                problem = AllocationProblem(net, x / net, expected)
            else:
                problem = AllocationProblem(net, reduced.buckets.exposure / net, expected)
            try:
                best = _minimize(space, problem, level, settings)
            except (np.linalg.LinAlgError, ArithmeticError) as exc:
                best = OptimizationOutcome(
                    model,
                    level,
                    math.nan,
                    math.nan,
                    None,
                    "solver_error",
                    "",
                    f"{type(exc).__name__}: {exc}",
                )
            weights, current_weights = best.weights, problem.current_weights
            if reduced is not None:
                current_weights = x / net
                if weights is not None:
                    weights = instrument_weights(reduced.buckets, weights)
            optimized_gross = (
                net * float(np.sum(np.abs(weights))) if weights is not None else 0.0
            )
            row(
                model,
                "optimized",
                level,
                best,
                optimized_gross,
                _join(*notes, floor_note, reduced_note, best.message),
            )
            if weights is not None and best.status in USABLE_STATUSES:
                for j, instrument in enumerate(desk.instrument_ids):
                    allocations.append(
                        AllocationResult(
                            desk.desk,
                            model,
                            level,
                            instrument,
                            float(current_weights[j]),
                            float(weights[j]),
                        )
                    )
    return DeskReport(tuple(rows), tuple(allocations))
