"""Worst-case VaR of option books (Zymler, Kuhn & Rustem, Management Science 2013).

Public API
----------
Containers
    :class:`DeskInstruments`, :class:`ReturnMoments`, :class:`WorstCaseSettings`,
    :class:`SolveOutcome`, :class:`OptimizationOutcome`, :class:`WorstCaseResult`,
    :class:`AllocationResult`, :class:`DeskReport`.
Moments
    :func:`kappa`, :func:`gbm_simple_return_moments`,
    :func:`instrument_return_moments_from_samples`, :class:`MomentSums`.
Models of a fixed book (currency in, currency out)
    :func:`wcvar`, :func:`wcvar_robust`, :func:`wcpvar`, :func:`wcpvar_sdp`,
    :func:`wcqvar`, :func:`wcqvar_sdp`.
Minimization
    :func:`minimize_wcvar`, :func:`minimize_wcpvar`, :func:`minimize_wcqvar`.
Per desk
    :func:`evaluate_desk`, :func:`reports_to_frames`.
Desks above ``worst_case.max_instruments``
    :class:`InstrumentBuckets`, :class:`ReducedMoments`, :func:`bucket_instruments`,
    :func:`pnl_wcvar`.
"""

from risk_engine.solvers import STATUSES
from risk_engine.types import CALL, EQUITY, PUT

from .containers import (
    MODELS,
    AllocationResult,
    DeskInstruments,
    OptimizationOutcome,
    ReturnMoments,
    SolveOutcome,
    WorstCaseResult,
    WorstCaseSettings,
)
from .desk import (
    OPTIMAL_ALLOCATION_COLUMNS,
    WORST_CASE_VAR_COLUMNS,
    DeskReport,
    evaluate_desk,
    reports_to_frames,
)
from .models import wcpvar, wcpvar_sdp, wcqvar, wcqvar_sdp, wcvar, wcvar_robust
from .moments import (
    MomentSums,
    gbm_simple_return_moments,
    instrument_return_moments_from_samples,
    kappa,
    tail_probability,
)
from .optimize import AllocationProblem, minimize_wcpvar, minimize_wcqvar, minimize_wcvar
from .reduced import InstrumentBuckets, ReducedMoments, bucket_instruments, pnl_wcvar
from .structures import (
    LinearStructure,
    NotApplicableError,
    PolyhedralStructure,
    QuadraticStructure,
    delta_gamma_pnl,
    linear_structure,
    polyhedral_structure,
    quadratic_structure,
    return_space_greeks,
)

__all__ = [
    "CALL",
    "EQUITY",
    "MODELS",
    "OPTIMAL_ALLOCATION_COLUMNS",
    "PUT",
    "STATUSES",
    "WORST_CASE_VAR_COLUMNS",
    "AllocationProblem",
    "AllocationResult",
    "DeskInstruments",
    "DeskReport",
    "InstrumentBuckets",
    "LinearStructure",
    "MomentSums",
    "NotApplicableError",
    "OptimizationOutcome",
    "PolyhedralStructure",
    "ReducedMoments",
    "QuadraticStructure",
    "ReturnMoments",
    "SolveOutcome",
    "WorstCaseResult",
    "WorstCaseSettings",
    "bucket_instruments",
    "delta_gamma_pnl",
    "evaluate_desk",
    "gbm_simple_return_moments",
    "instrument_return_moments_from_samples",
    "kappa",
    "linear_structure",
    "minimize_wcpvar",
    "minimize_wcqvar",
    "minimize_wcvar",
    "pnl_wcvar",
    "polyhedral_structure",
    "quadratic_structure",
    "reports_to_frames",
    "return_space_greeks",
    "tail_probability",
    "wcpvar",
    "wcpvar_sdp",
    "wcqvar",
    "wcqvar_sdp",
    "wcvar",
    "wcvar_robust",
]
