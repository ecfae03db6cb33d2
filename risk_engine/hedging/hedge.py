"""Whole-lot trades in single underlyings that cut a residual's risk net of their cost.

With residual ``r`` (shares, (U,)), lot sizes ``l`` (shares), the share-covariance factor
``A`` (``A' A`` = covariance of one share's P&L over the horizon) and a cost per share
``c`` (currency), the hedge chooses integer lots ``m`` minimizing

    ``|A (r + l m)|_2 + sum_j c_j l_j |m_j|``

(residual risk, a standard deviation in currency, plus transaction cost), optionally
with ``sum_j spot_j l_j |m_j| <= max_gross_notional`` and at most
``max_underlyings_traded`` non-zero ``m_j``. With zero cost the answer flattens the
residual to the nearest lots; the cost makes it a decision.

Exact: a mixed-integer second-order cone program solved by SCIP (through cvxpy) in an
exact box: any point at least as good as not trading (objective ``f0 = |A r|``) has
``c_j l_j |m_j| <= f0`` and ``|r_j + l_j m_j| <= f0 sqrt((Sigma^-1)_jj)``. Past
``time_limit`` (or on a solver failure) the fallback: the continuous solution rounded,
made feasible, then a local search one lot up and down. The continuous relaxation over
the same box (Clarabel) is a lower bound; its gap to the answer is always reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
from numpy.typing import NDArray

from risk_engine.hedging.decomposition import local_search
from risk_engine.solvers import CompiledProblem, solve
from risk_engine.types import FloatArray


@dataclass(frozen=True)
class HedgeProblem:
    """The data of one desk's hedge.

    Attributes
    ----------
    a : ndarray, shape (F, U)
        Share-covariance factor.
    residual : ndarray, shape (U,)
        Shares left after the baskets.
    spot : ndarray, shape (U,)
        Prices (for notional).
    lot_size : ndarray of int64, shape (U,)
        Shares per lot.
    cost_per_share : ndarray, shape (U,)
        Currency per share traded.
    max_gross_notional : float or None
        Cap on ``sum |traded notional|``.
    max_underlyings : int or None
        Cap on the number of underlyings traded.
    max_lots : int
        Largest ``|lots|`` of one trade.
    """

    a: FloatArray
    residual: FloatArray
    spot: FloatArray
    lot_size: NDArray[np.int64]
    cost_per_share: FloatArray
    max_gross_notional: float | None = None
    max_underlyings: int | None = None
    max_lots: int = 10_000

    def risk(self, lots: NDArray[np.int64]) -> float:
        """Standard deviation of the position after the trades."""
        v = self.a @ (self.residual + self.lot_size * lots.astype(np.float64))
        return float(math.sqrt(v @ v))

    def cost(self, lots: NDArray[np.int64]) -> float:
        """Transaction cost of the trades."""
        return float(np.sum(self.cost_per_share * self.lot_size * np.abs(lots)))

    def feasible(self, lots: NDArray[np.int64]) -> bool:
        """Whether the trades respect the caps."""
        if self.max_underlyings is not None and np.count_nonzero(lots) > self.max_underlyings:
            return False
        if self.max_gross_notional is not None:
            gross = float(np.sum(self.spot * self.lot_size * np.abs(lots)))
            if gross > self.max_gross_notional * (1 + 1e-12):
                return False
        return True

    def objective(self, lots: NDArray[np.int64]) -> float:
        """Risk plus cost; inf when a cap is broken."""
        if not self.feasible(lots):
            return math.inf
        return self.risk(lots) + self.cost(lots)


@dataclass(frozen=True)
class HedgeResult:
    """The recommended trades and how they were found.

    ``bound`` is the continuous relaxation's optimum (a lower bound on ``objective``);
    ``gap`` is ``(objective - bound) / objective`` (0 when both are 0).
    ``status``: ``optimal``, ``inaccurate`` (time limit), ``solver_error`` (exact solve
    failed; the fallback's trades) or ``not_applicable`` (nothing to hedge).
    ``method``: ``miqp``, ``rounding+local_search`` or ``none``.
    """

    lots: NDArray[np.int64]
    risk: float
    cost: float
    objective: float
    bound: float
    gap: float
    status: str
    method: str
    solver: str
    message: str


def hedge_box(p: HedgeProblem, f_best: float | None = None
              ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Bounds on the lots of every trade with objective at most ``f_best``.

    ``f_best`` defaults to the objective of not trading (the residual's risk): every
    trade at least as good lies in the box, and not trading always does.
    """
    u = p.residual.size
    lot = p.lot_size.astype(np.float64)
    f0 = p.risk(np.zeros(u, dtype=np.int64)) if f_best is None else f_best
    lo = np.full(u, -p.max_lots, dtype=np.int64)
    hi = np.full(u, p.max_lots, dtype=np.int64)
    sigma = p.a.T @ p.a
    w = np.linalg.eigvalsh(sigma) if u else np.zeros(0)
    if u and w[0] > 1e-12 * max(w[-1], 0.0) and w[0] > 0:
        rad = f0 * np.sqrt(np.clip(np.diag(np.linalg.inv(sigma)), 0.0, None)) * (1 + 1e-9)
        lo = np.maximum(lo, np.ceil((-p.residual - rad) / lot - 1e-9).astype(np.int64))
        hi = np.minimum(hi, np.floor((-p.residual + rad) / lot + 1e-9).astype(np.int64))
    per_lot = p.cost_per_share * lot
    with np.errstate(divide="ignore"):
        cap = np.where(per_lot > 0, np.floor(f0 / np.where(per_lot > 0, per_lot, 1.0) + 1e-9),
                       np.inf)
    if p.max_gross_notional is not None:
        cap = np.minimum(cap, np.floor(p.max_gross_notional / (p.spot * lot) + 1e-9))
    cap_i = np.minimum(cap, p.max_lots).astype(np.int64)
    lo, hi = np.maximum(lo, -cap_i), np.minimum(hi, cap_i)
    # Not trading is always allowed.
    return np.minimum(lo, 0), np.maximum(hi, 0)


def _build(p: HedgeProblem, lo: NDArray[np.int64], hi: NDArray[np.int64], integer: bool
           ) -> tuple[cp.Problem, cp.Variable]:
    u = p.residual.size
    scale = max(p.risk(np.zeros(u, dtype=np.int64)), 1e-300)
    lot = p.lot_size.astype(np.float64)
    m = cp.Variable(u, integer=integer)
    risk = cp.norm(p.a @ p.residual / scale + (p.a * lot[None, :] / scale) @ m, 2)
    cost = (p.cost_per_share * lot / scale) @ cp.abs(m)
    cons = [m >= lo, m <= hi]
    if p.max_gross_notional is not None:
        cons.append((p.spot * lot) @ cp.abs(m) <= p.max_gross_notional)
    if p.max_underlyings is not None:
        big = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)
        z = cp.Variable(u, boolean=True) if integer else cp.Variable(u)
        cons += [cp.abs(m) <= cp.multiply(big, z), cp.sum(z) <= p.max_underlyings]
        if not integer:
            cons += [z >= 0, z <= 1]
    return cp.Problem(cp.Minimize(risk + cost), cons), m


