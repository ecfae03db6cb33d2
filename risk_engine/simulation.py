"""One scenario block: what it needs, and how it is drawn and revalued.

The unit of work of the Monte Carlo fan-out. Block ``b`` draws its scenarios from a
generator keyed by ``(seed, b)`` and revalues the book on them, so its P&L is the same
whichever engine, executor or task attempt computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from risk_engine.revaluation import RevaluationPlan, desk_pnl
from risk_engine.revaluation_grid import GridPlan
from risk_engine.scenarios import ScenarioSource


@dataclass(frozen=True)
class SimulationSpec:
    """Everything a scenario block needs; small and picklable, shipped to executors once."""

    plan: RevaluationPlan | GridPlan
    source: ScenarioSource
    chunk_size: int


def simulate_block(spec: SimulationSpec, block_id: int) -> NDArray[np.float64]:
    """Draw block ``block_id``'s scenarios from ``(seed, block_id)`` and revalue the book.

    Returns
    -------
    ndarray, shape (n_b, D)
        P&L per (scenario, desk) of the block's scenarios, in scenario order.
    """
    return desk_pnl(spec.plan, spec.source.block(block_id), spec.chunk_size)
