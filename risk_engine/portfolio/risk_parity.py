"""Risk budgeting / equal risk contribution portfolios by Spinu's convex formulation.

Spinu (2013), "An algorithm for computing risk parity weights": with budgets ``b > 0``,
``sum b = 1``, the strictly convex problem

    minimize  f(y) = 1/2 y' Sigma y - sum_i b_i log y_i   over  y > 0

has a unique minimizer, and its first-order condition ``(Sigma y)_i = b_i / y_i`` says
``y_i (Sigma y)_i = b_i``: the risk contributions of ``y`` are proportional to ``b``, and
``y' Sigma y = sum b = 1``. Shares are scale invariant, so ``w = y / sum y`` is the long-only,
fully-invested risk budgeting portfolio.

``f`` is self-concordant (a convex quadratic plus a log barrier), so Newton's method with
Nesterov's damped step ``1 / (1 + lambda)`` (``lambda`` the Newton decrement) converges from
any ``y > 0`` and stays in the domain; once ``lambda < 1/4`` full steps converge quadratically.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from risk_engine.errors import DataError
from risk_engine.portfolio._moments import validate_moments
from risk_engine.portfolio.results import RiskParityResult
from risk_engine.portfolio.risk_contributions import risk_contributions

SOLVER = "newton"


def _budgets(risk_budgets: ArrayLike | None, n: int) -> NDArray[np.float64]:
    if risk_budgets is None:
        return np.full(n, 1.0 / n)
    b = np.array(risk_budgets, dtype=np.float64, copy=True)
    if b.shape != (n,) or not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise DataError(f"risk budgets must be {n} positive finite numbers, got {risk_budgets!r}")
    return b / b.sum()


def risk_parity(
    sigma: ArrayLike,
    *,
    risk_budgets: ArrayLike | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> RiskParityResult:
    """Long-only weights whose risk shares equal the budgets (equal by default).

    Parameters
    ----------
    sigma : array_like, shape (U,U)
        Covariance (positive semidefinite, every variance > 0).
    risk_budgets : array_like, shape (U,), optional
        Positive budgets, normalized to sum 1; equal (``1/U``) by default.
    tol : float
        Stop when ``max_i |y_i (Sigma y)_i - b_i| <= tol`` (the share error, since
        ``y' Sigma y -> 1``).
    max_iter : int
        Newton iteration cap.

    Returns
    -------
    RiskParityResult
        ``optimal`` when converged; ``inaccurate`` if the cap was hit with a share error
        below ``1e-6``; ``not_applicable`` when an asset has zero variance or a long-only
        combination has zero variance (risk shares undefined); ``solver_error`` otherwise.
        Two assets give inverse-volatility weights whatever the correlation.

    Raises
    ------
    DataError
        Invalid covariance or budgets.
    """
    m = validate_moments(None, sigma)
    n = m.n_assets
    b = _budgets(risk_budgets, n)
    s = m.sigma
    nan_w = np.full(n, np.nan)

    def fail(status: str, msg: str, it: int) -> RiskParityResult:
        return RiskParityResult(status, msg, nan_w, b, None, it, float("nan"), SOLVER)  # type: ignore[arg-type]

    diag = np.diag(s)
    if np.any(diag <= 0):
        zero = np.flatnonzero(diag <= 0).tolist()
        return fail("not_applicable",
                    f"assets at positions {zero} have zero variance: their risk share is 0 "
                    "whatever the weight, so positive budgets cannot be met", 0)

    # Start at inverse volatility scaled so that y' Sigma y = 1 (the optimum's value).
    y = 1.0 / np.sqrt(diag)
    y = y / np.sqrt(float(y @ s @ y))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        sy = s @ y
        grad = sy - b / y
        hess = s + np.diag(b / (y * y))
        try:
            step = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError as exc:
            return fail("solver_error", f"Newton system singular at iteration {it}: {exc}", it)
        lam = float(np.sqrt(max(-(grad @ step), 0.0)))
        t = 1.0 if lam < 0.25 else 1.0 / (1.0 + lam)
        y_new = y + t * step
        while np.any(y_new <= 0):  # safeguard; the damped step stays feasible in theory
            t *= 0.5
            y_new = y + t * step
            if t < 1e-16:
                return fail("solver_error", f"Newton step left the domain at iteration {it}", it)
        y = y_new
        if not np.all(np.isfinite(y)) or float(np.max(y)) > 1e150:
            return fail("not_applicable",
                        "a long-only combination of the assets has (near) zero variance: "
                        "risk shares are undefined", it)
        if float(np.max(np.abs(y * (s @ y) - b))) <= tol:
            converged = True
            break

    w = y / y.sum()
    rc = risk_contributions(w, s)
    # Diverging y along a long-only direction of (near) zero variance: no solution exists.
    if not rc.volatility ** 2 > 1e-8 * float(w * w @ diag):
        return fail("not_applicable",
                    "a long-only combination of the assets has (near) zero variance "
                    "(perfect hedge): risk shares are undefined", it)
    err = float(np.max(np.abs(rc.shares - b)))
    if converged:
        return RiskParityResult("optimal", "", w, b, rc, it, err, SOLVER)
    if err <= 1e-6:
        return RiskParityResult(
            "inaccurate", f"no convergence to tol={tol:g} in {max_iter} iterations; "
            f"share error {err:.2e}", w, b, rc, it, err, SOLVER,
        )
    return fail("solver_error",
                f"no convergence in {max_iter} iterations (share error {err:.2e})", it)