def continuous_bound(p: HedgeProblem, lo: NDArray[np.int64], hi: NDArray[np.int64]
                     ) -> tuple[float, FloatArray | None, str]:
    """The relaxation's optimum (currency), its lots, and a message ('' when solved)."""
    prob, m = _build(p, lo, hi, integer=False)
    run = solve(CompiledProblem(prob, {}, {"m": m}), ("CLARABEL", "SCS"),
                capture=("m",))
    if run.status not in ("optimal", "inaccurate"):
        return 0.0, None, f"continuous bound not solved ({run.status}): {run.message}"
    scale = max(p.risk(np.zeros(p.residual.size, dtype=np.int64)), 1e-300)
    # A first-order solver's value may sit slightly above the true minimum; the bound is
    # only used as a lower bound, so it is never raised above the value found.
    return float(run.objective) * scale, run.values["m"], run.message


def fallback_hedge(p: HedgeProblem, lo: NDArray[np.int64], hi: NDArray[np.int64],
                   start: FloatArray | None) -> tuple[NDArray[np.int64], float]:
    """The fallback: rounding, caps, then a local search one lot up and down.

    The continuous lots ``start`` are rounded into ``[lo, hi]``; while a cap is broken the
    trade whose removal costs least is dropped; then single-lot moves are made while they
    improve the objective. Never worse than not trading.
    """
    u = p.residual.size
    zero = np.zeros(u, dtype=np.int64)
    x = zero if start is None else np.clip(np.rint(start).astype(np.int64), lo, hi)
    while not p.feasible(x):
        nz = np.flatnonzero(x)
        trial = []
        for j in nz:
            y = x.copy()
            y[j] = 0
            trial.append((p.risk(y) + p.cost(y), int(j)))
        x = x.copy()
        x[min(trial)[1]] = 0
    x, fx = local_search(p.objective, x, lo, hi)
    f0 = p.objective(zero)
    if f0 <= fx:
        return zero, f0
    return x, fx


