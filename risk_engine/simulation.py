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


def factor_classes_of(plan: RevaluationPlan | GridPlan) -> tuple[str, ...]:
    """The factor classes a plan's scenario blocks carry: spot, then vol and rate if on."""
    if not isinstance(plan, RevaluationPlan):
        return ("spot",)
    layout = plan.layout
    return ("spot",) + (("vol",) if layout.n_vol_buckets else ()) \
        + (("rate",) if layout.rate_factor else ())


def smile_of(plan: RevaluationPlan | GridPlan) -> str:
    """The smile dynamics a plan revalues with (``sticky_strike`` when no factor path)."""
    factors = plan.factors if isinstance(plan, RevaluationPlan) else None
    return factors.smile if factors is not None else "sticky_strike"


def simulate_block_by_class(spec: SimulationSpec, block_id: int, classes: tuple[str, ...]
                            ) -> list[NDArray[np.float64]]:
    """Block ``block_id``'s P&L with only each of ``classes`` moving, one (n_b, D) per class.

    The scenarios are drawn once from ``(seed, block_id)``, as :func:`simulate_block` draws
    them; for each class the columns of the other classes are held at zero (today's
    spot, implied vols and rates).

    Raises
    ------
    TypeError
        If the plan is not a full revaluation plan (only it revalues factor columns).
    """
    plan = spec.plan
    if not isinstance(plan, RevaluationPlan):
        raise TypeError("P&L by factor class needs the full revaluation plan")
    x = spec.source.block(block_id)
    return [desk_pnl(plan.moving((c,)), x, spec.chunk_size) for c in classes]
