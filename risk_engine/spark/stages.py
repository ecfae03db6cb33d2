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

from risk_engine.attribution import SUM_GROUP, Request, block_contributions, sample_statistics
from risk_engine.book import ResolvedBook
from risk_engine.config import TestingConfig
from risk_engine.pipeline import SimulationSpec, simulate_block
from risk_engine.scenarios import ScenarioSource
from risk_engine.tails import (
    LUMP_TOP,
    Band,
    BinSpec,
    TailSummary,
    block_histograms,
    block_losses,
    block_partials,
    first_specs,
    merge_histograms,
    pack_histogram,
    summarize,
    unpack_histogram,
)

BLOCK_PNL_SCHEMA = T.StructType([
    T.StructField("block_id", T.LongType(), False),
    T.StructField("first_scenario", T.LongType(), False),
    # The block's (n_b, D) desk P&L, float64 in C order: one opaque value per block keeps
    # the JVM's share of the work to copying bytes.
    T.StructField("pnl", T.BinaryType(), False),
    # The first histogram pass (:func:`risk_engine.tails.first_specs`) over all the task's
    # blocks, packed; set on the task's last row only, null elsewhere.
    T.StructField("hist", T.BinaryType(), True),
])
#: The block row columns the later passes read (not the embedded histogram).
BLOCK_COLUMNS = ("block_id", "first_scenario", "pnl")
PARTIAL_SCHEMA = T.StructType([
    T.StructField("block_id", T.LongType(), False),
    T.StructField("band", T.LongType(), False),
    T.StructField("n_above", T.LongType(), False),
    T.StructField("sum_above", T.DoubleType(), False),
    T.StructField("s1", T.DoubleType(), False),
    T.StructField("s2", T.DoubleType(), False),
    T.StructField("desk_above", T.BinaryType(), False),
    T.StructField("index", T.BinaryType(), False),
    T.StructField("value", T.BinaryType(), False),
    T.StructField("desk_band", T.BinaryType(), False),
])


def block_pnl_frame(spark: SparkSession, spec: SimulationSpec, n_blocks: int,
                    partitions: int | None = None, faults: TestingConfig | None = None,
                    levels: Sequence[float] = ()) -> DataFrame:
    """One row per scenario block holding that block's desk P&L (see BLOCK_PNL_SCHEMA).

    ``spark.range(n_blocks)`` is split into ``partitions`` slices (default
    :func:`default_slices`); each task draws its blocks' scenarios from ``(seed, block_id)``,
    so the result does not depend on the slicing. Only per-(scenario, desk) P&L leaves a
    task. With ``levels``, each task also bins its blocks' upper tails for the first
    histogram pass of :func:`tail_summary` while the P&L is at hand, which saves a second
    Python UDF reading every block back.
    """
    faults = faults or TestingConfig()
    block_size = spec.source.block_size
    specs = first_specs(spec.plan.n_desks + 1, levels) if levels else None

    def run_blocks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        hists: list[pd.DataFrame] = []
        row: dict[str, list[object]] | None = None
        for batch in batches:
            for block_id in batch["id"].to_numpy():
                if row is not None:  # hold one row back: the task's last carries the histogram
                    yield pd.DataFrame(row)
                b = int(block_id)
                _inject_faults(faults, b)
                pnl = simulate_block(spec, b)
                if specs is not None:
                    hists.append(block_histograms(block_losses(pnl, b * block_size), specs))
                    if len(hists) == 16:  # bounded memory in a task given many blocks
                        hists = [merge_histograms(hists)]
                row = {"block_id": [b], "first_scenario": [b * block_size],
                       "pnl": [np.ascontiguousarray(pnl).tobytes()], "hist": [None]}
        if row is not None:
            if specs is not None:
                row["hist"] = [pack_histogram(merge_histograms(hists))]
            yield pd.DataFrame(row)

    slices = partitions or default_slices(n_blocks, spark.sparkContext.defaultParallelism)
    ids = spark.range(0, n_blocks, 1, numPartitions=max(1, min(slices, n_blocks)))
    return ids.mapInPandas(run_blocks, schema=BLOCK_PNL_SCHEMA)


#: Most blocks one task carries by default: 8 blocks of 10,000 scenarios on 2,000 positions
#: are about 2 s of work (well above the ~55 ms per-task overhead), and a persisted
#: partition stays a few MB, so memory does not grow with the scenario count.
MAX_BLOCKS_PER_TASK = 8


