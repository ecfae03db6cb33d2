"""Euler risk contributions to portfolio volatility and the seed's equal-risk adjustments."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from risk_engine.errors import DataError
from risk_engine.portfolio._moments import validate_moments
from risk_engine.portfolio.results import RiskAdjustments, RiskContributions

#: Shares with ``|share| <= ZERO_SHARE_TOL`` count as zero.
ZERO_SHARE_TOL = 1e-12


def _weights(weights: ArrayLike, n: int) -> NDArray[np.float64]:
    w = np.array(weights, dtype=np.float64, copy=True)
    if w.shape != (n,):
        raise DataError(f"weights must have shape ({n},) to match the covariance, got {w.shape}")
    if not np.all(np.isfinite(w)):
        bad = np.flatnonzero(~np.isfinite(w)).tolist()
        raise DataError(f"weights have non-finite entries at positions {bad}")
    return w


def risk_contributions(weights: ArrayLike, sigma: ArrayLike) -> RiskContributions:
    """Euler decomposition of the volatility ``sigma_p = sqrt(w' Sigma w)``.

    ``RC_i = w_i (Sigma w)_i / sigma_p``; by Euler's theorem for the 1-homogeneous
    ``sigma_p(w)``, ``sum_i RC_i = sigma_p``. Shares are ``RC_i / sigma_p`` (sum 1).
    A hedge (``w_i (Sigma w)_i < 0``) has a negative contribution.

    Parameters
    ----------
    weights : array_like, shape (U,)
        Portfolio weights (any sign; need not sum to 1). Currency exposures work too: the
        contributions are then in currency.
    sigma : array_like, shape (U,U)
        Covariance (annualized gives annualized volatility).

    Returns
    -------
    RiskContributions
        With zero volatility, contributions are 0 and shares NaN (undefined).

    Raises
    ------
    DataError
        Invalid inputs.
    """
    m = validate_moments(None, sigma)
    w = _weights(weights, m.n_assets)
    marginal = m.sigma @ w
    variance = float(w @ marginal)
    vol = float(np.sqrt(max(variance, 0.0)))
    if not vol > 0.0:
        return RiskContributions(
            weights=w, contributions=np.zeros_like(w), shares=np.full_like(w, np.nan),
            volatility=0.0,
        )
    contrib = w * marginal / vol
    return RiskContributions(weights=w, contributions=contrib, shares=contrib / vol, volatility=vol)


def equal_risk_adjustments(
    weights: ArrayLike,
    sigma: ArrayLike,
    *,
    target_shares: ArrayLike | None = None,
) -> RiskAdjustments:
    """Compute factors ``target_share_i / current_share_i`` toward the target risk shares.

    This is the seed's ``optimize_position_sizes``: target risk ``1/U`` per asset by default.
    Multiplying weight ``i`` by its factor is a first-order move toward the target; it is not
    the risk parity solution (see :func:`risk_engine.portfolio.risk_parity`).

    Guards (the factor is NaN and ``notes`` says why):

    * ``zero_portfolio_volatility``: the portfolio has no risk, every share is undefined;
    * ``zero_risk_contribution``: ``|share_i| <= 1e-12`` (e.g. zero weight): no finite factor;
    * ``negative_risk_contribution``: the asset hedges (share < 0): scaling it cannot make its
      share positive; reduce the hedge or treat it separately.

    Parameters
    ----------
    weights : array_like, shape (U,)
        Current weights or exposures.
    sigma : array_like, shape (U,U)
        Covariance.
    target_shares : array_like, shape (U,), optional
        Positive target shares (normalized to sum 1); equal by default.

    Returns
    -------
    RiskAdjustments

    Raises
    ------
    DataError
        Invalid inputs or non-positive target shares.
    """
    rc = risk_contributions(weights, sigma)
    n = rc.weights.shape[0]
    if target_shares is None:
        target = np.full(n, 1.0 / n)
    else:
        target = np.array(target_shares, dtype=np.float64, copy=True)
        if target.shape != (n,) or not np.all(np.isfinite(target)) or np.any(target <= 0):
            raise DataError(
                f"target_shares must be {n} positive finite numbers, got {target_shares!r}"
            )
        target = target / target.sum()
    adj = np.full(n, np.nan)
    notes: list[str] = []
    for i in range(n):
        s = rc.shares[i]
        if rc.volatility == 0.0:
            notes.append("zero_portfolio_volatility")
        elif abs(s) <= ZERO_SHARE_TOL:
            notes.append("zero_risk_contribution")
        elif s < 0:
            notes.append("negative_risk_contribution")
        else:
            adj[i] = target[i] / s
            notes.append("")
    return RiskAdjustments(
        current_shares=rc.shares, target_shares=target, adjustments=adj, notes=tuple(notes)
    )
