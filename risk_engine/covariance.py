"""The one covariance factorization of the core.

Convention: :func:`cov_factor` returns ``F`` with ``F @ F.T == cov`` (to rounding), so
correlated draws are ``z @ F.T`` for standard normal rows ``z``, and ``||F.T @ x||`` is
``sqrt(x' cov x)``. Callers that want the transposed form (``G.T @ G == cov``, e.g. for
``||G x||`` in a cvxpy norm) take ``cov_factor(cov).T``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from risk_engine.types import FloatArray

FactorMethod = Literal["eigen", "cholesky"]

#: Cholesky is accepted when its smallest diagonal entry exceeds this fraction of its largest.
CHOLESKY_RTOL = 1e-10


def cov_factor(cov: npt.ArrayLike, *, method: FactorMethod = "eigen") -> FloatArray:
    """Factor ``F`` with ``F @ F.T == cov`` for a symmetric positive semidefinite ``cov``.

    The symmetric part ``(cov + cov') / 2`` is factored (the same matrix when ``cov`` is
    exactly symmetric, as every caller's is).

    Parameters
    ----------
    cov : array_like, shape (d, d)
        Symmetric positive semidefinite matrix.
    method : {"eigen", "cholesky"}
        ``"eigen"``: ``F = V diag(sqrt(max(lambda, 0)))`` from the eigendecomposition
        ``cov = V diag(lambda) V'``; square (d, d), negative rounding eigenvalues clipped to 0,
        so a singular ``cov`` is allowed. ``"cholesky"``: the lower-triangular Cholesky
        factor when ``cov`` is numerically positive definite (smallest diagonal entry of the
        factor above :data:`CHOLESKY_RTOL` times its largest); otherwise the eigen-factor
        restricted to the numerical range, shape (d, k) with k the numerical rank
        (eigenvalues above ``d * 10 * machine epsilon`` times the largest).

    Returns
    -------
    ndarray, shape (d, d) or (d, k)
        ``F`` with ``F @ F.T == cov`` to rounding.

    Raises
    ------
    ValueError
        Unknown ``method`` or a non-square ``cov``.
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov_factor: need a square matrix, got shape {c.shape}")
    d = c.shape[0]
    c = 0.5 * (c + c.T)
    if method == "eigen":
        values, vectors = np.linalg.eigh(c)
        return vectors * np.sqrt(np.clip(values, 0.0, None))
    if method != "cholesky":
        raise ValueError(f"cov_factor: method={method!r} must be 'eigen' or 'cholesky'")
    if d == 0:
        return np.zeros((0, 0))
    try:
        lower = np.asarray(np.linalg.cholesky(c), dtype=np.float64)
        diag = np.abs(np.diag(lower))
        if diag.min() > CHOLESKY_RTOL * max(diag.max(), 1e-300):
            return lower
    except np.linalg.LinAlgError:
        pass
    values, vectors = np.linalg.eigh(c)
    keep = values > max(values.max(), 0.0) * d * np.finfo(float).eps * 10
    return vectors[:, keep] * np.sqrt(values[keep])