def default_slices(n_blocks: int, cores: int) -> int:
    """Slices of the block range: a multiple of ``cores``, at most 8 blocks per slice."""
    cores = max(1, cores)
    return min(n_blocks, cores * max(1, -(-n_blocks // (cores * MAX_BLOCKS_PER_TASK))))


def persist_blocks(blocks: DataFrame) -> DataFrame:
    """Keep the block rows on the executors' local disk (read by every later pass)."""
    from pyspark import StorageLevel

    return blocks.persist(StorageLevel.DISK_ONLY)


def _blocks(batches: Iterator[pd.DataFrame], n_desks: int
            ) -> Iterator[tuple[int, int, NDArray[np.float64]]]:
    """Decode block rows into (block_id, first_scenario, P&L (n_b, D))."""
    for batch in batches:
        for b, first, raw in zip(batch["block_id"], batch["first_scenario"], batch["pnl"],
                                 strict=True):
            yield int(b), int(first), np.frombuffer(raw, dtype=np.float64).reshape(-1, n_desks)


def tail_summary(blocks: DataFrame, n_scenarios: int, n_desks: int,
                 levels: Sequence[float], pass_seconds: list[float] | None = None
                 ) -> TailSummary:
    """Exact tail figures of every desk and the firm from the block rows, on executors.

    ``blocks`` (from :func:`block_pnl_frame`) should be persisted: the histogram and band
    passes of :mod:`risk_engine.tails` read it two or more times (the first pass computes
    it), and only histograms, band losses and sums reach the driver. The first histogram
    pass is the one embedded in the block rows when they carry it for every scenario (any
    lumping level is valid: :func:`risk_engine.tails.find_bands` checks the lumps against
    the bands). ``pass_seconds``, if given, receives each pass's wall time in order.
    """
    def record(t0: float) -> None:
        if pass_seconds is not None:
            pass_seconds.append(time.perf_counter() - t0)

    def timed(df: DataFrame) -> pd.DataFrame:
        t0 = time.perf_counter()
        out = df.toPandas()
        record(t0)
        return out

    def merged(packed: list[bytes]) -> pd.DataFrame:
        out = merge_histograms([])
        while packed:  # 16 at a time: the driver holds few unmerged histograms at once
            chunk, packed = packed[:16], packed[16:]
            out = merge_histograms([out, *map(unpack_histogram, chunk)])
        return out

    first_pass = first_specs(n_desks + 1, levels)

    def histograms(specs: Sequence[BinSpec]) -> pd.DataFrame:
        if list(specs) == first_pass and "hist" in blocks.columns:
            t0 = time.perf_counter()
            rows = pd.DataFrame(blocks.select("hist").where("hist IS NOT NULL").toPandas())
            embedded = merged(list(rows["hist"]))
            if _covers(embedded, len(specs), n_scenarios):
                record(t0)
                return embedded
            # The rows were built without levels: bin them in a pass of their own.

        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            parts = [block_histograms(block_losses(pnl, first), specs)
                     for _, first, pnl in _blocks(batches, n_desks)]
            yield pd.DataFrame({"hist": [pack_histogram(merge_histograms(parts))]})

        # One packed histogram per task (the blocks' tails only).
        return merged(list(timed(_block_rows(blocks).mapInPandas(run, schema="hist binary"))
                           ["hist"]))

    def partials(bands: Sequence[Band]) -> pd.DataFrame:
        def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for b, first, pnl in _blocks(batches, n_desks):
                yield block_partials(block_losses(pnl, first), b, first, bands, n_desks)

        return timed(_block_rows(blocks).mapInPandas(run, schema=PARTIAL_SCHEMA))

    return summarize(n_scenarios, n_desks, levels, histograms, partials)


def _covers(hist: pd.DataFrame, n_specs: int, n_scenarios: int) -> bool:
    """Whether ``hist`` counts every scenario once in each of its ``n_specs`` specs."""
    counts = hist[hist["bin"] != LUMP_TOP].groupby("spec")["count"].sum()
    return len(counts) == n_specs and bool((counts == n_scenarios).all())


def _block_rows(blocks: DataFrame) -> DataFrame:
    """The block rows without the embedded histogram (what the passes read)."""
    return blocks.select(*BLOCK_COLUMNS)


def scenario_pnl_rows(blocks: DataFrame, n_desks: int) -> DataFrame:
    """The block rows as one row per (block, desk) with the P&L array (the audit table)."""
    schema = T.StructType([
        T.StructField("block_id", T.LongType(), False),
        T.StructField("desk_index", T.IntegerType(), False),
        T.StructField("first_scenario", T.LongType(), False),
        T.StructField("pnl", T.ArrayType(T.DoubleType(), False), False),
    ])

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b, first, pnl in _blocks(batches, n_desks):
            yield pd.DataFrame({
                "block_id": np.full(n_desks, b, dtype=np.int64),
                "desk_index": np.arange(n_desks, dtype=np.int32),
                "first_scenario": np.full(n_desks, first, dtype=np.int64),
                "pnl": list(np.ascontiguousarray(pnl.T)),
            })

    return _block_rows(blocks).mapInPandas(run, schema=schema)


def _inject_faults(faults: TestingConfig, block_id: int) -> None:
    """Test-only: delay every block, fail chosen blocks on early task attempts."""
    if faults.block_delay_seconds:
        time.sleep(faults.block_delay_seconds)
    if block_id in faults.fail_blocks:
        ctx = TaskContext.get()
        attempt = ctx.attemptNumber() if ctx is not None else 0
        if attempt < faults.fail_attempts:
            raise RuntimeError(f"injected fault: block {block_id}, task attempt {attempt}")


def collect_pnl(blocks: DataFrame, n_scenarios: int, n_desks: int) -> NDArray[np.float64]:
    """Gather every block's P&L into the (N, D) matrix, in scenario order.

    For tests and the benchmark's accuracy section only: the job never gathers it.
    """
    table = _block_rows(blocks).toArrow()
    out = np.full((n_scenarios, n_desks), np.nan)
    for first, raw in zip(table.column("first_scenario").to_pylist(),
                          table.column("pnl").to_pylist(), strict=True):
        seg = np.frombuffer(raw, dtype=np.float64).reshape(-1, n_desks)
        out[first:first + seg.shape[0]] = seg
    missing = np.isnan(out).any(axis=1)
    if missing.any():
        raise RuntimeError(f"scenario P&L incomplete: {int(missing.sum())} scenario(s) missing "
                           "after the Monte Carlo stage")
    return out


def attribution(
    spark: SparkSession, blocks: DataFrame, book: ResolvedBook, source: ScenarioSource,
    requests: Sequence[Request], levels: Sequence[float], group: int = SUM_GROUP,
) -> tuple[NDArray[np.float64], pd.DataFrame]:
    """Position contributions (R, P) and block-0 sample statistics, computed on executors.

    Every block row (from :func:`block_pnl_frame`) finds its requested scenarios from its
    desk P&L, regenerates them from ``(seed, block)`` and returns its weighted position
    losses. Executors add them up per group of ``group`` consecutive blocks, in block
    order, and the driver adds the groups in order, exactly as
    :func:`risk_engine.attribution.attribute_in_process` does, so the result does not
    depend on task scheduling and the driver receives one row per group.
    """
    n_desks = len(book.desks)
    # Request r is non-zero only on its desk's positions: only those values travel.
    mask = book.desk_index[None, :] == np.array([r.desk_index for r in requests])[:, None]
    n_values = int(mask.sum())

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b, _, pnl in _blocks(batches, n_desks):
            c = block_contributions(book, source, requests, b, pnl)
            yield pd.DataFrame({"group": [b // group], "block_id": [b],
                                "values": [c[mask].tobytes()]})

    def add_group(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("block_id")
        part = np.zeros(n_values)
        for raw in frame["values"]:  # in block order
            part += np.frombuffer(raw, dtype=np.float64)
        ids = frame["block_id"]
        return pd.DataFrame({"group": [int(frame["group"].iloc[0])], "n": [len(frame)],
                             "lo": [int(ids.min())], "hi": [int(ids.max())],
                             "values": [part.tobytes()]})

    block_schema = "group long, block_id long, values binary"
    group_schema = "group long, n long, lo long, hi long, values binary"
    per_block = _block_rows(blocks).mapInPandas(run, schema=block_schema)
    got = pd.DataFrame(per_block.groupBy("group").applyInPandas(add_group, schema=group_schema)
                       .toPandas()).sort_values("group")
    n_groups = -(-source.n_blocks // group)
    lo = np.arange(n_groups) * group
    hi = np.minimum(lo + group, source.n_blocks) - 1
    if not (len(got) == n_groups and np.array_equal(got["group"], np.arange(n_groups))
            and np.array_equal(got["lo"], lo) and np.array_equal(got["hi"], hi)
            and np.array_equal(got["n"], hi - lo + 1)):
        raise RuntimeError(f"attribution: block results of {int(got['n'].sum())} blocks in "
                           f"{len(got)} groups for {source.n_blocks} blocks")
    total = np.zeros(mask.shape)
    for raw in got["values"]:  # groups in order, as attribute_in_process adds them
        total[mask] += np.frombuffer(raw, dtype=np.float64)

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
    return total, stats.toPandas()
