"""Worst-case models of a desk too large for instrument-space moments.

A desk with more instruments than ``worst_case.max_instruments`` never gets an instrument
covariance (its size is instruments squared). Its figures live in lower-dimensional spaces:

* WCVaR of the current book is ``-E[P&L] + kappa sd(P&L)`` with the moments of the desk's
  own P&L (:class:`ReducedMoments` ``pnl_mean``, ``pnl_variance``): exactly the
  instrument-space formula ``-mu_r' x + kappa sqrt(x' Sigma_r x)``, since
  ``P&L = sum_j x_j R_j``.
* WCQVaR of the current book already lives in the underlyings' space (the desk's delta,
  gamma and theta per underlying); nothing changes. WCPVaR of the current book is the
  same SOCP with its per-option hedge variables entering the norm through their sums per
  underlying (:func:`wcpvar_aggregated`), so no (factors x options) parameter is built.
* The minimizations run over *buckets*: the instruments are grouped per underlying, expiry
  bucket and side (long or short exposure, :func:`bucket_instruments`), each bucket keeps
  its current mix, and the weights chosen are the buckets'. A bucket is a fixed portfolio
  of its instruments, so the reduced optimum is a feasible allocation over instruments
  (each instrument's weight is its bucket's weight times its share of the bucket, of the
  same sign as the bucket's) and its value an upper bound on the minimum over instruments.
  WCPVaR has no such reduction here (its hedge variables are per option): its optimized
  rows are ``not_applicable`` with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from risk_engine.covariance import cov_factor
from risk_engine.solvers import CONE_SOLVER_OPTIONS, DEFAULT_SOLVERS, CompiledProblem, solve
from risk_engine.types import EQUITY, FloatArray, IntArray

from .containers import DeskInstruments, ReturnMoments, SolveOutcome
from .models import polyhedral_book
from .moments import kappa
from .structures import (
    EXPIRY_TOLERANCE_YEARS,
    LinearStructure,
    PolyhedralStructure,
    QuadraticStructure,
)

EXPIRY_BUCKETS: tuple[tuple[str, float], ...] = (
    ("exp<=h", EXPIRY_TOLERANCE_YEARS), ("<=3m", 0.25), (">3m", np.inf))
"""Option expiry buckets: (label, upper bound of the life left after the horizon, years)."""


@dataclass(frozen=True)
class InstrumentBuckets:
    """A partition of a desk's instruments into same-sign buckets.

    Attributes
    ----------
    labels : tuple of str, length B
        Bucket names (``"<underlying> <stock|expiry bucket|all> <long|short>"``).
    bucket_of : ndarray of int, shape (m,)
        Bucket of each instrument; -1 for an instrument with zero exposure (its
        positions net to nothing): it is in no bucket and gets weight 0.
    exposure : ndarray, shape (B,)
        Current exposure of each bucket (sum of its instruments' exposures), currency,
        never zero.
    share : ndarray, shape (m,)
        Each instrument's exposure over its bucket's, in (0, 1] (0 outside buckets).
    description : str
        How the instruments were grouped (for the rows' messages).
    """

    labels: tuple[str, ...]
    bucket_of: IntArray
    exposure: FloatArray
    share: FloatArray
    description: str

    @property
    def n_buckets(self) -> int:
        """Number of buckets B."""
        return len(self.labels)


def bucket_instruments(desk: DeskInstruments, max_buckets: int) -> InstrumentBuckets:
    """Group ``desk``'s instruments per underlying, expiry bucket and side.

    Stocks form one bucket per underlying and side; options one per underlying, expiry
    bucket (:data:`EXPIRY_BUCKETS`, by life left after the horizon) and side, calls and
    puts together. If that gives more than ``max_buckets`` buckets, the instruments are
    grouped per underlying and side only. Instruments with zero exposure are in no
    bucket. Every bucket is non-empty and its instruments' exposures share one sign, so
    no bucket has zero exposure.

    Parameters
    ----------
    desk : DeskInstruments
        The desk.
    max_buckets : int
        Largest number of buckets wanted.

    Returns
    -------
    InstrumentBuckets
        The buckets (possibly more than ``max_buckets``: the caller checks).
    """
    x = desk.exposures
    side = np.where(x < 0, "short", "long")
    names = np.asarray(desk.underlyings, dtype=object)[desk.underlying_index]
    tau = np.where(desk.is_option, desk.tau_after_horizon, np.nan)
    group = np.full(desk.n_instruments, "stock", dtype=object)
    lower = -np.inf
    for label, upper in EXPIRY_BUCKETS:
        group[desk.is_option & (tau > lower) & (tau <= upper)] = label
        lower = upper
    group[desk.is_option & ~np.isfinite(tau)] = EXPIRY_BUCKETS[-1][0]
    held = np.flatnonzero(x != 0)
    fine = [f"{names[j]} {group[j]} {side[j]}" for j in held]
    description = "instruments aggregated per underlying, expiry bucket and side"
    if len(set(fine)) > max_buckets:
        fine = [f"{names[j]} all {side[j]}" for j in held]
        description = "instruments aggregated per underlying and side"
    labels, inverse = np.unique(np.asarray(fine, dtype=object), return_inverse=True)
    bucket_of = np.full(desk.n_instruments, -1, dtype=np.int64)
    bucket_of[held] = inverse.ravel()
    exposure = np.bincount(bucket_of[held], weights=x[held],
                           minlength=labels.size).astype(np.float64)
    share = np.zeros(desk.n_instruments)
    share[held] = x[held] / exposure[bucket_of[held]]
    for array in (bucket_of, exposure, share):
        array.setflags(write=False)
    return InstrumentBuckets(tuple(str(v) for v in labels), bucket_of, exposure, share,
                             description)


@dataclass(frozen=True)
class ReducedMoments:
    """What the worst-case models of a large desk need besides the underlyings' moments.

    Attributes
    ----------
    buckets : InstrumentBuckets
        The desk's buckets.
    bucket_moments : ReturnMoments or None
        Mean (B,) and covariance (B, B) of the buckets' simple returns (bucket P&L over
        bucket exposure), in ``buckets.labels`` order; None when there are more buckets
        than ``max_instruments`` (no minimization then).
    pnl_mean, pnl_variance : float
        Mean and variance of the desk's P&L over the horizon (currency, currency**2),
        over the instruments the worst-case models keep.
    source : str
        Where the moments come from (``exact``, or ``sample of N scenarios``).
    max_instruments : int
        The cap the desk exceeds (``worst_case.max_instruments``); the buckets must not.
    """

    buckets: InstrumentBuckets
    bucket_moments: ReturnMoments | None
    pnl_mean: float
    pnl_variance: float
    source: str
    max_instruments: int


def exact_reduced_moments(desk: DeskInstruments, buckets: InstrumentBuckets,
                          underlying_moments: ReturnMoments, max_instruments: int
                          ) -> ReducedMoments:
    """Exact reduced moments of a desk of stocks only from its underlyings' moments.

    A stock bucket's return is its underlying's, so the buckets' moments are the
    underlyings' (rows and columns repeated), and ``P&L = y' xi`` with ``y`` the desk's
    exposure per underlying.

    Raises
    ------
    ValueError
        If the desk holds an option (its moments are not exact).
    """
    if np.any(desk.kind != EQUITY):
        raise ValueError(f"desk {desk.desk!r}: exact reduced moments need stocks only")
    held = np.flatnonzero(buckets.bucket_of >= 0)
    _, first = np.unique(buckets.bucket_of[held], return_index=True)
    und = desk.underlying_index[held[first]]
    mean, cov = underlying_moments.mean, underlying_moments.cov
    moments = None
    if buckets.n_buckets <= max_instruments:
        moments = ReturnMoments(mean[und], cov[np.ix_(und, und)], labels=buckets.labels)
    y = np.bincount(desk.underlying_index, weights=desk.exposures,
                    minlength=desk.n_underlyings)
    return ReducedMoments(buckets, moments, float(mean @ y), float(y @ cov @ y), "exact",
                          max_instruments)


def pnl_wcvar(moments: ReducedMoments, confidence_level: float) -> SolveOutcome:
    """WCVaR of the current book from the desk P&L's mean and variance (currency).

    ``-E[P&L] + kappa(eps) sd(P&L)``: the closed form of
    :func:`risk_engine.worst_case.wcvar` without the instruments' covariance.
    """
    sd = float(np.sqrt(max(moments.pnl_variance, 0.0)))
    value = -moments.pnl_mean + kappa(confidence_level) * sd
    return SolveOutcome(value, "optimal", "closed_form")


def reduced_linear_structure(moments: ReducedMoments) -> LinearStructure:
    """WCVaR data over the buckets (their returns' mean and covariance factor).

    Without bucket moments (more buckets than the cap) the structure is empty: the
    current book's WCVaR needs none (:func:`pnl_wcvar`) and no minimization runs.
    """
    if moments.bucket_moments is None:
        return LinearStructure(np.zeros(0), np.zeros((0, 0)))
    mean = moments.bucket_moments.mean.copy()
    factor = np.ascontiguousarray(cov_factor(moments.bucket_moments.cov, method="cholesky").T)
    mean.setflags(write=False)
    factor.setflags(write=False)
    return LinearStructure(mean, factor)


def reduced_quadratic_structure(structure: QuadraticStructure,
                                buckets: InstrumentBuckets) -> QuadraticStructure:
    """WCQVaR data over the buckets: the instruments' greeks per unit of exposure, mixed.

    A bucket's delta, gamma and theta per unit of its exposure are its instruments'
    weighted by their shares, so the delta-gamma P&L of bucket exposures ``y`` equals
    that of the instrument exposures ``y[bucket_of] * share``.
    """
    held = np.flatnonzero(buckets.bucket_of >= 0)

    def mix(per_instrument: FloatArray) -> FloatArray:
        weighted = np.atleast_2d(per_instrument)[:, held] * buckets.share[held]
        out = np.zeros((weighted.shape[0], buckets.n_buckets))
        for row in range(weighted.shape[0]):
            out[row] = np.bincount(buckets.bucket_of[held], weights=weighted[row],
                                   minlength=buckets.n_buckets)
        return out

    delta, gamma = mix(structure.delta), mix(structure.gamma)
    theta_h = mix(structure.theta_h)[0]
    for array in (delta, gamma, theta_h):
        array.setflags(write=False)
    return QuadraticStructure(structure.mean, structure.factor, delta, gamma, theta_h,
                              structure.notes)


def instrument_weights(buckets: InstrumentBuckets, bucket_weights: FloatArray) -> FloatArray:
    """Each instrument's weight: its bucket's weight times its share of the bucket.

    An instrument in no bucket (zero exposure) gets 0.
    """
    w = np.asarray(bucket_weights, dtype=np.float64)
    inside = buckets.bucket_of >= 0
    return np.where(inside, w[np.where(inside, buckets.bucket_of, 0)], 0.0) * buckets.share


def wcpvar_aggregated(
    exposures: npt.ArrayLike,
    structure: PolyhedralStructure,
    confidence_level: float,
    *,
    solvers: tuple[str, ...] = DEFAULT_SOLVERS,
) -> SolveOutcome:
    """WCPVaR of a large desk's current book: :func:`risk_engine.worst_case.wcpvar`'s SOCP.

    The same problem, ``min over 0 <= g <= leverage x_eta`` of
    ``-(sign mu_u + moneyness)' g + ||kappa F (x_xi + S g)|| + const``, with the
    hedge variables entering the norm through ``S g``, their signed sums per underlying
    (``S`` a sparse constant, U x p), instead of a (factors x options) parameter: memory
    and set-up grow with the number of options, not with options x factors. Built for
    this desk and level only (not cached).

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
    p, n_u = structure.n_options, structure.mean.size
    und = structure.option_underlying
    signed_sum = sp.csr_matrix((structure.option_sign, (und, np.arange(p))), shape=(n_u, p))
    g = cp.Variable(p, name="g")
    linear = -(structure.option_sign * structure.mean[und] + structure.option_moneyness)
    cone = k_mult * (factor @ equity) + (k_mult * factor) @ (signed_sum @ g)
    problem = cp.Problem(cp.Minimize(linear @ g + cp.norm(cone, 2) + base),
                         [g >= 0, g <= structure.option_leverage * options])
    run = solve(CompiledProblem(problem, {}, {"g": g}), solvers, options=CONE_SOLVER_OPTIONS)
    if run.status in ("optimal", "inaccurate"):
        return SolveOutcome(run.objective * scale, run.status, run.solver, run.message)
    return SolveOutcome(math.nan, run.status, run.solver, run.message)
