"""Frozen containers passed between the worst-case layers.

Everything here is immutable: arrays are copied on construction and marked
read-only, so a container can be shared between desks, confidence levels and
solver calls without anyone mutating it.

Units
-----
Exposures are in the reporting currency. Returns are simple returns over the
risk horizon (not annualized). Weights are fractions of a desk's net value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from risk_engine.settings import DEFAULT_FROM, require, require_levels
from risk_engine.solvers import CONE_SOLVERS
from risk_engine.types import CALL, EQUITY, PUT, FloatArray, IntArray

MODELS: tuple[str, ...] = ("WCVaR", "WCPVaR", "WCQVaR")
"""Model names as written to the ``worst_case_var`` table."""


def _frozen(values: npt.ArrayLike, dtype: type, name: str) -> np.ndarray:
    """Return a read-only copy of ``values`` as ``dtype``."""
    try:
        array: np.ndarray = np.array(values, dtype=dtype, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to {dtype.__name__} array") from exc
    array.setflags(write=False)
    return array


def _check_1d(array: np.ndarray, length: int, name: str, what: str) -> None:
    if array.shape != (length,):
        raise ValueError(f"{name}: expected shape ({length},) ({what}), got {array.shape}")


@dataclass(frozen=True)
class DeskInstruments:
    """One desk's instruments, resolved once before any worst-case model runs.

    One row per instrument (positions on the same contract aggregated by the
    caller). Structural problems (shapes, kind codes, indices, duplicate ids)
    raise ``ValueError`` here; value problems (non-positive or non-finite unit
    values, missing greeks) are reported per model by
    :func:`risk_engine.worst_case.evaluate_desk` as ``not_applicable`` rows.

    Parameters
    ----------
    desk : str
        Desk name.
    underlyings : tuple of str, length U
        Underlying names; order fixes the order of every (U,) array and of the
        underlyings' return moments.
    spots : ndarray, shape (U,)
        Spot prices today, currency per share.
    instrument_ids : tuple of str, length m
        Unique instrument identifiers (reported in ``optimal_allocations``).
    kind : ndarray of int, shape (m,)
        ``EQUITY`` (0), ``CALL`` (1) or ``PUT`` (2).
    underlying_index : ndarray of int, shape (m,)
        Index into ``underlyings`` of each instrument's underlying.
    strike : ndarray, shape (m,)
        Strike in currency per share; NaN for equities.
    unit_value : ndarray, shape (m,)
        Value of one unit today in currency: the spot for equities, the
        Black-Scholes premium per share for options.
    quantity : ndarray, shape (m,)
        Signed units held, contract multiplier included.
    tau_after_horizon : ndarray, shape (m,)
        Years of option life left at the horizon (expiry minus horizon);
        ``<= 0`` means the option expires at or before the horizon. NaN for
        equities.
    delta, gamma, theta : ndarray, shape (m,)
        Per-unit raw greeks of options today: dV/dS (per currency of spot),
        d2V/dS2, dV/dt (currency per year, negative for decay). Ignored for
        equities (taken as 1, 0, 0).
    """

    desk: str
    underlyings: tuple[str, ...]
    spots: FloatArray
    instrument_ids: tuple[str, ...]
    kind: npt.NDArray[np.int8]
    underlying_index: IntArray
    strike: FloatArray
    unit_value: FloatArray
    quantity: FloatArray
    tau_after_horizon: FloatArray
    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "underlyings", tuple(str(u) for u in self.underlyings))
        set_(self, "instrument_ids", tuple(str(i) for i in self.instrument_ids))
        n_u = len(self.underlyings)
        m = len(self.instrument_ids)
        where = f"desk {self.desk!r}"
        if len(set(self.underlyings)) != n_u:
            raise ValueError(f"{where}: duplicate names in underlyings")
        if len(set(self.instrument_ids)) != m:
            raise ValueError(f"{where}: duplicate instrument_ids; aggregate positions first")
        set_(self, "spots", _frozen(self.spots, np.float64, f"{where} spots"))
        _check_1d(self.spots, n_u, f"{where} spots", "one per underlying")
        if not np.all(np.isfinite(self.spots) & (self.spots > 0)):
            bad = [self.underlyings[i] for i in np.flatnonzero(~(self.spots > 0))]
            raise ValueError(f"{where}: spots must be finite and > 0; bad for {bad}")
        kind = _frozen(self.kind, np.int8, f"{where} kind")
        _check_1d(kind, m, f"{where} kind", "one per instrument")
        if not np.all(np.isin(kind, (EQUITY, CALL, PUT))):
            raise ValueError(f"{where}: kind must be 0 (equity), 1 (call) or 2 (put)")
        set_(self, "kind", kind)
        index = _frozen(self.underlying_index, np.int64, f"{where} underlying_index")
        _check_1d(index, m, f"{where} underlying_index", "one per instrument")
        if m and (index.min() < 0 or index.max() >= n_u):
            raise ValueError(f"{where}: underlying_index out of range [0, {n_u})")
        set_(self, "underlying_index", index)
        for name in (
            "strike",
            "unit_value",
            "quantity",
            "tau_after_horizon",
            "delta",
            "gamma",
            "theta",
        ):
            array = _frozen(getattr(self, name), np.float64, f"{where} {name}")
            _check_1d(array, m, f"{where} {name}", "one per instrument")
            set_(self, name, array)

    @property
    def n_underlyings(self) -> int:
        """Number of underlyings U."""
        return len(self.underlyings)

    @property
    def n_instruments(self) -> int:
        """Number of instruments m."""
        return len(self.instrument_ids)

    @property
    def is_option(self) -> npt.NDArray[np.bool_]:
        """Boolean mask, shape (m,): True for calls and puts."""
        return self.kind != EQUITY

    @property
    def exposures(self) -> FloatArray:
        """Exposure ``quantity * unit_value`` per instrument, currency, shape (m,)."""
        return self.quantity * self.unit_value

    @property
    def gross_value(self) -> float:
        """Sum of absolute exposures, currency."""
        return float(np.sum(np.abs(self.exposures)))

    @property
    def net_value(self) -> float:
        """Sum of exposures (the desk's net capital V), currency."""
        return float(np.sum(self.exposures))


@dataclass(frozen=True)
class ReturnMoments:
    """Mean and covariance of simple returns over the risk horizon.

    Parameters
    ----------
    mean : ndarray, shape (d,)
        Expected simple return of each asset over the horizon.
    cov : ndarray, shape (d, d)
        Covariance of the simple returns; symmetrized on construction and
        required to be positive semidefinite up to round-off.
    labels : tuple of str or None
        Asset names in order (underlyings or instrument ids), checked against
        the desk when given.
    n_samples : int or None
        Number of scenarios the moments were estimated from; None for exact.
    """

    mean: FloatArray
    cov: FloatArray
    labels: tuple[str, ...] | None = None
    n_samples: int | None = None

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float64, copy=True)
        cov = np.array(self.cov, dtype=np.float64, copy=True)
        if mean.ndim != 1:
            raise ValueError(f"ReturnMoments.mean must be 1-D, got shape {mean.shape}")
        d = mean.shape[0]
        if cov.shape != (d, d):
            raise ValueError(f"ReturnMoments.cov must have shape ({d}, {d}), got {cov.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
            raise ValueError("ReturnMoments: mean and cov must be finite")
        scale = max(1.0, float(np.max(np.abs(cov)))) if d else 1.0
        if d and float(np.max(np.abs(cov - cov.T))) > 1e-9 * scale:
            raise ValueError("ReturnMoments.cov must be symmetric")
        cov = 0.5 * (cov + cov.T)
        if d:
            lowest = float(np.linalg.eigvalsh(cov)[0])
            if lowest < -1e-9 * max(float(np.max(np.diag(cov))), 1e-300):
                raise ValueError(
                    "ReturnMoments.cov is not positive semidefinite "
                    f"(lowest eigenvalue {lowest:.3g})"
                )
        if self.labels is not None:
            labels = tuple(str(x) for x in self.labels)
            if len(labels) != d:
                raise ValueError(f"ReturnMoments.labels has {len(labels)} names for {d} assets")
            object.__setattr__(self, "labels", labels)
        mean.setflags(write=False)
        cov.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", cov)

    @property
    def dim(self) -> int:
        """Number of assets d."""
        return int(self.mean.shape[0])


@dataclass(frozen=True)
class WorstCaseSettings:
    """Settings of the worst-case VaR stage (YAML ``worst_case:``).

    Parameters
    ----------
    confidence_levels : tuple of float
        Confidence levels alpha in (0, 1); the tail probability is
        ``eps = 1 - alpha`` and ``kappa = sqrt((1 - eps) / eps)``. In the run config,
        absent or null means the run's ``risk.confidence_levels``.
    moments : {'exact', 'sample'}
        Which underlying moments the caller passes: exact GBM moments of
        simple returns or the simulated scenarios' sample moments. Recorded in
        the output's ``moments`` column.
    models : tuple of str
        Subset of ``('WCVaR', 'WCPVaR', 'WCQVaR')`` to compute.
    optimize : bool
        Also compute the allocation minimizing each model per level.
    solver, fallback_solver : str, str or None
        cvxpy solvers; the fallback is tried when the first one errors or
        returns an inaccurate or undecided answer. Both must handle SOC and PSD
        cones (``CLARABEL``, ``SCS``, ``MOSEK``).
    current_method : {'fast', 'solver'}
        How current holdings are evaluated. ``'fast'``: WCVaR closed form and
        WCQVaR by its exact spectral reduction (a 1-D convex search over
        eigenvalues). ``'solver'``: WCVaR as a robust maximization and WCQVaR
        as the paper's SDP, both through cvxpy. WCPVaR is always its SOCP.
    return_floor : bool
        The optimized allocation's expected return (instrument mean returns)
        must be at least the current holdings'.
    weight_lower, weight_upper : float
        Bounds on each instrument's weight (fraction of net capital), applied
        to equities and options alike; ``-inf`` / ``inf`` drops the bound.
        The default 0 means long-only. Under WCPVaR option weights are always
        held at or above 0, whatever ``weight_lower`` says.
    max_sdp_size : int
        Largest PSD block allowed in the WCQVaR minimization (its size is the
        number of underlyings carrying gamma plus at most 2; interior-point
        cost grows like size**6, about 4 s on one core at size 46). Larger
        desks get a ``not_applicable`` optimized row saying so.
    rtol, atol : float
        Tolerances of the post-solve checks: the solver's objective against an
        independent evaluation of the model at the returned weights, and the
        constraints at those weights (``atol`` in weight units). A failed check
        turns an ``optimal`` status into ``inaccurate``.
    """

    confidence_levels: tuple[float, ...] = field(
        default=(0.95, 0.975, 0.99), metadata={DEFAULT_FROM: "risk.confidence_levels"})
    moments: Literal["exact", "sample"] = "exact"
    models: tuple[str, ...] = MODELS
    optimize: bool = True
    solver: str = "CLARABEL"
    fallback_solver: str | None = "SCS"
    current_method: Literal["fast", "solver"] = "fast"
    return_floor: bool = True
    weight_lower: float = 0.0
    weight_upper: float = 1.0
    max_sdp_size: int = 60
    rtol: float = 1e-4
    atol: float = 1e-6
    _solvers: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = require_levels("confidence_levels", self.confidence_levels)
        object.__setattr__(self, "confidence_levels", levels)
        require(self.moments in ("exact", "sample"), "moments", self.moments,
                "'exact' or 'sample'")
        models = tuple(self.models)
        unknown = [x for x in models if x not in MODELS]
        require(bool(models) and not unknown, "models", models,
                f"a non-empty subset of {MODELS}")
        object.__setattr__(self, "models", models)
        require(self.current_method in ("fast", "solver"), "current_method",
                self.current_method, "'fast' or 'solver'")
        solvers = [self.solver.upper()]
        require(solvers[0] in CONE_SOLVERS, "solver", self.solver,
                f"a solver of the SOC/PSD problems: one of {CONE_SOLVERS}")
        if self.fallback_solver is not None and self.fallback_solver.upper() != solvers[0]:
            solvers.append(self.fallback_solver.upper())
            require(solvers[1] in CONE_SOLVERS, "fallback_solver", self.fallback_solver,
                    f"a solver of the SOC/PSD problems: one of {CONE_SOLVERS}, or null")
        object.__setattr__(self, "_solvers", tuple(solvers))
        lower, upper = float(self.weight_lower), float(self.weight_upper)
        require(not np.isnan(lower), "weight_lower", self.weight_lower,
                "a number or -.inf (no bound)")
        require(not np.isnan(upper) and lower <= upper, "weight_upper", self.weight_upper,
                f"a number or .inf (no bound), >= weight_lower ({lower})")
        object.__setattr__(self, "weight_lower", lower)
        object.__setattr__(self, "weight_upper", upper)
        require(int(self.max_sdp_size) >= 2, "max_sdp_size", self.max_sdp_size, ">= 2")
        require(self.rtol > 0, "rtol", self.rtol, "> 0")
        require(self.atol > 0, "atol", self.atol, "> 0")

    @property
    def solvers(self) -> tuple[str, ...]:
        """Solvers in the order they are tried."""
        return self._solvers


@dataclass(frozen=True)
class SolveOutcome:
    """Worst-case figure of one fixed book at one confidence level.

    Attributes
    ----------
    value : float
        Worst-case VaR in currency (a positive loss); NaN unless ``status`` is
        ``optimal`` or ``inaccurate``.
    status : str
        One of :data:`STATUSES`.
    solver : str
        Solver that produced the figure: a cvxpy solver name, ``closed_form``
        or ``spectral``.
    message : str
        Reason or diagnostics; empty when there is nothing to say.
    """

    value: float
    status: str
    solver: str
    message: str = ""


@dataclass(frozen=True)
class OptimizationOutcome:
    """Allocation minimizing one worst-case model at one confidence level.

    Attributes
    ----------
    model : str
        ``WCVaR``, ``WCPVaR`` or ``WCQVaR``.
    confidence_level : float
        Confidence level alpha.
    value : float
        The model evaluated independently at ``weights`` (currency, net value
        ``V`` times the figure per unit of capital); NaN without a solution.
    solver_objective : float
        The solver's optimal objective, currency (equal to ``value`` within
        ``settings.rtol``/``atol`` unless the status says ``inaccurate``).
    weights : ndarray, shape (m,), or None
        Optimal weights, fractions of the net value ``V`` (sum to 1).
    status, solver, message : str
        As in :class:`SolveOutcome`.
    """

    model: str
    confidence_level: float
    value: float
    solver_objective: float
    weights: FloatArray | None
    status: str
    solver: str
    message: str = ""


@dataclass(frozen=True)
class WorstCaseResult:
    """One row of the ``worst_case_var`` table (without run metadata)."""

    desk: str
    model: str
    portfolio: Literal["current", "optimized"]
    confidence_level: float
    moments: str
    value: float
    value_pct: float
    status: str
    solver: str
    message: str


@dataclass(frozen=True)
class AllocationResult:
    """One row of the ``optimal_allocations`` table (without run metadata)."""

    desk: str
    model: str
    confidence_level: float
    instrument: str
    current_weight: float
    optimal_weight: float
