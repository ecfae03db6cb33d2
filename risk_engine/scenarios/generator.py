"""Seeded scenario generation: block ``b`` draws from a stream keyed by ``(seed, b)``.

The stream is numpy's Philox bit generator seeded by ``SeedSequence([seed, b])``, so a
block's scenarios depend only on the root seed and the block id: not on partitions,
executors, ordering or task retries. There is no global random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from risk_engine.scenarios.factors import FactorLayout
from risk_engine.scenarios.model import ScenarioModel


def block_rng(seed: int, block_id: int) -> np.random.Generator:
    """The generator of scenario block ``block_id`` under root ``seed``."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([int(seed), int(block_id)])))


def _normals(rng: np.random.Generator, n: int, k: int, antithetic: bool) -> NDArray[np.float64]:
    """``n`` rows of ``k`` standard normals; with ``antithetic`` the second half negated."""
    if antithetic:
        if n % 2:
            raise ValueError(f"antithetic sampling needs an even scenario count, got {n}")
        half = rng.standard_normal((n // 2, k))
        return np.concatenate([half, -half])
    return rng.standard_normal((n, k))


def _combine(mean: NDArray[np.float64], loading: NDArray[np.float64],
             z: NDArray[np.float64]) -> NDArray[np.float64]:
    """``mean + z @ loading`` as a fixed-order sum over the rows of ``loading``.

    Not a BLAS product: BLAS rounding depends on its thread count, which differs between
    driver and executors.
    """
    n, m = z.shape[0], loading.shape[1]
    x = np.empty((n, m))
    x[:] = mean
    rows = 512  # cache-sized row blocks; the order of the sum over k is unchanged
    tmp = np.empty((min(rows, n), m))
    for a in range(0, n, rows):
        b = min(a + rows, n)
        xa, t = x[a:b], tmp[: b - a]
        for k in range(loading.shape[0]):
            np.multiply(z[a:b, k:k + 1], loading[k], out=t)
            xa += t
    return x


Z_FRACTION_BITS = 16
"""The vol and rate columns use normals rounded to multiples of ``2**-16`` (see
:func:`_exact_product`)."""
Z_INTEGER_BITS = 22
"""Rounded normals are below ``2**22`` in units of ``2**-16`` (``|z| < 64``)."""
_MIN_LOADING_BITS = 16


def _exact_product(z: NDArray[np.float64], loading: NDArray[np.float64]) -> NDArray[np.float64]:
    """``z @ loading`` in exact integer arithmetic on rounded inputs: the same bits anywhere.

    ``z`` is rounded to multiples of ``2**-16`` and ``loading`` to ``2**-b`` of its largest
    entry, ``b = 52 - 22 - ceil(log2 K)`` for ``K`` rows (22 bits at ``K = 201``), so every
    product and partial sum of the matrix product is an integer below ``2**52``: exact in
    float64 whatever the summation order, so BLAS (any library, thread count or CPU) gives
    the same bits as a plain loop. The rounding moves a draw by at most ``1e-5`` of a
    standard deviation and the covariance by about ``2**-b`` relative. Falls back to the
    fixed-order sum (:func:`_combine`) if ``b`` would be below 16 or a normal beyond 64.
    """
    k, m = loading.shape
    scale = float(np.max(np.abs(loading))) if loading.size else 0.0
    if scale == 0.0 or z.shape[0] == 0:
        return np.zeros((z.shape[0], m))
    bits = 52 - Z_INTEGER_BITS - int(np.ceil(np.log2(max(k, 2))))
    zq = np.rint(np.ldexp(z, Z_FRACTION_BITS))
    if bits < _MIN_LOADING_BITS or float(np.max(np.abs(zq))) >= 2.0**Z_INTEGER_BITS:
        return _combine(np.zeros(m), loading, z)
    lq = np.rint(np.ldexp(loading / scale, bits))
    out: NDArray[np.float64] = zq @ lq
    out *= scale * 2.0 ** -(bits + Z_FRACTION_BITS)
    return out


def draw_log_returns(
    model: ScenarioModel,
    horizon_years: float,
    n: int,
    rng: np.random.Generator,
    *,
    antithetic: bool = False,
) -> NDArray[np.float64]:
    """Draw ``n`` joint scenarios of the block's columns over the horizon.

    Parameters
    ----------
    model
        Annual drift and covariance (columns in ``model.layout`` order).
    horizon_years
        Horizon ``h`` in years.
    n
        Number of scenarios (even with ``antithetic``).
    rng
        The block's generator (see :func:`block_rng`).
    antithetic
        If true, the second half of the scenarios uses the negated normals of the first half.

    Returns
    -------
    ndarray, shape (n, W)
        ``W = model.layout.width``. Log returns ``(mu - sigma^2/2) h + sqrt(h) F z`` with
        ``F F' = Sigma`` in the first ``U`` columns, drawn from the stream's first
        ``n x U`` normals exactly as with vol and rate factors off (same bits); then the
        vol and rate columns, mean 0, from those normals and the stream's next
        ``n x (W - U)`` normals (``model.factor`` is block lower triangular), as an exact
        product of rounded normals and loadings (:func:`_exact_product`).
    """
    u = len(model.underlyings)
    z = _normals(rng, n, u, antithetic)
    spot = model.factor[:u, :u] if not model.layout.spot_only else model.factor
    x = _combine(model.log_return_mean(horizon_years), spot.T * np.sqrt(horizon_years), z)
    if model.layout.spot_only:
        return x
    w = model.layout.width
    z_all = np.concatenate([z, _normals(rng, n, w - u, antithetic)], axis=1)
    loading = model.factor[u:, :].T * np.sqrt(horizon_years)  # (W, W - U)
    return np.concatenate([x, _exact_product(z_all, loading)], axis=1)


@dataclass(frozen=True)
class ScenarioSource:
    """How the Monte Carlo stage draws its scenarios, so any block can be regenerated.

    Block ``b`` holds scenarios ``b * block_size`` up to ``min((b + 1) * block_size, N)``.
    """

    model: ScenarioModel
    horizon_years: float
    seed: int
    antithetic: bool
    block_size: int
    n_scenarios: int

    @property
    def layout(self) -> FactorLayout:
        """The column layout of every block (the model's)."""
        return self.model.layout

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return -(-self.n_scenarios // self.block_size)

    def block_length(self, block_id: int) -> int:
        """Scenarios in block ``block_id``."""
        first = block_id * self.block_size
        return max(0, min(self.block_size, self.n_scenarios - first))

    def block(self, block_id: int) -> NDArray[np.float64]:
        """Scenarios of block ``block_id``, shape (n_b, W) in :attr:`layout` order.

        With vol and rate factors off ``W == U``: the log returns, as always.
        """
        return draw_log_returns(self.model, self.horizon_years, self.block_length(block_id),
                                block_rng(self.seed, block_id), antithetic=self.antithetic)
