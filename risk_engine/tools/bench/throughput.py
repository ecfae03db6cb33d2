"""Throughput: each method's plan and kernel rate, then plain processes against Spark.

Per method, rounds alternate the block work in one process per core without Spark and the
Spark fan-out at equal cores, so that both see the same machine load; the best round of
each is kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from risk_engine.pipeline import Prepared
from risk_engine.revaluation_grid import GridPlan
from risk_engine.simulation import SimulationSpec
from risk_engine.tools.bench.memory import spark_cpu
from risk_engine.tools.bench.processes import kernel_rate, single_process_rate
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.bench.stage import (
    bench_session,
    release_session,
    spark_partitions,
    spark_stage,
    warm_up,
)
from risk_engine.tools.bench.workload import n_blocks, spec_for


def _rate_target(method: str) -> str:
    return "full_kernel_rate" if method == "full" else "grid_kernel_rate"


def method_specs(rows: Rows, prep: Prepared, methods: Sequence[str], n0: int,
                 say: Callable[[str], None]) -> dict[str, SimulationSpec]:
    """Plan each method (``book`` rows) and time its kernel alone (``throughput`` rows)."""
    specs: dict[str, SimulationSpec] = {}
    for m in methods:
        t0 = time.perf_counter()
        specs[m] = spec_for(prep, m)
        t_plan = time.perf_counter() - t0
        plan = specs[m].plan
        rows.add("book", m, None, "plan_seconds", t_plan, "s")
        if isinstance(plan, GridPlan):
            rows.add("book", m, None, "grid_cells", plan.n_cells,
                     note=f"resolution {plan.resolution:g} cells per sigma sqrt(tau)")
        else:
            rows.add("book", m, None, "contracts_priced_per_scenario", plan.n_live,
                     note="distinct live contracts (calls and puts netted by parity)")
        say(f"[{m}] kernel rate")
        k_rate = kernel_rate(specs[m])
        rows.add("throughput", m, n0, "kernel_only_rate", k_rate / 1e6, "M rev/s/core",
                 _rate_target(m), "one process, CPU time, scenarios drawn beforehand")
    return specs


@dataclasses.dataclass
class _Rounds:
    """The best rounds of one method: plain processes, and the Spark stage's fan-out."""

    single_s: float  # wall of the slowest process, best round
    fan_out_s: float  # Spark fan-out wall, best round
    workers_cpu_s: float  # CPU of the Python workers in that Spark round
    jvm_cpu_s: float  # CPU of the JVMs in that Spark round
    stage_s: float  # the whole Monte Carlo stage in that Spark round
    partitions: int
    paired: list[float]  # each round's single-process wall / Spark fan-out wall
    pnl: np.ndarray  # the (N, D) P&L of the last Spark round


def _rounds(spark: Any, spec: SimulationSpec, m: str, cores: int, rounds: int,
            say: Callable[[str], None]) -> _Rounds:
    """Alternate plain processes and the Spark stage ``rounds`` times; keep the best."""
    single, stage, parts = math.inf, None, cores
    paired: list[float] = []
    pnl = None
    for r in range(rounds):
        say(f"[{m}] round {r + 1}/{rounds}: {cores} processes without Spark")
        _, sp_wall = single_process_rate(spec, cores)
        single = min(single, sp_wall)
        if r == 0:
            parts = spark_partitions(spec, cores)
        say(f"[{m}] round {r + 1}/{rounds}: Spark stage, {n_blocks(spec)} blocks in "
            f"{parts} tasks")
        before = spark_cpu()
        run = spark_stage(spark, spec, parts)
        after = spark_cpu()
        paired.append(sp_wall / run.fan_out_s)
        if stage is None or run.fan_out_s < stage[0]:
            stage = (run.fan_out_s, after[0] - before[0], after[1] - before[1], run.wall_s)
        if r == rounds - 1:
            pnl = run.pnl(spec)
        run.blocks.unpersist()
    assert stage is not None and pnl is not None
    return _Rounds(single, *stage, partitions=parts, paired=paired, pnl=pnl)


def _method_rows(rows: Rows, m: str, n0: int, n_positions: int, cores: int, rounds: int,
                 best: _Rounds) -> None:
    """The ``throughput`` rows of one method's best rounds."""
    tgt, single, wall = _rate_target(m), best.single_s, best.fan_out_s
    sp_rate = n_positions * n0 / (single * cores)
    rate = n_positions * n0 / (wall * cores)
    rows.add("throughput", m, n0, "single_process_rate", sp_rate / 1e6, "M rev/s/core", tgt,
             f"draw + revalue, {cores} processes, wall {single:.2f} s (best of {rounds})")
    rows.add("throughput", m, n0, "spark_stage_rate", rate / 1e6, "M rev/s/core", tgt,
             f"fan-out: draw + revalue + persist + first histogram, wall {wall:.2f} s, "
             f"{best.partitions} tasks (best of {rounds})")
    spread = np.quantile(best.paired, [0.0, 0.5, 1.0])
    rows.add("throughput", m, n0, "spark_vs_single_process", rate / sp_rate, "",
             "spark_vs_single_process",
             note=f"best vs best; round by round min {spread[0]:.2f}, median "
                  f"{spread[1]:.2f}, max {spread[2]:.2f}")
    mc_rate = n_positions * n0 / (best.stage_s * cores)
    rows.add("throughput", m, n0, "monte_carlo_stage_vs_single_process", mc_rate / sp_rate,
             "", note=f"the job's whole stage incl. the tail passes, wall {best.stage_s:.2f} s")
    rows.add("throughput", m, n0, "spark_python_workers_cpu_s", best.workers_cpu_s, "s",
             note=f"vs {single * cores:.2f} s of process time without Spark")
    rows.add("throughput", m, n0, "spark_jvm_cpu_s", best.jvm_cpu_s, "s",
             note="driver and executor JVM (local mode), competes for the same cores")


def spark_throughput(rows: Rows, specs: dict[str, SimulationSpec], methods: Sequence[str], *,
                     master: str, driver_memory: str, cores: int, rounds: int, n0: int,
                     n_positions: int, say: Callable[[str], None]) -> dict[str, np.ndarray]:
    """Start Spark, time every method against plain processes; return each method's P&L.

    Rates count ``n_positions`` revaluations per scenario. The P&L (of each method's last
    Spark round) feeds the accuracy section.
    """
    say("starting Spark")
    t0 = time.perf_counter()
    spark = bench_session(master, driver_memory)
    t_session = time.perf_counter() - t0
    pnls: dict[str, np.ndarray] = {}
    try:
        t_warm = warm_up(spark, specs[methods[0]], cores)
        rows.add("throughput", None, None, "spark_session_start_s", t_session, "s")
        rows.add("throughput", None, None, "spark_first_job_s", t_warm, "s",
                 note="starts the Python workers")
        for m in methods:
            best = _rounds(spark, specs[m], m, cores, rounds, say)
            pnls[m] = best.pnl
            _method_rows(rows, m, n0, n_positions, cores, rounds, best)
    finally:
        release_session(spark)
    return pnls
