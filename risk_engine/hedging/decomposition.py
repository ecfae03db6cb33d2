"""Integer lots of mean-reverting baskets that leave the smallest residual variance.

With exposure ``e`` (delta-equivalent shares per underlying, shape (U,)), basket lots
``B`` (shares, shape (U, K)) and the covariance of one share's P&L ``Sigma = A' A`` (from
the scenario model: ``diag(spot) cov diag(spot) x horizon``), the decomposition chooses
integers ``n`` minimizing ``(e - B n)' Sigma (e - B n)``: a mixed-integer quadratic
program solved exactly by SCIP through cvxpy (the ``PySCIPOpt`` wheel).

The integers are boxed exactly: with ``n_c`` the continuous minimizer, ``f_c`` its value,
``H = B' Sigma B`` and ``f_r`` the value of any integer point, every integer point at least
as good satisfies ``(n - n_c)' H (n - n_c) <= f_r - f_c`` and so
``|n_i - n_c,i| <= sqrt((f_r - f_c) (H^-1)_ii)``. The same box serves the brute-force
enumeration (:func:`enumerate_lots`) and the fallback (rounding, then a local search one
lot up and down) used when SCIP stops at its time limit or fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from risk_engine.types import FloatArray

_SINGULAR = 1e-10
"""Smallest eigenvalue of ``H`` relative to its largest for the exact box to be used."""


@dataclass(frozen=True)
class LotSolution:
    """Integer lots of the baskets and how they were found.

    Attributes
    ----------
    lots : ndarray of int64, shape (K,)
        Lots of each basket.
    variance : float
        Residual variance ``(e - B n)' Sigma (e - B n)`` (currency squared).
    continuous_variance : float
        The continuous minimum, a lower bound on ``variance``.
    status : str
        ``optimal`` (SCIP proved it), ``inaccurate`` (time limit: best point found),
        ``solver_error`` (SCIP failed: the fallback's point), ``not_applicable`` (no basket).
    method : str
        ``miqp``, ``exact_box`` (the exact box holds one point), ``enumeration``,
        ``rounding+local_search`` or ``none``.
    solver : str
        ``SCIP`` or ''.
    message : str
        Solver diagnostics ('' when SCIP answered optimal).
    """

    lots: NDArray[np.int64]
    variance: float
    continuous_variance: float
    status: str
    method: str
    solver: str
    message: str


def share_factor(spot: FloatArray, factor: FloatArray, horizon_years: float) -> FloatArray:
    """``A`` with ``A' A`` the covariance of one share's P&L over the horizon.

    ``factor`` satisfies ``factor @ factor.T == cov`` of annual log returns; a share of
    underlying ``u`` moves by ``spot_u x`` its log return to first order.
    """
    f = np.asarray(factor, dtype=np.float64) * np.asarray(spot, dtype=np.float64)[:, None]
    return np.ascontiguousarray((f * math.sqrt(horizon_years)).T)


def residual_variance(a: FloatArray, exposure: FloatArray, baskets: FloatArray,
                      lots: NDArray[np.int64] | FloatArray) -> float:
    """``|A (e - B n)|^2``: the residual's variance."""
    r = a @ (np.asarray(exposure, float) - np.asarray(baskets, float) @ np.asarray(lots, float))
    return float(r @ r)


def _continuous(y: FloatArray, m: FloatArray) -> tuple[FloatArray, float, FloatArray | None]:
    """Least-squares ``n_c``, its value, and ``H^-1`` (None when ``H`` is near singular)."""
    n_c = np.asarray(np.linalg.lstsq(m, y, rcond=None)[0], dtype=np.float64)
    r = y - m @ n_c
    h = m.T @ m
    w = np.linalg.eigvalsh(h) if h.size else np.zeros(0)
    inv = None
    if w.size and w[0] > _SINGULAR * max(w[-1], 0.0) and w[0] > 0:
        inv = np.asarray(np.linalg.inv(h), dtype=np.float64)
    return n_c, float(r @ r), inv


def _box(n_c: FloatArray, f_c: float, f_best: float, h_inv: FloatArray | None,
         max_lots: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    k = n_c.size
    lo = np.full(k, -max_lots, dtype=np.int64)
    hi = np.full(k, max_lots, dtype=np.int64)
    if h_inv is not None:
        rad = np.sqrt(max(f_best - f_c, 0.0) * np.clip(np.diag(h_inv), 0.0, None))
        rad = rad * (1 + 1e-9) + 1e-9
        lo = np.maximum(lo, np.ceil(n_c - rad).astype(np.int64))
        hi = np.minimum(hi, np.floor(n_c + rad).astype(np.int64))
    return lo, np.maximum(hi, lo)


def local_search(objective: Callable[[NDArray[np.int64]], float], start: NDArray[np.int64],
                 lo: NDArray[np.int64], hi: NDArray[np.int64],
                 max_rounds: int = 1000) -> tuple[NDArray[np.int64], float]:
    """Move one coordinate one step up or down while that improves ``objective``.

    Each round takes the best single move; stops when none improves (or after
    ``max_rounds``). ``objective`` returns inf for infeasible points.
    """
    x = np.clip(np.asarray(start, dtype=np.int64), lo, hi)
    fx = objective(x)
    for _ in range(max_rounds):
        best, best_f = None, fx
        for i in range(x.size):
            for step in (-1, 1):
                v = x[i] + step
                if v < lo[i] or v > hi[i]:
                    continue
                y = x.copy()
                y[i] = v
                fy = objective(y)
                if fy < best_f * (1 - 1e-12) - 1e-300:
                    best, best_f = y, fy
        if best is None:
            break
        x, fx = best, best_f
    return x, fx


class _Objective:
    """Residual variance of integer lots, for local search and enumeration."""

    def __init__(self, y: FloatArray, m: FloatArray) -> None:
        self.y, self.m = y, m

    def __call__(self, n: NDArray[np.int64]) -> float:
        r = self.y - self.m @ n.astype(np.float64)
        return float(r @ r)


def enumerate_lots(a: FloatArray, exposure: FloatArray, baskets: FloatArray,
                   lo: NDArray[np.int64], hi: NDArray[np.int64],
                   chunk: int = 100_000) -> tuple[NDArray[np.int64], float]:
    """Brute force: every integer point of the box ``[lo, hi]``; the best and its variance.

    Points are visited in lexicographic order (vectorized in chunks); ties go to the first.
    """
    y = a @ np.asarray(exposure, float)
    m = a @ np.asarray(baskets, float)
    axes = [np.arange(int(l_), int(h_) + 1, dtype=np.int64) for l_, h_ in
            zip(lo, hi, strict=True)]
    sizes = [ax.size for ax in axes]
    total = int(np.prod(sizes)) if sizes else 1
    best, best_f = np.zeros(len(axes), dtype=np.int64), math.inf
    if not axes:
        return best, float(y @ y)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(start + chunk, total), dtype=np.int64)
        points = np.column_stack([ax[i] for ax, i in
                                  zip(axes, np.unravel_index(flat, sizes), strict=True)])
        r = y[None, :] - points.astype(np.float64) @ m.T
        f = np.einsum("ij,ij->i", r, r)
        j = int(np.argmin(f))
        if f[j] < best_f:
            best, best_f = points[j].copy(), float(f[j])
    return best, best_f


def lot_box(a: FloatArray, exposure: FloatArray, baskets: FloatArray, max_lots: int
            ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], float]:
    """The exact box of candidate lots, the fallback's point and its variance.

    Returns
    -------
    lo, hi, start, variance
        Every integer point with a variance at most ``variance`` lies in ``[lo, hi]``
        (within ``max_lots``); ``start`` is the rounded continuous solution after local
        search.
    """
    y = a @ np.asarray(exposure, float)
    m = a @ np.asarray(baskets, float)
    n_c, f_c, h_inv = _continuous(y, m)
    obj = _Objective(y, m)
    wide_lo = np.full(n_c.size, -max_lots, dtype=np.int64)
    wide_hi = np.full(n_c.size, max_lots, dtype=np.int64)
    start, f_s = local_search(obj, np.rint(np.clip(n_c, -max_lots, max_lots)).astype(np.int64),
                              wide_lo, wide_hi)
    lo, hi = _box(n_c, f_c, f_s, h_inv, max_lots)
    return lo, hi, start, f_s


