"""Moments of simple returns over the horizon, kappa, and covariance factors.

Conventions (DESIGN section 3): log returns of the underlyings over ``h`` years
are normal with mean ``(mu - diag(cov)/2) h`` and covariance ``cov h``; the
worst-case models use *simple* returns ``R = exp(X) - 1``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from risk_engine.sample_moments import MomentSums
from risk_engine.types import FloatArray

from .containers import ReturnMoments


def tail_probability(confidence_level: float) -> float:
    """Return ``eps = 1 - confidence_level`` after validating the level.

    Parameters
    ----------
    confidence_level : float
        alpha in the open interval (0, 1), e.g. 0.99.

    Returns
    -------
    float
        Tail probability eps in (0, 1).

    Raises
    ------
    ValueError
        If the level is not a finite number strictly between 0 and 1.
    """
    level = float(confidence_level)
    if not 0.0 < level < 1.0:
        raise ValueError(
            f"confidence_level {confidence_level!r} is not in (0, 1); write 0.99, not 99"
        )
    return 1.0 - level


def kappa(confidence_level: float) -> float:
    """Chebyshev-Cantelli multiplier ``sqrt((1 - eps) / eps)``, ``eps = 1 - alpha``.

    This is the worst-case quantile of a standardized loss over all
    distributions with given mean and variance, not the normal quantile.

    Parameters
    ----------
    confidence_level : float
        alpha in (0, 1).

    Returns
    -------
    float
        kappa(eps) > 0 (e.g. about 9.95 at alpha = 0.99).
    """
    eps = tail_probability(confidence_level)
    return float(np.sqrt((1.0 - eps) / eps))


def gbm_simple_return_moments(
    mu: npt.ArrayLike, cov: npt.ArrayLike, horizon_years: float
) -> tuple[FloatArray, FloatArray]:
    """Exact mean and covariance of simple returns of correlated GBM over ``h``.

    With ``X ~ N((mu - diag(cov)/2) h, cov h)`` and ``R = exp(X) - 1``:
    ``E[R_i] = exp(mu_i h) - 1`` and
    ``Cov(R_i, R_j) = exp((mu_i + mu_j) h) (exp(cov_ij h) - 1)``.

    Parameters
    ----------
    mu : array_like, shape (U,)
        Annualized price drifts.
    cov : array_like, shape (U, U)
        Annualized covariance of log returns.
    horizon_years : float
        Horizon ``h`` in years, > 0.

    Returns
    -------
    mean : ndarray, shape (U,)
        Expected simple returns over the horizon.
    cov : ndarray, shape (U, U)
        Covariance of simple returns over the horizon.
    """
    mu_a = np.asarray(mu, dtype=np.float64)
    cov_a = np.asarray(cov, dtype=np.float64)
    if mu_a.ndim != 1 or cov_a.shape != (mu_a.size, mu_a.size):
        raise ValueError(f"mu must be (U,) and cov (U, U); got {mu_a.shape} and {cov_a.shape}")
    h = float(horizon_years)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"horizon_years must be > 0, got {horizon_years!r}")
    growth = np.exp(mu_a * h)
    mean = growth - 1.0
    covariance = np.outer(growth, growth) * np.expm1(cov_a * h)
    return mean, 0.5 * (covariance + covariance.T)


def instrument_return_moments_from_samples(
    unit_value_today: npt.ArrayLike,
    unit_value_horizon: npt.ArrayLike,
    labels: tuple[str, ...] | None = None,
) -> ReturnMoments:
    """Sample moments of simple returns from simulated horizon values.

    Used for the instruments' moments of WCVaR (as the paper does, from
    simulated end-of-horizon prices) and, with spots, for the underlyings when
    ``moments: sample``. For scenarios produced in blocks, combine
    :meth:`MomentSums.from_values` with :meth:`MomentSums.merge` instead.

    Parameters
    ----------
    unit_value_today : array_like, shape (d,)
        Value per unit today, > 0.
    unit_value_horizon : array_like, shape (n, d)
        Value per unit at the horizon in each scenario, ``n >= 2``.
    labels : tuple of str, optional
        Names of the d assets, in order.

    Returns
    -------
    ReturnMoments
        Sample mean (d,) and covariance (d, d) with divisor ``n - 1``.
    """
    return MomentSums.from_values(unit_value_today, unit_value_horizon).to_moments(labels)
