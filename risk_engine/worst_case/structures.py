"""Per-desk model data, resolved once before the confidence-level loop.

Each worst-case model needs a different linearization of the desk:

* WCVaR: instrument return moments (:class:`LinearStructure`);
* WCPVaR: the piecewise-linear payoff map of long options expiring at the
  horizon (:class:`PolyhedralStructure`);
* WCQVaR: delta-gamma-theta greeks in return space (:class:`QuadraticStructure`).

All coefficients are per currency unit of exposure, so a book's figures are
linear maps of its exposure vector ``x`` (m,) and an allocation ``w`` of net
capital ``V`` is the book ``x = V w``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from risk_engine.covariance import cov_factor
from risk_engine.types import CALL, EQUITY, FloatArray, IntArray

from .containers import DeskInstruments, ReturnMoments

EXPIRY_TOLERANCE_YEARS: float = 1e-8
"""An option with ``tau_after_horizon`` at most this is treated as expiring at the horizon."""


class NotApplicableError(ValueError):
    """A model cannot be applied to a desk; ``str(exc)`` is the reason."""


def _freeze(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)


def check_desk_values(desk: DeskInstruments) -> None:
    """Raise :class:`NotApplicableError` if the desk's values preclude any model.

    Simple returns and capital weights need a finite, strictly positive value
    per unit for every instrument, and quantities must be finite.
    """
    bad_value = ~(np.isfinite(desk.unit_value) & (desk.unit_value > 0))
    if bad_value.any():
        ids = [desk.instrument_ids[j] for j in np.flatnonzero(bad_value)[:5]]
        raise NotApplicableError(f"unit_value not finite and > 0 for {ids} (returns undefined)")
    bad_quantity = ~np.isfinite(desk.quantity)
    if bad_quantity.any():
        ids = [desk.instrument_ids[j] for j in np.flatnonzero(bad_quantity)[:5]]
        raise NotApplicableError(f"quantity not finite for {ids}")


def _check_labels(moments: ReturnMoments, expected: tuple[str, ...], what: str, desk: str) -> None:
    if moments.dim != len(expected):
        raise ValueError(
            f"desk {desk!r}: {what} moments have {moments.dim} assets, desk has {len(expected)}"
        )
    if moments.labels is not None and moments.labels != expected:
        raise ValueError(f"desk {desk!r}: {what} moment labels do not match the desk's order")


@dataclass(frozen=True)
class LinearStructure:
    """WCVaR data: moments of every instrument's simple return.

    Attributes
    ----------
    mean : ndarray, shape (m,)
        Expected instrument returns over the horizon.
    factor : ndarray, shape (k, m)
        ``factor.T @ factor`` is the instrument return covariance.
    """

    mean: FloatArray
    factor: FloatArray


def linear_structure(desk: DeskInstruments, instrument_moments: ReturnMoments) -> LinearStructure:
    """Resolve WCVaR data for a desk.

    Parameters
    ----------
    desk : DeskInstruments
        The desk (m instruments).
    instrument_moments : ReturnMoments
        Moments of the m instruments' simple returns, in ``desk.instrument_ids``
        order (labels checked when present).

    Raises
    ------
    ValueError
        On a dimension or label mismatch (a wiring error, not a desk condition).
    """
    _check_labels(instrument_moments, desk.instrument_ids, "instrument", desk.desk)
    mean = instrument_moments.mean.copy()
    factor = np.ascontiguousarray(cov_factor(instrument_moments.cov, method="cholesky").T)
    _freeze(mean, factor)
    return LinearStructure(mean, factor)


@dataclass(frozen=True)
class PolyhedralStructure:
    """WCPVaR data: underlyings' moments and the options' payoff map.

    An option with exposure ``x_j`` on underlying ``i`` pays, per the paper,
    ``x_j max(-1, a_j + b_j' xi - 1)`` with ``a_j = moneyness_j * leverage_j``
    and ``b_j = sign_j * leverage_j * e_i``; this is written here with
    ``moneyness = sign (s_i - K) / s_i`` and ``leverage = s_i / premium`` so
    the hedge variables are notionals of order ``quantity * spot``.

    Attributes
    ----------
    mean : ndarray, shape (U,)
        Expected simple returns of the underlyings.
    factor : ndarray, shape (k, U)
        Factor of their covariance.
    equity_loading : ndarray, shape (U, m)
        1 at (underlying, instrument) for equities, 0 elsewhere.
    option_columns : ndarray of int, shape (p,)
        Positions of the options among the m instruments.
    option_underlying : ndarray of int, shape (p,)
        Underlying index of each option.
    option_sign : ndarray, shape (p,)
        +1 for calls, -1 for puts.
    option_moneyness : ndarray, shape (p,)
        ``sign (s - K) / s``.
    option_leverage : ndarray, shape (p,)
        ``s / premium`` (> 0).
    """

    mean: FloatArray
    factor: FloatArray
    equity_loading: FloatArray
    option_columns: IntArray
    option_underlying: IntArray
    option_sign: FloatArray
    option_moneyness: FloatArray
    option_leverage: FloatArray

    @property
    def n_options(self) -> int:
        """Number of options p."""
        return int(self.option_columns.size)

    def paper_coefficients(self) -> tuple[FloatArray, FloatArray]:
        """Return the paper's ``a`` (p,) and ``B`` (p, U) of ``max(-1, a + B xi - 1)``."""
        a = self.option_moneyness * self.option_leverage
        b = np.zeros((self.n_options, self.mean.size))
        b[np.arange(self.n_options), self.option_underlying] = (
            self.option_sign * self.option_leverage
        )
        return a, b


def polyhedral_structure(
    desk: DeskInstruments, underlying_moments: ReturnMoments
) -> PolyhedralStructure:
    """Resolve WCPVaR data for a desk.

    Raises
    ------
    NotApplicableError
        If any option is held short or lives beyond the horizon (the
        piecewise-linear payoff model needs long options expiring at or before
        the horizon; an earlier expiry is taken at intrinsic value, as the
        engine's revaluation does), or an option strike is not positive.
    ValueError
        On a dimension or label mismatch of the moments.
    """
    _check_labels(underlying_moments, desk.underlyings, "underlying", desk.desk)
    check_desk_values(desk)
    options = np.flatnonzero(desk.is_option)
    short = options[desk.quantity[options] < 0]
    if short.size:
        ids = [desk.instrument_ids[j] for j in short[:5]]
        raise NotApplicableError(f"short option(s) {ids}: WCPVaR needs long options")
    tau = desk.tau_after_horizon[options]
    alive = options[~(tau <= EXPIRY_TOLERANCE_YEARS)]
    if alive.size:
        ids = [desk.instrument_ids[j] for j in alive[:5]]
        raise NotApplicableError(
            f"option(s) {ids} expire after the horizon: WCPVaR needs expiry at the horizon"
        )
    strikes = desk.strike[options]
    if not np.all(np.isfinite(strikes) & (strikes > 0)):
        raise NotApplicableError("option strike not finite and > 0")
    n_u, m = desk.n_underlyings, desk.n_instruments
    equities = np.flatnonzero(desk.kind == EQUITY)
    loading = np.zeros((n_u, m))
    loading[desk.underlying_index[equities], equities] = 1.0
    underlying = desk.underlying_index[options].copy()
    spot = desk.spots[underlying]
    sign = np.where(desk.kind[options] == CALL, 1.0, -1.0)
    moneyness = sign * (spot - strikes) / spot
    leverage = spot / desk.unit_value[options]
    mean = underlying_moments.mean.copy()
    factor = np.ascontiguousarray(cov_factor(underlying_moments.cov, method="cholesky").T)
    columns = options.astype(np.int64)
    _freeze(mean, factor, loading, columns, underlying, sign, moneyness, leverage)
    return PolyhedralStructure(
        mean, factor, loading, columns, underlying, sign, moneyness, leverage
    )


@dataclass(frozen=True)
class QuadraticStructure:
    """WCQVaR data: delta-gamma-theta P&L per unit of exposure, in return space.

    For exposures ``x`` (m,) the horizon P&L in currency is approximated by
    ``theta_h @ x + (delta @ x)' xi + 1/2 xi' diag(gamma @ x) xi`` where ``xi``
    (U,) are the underlyings' simple returns.

    Attributes
    ----------
    mean : ndarray, shape (U,)
        Expected simple returns of the underlyings.
    factor : ndarray, shape (k, U)
        Factor of their covariance.
    delta : ndarray, shape (U, m)
        ``dV/dS * s / v`` per instrument (1 for equities).
    gamma : ndarray, shape (U, m)
        ``d2V/dS2 * s**2 / v`` per instrument (0 for equities).
    theta_h : ndarray, shape (m,)
        ``dV/dt * h / v`` per instrument (0 for equities).
    notes : tuple of str
        Caveats to carry into the output message.
    """

    mean: FloatArray
    factor: FloatArray
    delta: FloatArray
    gamma: FloatArray
    theta_h: FloatArray
    notes: tuple[str, ...] = ()

    def greeks(self, exposures: npt.ArrayLike) -> tuple[FloatArray, FloatArray, float]:
        """Book greeks in return space: Delta (U,), diagonal of Gamma (U,), theta*h."""
        x = np.asarray(exposures, dtype=np.float64)
        return self.delta @ x, self.gamma @ x, float(self.theta_h @ x)


def quadratic_structure(
    desk: DeskInstruments, underlying_moments: ReturnMoments, horizon_years: float
) -> QuadraticStructure:
    """Resolve WCQVaR data for a desk (shorts and any maturity allowed).

    Raises
    ------
    NotApplicableError
        If an option's greeks are not finite.
    ValueError
        On a dimension or label mismatch of the moments, or a bad horizon.
    """
    _check_labels(underlying_moments, desk.underlyings, "underlying", desk.desk)
    check_desk_values(desk)
    h = float(horizon_years)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"horizon_years must be > 0, got {horizon_years!r}")
    options = desk.is_option
    for name in ("delta", "gamma", "theta"):
        bad = options & ~np.isfinite(getattr(desk, name))
        if bad.any():
            ids = [desk.instrument_ids[j] for j in np.flatnonzero(bad)[:5]]
            raise NotApplicableError(f"{name} not finite for option(s) {ids}")
    n_u, m = desk.n_underlyings, desk.n_instruments
    cols = np.arange(m)
    rows = desk.underlying_index
    spot = desk.spots[rows]
    value = desk.unit_value
    delta = np.zeros((n_u, m))
    gamma = np.zeros((n_u, m))
    delta[rows, cols] = np.where(options, desk.delta * spot / value, 1.0)
    gamma[rows, cols] = np.where(options, desk.gamma * spot**2 / value, 0.0)
    theta_h = np.where(options, desk.theta * h / value, 0.0)
    notes: list[str] = []
    expiring = options & (desk.tau_after_horizon <= EXPIRY_TOLERANCE_YEARS)
    if expiring.any():
        notes.append(
            f"{int(expiring.sum())} option(s) expire at or before the horizon: "
            "delta-gamma is a poor approximation across expiry"
        )
    mean = underlying_moments.mean.copy()
    factor = np.ascontiguousarray(cov_factor(underlying_moments.cov, method="cholesky").T)
    _freeze(mean, factor, delta, gamma, theta_h)
    return QuadraticStructure(mean, factor, delta, gamma, theta_h, tuple(notes))