def decompose(a: FloatArray, exposure: FloatArray, baskets: FloatArray, *,
              time_limit: float = 10.0, max_lots: int = 10_000,
              solver: str = "SCIP", exact_max_variables: int | None = None,
              max_enumeration: int = 0) -> LotSolution:
    """Integer lots of the baskets minimizing the residual variance.

    Parameters
    ----------
    a : ndarray, shape (F, U)
        Factor of the share covariance (:func:`share_factor`).
    exposure : ndarray, shape (U,)
        Delta-equivalent shares.
    baskets : ndarray, shape (U, K)
        Shares of each underlying in one lot of each basket.
    time_limit : float
        Seconds given to SCIP; past it the better of SCIP's point and the fallback's.
    max_lots : int
        Largest ``|lots|`` of one basket.
    solver : str
        ``SCIP`` (exact MIQP through cvxpy) or ``enumeration`` (brute force over the
        exact box; for small problems and tests).
    exact_max_variables : int, optional
        Above this many baskets the fallback's point is returned without SCIP (status
        ``inaccurate``), so the answer never depends on the machine's speed.
    max_enumeration : int
        When the exact box holds at most this many points they are all enumerated
        (exact, without SCIP).

    Returns
    -------
    LotSolution
        Never raises for solver trouble: SCIP failures give the fallback's point.
    """
    e = np.asarray(exposure, dtype=np.float64)
    b = np.asarray(baskets, dtype=np.float64).reshape(e.size, -1)
    k = b.shape[1]
    y = a @ e
    f0 = float(y @ y)
    if k == 0:
        return LotSolution(np.zeros(0, np.int64), f0, f0, "not_applicable", "none", "",
                           "no mean-reverting basket")
    m = a @ b
    _, f_c, _ = _continuous(y, m)
    lo, hi, start, f_s = lot_box(a, e, b, max_lots)
    size = float(np.prod((hi - lo + 1).astype(np.float64)))
    if solver == "enumeration" or size <= max_enumeration:
        n, f = enumerate_lots(a, e, b, lo, hi)
        return LotSolution(n, f, f_c, "optimal", "enumeration", "", "")
    if f_s <= 0.0 or np.array_equal(lo, hi):
        # Zero residual, or the exact box holds one point: it is the optimum.
        return LotSolution(start, f_s, f_c, "optimal", "exact_box", "", "")
    if exact_max_variables is not None and k > exact_max_variables:
        return LotSolution(start, f_s, f_c, "inaccurate", "rounding+local_search", "",
                           f"{k} baskets > exact_max_variables {exact_max_variables}")
    return _scip(y, m, lo, hi, start, f_s, f_c, time_limit)


