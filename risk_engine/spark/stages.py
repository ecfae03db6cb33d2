"""Distribution of the Monte Carlo stage: scenario blocks fanned out with ``mapInPandas``."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from risk_engine.attribution import Request, block_contributions, sample_statistics
from risk_engine.book import ResolvedBook
from risk_engine.config import TestingConfig
from risk_engine.pipeline import SimulationSpec, simulate_block
from risk_engine.scenarios import ScenarioSource

BLOCK_PNL_SCHEMA = T.StructType([
    T.StructField("block_id", T.LongType(), False),
    T.StructField("desk_index", T.IntegerType(), False),
    T.StructField("first_scenario", T.LongType(), False),
    T.StructField("pnl", T.ArrayType(T.DoubleType(), False), False),
])


def block_pnl_frame(spark: SparkSession, spec: SimulationSpec, n_blocks: int,
                    partitions: int | None = None,
                    faults: TestingConfig | None = None) -> DataFrame:
    """One row per (scenario block, desk) holding that block's P&L vector for the desk.

    ``spark.range(n_blocks)`` is split into ``partitions`` slices (default one per core);
    each task draws its blocks' scenarios from ``(seed, block_id)``, so the result does not
    depend on the slicing. Only per-(scenario, desk) P&L leaves a task.
    """
    n_desks = spec.plan.n_desks
    faults = faults or TestingConfig()

    def run_blocks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for block_id in batch["id"].to_numpy():
                b = int(block_id)
                _inject_faults(faults, b)
                pnl = simulate_block(spec, b)
                yield pd.DataFrame({
                    "block_id": np.full(n_desks, b, dtype=np.int64),
                    "desk_index": np.arange(n_desks, dtype=np.int32),
                    "first_scenario": np.full(n_desks, b * spec.source.block_size, dtype=np.int64),
                    "pnl": list(np.ascontiguousarray(pnl.T)),
                })

    # Default: one slice per core (each task carries several blocks, well above the ~55 ms
    # per-task overhead); results never depend on the slicing.
    slices = partitions or spark.sparkContext.defaultParallelism
    ids = spark.range(0, n_blocks, 1, numPartitions=max(1, min(slices, n_blocks)))
    return ids.mapInPandas(run_blocks, schema=BLOCK_PNL_SCHEMA)


def _inject_faults(faults: TestingConfig, block_id: int) -> None:
    """Test-only: delay every block, fail chosen blocks on early task attempts."""
    if faults.block_delay_seconds:
        time.sleep(faults.block_delay_seconds)
    if block_id in faults.fail_blocks:
        ctx = TaskContext.get()
        attempt = ctx.attemptNumber() if ctx is not None else 0
        if attempt < faults.fail_attempts:
            raise RuntimeError(f"injected fault: block {block_id}, task attempt {attempt}")


def collect_pnl(df: DataFrame, n_scenarios: int, n_desks: int) -> NDArray[np.float64]:
    """Assemble the collected block rows into the (N, D) P&L matrix, in scenario order."""
    table = df.toArrow()
    out = np.full((n_scenarios, n_desks), np.nan)
    first = table.column("first_scenario").to_numpy()
    desk = table.column("desk_index").to_numpy()
    pnl = table.column("pnl").combine_chunks()
    offsets = pnl.offsets.to_numpy()
    values = pnl.values.to_numpy()
    for i in range(table.num_rows):
        seg = values[offsets[i]:offsets[i + 1]]
        out[first[i]:first[i] + seg.size, desk[i]] = seg
    missing = np.isnan(out).any(axis=1)
    if missing.any():
        raise RuntimeError(f"scenario P&L incomplete: {int(missing.sum())} scenario(s) missing "
                           "after the Monte Carlo stage")
    return out


def attribution(
    spark: SparkSession, book: ResolvedBook, source: ScenarioSource,
    requests: Sequence[Request], levels: Sequence[float], partitions: int | None = None,
) -> tuple[NDArray[np.float64], pd.DataFrame]:
    """Position contributions (R, P) and block-0 sample statistics, computed on executors.

    Every block that holds requested scenarios regenerates them from ``(seed, block)`` and
    returns its weighted position losses; the driver adds the blocks up in block order so the
    result does not depend on task scheduling.
    """
    n_blocks = source.n_blocks
    n_req, n_pos = len(requests), book.n_positions

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for block_id in batch["id"].to_numpy():
                c = block_contributions(book, source, requests, int(block_id))
                yield pd.DataFrame({"block_id": [int(block_id)], "values": [c.ravel()]})

    slices = partitions or spark.sparkContext.defaultParallelism
    ids = spark.range(0, n_blocks, 1, numPartitions=max(1, min(slices, n_blocks)))
    schema = T.StructType([T.StructField("block_id", T.LongType(), False),
                           T.StructField("values", T.ArrayType(T.DoubleType(), False), False)])
    table = ids.mapInPandas(run, schema=schema).toArrow().sort_by("block_id")
    total = np.zeros(n_req * n_pos)
    for chunk in table.column("values").to_pylist():
        total += np.asarray(chunk)

    def sample(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in batches:
            yield sample_statistics(book, source, levels)

    sample_schema = T.StructType([
        T.StructField("position_id", T.StringType(), False),
        T.StructField("confidence_level", T.DoubleType(), False),
        T.StructField("incremental_var", T.DoubleType(), True),
        T.StructField("correlation", T.DoubleType(), True),
        T.StructField("sample_scenarios", T.LongType(), False),
    ])
    stats = spark.range(0, 1, 1, numPartitions=1).mapInPandas(sample, schema=sample_schema)
    return total.reshape(n_req, n_pos), stats.toPandas()