def hedge_trades(p: HedgeProblem, *, time_limit: float = 10.0, exact: bool = True,
                 exact_max_variables: int | None = None) -> HedgeResult:
    """The whole-lot hedge of ``p.residual``.

    Exact (SCIP) within ``time_limit``, else the fallback (:func:`fallback_hedge`, also
    used when ``exact`` is false or more than ``exact_max_variables`` underlyings are in
    the problem: SCIP's answer past a time limit depends on the machine's speed, the
    fallback's does not); the gap to the continuous bound is always reported. Never
    raises for solver trouble.
    """
    u = p.residual.size
    zero = np.zeros(u, dtype=np.int64)
    if u == 0 or p.risk(zero) == 0.0:
        return HedgeResult(zero, 0.0, 0.0, 0.0, 0.0, 0.0, "not_applicable", "none", "",
                           "nothing to hedge")
    lo, hi = hedge_box(p)
    bound, m_c, note = continuous_bound(p, lo, hi)
    fb, f_fb = fallback_hedge(p, lo, hi, m_c)
    lots, obj, status, method, solver = fb, f_fb, "inaccurate", "rounding+local_search", ""
    if exact and exact_max_variables is not None and u > exact_max_variables:
        exact = False
        note = "; ".join(t for t in (note, f"{u} underlyings > exact_max_variables "
                                           f"{exact_max_variables}") if t)
    message = "; ".join(t for t in (note, "exact solve not run") if t)
    if np.array_equal(lo, hi):
        status, method, message = "optimal", "exact_box", note
    elif exact:
        # Only trades better than the fallback's matter: a much smaller box.
        lo, hi = hedge_box(p, f_fb)
    if exact and np.array_equal(lo, hi):
        status, method, message = "optimal", "exact_box", note
    elif exact:
        prob, m = _build(p, lo, hi, integer=True)
        run = solve(CompiledProblem(prob, {}, {"m": m}), ("SCIP",),
                    capture=("m",),
                    options={"SCIP": {"scip_params": {"limits/time": float(time_limit)}}})
        solver, status = "SCIP", run.status
        message = "; ".join(t for t in (note, run.message) if t)
        if run.status in ("optimal", "inaccurate") and "m" in run.values:
            x = np.clip(np.rint(run.values["m"]).astype(np.int64), lo, hi)
            fx = p.objective(x)
            if fx <= f_fb or (run.status == "optimal" and fx <= f_fb * (1 + 1e-9)):
                lots, obj, method = x, fx, "miqp"
        if run.status == "inaccurate" and method != "miqp":
            message = "; ".join(t for t in (message, "time limit: fallback kept") if t)
        elif run.status != "optimal" and method != "miqp":
            # No usable incumbent (e.g. the time limit struck before SCIP found one): the
            # fallback's whole-lot trades stand, as inaccurate, with SCIP's message.
            status = "inaccurate"
            message = "; ".join(t for t in (message, "no exact solution: fallback kept") if t)
    gap = 0.0 if obj <= 0 else max(obj - bound, 0.0) / obj
    return HedgeResult(lots, p.risk(lots), p.cost(lots), obj, min(bound, obj), gap, status,
                       method, solver, message)
