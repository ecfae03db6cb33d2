"""Validation and factorization of the moments (mu, Sigma) shared by the portfolio modules."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from risk_engine.covariance import cov_factor
from risk_engine.errors import DataError
from risk_engine.types import FloatArray

#: Relative tolerance on asymmetry ``max|Sigma - Sigma'| / max|Sigma|``.
SYMMETRY_RTOL = 1e-10
#: Eigenvalues down to ``-PSD_RTOL * max eigenvalue`` are rounding noise and clipped to 0.
PSD_RTOL = 1e-10


_Memo = OrderedDict[tuple[tuple[int, ...], bytes], tuple[FloatArray, FloatArray, float]]
#: Per thread, inside :func:`memoized_moments`: ``memo``, the covariances validated lately,
#: key ``(shape, bytes)`` -> (symmetrized sigma, factor, smallest eigenvalue); absent or
#: None outside (off).
_local = threading.local()
_MEMO_SIZE = 4


def _memo() -> _Memo | None:
    memo: _Memo | None = getattr(_local, "memo", None)
    return memo


@contextlib.contextmanager
def memoized_moments() -> Iterator[None]:
    """Within the block, a covariance given again is validated and factored once.

    A desk's covariance goes through :func:`validate_moments` in each of its portfolio
    problems (min-variance, frontier, current book, risk parity and its decomposition);
    inside the block the checks, the symmetrized copy and the factor of the last few are
    kept (key: the exact bytes of the input) and copied out again: the same arrays,
    values and memory layout, as validating afresh. Forgotten when the block ends; other
    threads are not affected.
    """
    outer = _memo()
    _local.memo = OrderedDict()
    try:
        yield
    finally:
        _local.memo = outer


@dataclass(frozen=True)
class Moments:
    """Validated annualized moments of the underlyings' returns.

    Attributes
    ----------
    mu : ndarray, shape (U,)
        Annualized mean returns (fraction per year).
    sigma : ndarray, shape (U,U)
        Annualized covariance matrix, symmetric positive semidefinite (symmetrized copy).
    factor : ndarray, shape (U,U)
        ``F`` with ``F.T @ F == sigma``, the transpose of
        :func:`risk_engine.covariance.cov_factor` (eigen method, so a singular ``sigma`` is
        allowed); ``||F w||^2 = w' Sigma w``.
    min_eigenvalue : float
        Smallest eigenvalue of ``sigma`` after clipping rounding noise (0 if singular).
    """

    mu: FloatArray
    sigma: FloatArray
    factor: FloatArray
    min_eigenvalue: float

    @property
    def n_assets(self) -> int:
        """Number of underlyings U."""
        return int(self.mu.shape[0])


def validate_moments(mu: ArrayLike | None, sigma: ArrayLike) -> Moments:
    """Check shapes, finiteness, symmetry and positive semidefiniteness of the moments.

    Parameters
    ----------
    mu : array_like, shape (U,), or None
        Annualized mean returns. ``None`` means zeros (only the covariance is needed).
    sigma : array_like, shape (U,U)
        Annualized covariance matrix.

    Returns
    -------
    Moments
        Copies of the inputs (never views of them) and a factor of ``sigma``.

    Raises
    ------
    DataError
        Empty, non-finite, non-square, asymmetric or indefinite input, naming the problem.
    """
    s = np.array(sigma, dtype=np.float64, copy=True)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise DataError(f"covariance must be a square (U,U) matrix, got shape {s.shape}")
    n = s.shape[0]
    if n == 0:
        raise DataError("covariance is empty: the desk has no underlyings")
    m = np.zeros(n) if mu is None else np.array(mu, dtype=np.float64, copy=True)
    if m.shape != (n,):
        raise DataError(
            f"mean vector must have shape ({n},) to match the covariance, got {m.shape}"
        )
    if not np.all(np.isfinite(m)):
        bad = np.flatnonzero(~np.isfinite(m)).tolist()
        raise DataError(f"mean vector has non-finite entries at positions {bad}")
    # Inside memoized_moments: the same sigma's checks and factor are computed once and
    # copied out (same values, same memory layout) for every caller.
    memo = _memo()
    key = (s.shape, s.tobytes()) if memo is not None else None
    hit = None
    if memo is not None and key is not None:
        hit = memo.get(key)
        if hit is not None:
            memo.move_to_end(key)
    if hit is not None:
        return Moments(mu=m, sigma=hit[0].copy(order="K"), factor=hit[1].copy(order="K"),
                       min_eigenvalue=hit[2])
    if not np.all(np.isfinite(s)):
        bad = np.argwhere(~np.isfinite(s))[:5].tolist()
        raise DataError(f"covariance has non-finite entries, e.g. at {bad}")
    scale = float(np.max(np.abs(s)))
    if scale > 0 and float(np.max(np.abs(s - s.T))) > SYMMETRY_RTOL * scale:
        raise DataError(
            "covariance is not symmetric (max |Sigma - Sigma'| = "
            f"{float(np.max(np.abs(s - s.T))):.3e}); symmetrize it upstream"
        )
    s = 0.5 * (s + s.T)
    eigval = np.linalg.eigh(s)[0]
    top = max(float(eigval[-1]), 0.0)
    if float(eigval[0]) < -PSD_RTOL * max(top, 1e-300):
        raise DataError(
            f"covariance is not positive semidefinite (smallest eigenvalue {eigval[0]:.3e}, "
            f"largest {eigval[-1]:.3e})"
        )
    factor = cov_factor(s).T
    min_eig = float(np.clip(eigval, 0.0, None)[0])
    if memo is not None and key is not None:
        memo[key] = (s.copy(order="K"), factor.copy(order="K"), min_eig)
        while len(memo) > _MEMO_SIZE:
            memo.popitem(last=False)
    return Moments(mu=m, sigma=s, factor=factor, min_eigenvalue=min_eig)


def portfolio_return(weights: FloatArray, mu: FloatArray) -> float:
    """Return the expected return ``mu' w`` (annualized fraction)."""
    return float(mu @ weights)


def portfolio_volatility(weights: FloatArray, sigma: FloatArray) -> float:
    """Return the volatility ``sqrt(w' Sigma w)``; tiny negative rounding is clipped to 0."""
    return float(np.sqrt(max(float(weights @ sigma @ weights), 0.0)))
