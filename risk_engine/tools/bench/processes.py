"""Rates without Spark: the revaluation kernel alone, and the block work in plain processes.

These are the references the Spark stage is compared with.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import time
from queue import Empty
from typing import Any

import numpy as np

from risk_engine.revaluation import desk_pnl
from risk_engine.simulation import SimulationSpec, simulate_block
from risk_engine.tools.bench.workload import n_blocks

#: Blocks per core of :func:`reference_rate`, and its rounds (the best is kept).
REFERENCE_BLOCKS_PER_CORE, REFERENCE_ROUNDS = 5, 3


def kernel_rate(spec: SimulationSpec, n: int = 20_000) -> float:
    """Position revaluations per second (CPU time, this process) of the kernel alone."""
    x = spec.source.block(0)[:n]
    if x.shape[0] < n:
        x = np.concatenate([x] * (-(-n // max(x.shape[0], 1))))[:n]
    desk_pnl(spec.plan, x[:256], spec.chunk_size)  # warm up
    best = math.inf
    for _ in range(3):
        t0 = time.process_time()
        desk_pnl(spec.plan, x, spec.chunk_size)
        best = min(best, time.process_time() - t0)
    return spec.plan.n_positions * x.shape[0] / best


def _worker_blocks(spec: SimulationSpec, blocks: list[int], barrier: Any, queue: Any) -> None:
    simulate_block(spec, blocks[0]) if blocks else None  # warm up (imports, caches)
    barrier.wait()
    t0 = time.perf_counter()
    for b in blocks:
        simulate_block(spec, b)
    queue.put(time.perf_counter() - t0)


def _collect_times(procs: list[Any], queue: Any) -> list[float]:
    """Each worker's wall seconds; kill them all if one dies before reporting."""
    times: list[float] = []
    while len(times) < len(procs):
        try:
            times.append(queue.get(timeout=1.0))
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                raise RuntimeError(
                    f"single-process benchmark worker failed: exit {dead}") from None
    return times


def single_process_rate(spec: SimulationSpec, cores: int) -> tuple[float, float]:
    """Block work (draw + revalue) in ``cores`` processes without Spark, static split.

    Returns (revaluations per second per core, wall seconds of the slowest process).
    """
    split = np.array_split(np.arange(n_blocks(spec)), cores)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(cores), ctx.Queue()
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # as PySpark workers run
    try:
        procs = [ctx.Process(target=_worker_blocks, args=(spec, s.tolist(), barrier, queue))
                 for s in split]
        for p in procs:
            p.start()
        times = _collect_times(procs, queue)
        for p in procs:
            p.join()
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    wall = max(times)
    return spec.plan.n_positions * spec.source.n_scenarios / (wall * cores), wall


def reference_rate(spec: SimulationSpec, cores: int) -> float:
    """Single-process rate on the first blocks of ``spec``, to pair with a Spark stage.

    The machine's speed drifts over minutes (a shared VM), so a long stage is compared with
    plain processes measured right after it, on the same cores, rather than with the
    throughput section's rounds.
    """
    n = min(spec.source.n_scenarios, cores * REFERENCE_BLOCKS_PER_CORE * spec.source.block_size)
    head = dataclasses.replace(spec, source=dataclasses.replace(spec.source, n_scenarios=n))
    return max(single_process_rate(head, cores)[0] for _ in range(REFERENCE_ROUNDS))