def _scip(y: FloatArray, m: FloatArray, lo: NDArray[np.int64], hi: NDArray[np.int64],
          start: NDArray[np.int64], f_s: float, f_c: float, time_limit: float) -> LotSolution:
    import cvxpy as cp

    from risk_engine.solvers import CompiledProblem, solve

    scale = math.sqrt(max(float(y @ y), f_s, 1e-300))
    n = cp.Variable(m.shape[1], integer=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(y / scale - (m / scale) @ n)),
                      [n >= lo, n <= hi])
    run = solve(CompiledProblem(prob, {}, {"n": n}), ("SCIP",), capture=("n",),
                options={"SCIP": {"scip_params": {"limits/time": float(time_limit)}}})
    obj = _Objective(y, m)
    if run.status in ("optimal", "inaccurate") and "n" in run.values:
        n_scip = np.clip(np.rint(run.values["n"]).astype(np.int64), lo, hi)
        f_scip = obj(n_scip)
        if run.status == "optimal" or f_scip <= f_s:
            if run.status == "optimal" and f_s < f_scip:
                # SCIP's tolerance: the local search's point is better by rounding only.
                return LotSolution(start, f_s, f_c, "optimal", "miqp", "SCIP", run.message)
            return LotSolution(n_scip, f_scip, f_c, run.status, "miqp", "SCIP", run.message)
        return LotSolution(start, f_s, f_c, run.status, "rounding+local_search", "SCIP",
                           run.message or "time limit")
    return LotSolution(start, f_s, f_c, run.status, "rounding+local_search", "SCIP",
                       run.message or "SCIP returned no point")


