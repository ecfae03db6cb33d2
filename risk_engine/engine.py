"""What the nightly run asks of an execution engine, and the in-process engine.

:func:`risk_engine.pipeline.nightly_run` decides what is computed and in what order; an
engine only decides where the scenario blocks are simulated and kept. Two engines
implement :class:`Engine`:

- :class:`InProcessEngine` (here): every block in this process, the (N, D) P&L matrix in
  memory. The reference the Spark engine must reproduce bit for bit, and the engine of
  unit tests.
- ``risk_engine.spark.engine.SparkEngine``: blocks fanned out over executors, P&L kept on
  the executors' local disks, only histograms, band losses and sums reach the driver.

Both give the same bits because every figure is a fixed function of ``(seed, block)`` and
sums run in block order, in groups of :data:`risk_engine.attribution.SUM_GROUP` blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.attribution import SUM_GROUP, Request, Tiling, attribute_in_process
from risk_engine.book import ResolvedBook
from risk_engine.simulation import SimulationSpec, simulate_block, smile_of
from risk_engine.tails import TailSummary, summarize_matrix

T = TypeVar("T")


def group_blocks(n_blocks: int, group: int = SUM_GROUP) -> list[range]:
    """The blocks ``0 .. n_blocks - 1`` in consecutive groups of ``group`` (the last shorter)."""
    return [range(g, min(g + group, n_blocks)) for g in range(0, n_blocks, group)]


def fold_group(per_block: Callable[[int], T], merge: Callable[[T, T], T],
               blocks: range) -> T:
    """``per_block`` of each block of ``blocks``, merged left to right in block order."""
    return reduce(merge, (per_block(b) for b in blocks))


class ScenarioBlocks(Protocol):
    """A run's simulated P&L per (scenario, desk), held block by block by an engine."""

    def tail_summary(self, levels: Sequence[float]) -> TailSummary:
        """Exact VaR, ES, standard errors and desk contributions of every desk and the firm."""
        ...

    def attribution(self, book: ResolvedBook, requests: Sequence[Request],
                    levels: Sequence[float], tiling: Tiling | None = None,
                    ) -> tuple[NDArray[np.float64], pd.DataFrame]:
        """Position contributions (R, P) and the block-0 sample statistics.

        See :func:`risk_engine.attribution.attribute_in_process` for the definition;
        ``tiling`` bounds the memory of the revaluation, never the result.
        """
        ...

    def fold(self, per_block: Callable[[int], T], merge: Callable[[T, T], T],
             n_blocks: int) -> T:
        """``per_block`` of blocks ``0 .. n_blocks - 1`` merged in a fixed order.

        Blocks are merged in block order within each group of :func:`group_blocks`, then
        the groups in order, so the result does not depend on where the blocks ran.
        ``per_block`` regenerates what it needs from the block id (scenarios come from
        ``(seed, block)``); it and its results must pickle.
        """
        ...

    def scenario_pnl(self, desks: Sequence[str]) -> pd.DataFrame | None:
        """The audit table ``scenario_pnl`` (one row per block and desk, without run_id).

        An engine that writes the (large) table itself returns ``None``.
        """
        ...

    def release(self) -> None:
        """Free what the blocks hold (memory, files); the object is unusable afterwards."""
        ...


class Engine(Protocol):
    """Runs the Monte Carlo fan-out of a run."""

    def simulate(self, spec: SimulationSpec, levels: Sequence[float]) -> ScenarioBlocks:
        """Draw and revalue every scenario block of ``spec``.

        ``levels`` are the confidence levels whose tails will be asked for (an engine may
        bin the first histogram pass while the blocks are produced).
        """
        ...


class InMemoryBlocks:
    """Every block's P&L in one (N, D) matrix, in scenario order."""

    def __init__(self, spec: SimulationSpec, pnl: NDArray[np.float64]) -> None:
        self.spec = spec
        self.pnl = pnl

    def tail_summary(self, levels: Sequence[float]) -> TailSummary:
        """See :class:`ScenarioBlocks`."""
        return summarize_matrix(self.pnl, self.spec.source.block_size, levels)

    def attribution(self, book: ResolvedBook, requests: Sequence[Request],
                    levels: Sequence[float], tiling: Tiling | None = None,
                    ) -> tuple[NDArray[np.float64], pd.DataFrame]:
        """See :class:`ScenarioBlocks`."""
        return attribute_in_process(book, self.spec.source, requests, levels, self.pnl,
                                    tiling=tiling, smile=smile_of(self.spec.plan))

    def fold(self, per_block: Callable[[int], T], merge: Callable[[T, T], T],
             n_blocks: int) -> T:
        """See :class:`ScenarioBlocks`."""
        return reduce(merge, (fold_group(per_block, merge, blocks)
                              for blocks in group_blocks(n_blocks)))

    def scenario_pnl(self, desks: Sequence[str]) -> pd.DataFrame:
        """See :class:`ScenarioBlocks`: the rows the Spark engine writes, in block order."""
        size = self.spec.source.block_size
        rows = []
        for b in range(self.spec.source.n_blocks):
            first = b * size
            block = self.pnl[first:first + size]
            for d, desk in enumerate(desks):
                rows.append({"block_id": b, "desk": desk, "first_scenario": first,
                             "pnl": np.ascontiguousarray(block[:, d])})
        return pd.DataFrame(rows, columns=["block_id", "desk", "first_scenario", "pnl"])

    def release(self) -> None:
        """See :class:`ScenarioBlocks`."""


class InProcessEngine:
    """Every block simulated in this process; the P&L matrix kept for inspection.

    After :meth:`simulate`, :attr:`pnl` holds the (N, D) desk P&L of the last run.
    """

    def __init__(self) -> None:
        self.pnl: NDArray[np.float64] | None = None

    def simulate(self, spec: SimulationSpec, levels: Sequence[float]) -> InMemoryBlocks:
        """See :class:`Engine`."""
        n_blocks = spec.source.n_blocks
        self.pnl = np.concatenate([simulate_block(spec, b) for b in range(n_blocks)])
        return InMemoryBlocks(spec, self.pnl)
