"""Scaling in positions: the whole nightly job on the demo book grown to N positions.

Each point writes the demo snapshot with N positions (same 50 underlyings and desks,
:func:`risk_engine.tools.demo_data.generate`), then runs the nightly job
(:func:`risk_engine.spark.job.main`, every stage the config turns on, the report included)
in a fresh Python process with its own Spark session, so the peaks (:mod:`.memory`) belong
to that point: the driver's Python, its JVM and the PySpark Python workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from risk_engine.tools.bench.report import Rows

#: The line of the child's standard output that carries its result as JSON.
_RESULT_TAG = "BENCH-POSITIONS "


def positions_point(params: dict[str, Any]) -> dict[str, Any]:
    """One point in this process: the nightly job on ``params["input_root"]``, its peaks.

    ``params``: ``config`` (YAML paths), ``overrides`` (dotted keys), ``input_root``,
    ``output_root``, ``master``.
    """
    from risk_engine.config import load_config
    from risk_engine.spark.job import main
    from risk_engine.spark.session import build_session
    from risk_engine.tools.bench.memory import jvm_live_heap_mib, process_peaks

    overrides = {**params["overrides"], "input.root": params["input_root"],
                 "output.root": params["output_root"]}
    cfg = load_config(*params["config"], overrides=overrides)
    t0 = time.perf_counter()
    spark = build_session(cfg.spark, master=params["master"])
    t_session = time.perf_counter() - t0
    try:
        t1 = time.perf_counter()
        summary = main(spark, cfg)
        wall = time.perf_counter() - t1
        live = jvm_live_heap_mib(spark)
        peaks = process_peaks()
    finally:
        spark.stop()
    return {"session_s": t_session, "job_s": wall, "status": summary.status,
            "timings": dict(summary.timings), "driver_jvm_live_heap_mib": live, **peaks}


def _child() -> None:
    params = json.loads(sys.stdin.read())
    print(_RESULT_TAG + json.dumps(positions_point(params)), flush=True)


def _in_subprocess(params: dict[str, Any]) -> dict[str, Any]:
    """:func:`positions_point` in a fresh Python process; ``{"error": ...}`` if it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c",
         "from risk_engine.tools.bench.positions import _child; _child()"],
        input=json.dumps(params), capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(_RESULT_TAG):
            return dict(json.loads(line[len(_RESULT_TAG):]))
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    return {"error": f"exit code {proc.returncode}: {tail}"}


def positions_rows(rows: Rows, counts: Sequence[int], *, n_scenarios: int, master: str,
                   config: Sequence[str], overrides: Mapping[str, Any],
                   one_desk: str | None = None, workdir: str | None = None,
                   say: Callable[[str], None] = lambda msg: None) -> None:
    """Add the ``positions`` section: the nightly job at each position count, then ratios.

    ``config`` are the YAML files of the run (e.g. ``conf/local.yaml``), ``overrides`` dotted
    keys on top of them (``monte_carlo.n_scenarios`` is set to ``n_scenarios``).
    """
    from risk_engine.tools.demo_data import generate, write_tables

    root = Path(workdir or tempfile.mkdtemp(prefix="risk-engine-bench-positions-"))
    done: list[tuple[int, dict[str, Any]]] = []
    try:
        for n in counts:
            say(f"positions point {n:,} positions, {n_scenarios:,} scenarios")
            data, out = root / f"in-{n}", root / f"out-{n}"
            write_tables(generate(n_positions=int(n), one_desk=one_desk), data)
            params = {"config": list(config), "master": master,
                      "overrides": {**overrides, "monte_carlo.n_scenarios": n_scenarios},
                      "input_root": str(data), "output_root": str(out)}
            res = _in_subprocess(params)
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            label = f"{int(n):,} positions"
            if "error" in res:
                rows.add("positions", label, n_scenarios, "failed", float("nan"),
                         note=res["error"][-300:])
                continue
            done.append((int(n), res))
            _point_rows(rows, label, n_scenarios, res, master)
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    for (n_a, a), (n_b, b) in zip(done, done[1:], strict=False):
        if n_b == 10 * n_a:
            rows.add("positions", f"{n_b:,} positions", n_scenarios,
                     f"time_ratio_vs_{n_a}_positions", b["job_s"] / a["job_s"], "",
                     "time_ratio_10x", note="whole nightly job, publication included")


def _point_rows(rows: Rows, label: str, n: int, res: dict[str, Any], master: str) -> None:
    stages = ", ".join(f"{k} {v:.0f}" for k, v in res["timings"].items() if v >= 0.5)
    rows.add("positions", label, n, "job_s", res["job_s"], "s",
             note=f"{res['status']} on {master}; {stages}")
    rows.add("positions", label, n, "session_s", res["session_s"], "s")
    driver = res["driver_python_peak_mib"] + res["driver_jvm_peak_mib"]
    rows.add("positions", label, n, "driver_peak_mib", driver, "MiB", "driver_peak_mib",
             note="driver Python + driver JVM resident peaks")
    for key in ("driver_python_peak_mib", "driver_jvm_peak_mib", "python_worker_peak_mib",
                "python_workers_sum_peak_mib", "driver_jvm_live_heap_mib"):
        rows.add("positions", label, n, key, res[key], "MiB")
