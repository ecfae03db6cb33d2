"""Scaling: the Spark stage, session start-up and peak memory at each scenario count.

Each point runs in a fresh process with its own Spark session (so peaks belong to that
point), on a local master or a standalone cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from risk_engine.tools.bench.memory import jvm_live_heap_mib, process_peaks
from risk_engine.tools.bench.processes import (
    REFERENCE_BLOCKS_PER_CORE,
    REFERENCE_ROUNDS,
    reference_rate,
)
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.bench.stage import (
    bench_session,
    cores_of,
    release_session,
    spark_partitions,
    spark_stage,
    warm_up,
)
from risk_engine.tools.bench.workload import bench_prepare, n_blocks, spec_for

#: The line of the child's standard output that carries its result as JSON.
_RESULT_TAG = "BENCH-RESULT "


def scale_point(params: dict[str, Any]) -> dict[str, Any]:
    """One scaling point in this process: fresh session, warm-up, Spark stage, peaks."""
    prep = bench_prepare(params["n_scenarios"], positions=params["positions"],
                         underlyings=params["underlyings"], desks=params["desks"],
                         horizon_days=params["horizon_days"],
                         block_size=params["block_size"])
    spec = spec_for(prep, params["method"])
    master = params["master"]
    t0 = time.perf_counter()
    spark = bench_session(master, params["driver_memory"])
    t_session = time.perf_counter() - t0
    try:
        if master.startswith("local"):
            cores = cores_of(master)
            t_warm = warm_up(spark, spec, cores)
        else:  # a cluster: its executors' cores, once they have registered
            t_warm = warm_up(spark, spec, spark.sparkContext.defaultParallelism)
            cores = spark.sparkContext.defaultParallelism
        parts = spark_partitions(spec, cores)
        stage = spark_stage(spark, spec, parts)
        live = jvm_live_heap_mib(spark)
        regenerated = stage.blocks.recomputed.value
        stage.blocks.unpersist()
        peaks = process_peaks()
        single = reference_rate(spec, cores) if master.startswith("local") else float("nan")
    finally:
        release_session(spark)
    return {"session_s": t_session, "warm_up_s": t_warm, "stage_s": stage.fan_out_s,
            "tail_passes_s": stage.tail_passes_s, "monte_carlo_s": stage.wall_s,
            "histogram_passes": stage.summary.histogram_passes,
            "band_losses": stage.summary.band_losses,
            "partitions": parts, "blocks": n_blocks(spec), "cores": cores,
            "blocks_regenerated": regenerated, "single_process_rate": single,
            "driver_jvm_live_heap_mib": live, **peaks}


def _scale_child() -> None:
    params = json.loads(sys.stdin.read())
    result = scale_point(params)
    print(_RESULT_TAG + json.dumps(result), flush=True)


def scale_in_subprocess(params: dict[str, Any]) -> dict[str, Any]:
    """:func:`scale_point` in a fresh Python process; ``{"error": ...}`` if it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c",
         "from risk_engine.tools.bench.scaling import _scale_child; _scale_child()"],
        input=json.dumps(params), capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    return {"error": f"exit code {proc.returncode}: {tail}"}


def scaling_rows(rows: Rows, scenarios: Sequence[int], scale_methods: Sequence[str], *,
                 point: dict[str, Any], where: str, n_positions: int, subprocess_each: bool,
                 say: Callable[[str], None]) -> None:
    """Add the ``scaling`` section: every scenario count of every method, then the ratios.

    ``point`` holds the parameters of :func:`scale_point` but ``n_scenarios`` and
    ``method``; ``where`` is the master the points run on.
    """
    for m in scale_methods:
        points = []
        for n in scenarios:
            say(f"[{m}] scaling point {n:,} scenarios")
            params = {"n_scenarios": int(n), **point, "method": m}
            res = scale_in_subprocess(params) if subprocess_each else scale_point(params)
            points.append((int(n), res))
            if "error" in res:
                rows.add("scaling", m, n, "failed", float("nan"), note=res["error"][-300:])
                continue
            _point_rows(rows, m, n, res, where, n_positions, subprocess_each)
        _growth_rows(rows, m, [(n, r) for n, r in points if "error" not in r])


