"""Seeded scenario generation: block ``b`` draws from a stream keyed by ``(seed, b)``.

The stream is numpy's Philox bit generator seeded by ``SeedSequence([seed, b])``, so a
block's scenarios depend only on the root seed and the block id: not on partitions,
executors, ordering or task retries. There is no global random state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from risk_engine.scenarios.model import ScenarioModel


def block_rng(seed: int, block_id: int) -> np.random.Generator:
    """The generator of scenario block ``block_id`` under root ``seed``."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([int(seed), int(block_id)])))


def draw_log_returns(
    model: ScenarioModel,
    horizon_years: float,
    n: int,
    rng: np.random.Generator,
    *,
    antithetic: bool = False,
) -> NDArray[np.float64]:
    """Draw ``n`` joint log-return scenarios of the underlyings over the horizon.

    Parameters
    ----------
    model
        Annual drift and covariance.
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
    ndarray, shape (n, U)
        Log returns ``(mu - sigma^2/2) h + sqrt(h) F z`` with ``F F' = Sigma``.
    """
    u = len(model.underlyings)
    if antithetic:
        if n % 2:
            raise ValueError(f"antithetic sampling needs an even scenario count, got {n}")
        half = rng.standard_normal((n // 2, u))
        z = np.concatenate([half, -half])
    else:
        z = rng.standard_normal((n, u))
    # x = mean + z F' sqrt(h), as a fixed-order sum over factors rather than a BLAS product:
    # BLAS rounding depends on its thread count, which differs between driver and executors.
    loading = model.factor.T * np.sqrt(horizon_years)  # (K, U)
    x = np.empty((n, u))
    x[:] = model.log_return_mean(horizon_years)
    rows = 512  # cache-sized row blocks; the order of the sum over k is unchanged
    tmp = np.empty((min(rows, n), u))
    for a in range(0, n, rows):
        b = min(a + rows, n)
        xa, t = x[a:b], tmp[: b - a]
        for k in range(loading.shape[0]):
            np.multiply(z[a:b, k:k + 1], loading[k], out=t)
            xa += t
    return x


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
    def n_blocks(self) -> int:
        """Number of blocks."""
        return -(-self.n_scenarios // self.block_size)

    def block_length(self, block_id: int) -> int:
        """Scenarios in block ``block_id``."""
        first = block_id * self.block_size
        return max(0, min(self.block_size, self.n_scenarios - first))

    def block(self, block_id: int) -> NDArray[np.float64]:
        """Log returns of block ``block_id``, shape (n_b, U)."""
        return draw_log_returns(self.model, self.horizon_years, self.block_length(block_id),
                                block_rng(self.seed, block_id), antithetic=self.antithetic)
