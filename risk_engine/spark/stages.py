"""Distribution of the Monte Carlo stage: scenario blocks fanned out with ``mapInPandas``."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pyspark import Accumulator, StorageLevel, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from risk_engine.attribution import (
    SUM_GROUP,
    Request,
    Tiling,
    block_contributions,
    sample_statistics,
)
from risk_engine.book import ResolvedBook
from risk_engine.config import TestingConfig
from risk_engine.simulation import SimulationSpec, simulate_block
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

log = logging.getLogger("risk_engine.spark.stages")

BLOCK_SCHEMA = T.StructType([
    T.StructField("block_id", T.LongType(), False),
    T.StructField("first_scenario", T.LongType(), False),
    # The file on the executor's local disk holding the block's (n_b, D) desk P&L, float64
    # in C order. The P&L never passes through the JVM: it would only copy it.
    T.StructField("path", T.StringType(), False),
    # The first histogram pass (:func:`risk_engine.tails.first_specs`) over all the task's
    # blocks, packed; set on the task's last row only, null elsewhere.
    T.StructField("hist", T.BinaryType(), True),
    # The block-0 sample statistics (:class:`SampleRequest`), pickled; set on block 0's row
    # when the fan-out was asked for them, null elsewhere.
    T.StructField("sample", T.BinaryType(), True),
])
#: The block row columns the later passes read (not the embedded histogram or statistics).
BLOCK_COLUMNS = ("block_id", "first_scenario", "path")
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


@dataclass(frozen=True)
class SampleRequest:
    """Block-0 sample statistics a run's attribution will ask for, computed in its fan-out.

    The arguments of :func:`risk_engine.attribution.sample_statistics` but the scenario
    source (the fan-out's). The task that simulates block 0 computes them
    (:func:`simulate_blocks`), so that a backfill's dates spread them over the cores with
    their blocks instead of running a one-task Spark job each at their attribution.
    """

    book: ResolvedBook
    levels: tuple[float, ...]
    tiling: Tiling
    smile: str

    def matches(self, book: ResolvedBook, levels: Sequence[float], tiling: Tiling | None,
                smile: str) -> bool:
        """Whether :func:`attribution`'s arguments ask for these very statistics.

        The book must be the same object (a resolved book is not compared value by value);
        no tiling is the default :class:`Tiling`, as for ``sample_statistics``.
        """
        return (book is self.book and tuple(levels) == self.levels
                and (tiling or Tiling()) == self.tiling and smile == self.smile)


@dataclass(frozen=True)
class Blocks:
    """The Monte Carlo stage's blocks: persisted rows locating each block's desk P&L.

    Each task writes its blocks' P&L to a file on its executor's local disk (Spark's own
    local directories) and returns one small row per block (:data:`BLOCK_SCHEMA`). The rows
    are persisted, so the later passes run where they were computed and read the files
    there; a pass that runs elsewhere (the executor was lost, or the scheduler gave up
    waiting for it) regenerates the block from ``(seed, block)``, which gives the same P&L,
    and counts it in :attr:`recomputed`.
    """

    frame: DataFrame
    spec: SimulationSpec
    token: str  # names this stage's files, so two stages never read each other's
    recomputed: Accumulator[int]
    #: The statistics block 0's row carries (its ``sample`` column), if any.
    sample: SampleRequest | None = field(default=None, compare=False)
    #: Those statistics, once gathered on the driver (:func:`materialize`).
    statistics: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def n_desks(self) -> int:
        """Desks (columns) of each block's P&L."""
        return int(self.spec.plan.n_desks)

    @property
    def n_scenarios(self) -> int:
        """Scenarios of the stage."""
        return int(self.spec.source.n_scenarios)

    def unpersist(self) -> None:
        """Drop the rows and delete the block files.

        In local mode that is every file; on a cluster, the files of the executors the
        clean-up tasks reach, and Spark deletes the rest with its local directories when an
        executor exits.
        """
        self.frame.unpersist()
        token = self.token

        def remove(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for _ in batches:
                pass
            for root in _local_dirs():
                shutil.rmtree(os.path.join(root, _DIR_PREFIX + token), ignore_errors=True)
            yield pd.DataFrame({"done": [True]})

        spark = self.frame.sparkSession
        tasks = max(1, spark.sparkContext.defaultParallelism)
        try:
            spark.range(0, tasks, 1, tasks).mapInPandas(remove, schema="done boolean").collect()
        except Exception as exc:  # clean-up must not hide how the stage itself ended
            log.warning("block files %s*%s not removed: %s", _DIR_PREFIX, token, exc)


_DIR_PREFIX = "risk-engine-blocks-"


def _local_dirs() -> list[str]:
    """Local directories of the executor running this worker, else the temp directory."""
    dirs = [d for d in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if d]
    return dirs or [tempfile.gettempdir()]


def settle_worker() -> None:
    """Exempt what this Python worker holds at its first task from the cyclic GC, once.

    PySpark's daemon runs a full ``gc.collect()`` after every task of a reused worker
    before it takes the next. With numpy, pandas, pyarrow and the engine imported that
    walks about 96,000 objects: 50 ms of CPU per task, measured, against 0.1 ms once they
    are frozen. Reference counting still frees frozen objects; only a reference cycle among
    them (from the first task) would never be collected.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()


def _block_path(token: str, block_id: int) -> str:
    dirs = _local_dirs()
    folder = os.path.join(dirs[block_id % len(dirs)], _DIR_PREFIX + token)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{block_id}.f64")


def _write_block(path: str, pnl: NDArray[np.float64]) -> None:
    """Write atomically: a retried or speculative task may write the same block."""
    tmp = f"{path}.{os.getpid()}.tmp"
    np.ascontiguousarray(pnl, dtype=np.float64).tofile(tmp)
    os.replace(tmp, path)


def simulate_blocks(spark: SparkSession, spec: SimulationSpec, n_blocks: int,
                    partitions: int | None = None, faults: TestingConfig | None = None,
                    levels: Sequence[float] = (), sample: SampleRequest | None = None,
                    ) -> Blocks:
    """Run the fan-out: every block's desk P&L, kept on the executors (see :class:`Blocks`).

    ``spark.range(n_blocks)`` is split into ``partitions`` slices (default
    :func:`default_slices`); each task draws its blocks' scenarios from ``(seed, block_id)``,
    so the result does not depend on the slicing. Only per-(scenario, desk) P&L leaves the
    kernel. With ``levels``, each task also bins its blocks' upper tails for the first
    histogram pass of :func:`tail_summary` while the P&L is at hand, which saves a second
    pass reading every block back. With ``sample``, the task that simulates block 0 also
    computes those block-0 sample statistics
    (:func:`risk_engine.attribution.sample_statistics`) into block 0's row, for
    :func:`attribution`. The stage runs when the rows are first used.
    """
    faults = faults or TestingConfig()
    block_size = spec.source.block_size
    specs = first_specs(spec.plan.n_desks + 1, levels) if levels else None
    token = uuid.uuid4().hex

    def run_blocks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        settle_worker()
        hists: list[pd.DataFrame] = []
        ids: list[int] = []
        paths: list[str] = []
        stats: list[bytes | None] = []
        for batch in batches:
            for block_id in batch["id"].to_numpy():
                b = int(block_id)
                _inject_faults(faults, b)
                pnl = simulate_block(spec, b)
                if specs is not None:
                    hists.append(block_histograms(block_losses(pnl, b * block_size), specs))
                    if len(hists) == 16:  # bounded memory in a task given many blocks
                        hists = [merge_histograms(hists)]
                paths.append(_block_path(token, b))
                _write_block(paths[-1], pnl)
                del pnl
                ids.append(b)
                stats.append(None if sample is None or b != 0 else pickle.dumps(
                    sample_statistics(sample.book, spec.source, sample.levels, sample.tiling,
                                      sample.smile), protocol=pickle.HIGHEST_PROTOCOL))
        if ids:
            # One batch per task (a batch per block cost about 1 ms each); the task's last
            # row carries its histogram.
            hist: list[bytes | None] = [None] * len(ids)
            if specs is not None:
                hist[-1] = pack_histogram(merge_histograms(hists))
            yield pd.DataFrame({"block_id": ids, "first_scenario": [b * block_size for b in ids],
                                "path": paths, "hist": hist, "sample": stats})

    slices = partitions or default_slices(n_blocks, spark.sparkContext.defaultParallelism,
                                          spec.plan.relative_cost)
    ids = spark.range(0, n_blocks, 1, numPartitions=max(1, min(slices, n_blocks)))
    frame = ids.mapInPandas(run_blocks, schema=BLOCK_SCHEMA).persist(
        StorageLevel.MEMORY_AND_DISK)
    return Blocks(frame, spec, token, spark.sparkContext.accumulator(0), sample)


def materialize(blocks: Sequence[Blocks]) -> list[Blocks]:
    """Run the fan-outs of ``blocks`` in one Spark job; gather their block-0 statistics.

    One action over the union of the block rows fills every fan-out's cache (the tasks of
    all the fan-outs, one per slice, share the cores) and brings back the ``sample``
    column of the rows that carry one. Returns ``blocks`` in order, each with its
    :attr:`Blocks.statistics` when it was simulated with a :class:`SampleRequest`.

    A fan-out whose rows do not carry its statistics exactly once (never seen) gets none,
    with a warning: its attribution then computes them in a job of their own.

    Raises
    ------
    Exception
        Whatever the Spark job raised (the rows stay persisted: the caller unpersists).
    """
    if not blocks:
        return []
    # A union of the RDDs, not of the DataFrames: Spark (4.3) runs a DataFrame union of
    # children of one partition each (a date of one block) as ONE task, child after child
    # (``spark.sql.unionOutputPartitioning``); the RDDs' union keeps a task per partition.
    # Each RDD still reads its frame's cache, which the job fills whole.
    rdds = [b.frame.where(F.col("sample").isNotNull())
            .select(F.lit(i).alias("run"), F.col("sample")).rdd for i, b in enumerate(blocks)]
    rows = blocks[0].frame.sparkSession.sparkContext.union(rdds).collect()
    found: dict[int, list[bytes]] = {}
    for row in rows:
        found.setdefault(int(row["run"]), []).append(bytes(row["sample"]))
    out = []
    for i, b in enumerate(blocks):
        got = found.get(i, [])
        if b.sample is None or len(got) != 1:
            if b.sample is not None or got:
                log.warning("fan-out %d: %d row(s) of block-0 sample statistics, %s asked; "
                            "its attribution computes them itself", i, len(got),
                            "one" if b.sample is not None else "none")
            out.append(replace(b, sample=None))
            continue
        stats = pickle.loads(got[0])  # noqa: S301 - rows our own executors wrote
        out.append(replace(b, statistics=stats))
    return out


#: Most full-revaluation blocks one task carries by default: 8 blocks of 10,000 scenarios on
#: 2,000 positions are about 2.4 s of work (well above the ~40 ms per-task overhead). A task
#: holds one block's P&L at a time, so its memory does not grow with the scenario count.
MAX_BLOCKS_PER_TASK = 8


def default_slices(n_blocks: int, cores: int, relative_cost: float = 1.0) -> int:
    """Slices of the block range: a multiple of ``cores``, each of bounded work.

    A slice carries at most :data:`MAX_BLOCKS_PER_TASK` blocks of full revaluation, or
    proportionally more of a cheaper method: ``relative_cost`` is the method's time per
    scenario relative to full revaluation (the plan's ``relative_cost``).
    """
    cores = max(1, cores)
    per_task = max(1, round(MAX_BLOCKS_PER_TASK / relative_cost))
    return min(n_blocks, cores * max(1, -(-n_blocks // (cores * per_task))))


BlockIter = Iterator[tuple[int, int, NDArray[np.float64]]]


def _over_blocks(blocks: Blocks, per_task: Callable[[BlockIter], Iterator[pd.DataFrame]],
                 schema: T.StructType | str) -> DataFrame:
    """``mapInPandas`` over the block rows: ``per_task`` gets each task's blocks.

    It sees (block_id, first_scenario, P&L (n_b, D)) per block. A block is read from its
    file, or regenerated when the file is not on this executor (counted in
    ``blocks.recomputed``).
    """
    spec, recomputed, n_desks = blocks.spec, blocks.recomputed, blocks.n_desks
    block_size, n = spec.source.block_size, spec.source.n_scenarios

    def decode(batches: Iterator[pd.DataFrame]) -> BlockIter:
        for batch in batches:
            for b, first, path in zip(batch["block_id"], batch["first_scenario"],
                                      batch["path"], strict=True):
                b, first = int(b), int(first)
                try:
                    pnl = np.fromfile(path, dtype=np.float64)
                except OSError:
                    pnl = np.empty(0)
                if pnl.size != min(block_size, n - first) * n_desks:
                    recomputed.add(1)
                    pnl = simulate_block(spec, b)
                yield b, first, pnl.reshape(-1, n_desks)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        settle_worker()
        return per_task(decode(batches))

    return blocks.frame.select(*BLOCK_COLUMNS).mapInPandas(run, schema=schema)


def tail_summary(blocks: Blocks, levels: Sequence[float],
                 pass_seconds: list[float] | None = None) -> TailSummary:
    """Exact tail figures of every desk and the firm from the block rows, on executors.

    The histogram and band passes of :mod:`risk_engine.tails` read the blocks two or more
    times (the first use of the rows runs the fan-out), and only histograms, band losses
    and sums reach the driver. The first histogram pass is the one embedded in the block
    rows when they carry it for every scenario (any lumping level is valid:
    :func:`risk_engine.tails.find_bands` checks the lumps against the bands).
    ``pass_seconds``, if given, receives each pass's wall time in order.
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

    n_scenarios, n_desks = blocks.n_scenarios, blocks.n_desks
    first_pass = first_specs(n_desks + 1, levels)

    def histograms(specs: Sequence[BinSpec]) -> pd.DataFrame:
        if list(specs) == first_pass:
            t0 = time.perf_counter()
            rows = pd.DataFrame(blocks.frame.select("hist").where("hist IS NOT NULL")
                                .toPandas())
            embedded = merged(list(rows["hist"]))
            if _covers(embedded, len(specs), n_scenarios):
                record(t0)
                return embedded
            # The rows were built without levels: bin them in a pass of their own.

        def run(task: BlockIter) -> Iterator[pd.DataFrame]:
            parts = [block_histograms(block_losses(pnl, first), specs)
                     for _, first, pnl in task]
            yield pd.DataFrame({"hist": [pack_histogram(merge_histograms(parts))]})

        # One packed histogram per task (the blocks' tails only).
        return merged(list(timed(_over_blocks(blocks, run, "hist binary"))["hist"]))

    def partials(bands: Sequence[Band]) -> pd.DataFrame:
        def run(task: BlockIter) -> Iterator[pd.DataFrame]:
            for b, first, pnl in task:
                yield block_partials(block_losses(pnl, first), b, first, bands, n_desks)

        return timed(_over_blocks(blocks, run, PARTIAL_SCHEMA))

    return summarize(n_scenarios, n_desks, levels, histograms, partials)


def _covers(hist: pd.DataFrame, n_specs: int, n_scenarios: int) -> bool:
    """Whether ``hist`` counts every scenario once in each of its ``n_specs`` specs."""
    counts = hist[hist["bin"] != LUMP_TOP].groupby("spec")["count"].sum()
    return len(counts) == n_specs and bool((counts == n_scenarios).all())


def scenario_pnl_rows(blocks: Blocks) -> DataFrame:
    """The block rows as one row per (block, desk) with the P&L array (the audit table)."""
    schema = T.StructType([
        T.StructField("block_id", T.LongType(), False),
        T.StructField("desk_index", T.IntegerType(), False),
        T.StructField("first_scenario", T.LongType(), False),
        T.StructField("pnl", T.ArrayType(T.DoubleType(), False), False),
    ])

    n_desks = blocks.n_desks

    def run(task: BlockIter) -> Iterator[pd.DataFrame]:
        for b, first, pnl in task:
            yield pd.DataFrame({
                "block_id": np.full(n_desks, b, dtype=np.int64),
                "desk_index": np.arange(n_desks, dtype=np.int32),
                "first_scenario": np.full(n_desks, first, dtype=np.int64),
                "pnl": list(np.ascontiguousarray(pnl.T)),
            })

    return _over_blocks(blocks, run, schema)


def _inject_faults(faults: TestingConfig, block_id: int) -> None:
    """Test-only: delay every block, fail chosen blocks on early task attempts."""
    if faults.block_delay_seconds:
        time.sleep(faults.block_delay_seconds)
    if block_id in faults.fail_blocks:
        ctx = TaskContext.get()
        attempt = ctx.attemptNumber() if ctx is not None else 0
        if attempt < faults.fail_attempts:
            raise RuntimeError(f"injected fault: block {block_id}, task attempt {attempt}")


def collect_pnl(blocks: Blocks) -> NDArray[np.float64]:
    """Gather every block's P&L into the (N, D) matrix, in scenario order.

    For tests and the benchmark's accuracy section only: the job never gathers it.
    """
    n_scenarios, n_desks = blocks.n_scenarios, blocks.n_desks

    def run(task: BlockIter) -> Iterator[pd.DataFrame]:
        for _, first, pnl in task:
            yield pd.DataFrame({"first_scenario": [first], "pnl": [pnl.tobytes()]})

    table = _over_blocks(blocks, run, "first_scenario long, pnl binary").toArrow()
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
    spark: SparkSession, blocks: Blocks, book: ResolvedBook, requests: Sequence[Request],
    levels: Sequence[float], group: int = SUM_GROUP, tiling: Tiling | None = None,
    smile: str = "sticky_strike",
) -> tuple[NDArray[np.float64], pd.DataFrame]:
    """Position contributions (R, P) and block-0 sample statistics, computed on executors.

    Every block (from :func:`simulate_blocks`) finds its requested scenarios from its
    desk P&L, regenerates them from ``(seed, block)`` and returns its weighted position
    losses. They are added up per group of ``group`` consecutive blocks, in block order,
    and the groups in order, exactly as
    :func:`risk_engine.attribution.attribute_in_process` does, so the result does not
    depend on task scheduling: with more than one group, executors add each group (a
    shuffle) and the driver receives one row per group; with one group (``n_blocks <=
    group``), the driver receives the blocks' rows and adds them itself.

    The sample statistics are the ones the blocks' rows carry
    (:attr:`Blocks.statistics`) when they were asked for these very arguments
    (:meth:`SampleRequest.matches`), else a one-task Spark job computes them.
    """
    source = blocks.spec.source
    # Request r is non-zero only on its desk's positions: only those values travel.
    mask = book.desk_index[None, :] == np.array([r.desk_index for r in requests])[:, None]
    n_values = int(mask.sum())

    def run(task: BlockIter) -> Iterator[pd.DataFrame]:
        for b, _, pnl in task:
            c = block_contributions(book, source, requests, b, pnl, tiling, smile)
            yield pd.DataFrame({"group": [b // group], "block_id": [b],
                                "values": [c[mask].tobytes()]})

    def in_order(values: Iterable[bytes]) -> NDArray[np.float64]:
        part = np.zeros(n_values)
        for raw in values:  # in block order (or group order)
            part += np.frombuffer(raw, dtype=np.float64)
        return part

    def add_group(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("block_id")
        ids = frame["block_id"]
        return pd.DataFrame({"group": [int(frame["group"].iloc[0])], "n": [len(frame)],
                             "lo": [int(ids.min())], "hi": [int(ids.max())],
                             "values": [in_order(frame["values"]).tobytes()]})

    block_schema = "group long, block_id long, values binary"
    group_schema = "group long, n long, lo long, hi long, values binary"
    per_block = _over_blocks(blocks, run, block_schema)
    n_blocks = source.n_blocks
    if n_blocks <= group:  # one group: no shuffle, the driver adds the blocks in order
        rows = pd.DataFrame(per_block.toPandas()).sort_values("block_id")
        if not np.array_equal(rows["block_id"], np.arange(n_blocks)):
            raise RuntimeError(f"attribution: block results of blocks "
                               f"{list(rows['block_id'])} for {n_blocks} blocks")
        log.debug("attribution: %d block(s), one summation group, added on the driver",
                  n_blocks)
        got = pd.DataFrame({"values": [in_order(rows["values"]).tobytes()]})
    else:
        got = pd.DataFrame(per_block.groupBy("group")
                           .applyInPandas(add_group, schema=group_schema)
                           .toPandas()).sort_values("group")
        n_groups = -(-n_blocks // group)
        lo = np.arange(n_groups) * group
        hi = np.minimum(lo + group, n_blocks) - 1
        if not (len(got) == n_groups and np.array_equal(got["group"], np.arange(n_groups))
                and np.array_equal(got["lo"], lo) and np.array_equal(got["hi"], hi)
                and np.array_equal(got["n"], hi - lo + 1)):
            raise RuntimeError(f"attribution: block results of {int(got['n'].sum())} blocks "
                               f"in {len(got)} groups for {n_blocks} blocks")
    total = np.zeros(mask.shape)
    for raw in got["values"]:  # groups in order, as attribute_in_process adds them
        total[mask] += np.frombuffer(raw, dtype=np.float64)

    if (blocks.statistics is not None and blocks.sample is not None
            and blocks.sample.matches(book, levels, tiling, smile)):
        log.info("attribution: block-0 sample statistics computed in the fan-out")
        return total, blocks.statistics.copy()

    def sample(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for _ in batches:
            yield sample_statistics(book, source, levels, tiling, smile)

    sample_schema = T.StructType([
        T.StructField("position_id", T.StringType(), False),
        T.StructField("confidence_level", T.DoubleType(), False),
        T.StructField("incremental_var", T.DoubleType(), True),
        T.StructField("correlation", T.DoubleType(), True),
        T.StructField("sample_scenarios", T.LongType(), False),
    ])
    stats = spark.range(0, 1, 1, numPartitions=1).mapInPandas(sample, schema=sample_schema)
    return total, stats.toPandas()
