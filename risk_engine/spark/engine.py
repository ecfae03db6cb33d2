"""The Spark engine of the nightly run: scenario blocks fanned out over executors.

Implements :class:`risk_engine.engine.Engine` with the stages of
:mod:`risk_engine.spark.stages`; the run's order is :func:`risk_engine.pipeline.nightly_run`.
"""

from __future__ import annotations

import datetime as dt
import logging
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from risk_engine import schemas
from risk_engine.attribution import Request, Tiling
from risk_engine.book import ResolvedBook
from risk_engine.config import TestingConfig
from risk_engine.engine import fold_group, group_blocks
from risk_engine.simulation import SimulationSpec, smile_of
from risk_engine.spark import stages
from risk_engine.tails import TailSummary

log = logging.getLogger("risk_engine.spark.engine")
T = TypeVar("T")


@dataclass(frozen=True)
class _Audit:
    """Where and as which run the audit table ``scenario_pnl`` is written."""

    root: str
    run_id: str
    as_of: dt.date


class SparkBlocks:
    """The blocks of one fan-out, on the executors (see :class:`stages.Blocks`)."""

    def __init__(self, spark: SparkSession, blocks: stages.Blocks, audit: _Audit) -> None:
        self.spark, self.blocks, self.audit = spark, blocks, audit

    def tail_summary(self, levels: Sequence[float]) -> TailSummary:
        """See :class:`risk_engine.engine.ScenarioBlocks`."""
        tails = stages.tail_summary(self.blocks, levels)
        log.info("tails: %d histogram pass(es), %d band losses gathered for %d scenarios",
                 tails.histogram_passes, tails.band_losses, tails.n_scenarios)
        return tails

    def attribution(self, book: ResolvedBook, requests: Sequence[Request],
                    levels: Sequence[float], tiling: Tiling | None = None,
                    ) -> tuple[NDArray[np.float64], pd.DataFrame]:
        """See :class:`risk_engine.engine.ScenarioBlocks`."""
        return stages.attribution(self.spark, self.blocks, book, requests, levels,
                                  tiling=tiling, smile=smile_of(self.blocks.spec.plan))

    def fold(self, per_block: Callable[[int], T], merge: Callable[[T, T], T],
             n_blocks: int) -> T:
        """See :class:`risk_engine.engine.ScenarioBlocks`: one task per group of blocks."""
        groups = group_blocks(n_blocks)

        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            stages.settle_worker()
            for batch in batches:
                for g in batch["id"].to_numpy():
                    part = fold_group(per_block, merge, groups[int(g)])
                    yield pd.DataFrame({"group": [int(g)], "value": [pickle.dumps(part)]})

        parallelism = self.spark.sparkContext.defaultParallelism
        frame = self.spark.range(0, len(groups), 1, min(len(groups), parallelism * 4))
        rows = pd.DataFrame(frame.mapInPandas(run, "group long, value binary").toPandas())
        parts = [pickle.loads(v) for v in rows.sort_values("group")["value"]]  # noqa: S301
        if len(parts) != len(groups):
            raise RuntimeError(f"fold over {n_blocks} blocks returned {len(parts)} of "
                               f"{len(groups)} groups")
        return reduce(merge, parts)

    def scenario_pnl(self, desks: Sequence[str]) -> None:
        """Write the audit table into the run's staging folder, from the executors."""
        df = stages.scenario_pnl_rows(self.blocks)
        desk_col = F.element_at(F.array(*[F.lit(d) for d in desks]), F.col("desk_index") + 1)
        out = df.select(F.lit(self.audit.run_id).alias("run_id"), F.col("block_id"),
                        desk_col.alias("desk"), F.col("first_scenario"), F.col("pnl"))
        part = f"as_of_date={self.audit.as_of.isoformat()}"
        out.write.mode("overwrite").parquet(
            f"{self.audit.root}/{schemas.SCENARIO_PNL.name}/{part}")

    def release(self) -> None:
        """Drop the block rows and files; log blocks that had to be regenerated."""
        if self.blocks.recomputed.value:
            log.warning("%d block read(s) regenerated the block from its seed: its file was "
                        "not on the executor that read it", self.blocks.recomputed.value)
        self.blocks.unpersist()