def return_space_greeks(
    desk: DeskInstruments,
) -> tuple[FloatArray, FloatArray, float]:
    """Desk greeks with respect to the underlyings' simple returns.

    Returns
    -------
    delta : ndarray, shape (U,)
        ``sum quantity * delta * spot`` (equities: ``quantity * spot``),
        currency per unit of return.
    gamma : ndarray, shape (U,)
        ``sum quantity * gamma * spot**2``, the diagonal of Gamma.
    theta : float
        ``sum quantity * theta``, currency per year.
    """
    options = desk.is_option
    spot = desk.spots[desk.underlying_index]
    q = desk.quantity
    per_delta = q * np.where(options, desk.delta, 1.0) * spot
    per_gamma = np.where(options, q * desk.gamma * spot**2, 0.0)
    n_u = desk.n_underlyings
    delta = np.bincount(desk.underlying_index, weights=per_delta, minlength=n_u).astype(np.float64)
    gamma = np.bincount(desk.underlying_index, weights=per_gamma, minlength=n_u).astype(np.float64)
    theta = float(np.sum(np.where(options, q * desk.theta, 0.0)))
    return delta, gamma, theta


def delta_gamma_pnl(
    desk: DeskInstruments, returns: npt.ArrayLike, horizon_years: float
) -> FloatArray:
    """Delta-gamma-theta P&L of the desk for given underlying returns.

    Parameters
    ----------
    desk : DeskInstruments
        The desk.
    returns : array_like, shape (n, U)
        Simple returns of the underlyings over the horizon, one row per scenario.
    horizon_years : float
        Horizon h in years (theta accrues over h).

    Returns
    -------
    ndarray, shape (n,)
        ``theta h + Delta' xi + 1/2 sum_i Gamma_ii xi_i**2`` in currency.
    """
    xi = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    delta, gamma, theta = return_space_greeks(desk)
    return theta * float(horizon_years) + xi @ delta + 0.5 * (xi**2) @ gamma