# --- objective cvar: the residual's expected shortfall on the run's scenarios (a MILP) ---


@dataclass(frozen=True)
class CvarSolution:
    """Integer lots minimizing the residual's expected shortfall, and how they were found.

    Attributes
    ----------
    lots : ndarray of int64, shape (K,)
        Lots of each basket.
    es : float
        Exact empirical expected shortfall of the residual at ``lots``
        (:func:`risk_engine.measures.var_es`, currency).
    exposure_es : float
        The same for the exposure alone (no lot).
    status : str
        ``optimal``, ``inaccurate`` (time limit or too many baskets: the best point
        found), ``solver_error`` (HiGHS failed: the fallback's point), ``not_applicable``.
    method : str
        ``milp`` (HiGHS, polished by a local search on the exact ES), ``exact_box``,
        ``rounding+local_search`` or ``none``.
    solver : str
        ``HIGHS`` or ''.
    message : str
        Solver diagnostics.
    """

    lots: NDArray[np.int64]
    es: float
    exposure_es: float
    status: str
    method: str
    solver: str
    message: str


def scenario_share_pnl(spot: FloatArray, log_returns: FloatArray) -> FloatArray:
    """P&L of one share of each underlying in each scenario: ``spot * expm1(x)``, (N, U)."""
    x = np.asarray(log_returns, dtype=np.float64)
    return np.expm1(x) * np.asarray(spot, dtype=np.float64)[None, :]


def residual_es(pnl: FloatArray, exposure: FloatArray, baskets: FloatArray,
                lots: NDArray[np.int64] | FloatArray, alpha: float) -> float:
    """Empirical expected shortfall at ``alpha`` of the loss ``-pnl @ (e - B n)``."""
    from risk_engine.measures import var_es

    q = np.asarray(exposure, float) - np.asarray(baskets, float) @ np.asarray(lots, float)
    return var_es(-(np.asarray(pnl, float) @ q), [alpha])[0].es