class ReadyBlocks:
    """One run's scenario blocks, simulated before the run (see :func:`simulate_together`).

    Handed to the run's :class:`SparkEngine`, which takes them for their spec;
    :meth:`release` frees them if the run never did (it failed before its Monte Carlo).
    The blocks keep what their fan-out carried besides the P&L: the first histogram pass
    for ``levels`` and, if asked for, the block-0 sample statistics
    (:attr:`stages.Blocks.statistics`), which the run's attribution uses when it asks for
    the same ones.
    """

    def __init__(self, blocks: stages.Blocks, levels: Sequence[float]) -> None:
        self._blocks: stages.Blocks | None = blocks
        self.levels = tuple(levels)

    def take(self, spec: SimulationSpec, levels: Sequence[float]) -> stages.Blocks | None:
        """The blocks, if simulated for this very ``spec`` and ``levels``, not taken yet.

        (``levels`` decide the first histogram pass embedded in the block rows.)
        """
        blocks = self._blocks
        if blocks is None or blocks.spec is not spec or tuple(levels) != self.levels:
            return None
        self._blocks = None
        return blocks

    def release(self) -> None:
        """Drop the blocks' rows and files unless a run took them (then it releases them)."""
        if self._blocks is not None:
            blocks, self._blocks = self._blocks, None
            blocks.unpersist()


def simulate_together(spark: SparkSession, specs: Sequence[SimulationSpec], *,
                      partitions: int | None, faults: TestingConfig,
                      levels: Sequence[float],
                      samples: Sequence[stages.SampleRequest | None] | None = None,
                      ) -> list[ReadyBlocks | None]:
    """The scenario blocks of several runs, simulated in one Spark job.

    Each spec's fan-out is :func:`stages.simulate_blocks`, exactly as its own run would
    make it (same slices, same block files, the first histogram pass embedded), so every
    later figure is the same bits; here the fan-outs are persisted first and then
    materialized together by one action over their union (:func:`stages.materialize`):
    the tasks of all the specs' (run, block) pairs share the cores, where one run at a time
    leaves cores idle while its last blocks finish. Each run's later passes read only its
    own rows.

    ``samples`` (one per spec, or None: none at all): the block-0 sample statistics each
    run's attribution will ask for (:func:`risk_engine.spark.backfill.attribution_sample`),
    computed by the task that simulates the run's block 0, so that they too share the
    cores instead of running as one serial job per run.

    Returns
    -------
    list
        Per spec, in order, its :class:`ReadyBlocks`; all None if the job failed (logged:
        each run then simulates, and reports a failure, itself).
    """
    if not specs:
        return []
    asked = list(samples) if samples is not None else [None] * len(specs)
    if len(asked) != len(specs):
        raise ValueError(f"{len(asked)} sample requests for {len(specs)} specs")
    blocks = [stages.simulate_blocks(spark, spec, spec.source.n_blocks, partitions,
                                     faults=faults, levels=levels, sample=sample)
              for spec, sample in zip(specs, asked, strict=True)]
    try:
        ready = stages.materialize(blocks)
    except Exception as exc:  # noqa: BLE001 - each run redoes its own and reports it
        log.warning("scenario blocks of %d run(s) together failed, each run simulates its "
                    "own: %s", len(specs), str(exc).strip().splitlines()[0] if str(exc) else
                    type(exc).__name__)
        for b in blocks:
            b.unpersist()
        return [None] * len(specs)
    return [ReadyBlocks(b, levels) for b in ready]


class SparkEngine:
    """Fans scenario blocks out with ``mapInPandas``; keeps their P&L on executors' disks.

    ``staging`` is the run's staging folder, where :meth:`SparkBlocks.scenario_pnl` writes
    the audit table with ``run_id`` in its rows. ``ready``: the run's blocks simulated
    ahead (:func:`simulate_together`), used for their spec instead of a fan-out.
    """

    def __init__(self, spark: SparkSession, *, partitions: int | None, faults: TestingConfig,
                 staging: str, run_id: str, as_of: dt.date,
                 ready: ReadyBlocks | None = None) -> None:
        self.spark, self.partitions, self.faults = spark, partitions, faults
        self.audit = _Audit(staging, run_id, as_of)
        self.ready = ready

    def simulate(self, spec: SimulationSpec, levels: Sequence[float]) -> SparkBlocks:
        """See :class:`risk_engine.engine.Engine`; the fan-out runs at the first pass."""
        blocks = self.ready.take(spec, levels) if self.ready is not None else None
        if blocks is not None:
            log.info("monte carlo: the %d block(s) simulated ahead with other dates",
                     spec.source.n_blocks)
        else:
            blocks = stages.simulate_blocks(self.spark, spec, spec.source.n_blocks,
                                            self.partitions, faults=self.faults, levels=levels)
        return SparkBlocks(self.spark, blocks, self.audit)
