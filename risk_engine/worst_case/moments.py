"""Moments of simple returns over the horizon, kappa, and covariance factors.

Conventions (DESIGN section 3): log returns of the underlyings over ``h`` years
are normal with mean ``(mu - diag(cov)/2) h`` and covariance ``cov h``; the
worst-case models use *simple* returns ``R = exp(X) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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


@dataclass(frozen=True)
class MomentSums:
    """Mergeable sufficient statistics of simple returns (count, mean, co-moment).

    Lets scenario blocks computed apart (e.g. one per Spark task) be combined
    exactly into sample moments, with the pairwise update of Chan, Golub and
    LeVeque, which stays accurate where raw sums of squares would cancel.

    Attributes
    ----------
    count : int
        Number of scenarios.
    mean : ndarray, shape (d,)
        Mean simple return.
    comoment : ndarray, shape (d, d)
        Sum over scenarios of ``(R - mean)(R - mean)'``.
    """

    count: int
    mean: FloatArray
    comoment: FloatArray

    @classmethod
    def from_values(cls, value_today: npt.ArrayLike, value_horizon: npt.ArrayLike) -> MomentSums:
        """Statistics of ``value_horizon / value_today - 1`` for one block.

        Parameters
        ----------
        value_today : array_like, shape (d,)
            Value per unit today (spot or premium), > 0.
        value_horizon : array_like, shape (n, d)
            Value per unit at the horizon in each of ``n`` scenarios.
        """
        today = np.asarray(value_today, dtype=np.float64)
        later = np.asarray(value_horizon, dtype=np.float64)
        if today.ndim != 1 or later.ndim != 2 or later.shape[1] != today.size:
            raise ValueError(
                "value_today must be (d,) and value_horizon (n, d); "
                f"got {today.shape}, {later.shape}"
            )
        if not np.all(np.isfinite(today) & (today > 0)):
            raise ValueError(
                "value_today must be finite and > 0 (simple returns are undefined otherwise)"
            )
        if not np.all(np.isfinite(later)):
            raise ValueError("value_horizon contains non-finite values")
        return cls.from_returns(later / today - 1.0)

    @classmethod
    def from_returns(cls, returns: npt.ArrayLike) -> MomentSums:
        """Statistics of simple returns given directly, shape (n, d).

        Useful when the revaluation yields P&L per instrument: pass
        ``pnl_per_unit / unit_value_today``.
        """
        r = np.asarray(returns, dtype=np.float64)
        if r.ndim != 2:
            raise ValueError(f"returns must be (n, d), got shape {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ValueError("returns contain non-finite values")
        mean = r.mean(axis=0) if r.shape[0] else np.zeros(r.shape[1])
        centred = r - mean
        return cls(int(r.shape[0]), mean, centred.T @ centred)

    def merge(self, other: MomentSums) -> MomentSums:
        """Statistics of the union of two disjoint scenario sets."""
        if self.mean.shape != other.mean.shape:
            raise ValueError("MomentSums.merge: dimensions differ")
        n = self.count + other.count
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        comoment = (
            self.comoment + other.comoment + np.outer(delta, delta) * (self.count * other.count / n)
        )
        return MomentSums(n, mean, comoment)

    def to_moments(self, labels: tuple[str, ...] | None = None) -> ReturnMoments:
        """Sample mean and unbiased sample covariance (divisor ``n - 1``)."""
        if self.count < 2:
            raise ValueError(f"need at least 2 scenarios for a covariance, have {self.count}")
        return ReturnMoments(self.mean, self.comoment / (self.count - 1), labels, self.count)


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
