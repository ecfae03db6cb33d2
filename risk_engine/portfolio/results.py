"""Typed results of the portfolio computations.

Every optimizer returns a frozen result with a ``status`` and a ``message`` instead of raising
on a solver outcome. Status values:

``optimal``
    Solved to the solver's default tolerances; the weights are usable.
``inaccurate``
    The solver stopped with reduced accuracy (cvxpy ``optimal_inaccurate``). The weights are
    returned for inspection but flagged; callers must not use them silently.
``infeasible``
    The constraints cannot hold together (e.g. a target return above the maximum achievable
    under the bounds). Weights are NaN.
``unbounded``
    The problem has no finite optimum (e.g. the maximum return without upper bounds).
``not_applicable``
    The inputs do not define the problem (empty desk, non-finite or indefinite covariance,
    singular covariance where a strictly convex problem is needed); the message says why.
``solver_error``
    The solver failed or raised; the message carries the solver's text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from risk_engine.solvers import Status
from risk_engine.types import FloatArray


@dataclass(frozen=True)
class PortfolioResult:
    """Outcome of one allocation problem (min-variance, one frontier point, max return).

    Attributes
    ----------
    status : Status
        See the module docstring.
    message : str
        Empty when ``optimal``; otherwise why.
    weights : ndarray, shape (U,)
        Capital weights (fractions of the desk's invested value, summing to 1); NaN when the
        status is not usable.
    expected_return : float
        ``mu' w``, annualized fraction; NaN when not usable.
    volatility : float
        ``sqrt(w' Sigma w)``, annualized fraction, evaluated independently of the solver's
        objective; NaN when not usable.
    solver : str
        Solver name (``closed_form`` for analytic results, ``newton`` for risk parity).
    """

    status: Status
    message: str
    weights: FloatArray
    expected_return: float
    volatility: float
    solver: str

    @property
    def ok(self) -> bool:
        """True when the status is ``optimal``."""
        return self.status == "optimal"


def failed_result(n_assets: int, status: Status, message: str, solver: str) -> PortfolioResult:
    """Build a result with NaN weights for a failed problem."""
    return PortfolioResult(
        status=status,
        message=message,
        weights=np.full(n_assets, np.nan),
        expected_return=float("nan"),
        volatility=float("nan"),
        solver=solver,
    )


@dataclass(frozen=True)
class FrontierResult:
    """An efficient frontier.

    Attributes
    ----------
    status : Status
        Status of the frontier's ends, which fix the range of targets: the min-variance
        portfolio (point 0) and the maximum achievable return. ``optimal`` when both are
        found, even if some target point failed: each point keeps its own status (see
        :attr:`failed_points`), so one failed point does not condemn the others.
    message : str
        Why the frontier is incomplete or degenerate, if it is; it names the failed points.
    min_return, max_return : float
        Return of the minimum-variance portfolio and the largest target used (the maximum
        achievable return under the bounds, or the caller's cap), annualized fractions.
    target_returns : ndarray, shape (P,)
        Target returns of the points; point 0 is the minimum-variance portfolio itself.
    points : tuple of PortfolioResult, length P
        One result per point.
    risk_free_rate : float
        Annual risk-free rate used for the Sharpe ratios.
    """

    status: Status
    message: str
    min_return: float
    max_return: float
    target_returns: FloatArray
    points: tuple[PortfolioResult, ...]
    risk_free_rate: float

    @property
    def failed_points(self) -> tuple[int, ...]:
        """Indices of the points whose status is not ``optimal``."""
        return tuple(i for i, p in enumerate(self.points) if p.status != "optimal")

    @property
    def sharpe_ratios(self) -> FloatArray:
        """``(return - risk_free_rate) / volatility`` per point, shape (P,); NaN at zero vol."""
        ret = np.array([p.expected_return for p in self.points])
        vol = np.array([p.volatility for p in self.points])
        with np.errstate(divide="ignore", invalid="ignore"):
            out = (ret - self.risk_free_rate) / vol
        out[~(vol > 0)] = np.nan
        return out


@dataclass(frozen=True)
class RiskContributions:
    """Euler decomposition of portfolio volatility.

    Attributes
    ----------
    weights : ndarray, shape (U,)
        The weights decomposed (any sign, any sum).
    contributions : ndarray, shape (U,)
        ``w_i (Sigma w)_i / sqrt(w' Sigma w)``; they add up to ``volatility``. Zeros when the
        volatility is zero.
    shares : ndarray, shape (U,)
        ``contributions / volatility`` (add up to 1); NaN when the volatility is zero.
    volatility : float
        ``sqrt(w' Sigma w)``, annualized when Sigma is.
    """

    weights: FloatArray
    contributions: FloatArray
    shares: FloatArray
    volatility: float


@dataclass(frozen=True)
class RiskAdjustments:
    """Multiplicative adjustments that move each asset's risk share toward its target.

    ``adjustment_i = target_share_i / current_share_i``, the seed's "adjustment factor". It is
    defined only for a strictly positive current share: an asset with a zero share (no risk,
    e.g. zero weight) or a negative share (a hedge that lowers portfolio risk) gets NaN and the
    reason in ``notes``; no factor can bring a non-positive share to a positive target.

    Attributes
    ----------
    current_shares : ndarray, shape (U,)
        Current risk shares (Euler contributions / volatility).
    target_shares : ndarray, shape (U,)
        Target shares (budgets normalized to sum 1; equal by default).
    adjustments : ndarray, shape (U,)
        ``target / current`` where current > ``zero_tol``; NaN elsewhere.
    notes : tuple of str, length U
        ``""``, ``"zero_risk_contribution"``, ``"negative_risk_contribution"`` or
        ``"zero_portfolio_volatility"``.
    """

    current_shares: FloatArray
    target_shares: FloatArray
    adjustments: FloatArray
    notes: tuple[str, ...]


@dataclass(frozen=True)
class RiskParityResult:
    """Risk-budgeting (equal risk contribution by default) portfolio.

    Attributes
    ----------
    status : Status
        ``optimal`` when Newton converged and the shares match the budgets to ``tol``.
    message : str
        Why not, otherwise.
    weights : ndarray, shape (U,)
        Long-only weights summing to 1; NaN when failed.
    budgets : ndarray, shape (U,)
        Risk budgets, normalized to sum 1.
    contributions : RiskContributions or None
        Euler decomposition at the solution (None when failed).
    iterations : int
        Newton iterations used.
    max_share_error : float
        ``max |share_i - budget_i|`` at the solution (NaN when failed).
    solver : str
        ``newton``.
    """

    status: Status
    message: str
    weights: FloatArray
    budgets: FloatArray
    contributions: RiskContributions | None
    iterations: int
    max_share_error: float
    solver: str

    @property
    def volatility(self) -> float:
        """Portfolio volatility at the solution (NaN when failed)."""
        return float("nan") if self.contributions is None else self.contributions.volatility


#: Status of the current book evaluated on the frontier's basis (no optimization):
#: ``evaluated`` (its weights are feasible for the frontier's problem: fully invested and
#: within the bounds, so the point lies on or inside the frontier), ``outside_bounds``
#: (not fully invested, or some weight breaks the frontier's bounds: the point may lie
#: above the frontier), ``no_weights`` (no current weights, e.g. a net short desk) and
#: ``not_applicable`` (invalid moments or weights).
CurrentStatus = Literal["evaluated", "outside_bounds", "no_weights", "not_applicable"]


@dataclass(frozen=True)
class CurrentBook:
    """The current book as a point in the frontier's (volatility, expected return) plane.

    Attributes
    ----------
    status : str
        ``evaluated``, ``outside_bounds``, ``no_weights`` or ``not_applicable`` (see
        :data:`CurrentStatus`).
    message : str
        Empty when ``evaluated``; otherwise why.
    weights : ndarray, shape (U,) or (0,)
        Capital weights (fractions of the desk's invested value), as given; empty when
        absent or invalid.
    expected_return : float
        ``mu' w`` with the frontier's ``mu`` (annualized fraction); NaN when not evaluated.
    volatility : float
        ``sqrt(w' Sigma w)`` with the frontier's ``Sigma`` (annualized fraction); NaN when
        not evaluated.
    """

    status: CurrentStatus
    message: str
    weights: FloatArray
    expected_return: float
    volatility: float