def _point_rows(rows: Rows, m: str, n: int, res: dict[str, Any], where: str,
                n_positions: int, subprocess_each: bool) -> None:
    """The rows of one scaling point ``res`` of method ``m`` at ``n`` scenarios."""
    note = "" if subprocess_each else "in-process: peaks are cumulative"
    rows.add("scaling", m, n, "stage_s", res["stage_s"], "s",
             note=f"{res['blocks']} blocks in {res['partitions']} tasks on "
                  f"{where} ({res['cores']} cores)")
    rows.add("scaling", m, n, "job_wall_with_startup_s",
             res["session_s"] + res["warm_up_s"] + res["monte_carlo_s"], "s",
             note=f"session {res['session_s']:.1f} s + first job {res['warm_up_s']:.1f} s")
    rows.add("scaling", m, n, "job_wall_without_startup_s", res["monte_carlo_s"], "s",
             note=f"fan-out {res['stage_s']:.1f} s + tail passes "
                  f"{res['tail_passes_s']:.1f} s + driver")
    rows.add("scaling", m, n, "tail_band_losses", res["band_losses"], "",
             note=f"gathered on the driver; {res['histogram_passes']} histogram pass(es)")
    rows.add("scaling", m, n, "block_reads_regenerated", res["blocks_regenerated"], "",
             note="reads that found no block file on their executor")
    stage_rate = n_positions * n / (res["stage_s"] * res["cores"])
    rows.add("scaling", m, n, "stage_rate", stage_rate / 1e6, "M rev/s/core")
    if res["single_process_rate"] == res["single_process_rate"]:  # local masters
        rows.add("scaling", m, n, "spark_vs_single_process",
                 stage_rate / res["single_process_rate"], "", "spark_vs_single_process",
                 note=f"vs one process per core on the first {REFERENCE_BLOCKS_PER_CORE} "
                      f"blocks per core, best of {REFERENCE_ROUNDS}, measured right after")
    for key in ("driver_python_peak_mib", "driver_jvm_peak_mib",
                "python_worker_peak_mib", "python_workers_sum_peak_mib"):
        rows.add("scaling", m, n, key, res[key], "MiB", note=note)
    rows.add("scaling", m, n, "driver_jvm_live_heap_mib", res["driver_jvm_live_heap_mib"],
             "MiB", note="heap in use after a full GC, blocks still persisted")


def _growth_rows(rows: Rows, m: str, ok: list[tuple[int, dict[str, Any]]]) -> None:
    """Time ratios of tenfold scenario counts, and memory growth first to last point."""
    for (n_a, a), (n_b, b) in zip(ok, ok[1:], strict=False):
        if n_b == 10 * n_a:
            rows.add("scaling", m, n_b, f"time_ratio_vs_{n_a}",
                     b["monte_carlo_s"] / a["monte_carlo_s"], "", "time_ratio_10x",
                     note="whole Monte Carlo stage, tail passes included")
    if len(ok) >= 2:
        (n_a, a), (n_b, b) = ok[0], ok[-1]
        for key in ("driver_python_peak_mib", "driver_jvm_peak_mib",
                    "python_worker_peak_mib"):
            rows.add("scaling", m, n_b, f"{key.removesuffix('_mib')}_growth_vs_{n_a}_mib",
                     b[key] - a[key], "MiB", "peak_memory_growth_mib")
        rows.add("scaling", m, n_b, f"driver_jvm_live_heap_growth_vs_{n_a}_mib",
                 b["driver_jvm_live_heap_mib"] - a["driver_jvm_live_heap_mib"], "MiB",
                 note="retained, not a target: the target is on peaks")