def decompose_cvar(pnl: FloatArray, exposure: FloatArray, baskets: FloatArray,
                   lo: NDArray[np.int64], hi: NDArray[np.int64], start: NDArray[np.int64],
                   alpha: float, *, time_limit: float = 2.0,
                   exact_max_variables: int | None = None) -> CvarSolution:
    """Integer lots in ``[lo, hi]`` minimizing the residual's expected shortfall.

    The Rockafellar-Uryasev program ``min t + sum_s u_s / (N (1 - alpha))`` with
    ``u_s >= loss_s(n) - t``, ``u_s >= 0`` and ``n`` integer in the box, solved by HiGHS
    through cvxpy. At its optimum ``t`` is the VaR and the value is exactly the empirical
    ES of :func:`risk_engine.measures.var_es` (DESIGN section 3). HiGHS's point is then
    polished by a local search (one lot up or down) on that exact ES and compared with
    ``start`` (the variance path's point), so solver tolerances never leave a worse point.

    Parameters
    ----------
    pnl : ndarray, shape (N, U)
        P&L of one share per scenario (:func:`scenario_share_pnl`).
    exposure : ndarray, shape (U,)
        Delta-equivalent shares.
    baskets : ndarray, shape (U, K)
        Shares of each underlying in one lot of each basket.
    lo, hi : ndarray of int64, shape (K,)
        The box of candidate lots (the variance path's exact box, :func:`lot_box`).
    start : ndarray of int64, shape (K,)
        A point of the box (the variance path's answer): the fallback's start.
    alpha : float
        Confidence level of the expected shortfall.
    time_limit : float
        Seconds given to HiGHS.
    exact_max_variables : int, optional
        Above this many baskets the fallback (local search from ``start``) is used.

    Returns
    -------
    CvarSolution
        Never raises for solver trouble.
    """
    r = np.asarray(pnl, dtype=np.float64)
    e = np.asarray(exposure, dtype=np.float64)
    b = np.asarray(baskets, dtype=np.float64).reshape(e.size, -1)
    k = b.shape[1]
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)

    def es_of(n: NDArray[np.int64]) -> float:
        return residual_es(r, e, b, n, alpha)

    es0 = es_of(np.zeros(k, np.int64))
    if k == 0:
        return CvarSolution(np.zeros(0, np.int64), es0, es0, "not_applicable", "none", "",
                            "no mean-reverting basket")
    start = np.clip(np.asarray(start, dtype=np.int64), lo, hi)
    if np.array_equal(lo, hi):
        return CvarSolution(lo.copy(), es_of(lo), es0, "optimal", "exact_box", "", "")
    if exact_max_variables is not None and k > exact_max_variables:
        n, f = local_search(es_of, start, lo, hi)
        return CvarSolution(n, f, es0, "inaccurate", "rounding+local_search", "",
                            f"{k} baskets > exact_max_variables {exact_max_variables}")
    run_status, n_milp, message = _highs_cvar(r @ e, r @ b, lo, hi, alpha, time_limit)
    if n_milp is None:
        n, f = local_search(es_of, start, lo, hi)
        return CvarSolution(n, f, es0, run_status, "rounding+local_search", "HIGHS",
                            message or "HiGHS returned no point")
    f_start = es_of(start)
    seed = n_milp if es_of(n_milp) <= f_start else start
    n, f = local_search(es_of, seed, lo, hi)
    return CvarSolution(n, f, es0, run_status, "milp", "HIGHS", message)


def _highs_cvar(gain0: FloatArray, gain_lots: FloatArray, lo: NDArray[np.int64],
                hi: NDArray[np.int64], alpha: float, time_limit: float
                ) -> tuple[str, NDArray[np.int64] | None, str]:
    """The Rockafellar-Uryasev MILP; (status, lots or None, message).

    ``gain0`` (N,) is the exposure's P&L per scenario, ``gain_lots`` (N, K) one lot's; the
    loss of lots ``n`` is ``-gain0 + gain_lots @ n``. Losses are scaled by their standard
    deviation at ``n = 0`` for HiGHS's tolerances.
    """
    import cvxpy as cp

    from risk_engine.solvers import CompiledProblem, solve

    n_s = gain0.size
    scale = float(np.std(gain0)) or float(np.max(np.abs(gain_lots))) or 1.0
    loss0 = -gain0 / scale
    per_lot = gain_lots / scale
    n = cp.Variable(per_lot.shape[1], integer=True)
    t = cp.Variable()
    u = cp.Variable(n_s, nonneg=True)
    prob = cp.Problem(cp.Minimize(t + cp.sum(u) / (n_s * (1.0 - alpha))),
                      [u >= loss0 + per_lot @ n - t, n >= lo, n <= hi])
    run = solve(CompiledProblem(prob, {}, {"n": n}), ("HIGHS",), capture=("n",),
                options={"HIGHS": {"time_limit": float(time_limit), "mip_rel_gap": 1e-6,
                                   "random_seed": 0}})
    if run.status in ("optimal", "inaccurate") and "n" in run.values:
        return run.status, np.clip(np.rint(run.values["n"]).astype(np.int64), lo, hi), \
            run.message
    return run.status, None, run.message
