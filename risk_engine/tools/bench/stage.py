"""The Spark side of the benchmark: session, the job's Monte Carlo stage, warm-up.

pyspark is imported only inside these functions, through :mod:`risk_engine.spark`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from risk_engine.simulation import SimulationSpec
from risk_engine.tools.bench.workload import LEVELS, n_blocks


def cores_of(master: str) -> int:
    """Cores of a ``local[n]`` master (``local[*]``: all of this machine's)."""
    m = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master.strip())
    if not m:
        raise ValueError(f"bench measures per-core rates on a local master, got {master!r}")
    if m.group(1) in (None, ""):
        return 1
    if m.group(1) == "*":
        return os.cpu_count() or 1
    return int(m.group(1))


#: Sessions this module started (and so stops); a session already running in the process
#: (a test suite's) is used as it is and left running.
_STARTED: set[int] = set()


def bench_session(master: str, driver_memory: str) -> Any:
    """Start the benchmark's Spark session on ``master`` (no UI, unlimited result size).

    Stop it with :func:`release_session`, which leaves a session that was already running
    in this process alone.
    """
    from risk_engine.config import SparkConfig
    from risk_engine.spark.session import build_session, session_running

    running = session_running()

    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
            "spark.driver.memory": driver_memory, "spark.driver.maxResultSize": "0"}
    if re.match(r"spark://(127\.0\.0\.1|localhost)[:/]", master):
        # A standalone cluster on this machine: its executors run this interpreter and
        # reach the driver on the loopback address.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    spark = build_session(SparkConfig(app_name="risk-engine-bench", conf=conf), master=master)
    if not running:
        _STARTED.add(id(spark))
    return spark


def release_session(spark: Any) -> None:
    """Stop ``spark`` if :func:`bench_session` started it."""
    if id(spark) in _STARTED:
        _STARTED.discard(id(spark))
        spark.stop()


def spark_partitions(spec: SimulationSpec, cores: int) -> int:
    """Spark partitions of the stage: the job's default slicing (:func:`default_slices`)."""
    from risk_engine.spark.stages import default_slices

    return default_slices(n_blocks(spec), cores, spec.plan.relative_cost)


@dataclasses.dataclass
class StageRun:
    """One Spark Monte Carlo stage as the job runs it, with its persisted blocks."""

    blocks: Any  # the stage's Blocks (unpersist when done)
    fan_out_s: float  # draw + revalue every block, persist, first histogram pass
    tail_passes_s: float  # the remaining passes: bands (and narrowing), band losses
    wall_s: float  # the whole stage, driver work included
    summary: Any  # the TailSummary

    def pnl(self, spec: SimulationSpec) -> np.ndarray:
        """Gather the (N, D) P&L (accuracy checks only; the job never does)."""
        from risk_engine.spark.stages import collect_pnl

        return collect_pnl(self.blocks)


def spark_stage(spark: Any, spec: SimulationSpec, partitions: int,
                levels: Sequence[float] = LEVELS) -> StageRun:
    """Run the Spark Monte Carlo stage as the job does: blocks persisted, tail passes."""
    from risk_engine.spark.stages import simulate_blocks, tail_summary

    t0 = time.perf_counter()
    blocks = simulate_blocks(spark, spec, n_blocks(spec), partitions, levels=levels)
    passes: list[float] = []
    summary = tail_summary(blocks, levels, pass_seconds=passes)
    wall = time.perf_counter() - t0
    return StageRun(blocks, passes[0], sum(passes[1:]), wall, summary)


def warm_up(spark: Any, spec: SimulationSpec, cores: int) -> float:
    """Run a small job so Python workers are started and have imported the engine."""
    small = dataclasses.replace(spec, source=dataclasses.replace(
        spec.source, n_scenarios=cores * 256, block_size=256))
    t0 = time.perf_counter()
    spark_stage(spark, small, cores).blocks.unpersist()
    return time.perf_counter() - t0
