"""``risk-engine bench``: throughput, accuracy, scaling and memory of the Monte Carlo stage.

One run measures, on a generated option book (see :func:`bench_tables`):

* throughput, per revaluation method: position revaluations per second per core of the
  kernel alone (one process, scenarios drawn beforehand), of the whole block work
  (draw + revalue, ``simulate_block``) in one process per core without Spark, and of the
  Spark fan-out (``simulate_blocks``, plus the first histogram pass that
  materializes it) at equal cores, and the ratio of the last two; and the job's whole
  Monte Carlo stage, the tail passes of :mod:`risk_engine.tails` included;
* accuracy: full revaluation against an independent pricer built on ``scipy.stats.norm``;
  every other method against full revaluation on the same scenarios (desk and firm VaR
  and ES, largest pricing error per contract);
* scaling: Spark stage time, session start-up and peak memory of the driver (Python and
  JVM) and of the Python workers at each scenario count, each point in a fresh process with
  its own Spark session (so peaks belong to that point).

Numbers are wall-clock on a possibly shared machine: compare ratios taken from one run, and
rerun when the machine is busy. This is a measurement tool, not a timed test.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pandas as pd

from risk_engine.book import CALL, EQUITY, ResolvedBook
from risk_engine.measures import var_es
from risk_engine.pipeline import InputTables, Prepared, SimulationSpec, prepare, simulate_block
from risk_engine.revaluation import desk_pnl
from risk_engine.revaluation_grid import METHODS, GridPlan, build_plan, contract_errors
from risk_engine.tools.demo_data import generate

AS_OF = dt.date(2026, 11, 20)
LEVELS = (0.95, 0.975, 0.99)

#: Targets of issue 6, as (metric, comparison, bound).
TARGETS = {
    "spark_vs_single_process": (">=", 0.90),
    "full_kernel_rate": (">=", 60.0),
    "grid_kernel_rate": (">=", 300.0),
    "var_es_rel_error": ("<=", 1e-4),
    "full_vs_scipy_rel_error": ("<=", 1e-9),
    "time_ratio_10x": ("<=", 11.0),
    "peak_memory_growth_mib": ("<=", 64.0),
}

COLUMNS = ["section", "method", "n_scenarios", "metric", "value", "unit", "target", "met",
           "note"]


# ---------------------------------------------------------------------------- the book


def bench_tables(positions: int = 2000, underlyings: int = 50, desks: int = 10,
                 seed: int = 7) -> dict[str, pd.DataFrame]:
    """Demo tables whose book is ``positions`` options spread round-robin over ``desks``.

    The options (calls and puts, long and short, weekly to one-year expiries, some expiring
    inside a 10-day horizon) come from :func:`risk_engine.tools.demo_data.generate`; its stock
    lines are dropped so that every revaluation counted is an option pricing.
    """
    n_gen = max(2 * positions, 100)
    while True:
        tables = generate(AS_OF, n_underlyings=underlyings, n_positions=n_gen, seed=seed)
        pos = tables["positions"]
        opts = pos[pos["instrument_type"] != "equity"]
        if len(opts) >= positions:
            break
        n_gen *= 2
    opts = opts.head(positions).reset_index(drop=True)
    names = [f"desk_{i:02d}" for i in range(desks)]
    opts["desk"] = [names[i % desks] for i in range(len(opts))]
    opts["book"] = opts["desk"]
    opts["position_id"] = [f"B{i + 1:07d}" for i in range(len(opts))]
    return {**tables, "positions": opts}


def bench_config(n_scenarios: int, horizon_days: int, block_size: int, seed: int = 20_261_120
                 ) -> Any:
    """Build the run config of a benchmark point (factor-model scenarios, default levels)."""
    from risk_engine.config import config_from_dict

    return config_from_dict({
        "as_of_date": AS_OF.isoformat(),
        "scenario_model": {"source": "factor_model"},
        "monte_carlo": {"n_scenarios": int(n_scenarios), "horizon_days": int(horizon_days),
                        "block_size": int(min(block_size, n_scenarios)), "seed": seed},
        "risk": {"confidence_levels": list(LEVELS)},
    })


def bench_prepare(n_scenarios: int, *, positions: int, underlyings: int, desks: int,
                  horizon_days: int, block_size: int) -> Prepared:
    """Resolve the benchmark book and scenario model for ``n_scenarios`` scenarios."""
    t = bench_tables(positions, underlyings, desks)
    cfg = bench_config(n_scenarios, horizon_days, block_size)
    return prepare(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                    factor_model=t["factor_model"],
                                    correlations=t["correlations"]))


def spec_for(prep: Prepared, method: str) -> SimulationSpec:
    """Return the simulation spec of ``prep`` with the revaluation plan of ``method``."""
    plan = build_plan(prep.book, method, model=prep.model)
    return dataclasses.replace(prep.spec, plan=plan)


def _n_blocks(spec: SimulationSpec) -> int:
    return -(-spec.source.n_scenarios // spec.source.block_size)


# ---------------------------------------------------------------------- throughput parts


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


def single_process_rate(spec: SimulationSpec, cores: int) -> tuple[float, float]:
    """Block work (draw + revalue) in ``cores`` processes without Spark, static split.

    Returns (revaluations per second per core, wall seconds of the slowest process).
    """
    n_blocks = _n_blocks(spec)
    split = np.array_split(np.arange(n_blocks), cores)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(cores), ctx.Queue()
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # as PySpark workers run
    try:
        procs = [ctx.Process(target=_worker_blocks, args=(spec, s.tolist(), barrier, queue))
                 for s in split]
        for p in procs:
            p.start()
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
        for p in procs:
            p.join()
    finally:
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    wall = max(times)
    return spec.plan.n_positions * spec.source.n_scenarios / (wall * cores), wall


def spark_partitions(spec: SimulationSpec, cores: int) -> int:
    """Spark partitions of the stage: the job's default slicing (:func:`default_slices`)."""
    from risk_engine.spark.stages import default_slices

    return default_slices(_n_blocks(spec), cores, spec.plan.relative_cost)


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
    blocks = simulate_blocks(spark, spec, _n_blocks(spec), partitions, levels=levels)
    passes: list[float] = []
    summary = tail_summary(blocks, levels, pass_seconds=passes)
    wall = time.perf_counter() - t0
    return StageRun(blocks, passes[0], sum(passes[1:]), wall, summary)


def _warm_up(spark: Any, spec: SimulationSpec, cores: int) -> float:
    """Run a small job so Python workers are started and have imported the engine."""
    small = dataclasses.replace(spec, source=dataclasses.replace(
        spec.source, n_scenarios=cores * 256, block_size=256))
    t0 = time.perf_counter()
    spark_stage(spark, small, cores).blocks.unpersist()
    return time.perf_counter() - t0


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


def _session(master: str, driver_memory: str) -> Any:
    from risk_engine.config import SparkConfig
    from risk_engine.spark.session import build_session

    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
            "spark.driver.memory": driver_memory, "spark.driver.maxResultSize": "0"}
    if re.match(r"spark://(127\.0\.0\.1|localhost)[:/]", master):
        # A standalone cluster on this machine: its executors run this interpreter and
        # reach the driver on the loopback address.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        conf.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    return build_session(SparkConfig(app_name="risk-engine-bench", conf=conf), master=master)


# ------------------------------------------------------------------------------ accuracy


def scipy_reference_pnl(book: ResolvedBook, x: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """Desk P&L from an independent Black-Scholes written with ``scipy.stats.norm.cdf``."""
    from scipy.stats import norm

    out = np.empty((x.shape[0], len(book.desks)))
    kind, k, tau = book.kind, book.strike, np.where(book.kind > 0, book.tau_h, 1.0)
    live = (kind > 0) & (book.tau_h > 0)
    v, r, q = book.volatility, book.rate_h, book.dividend_yield
    onehot = np.zeros((book.n_positions, len(book.desks)))
    onehot[np.arange(book.n_positions), book.desk_index] = 1.0
    for a in range(0, x.shape[0], chunk):
        sg = (book.spot * np.exp(x[a:a + chunk]))[:, book.underlying_index]
        with np.errstate(all="ignore"):
            d1 = (np.log(sg / k) + (r - q + v * v / 2) * tau) / (v * np.sqrt(tau))
            d2 = d1 - v * np.sqrt(tau)
            call = sg * np.exp(-q * tau) * norm.cdf(d1) - k * np.exp(-r * tau) * norm.cdf(d2)
            put = k * np.exp(-r * tau) * norm.cdf(-d2) - sg * np.exp(-q * tau) * norm.cdf(-d1)
        unit = np.where(kind == EQUITY, sg,
                        np.where(live, np.where(kind == CALL, call, put),
                                 np.where(kind == CALL, np.maximum(sg - k, 0),
                                          np.maximum(k - sg, 0))))
        vals = unit * book.quantity - book.value
        # exact desk sums in a fixed order (no BLAS): position columns added one by one
        for d in range(len(book.desks)):
            out[a:a + chunk, d] = vals[:, book.desk_index == d].sum(axis=1)
    return out


def var_es_errors(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Largest relative error of desk and firm VaR and ES (all levels): (desks, firm)."""
    worst_desk = 0.0
    for d in range(ref.shape[1]):
        for a, b in zip(var_es(-ref[:, d], LEVELS), var_es(-got[:, d], LEVELS), strict=True):
            worst_desk = max(worst_desk, _rel(a.var, b.var), _rel(a.es, b.es))
    worst_firm = 0.0
    for a, b in zip(var_es(-ref.sum(axis=1), LEVELS), var_es(-got.sum(axis=1), LEVELS),
                    strict=True):
        worst_firm = max(worst_firm, _rel(a.var, b.var), _rel(a.es, b.es))
    return worst_desk, worst_firm


def _rel(a: float, b: float) -> float:
    return abs(b - a) / abs(a) if a != 0 else abs(b - a)


# ------------------------------------------------------------------------------- memory


def _status_kib(pid: int, key: str = "VmHWM") -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(p.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spark_processes() -> tuple[list[int], list[int]]:
    """(JVM pids started by this driver, PySpark Python worker pids below them)."""
    jvms = [c for c in _children(os.getpid()) if "java" in _cmdline(c)]
    workers, stack = [], list(jvms)
    while stack:
        pid = stack.pop()
        for c in _children(pid):
            stack.append(c)
            if "pyspark" in _cmdline(c):
                workers.append(c)
    return jvms, workers


def _spark_cpu() -> tuple[float, float]:
    """CPU seconds used so far by (Python workers, JVM) of this driver's Spark."""
    jvms, workers = _spark_processes()
    return (sum(_cpu_seconds(p) for p in workers), sum(_cpu_seconds(p) for p in jvms))


def process_peaks() -> dict[str, float]:
    """Peak resident memory (MiB) of this driver, its JVM and the PySpark Python workers."""
    # VmHWM, not getrusage: ru_maxrss survives execve, so a child started from a big
    # parent would report the parent's peak.
    own = _status_kib(os.getpid())
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, float] = {"driver_python_peak_mib": own / 1024}
    jvms, pids = _spark_processes()
    jvm_peak = max([(_status_kib(j) or 0) / 1024 for j in jvms], default=0.0)
    workers = [(_status_kib(p) or 0) / 1024 for p in pids]
    out["driver_jvm_peak_mib"] = jvm_peak
    out["python_worker_peak_mib"] = max(workers) if workers else float("nan")
    out["python_workers_sum_peak_mib"] = float(sum(workers)) if workers else float("nan")
    out["python_worker_processes"] = float(len(workers))
    return out


def jvm_live_heap_mib(spark: Any) -> float:
    """Heap the driver JVM retains (MiB): heap in use right after a full collection.

    The JVM's resident size follows its collector's heap sizing (it grows towards
    ``spark.driver.memory`` under allocation pressure); this is what it keeps.
    """
    jvm = spark.sparkContext._jvm
    jvm.java.lang.System.gc()
    usage = jvm.java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage()
    return float(usage.getUsed()) / 2**20


# ------------------------------------------------------------------------ scaling points


def scale_point(params: dict[str, Any]) -> dict[str, Any]:
    """One scaling point in this process: fresh session, warm-up, Spark stage, peaks."""
    prep = bench_prepare(params["n_scenarios"], positions=params["positions"],
                         underlyings=params["underlyings"], desks=params["desks"],
                         horizon_days=params["horizon_days"],
                         block_size=params["block_size"])
    spec = spec_for(prep, params["method"])
    master = params["master"]
    t0 = time.perf_counter()
    spark = _session(master, params["driver_memory"])
    t_session = time.perf_counter() - t0
    try:
        if master.startswith("local"):
            cores = cores_of(master)
            t_warm = _warm_up(spark, spec, cores)
        else:  # a cluster: its executors' cores, once they have registered
            t_warm = _warm_up(spark, spec, spark.sparkContext.defaultParallelism)
            cores = spark.sparkContext.defaultParallelism
        parts = spark_partitions(spec, cores)
        stage = spark_stage(spark, spec, parts)
        live = jvm_live_heap_mib(spark)
        regenerated = stage.blocks.recomputed.value
        stage.blocks.unpersist()
        peaks = process_peaks()
        single = reference_rate(spec, cores) if master.startswith("local") else float("nan")
    finally:
        spark.stop()
    return {"session_s": t_session, "warm_up_s": t_warm, "stage_s": stage.fan_out_s,
            "tail_passes_s": stage.tail_passes_s, "monte_carlo_s": stage.wall_s,
            "histogram_passes": stage.summary.histogram_passes,
            "band_losses": stage.summary.band_losses,
            "partitions": parts, "blocks": _n_blocks(spec), "cores": cores,
            "blocks_regenerated": regenerated, "single_process_rate": single,
            "driver_jvm_live_heap_mib": live, **peaks}


#: Blocks per core of :func:`reference_rate`, and its rounds (the best is kept).
REFERENCE_BLOCKS_PER_CORE, REFERENCE_ROUNDS = 5, 3


def reference_rate(spec: SimulationSpec, cores: int) -> float:
    """Single-process rate on the first blocks of ``spec``, to pair with a Spark stage.

    The machine's speed drifts over minutes (a shared VM), so a long stage is compared with
    plain processes measured right after it, on the same cores, rather than with the
    throughput section's rounds.
    """
    n = min(spec.source.n_scenarios, cores * REFERENCE_BLOCKS_PER_CORE * spec.source.block_size)
    head = dataclasses.replace(spec, source=dataclasses.replace(spec.source, n_scenarios=n))
    return max(single_process_rate(head, cores)[0] for _ in range(REFERENCE_ROUNDS))


def _scale_child() -> None:
    params = json.loads(sys.stdin.read())
    result = scale_point(params)
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def _scale_in_subprocess(params: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-c",
         "from risk_engine.tools.bench.run import _scale_child; _scale_child()"],
        input=json.dumps(params), capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
    return {"error": f"exit code {proc.returncode}: {tail}"}


# ---------------------------------------------------------------------------- the bench


def run_benchmark(
    scenarios: Sequence[int] = (100_000, 1_000_000, 10_000_000),
    *,
    positions: int = 2000,
    underlyings: int = 50,
    desks: int = 10,
    horizon_days: int = 10,
    master: str = "local[2]",
    methods: Sequence[str] = ("full", "grid"),
    scale_methods: Sequence[str] = ("full",),
    block_size: int = 10_000,
    accuracy_scenarios: int = 20_000,
    driver_memory: str = "1g",
    rounds: int = 3,
    scale_subprocess: bool = True,
    scale_master: str | None = None,
    log: Any = None,
) -> pd.DataFrame:
    """Run the benchmark; one row per measured figure (see :data:`COLUMNS`).

    The throughput and accuracy sections run at the first scenario count; the scaling
    section runs every count for each of ``scale_methods`` (each point in a fresh process
    when ``scale_subprocess``), on ``scale_master`` if given (e.g. a standalone cluster,
    where the driver JVM is not also the executor), else on ``master``.
    """
    for m in (*methods, *scale_methods):
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {METHODS}")
    say = log or (lambda msg: None)
    cores = cores_of(master)
    rows: list[dict[str, Any]] = []

    def add(section: str, method: str | None, n: int | None, metric: str, value: float,
            unit: str = "", target: str | None = None, note: str = "") -> None:
        met = None
        if target is not None and target in TARGETS and value == value:
            op, bound = TARGETS[target]
            met = bool(value >= bound) if op == ">=" else bool(value <= bound)
        rows.append({"section": section, "method": method, "n_scenarios": n, "metric": metric,
                     "value": float(value), "unit": unit,
                     "target": f"{TARGETS[target][0]} {TARGETS[target][1]:g}"
                     if target in TARGETS else "",
                     "met": met, "note": note})

    n0 = int(scenarios[0])
    prep = bench_prepare(n0, positions=positions, underlyings=underlyings, desks=desks,
                         horizon_days=horizon_days, block_size=block_size)
    book = prep.book
    live = (book.kind != EQUITY) & (book.tau_h > 0)
    add("book", None, None, "positions", book.n_positions)
    add("book", None, None, "options_live_at_horizon", int(live.sum()))
    add("book", None, None, "options_expired_by_horizon",
        int(((book.kind != EQUITY) & ~live).sum()))
    add("book", None, None, "underlyings", len(book.underlyings))
    add("book", None, None, "desks", len(book.desks))
    add("book", None, None, "cores", cores, note=master)

    specs: dict[str, SimulationSpec] = {}
    for m in methods:
        t0 = time.perf_counter()
        specs[m] = spec_for(prep, m)
        t_plan = time.perf_counter() - t0
        plan = specs[m].plan
        add("book", m, None, "plan_seconds", t_plan, "s")
        if isinstance(plan, GridPlan):
            add("book", m, None, "grid_cells", plan.n_cells,
                note=f"resolution {plan.resolution:g} cells per sigma sqrt(tau)")
        else:
            add("book", m, None, "contracts_priced_per_scenario", plan.n_live,
                note="distinct live contracts (calls and puts netted by parity)")
        say(f"[{m}] kernel rate")
        k_rate = kernel_rate(specs[m])
        tgt = "full_kernel_rate" if m == "full" else "grid_kernel_rate"
        add("throughput", m, n0, "kernel_only_rate", k_rate / 1e6, "M rev/s/core", tgt,
            "one process, CPU time, scenarios drawn beforehand")

    say("starting Spark")
    t0 = time.perf_counter()
    spark = _session(master, driver_memory)
    t_session = time.perf_counter() - t0
    pnls: dict[str, np.ndarray] = {}
    try:
        t_warm = _warm_up(spark, specs[methods[0]], cores)
        add("throughput", None, None, "spark_session_start_s", t_session, "s")
        add("throughput", None, None, "spark_first_job_s", t_warm, "s",
            note="starts the Python workers")
        for m in methods:
            spec = specs[m]
            tgt = "full_kernel_rate" if m == "full" else "grid_kernel_rate"
            # Alternate the two measurements so that both see the same machine load; keep
            # the best round of each.
            single, stage, parts = math.inf, None, cores
            paired: list[float] = []  # each round's single-process wall / Spark fan-out wall
            for r in range(rounds):
                say(f"[{m}] round {r + 1}/{rounds}: {cores} processes without Spark")
                _, sp_wall = single_process_rate(spec, cores)
                single = min(single, sp_wall)
                if r == 0:
                    parts = spark_partitions(spec, cores)
                say(f"[{m}] round {r + 1}/{rounds}: Spark stage, {_n_blocks(spec)} blocks in "
                    f"{parts} tasks")
                before = _spark_cpu()
                run = spark_stage(spark, spec, parts)
                after = _spark_cpu()
                paired.append(sp_wall / run.fan_out_s)
                if stage is None or run.fan_out_s < stage[0]:
                    stage = (run.fan_out_s, after[0] - before[0], after[1] - before[1],
                             run.wall_s)
                if r == rounds - 1:
                    pnls[m] = run.pnl(spec)
                run.blocks.unpersist()
            assert stage is not None
            wall, w_cpu, j_cpu, mc_wall = stage
            sp_rate = book.n_positions * n0 / (single * cores)
            rate = book.n_positions * n0 / (wall * cores)
            add("throughput", m, n0, "single_process_rate", sp_rate / 1e6, "M rev/s/core", tgt,
                f"draw + revalue, {cores} processes, wall {single:.2f} s (best of {rounds})")
            add("throughput", m, n0, "spark_stage_rate", rate / 1e6, "M rev/s/core", tgt,
                f"fan-out: draw + revalue + persist + first histogram, wall {wall:.2f} s, "
                f"{parts} tasks (best of {rounds})")
            spread = np.quantile(paired, [0.0, 0.5, 1.0])
            add("throughput", m, n0, "spark_vs_single_process", rate / sp_rate, "",
                "spark_vs_single_process",
                note=f"best vs best; round by round min {spread[0]:.2f}, median "
                     f"{spread[1]:.2f}, max {spread[2]:.2f}")
            mc_rate = book.n_positions * n0 / (mc_wall * cores)
            add("throughput", m, n0, "monte_carlo_stage_vs_single_process", mc_rate / sp_rate,
                "", note=f"the job's whole stage incl. the tail passes, wall {mc_wall:.2f} s")
            add("throughput", m, n0, "spark_python_workers_cpu_s", w_cpu, "s",
                note=f"vs {single * cores:.2f} s of process time without Spark")
            add("throughput", m, n0, "spark_jvm_cpu_s", j_cpu, "s",
                note="driver and executor JVM (local mode), competes for the same cores")
    finally:
        spark.stop()

    # accuracy
    say("accuracy")
    n_acc = min(accuracy_scenarios, n0)
    x_acc = np.concatenate([prep.spec.source.block(b)
                            for b in range(-(-n_acc // prep.spec.source.block_size))])[:n_acc]
    gross = book.gross_value()
    if "full" in methods:
        ref = scipy_reference_pnl(book, x_acc)
        got = pnls["full"][:n_acc]
        add("accuracy", "full", n_acc, "max_desk_pnl_error_vs_scipy",
            float(np.max(np.abs(got - ref) / gross)), "of desk gross value",
            "full_vs_scipy_rel_error")
        d_err, f_err = var_es_errors(ref, got)
        add("accuracy", "full", n_acc, "desk_var_es_rel_error_vs_scipy", d_err, "",
            "full_vs_scipy_rel_error")
        add("accuracy", "full", n_acc, "firm_var_es_rel_error_vs_scipy", f_err, "",
            "full_vs_scipy_rel_error")
    for m in methods:
        if m == "full":
            continue
        if "full" not in pnls:
            add("accuracy", m, None, "not_measured", float("nan"), note="needs method full")
            continue
        d_err, f_err = var_es_errors(pnls["full"], pnls[m])
        add("accuracy", m, n0, "desk_var_es_rel_error", d_err, "vs full", "var_es_rel_error")
        add("accuracy", m, n0, "firm_var_es_rel_error", f_err, "vs full", "var_es_rel_error")
        add("accuracy", m, n0, "max_desk_pnl_error", float(np.max(
            np.abs(pnls[m] - pnls["full"]) / gross)), "of desk gross value")
        plan = specs[m].plan
        if isinstance(plan, GridPlan):
            errs = contract_errors(book, plan, x_acc)
            worst = errs.loc[errs["max_abs_error"].idxmax()]
            add("accuracy", m, n_acc, "max_contract_error", float(worst["max_abs_error"]),
                "currency", note=f"{worst['position_id']} ({worst['instrument_type']} on "
                f"{worst['underlying']}, notional {worst['notional']:,.0f})")
            add("accuracy", m, n_acc, "max_contract_error_per_unit",
                float(errs["max_abs_error_per_unit"].max()), "currency per option")
            add("accuracy", m, n_acc, "max_contract_error_of_notional",
                float(errs["max_rel_error_notional"].max()), "")

    # scaling
    for m in scale_methods:
        points = []
        for n in scenarios:
            say(f"[{m}] scaling point {n:,} scenarios")
            params = {"n_scenarios": int(n), "positions": positions, "underlyings": underlyings,
                      "desks": desks, "horizon_days": horizon_days, "block_size": block_size,
                      "method": m, "master": scale_master or master,
                      "driver_memory": driver_memory}
            res = _scale_in_subprocess(params) if scale_subprocess else scale_point(params)
            points.append((int(n), res))
            if "error" in res:
                add("scaling", m, n, "failed", float("nan"), note=res["error"][-300:])
                continue
            note = "" if scale_subprocess else "in-process: peaks are cumulative"
            add("scaling", m, n, "stage_s", res["stage_s"], "s",
                note=f"{res['blocks']} blocks in {res['partitions']} tasks on "
                     f"{scale_master or master} ({res['cores']} cores)")
            add("scaling", m, n, "job_wall_with_startup_s",
                res["session_s"] + res["warm_up_s"] + res["monte_carlo_s"], "s",
                note=f"session {res['session_s']:.1f} s + first job {res['warm_up_s']:.1f} s")
            add("scaling", m, n, "job_wall_without_startup_s", res["monte_carlo_s"], "s",
                note=f"fan-out {res['stage_s']:.1f} s + tail passes "
                     f"{res['tail_passes_s']:.1f} s + driver")
            add("scaling", m, n, "tail_band_losses", res["band_losses"], "",
                note=f"gathered on the driver; {res['histogram_passes']} histogram pass(es)")
            add("scaling", m, n, "block_reads_regenerated", res["blocks_regenerated"], "",
                note="reads that found no block file on their executor")
            stage_rate = book.n_positions * n / (res["stage_s"] * res["cores"])
            add("scaling", m, n, "stage_rate", stage_rate / 1e6, "M rev/s/core")
            if res["single_process_rate"] == res["single_process_rate"]:  # local masters
                add("scaling", m, n, "spark_vs_single_process",
                    stage_rate / res["single_process_rate"], "", "spark_vs_single_process",
                    note=f"vs one process per core on the first {REFERENCE_BLOCKS_PER_CORE} "
                         f"blocks per core, best of {REFERENCE_ROUNDS}, measured right after")
            for key in ("driver_python_peak_mib", "driver_jvm_peak_mib",
                        "python_worker_peak_mib", "python_workers_sum_peak_mib"):
                add("scaling", m, n, key, res[key], "MiB", note=note)
            add("scaling", m, n, "driver_jvm_live_heap_mib", res["driver_jvm_live_heap_mib"],
                "MiB", note="heap in use after a full GC, blocks still persisted")
        ok = [(n, r) for n, r in points if "error" not in r]
        for (n_a, a), (n_b, b) in zip(ok, ok[1:], strict=False):
            if n_b == 10 * n_a:
                add("scaling", m, n_b, f"time_ratio_vs_{n_a}",
                    b["monte_carlo_s"] / a["monte_carlo_s"], "", "time_ratio_10x",
                    note="whole Monte Carlo stage, tail passes included")
        if len(ok) >= 2:
            (n_a, a), (n_b, b) = ok[0], ok[-1]
            for key in ("driver_python_peak_mib", "driver_jvm_peak_mib",
                        "python_worker_peak_mib"):
                add("scaling", m, n_b, f"{key.removesuffix('_mib')}_growth_vs_{n_a}_mib",
                    b[key] - a[key], "MiB", "peak_memory_growth_mib")
            add("scaling", m, n_b, f"driver_jvm_live_heap_growth_vs_{n_a}_mib",
                b["driver_jvm_live_heap_mib"] - a["driver_jvm_live_heap_mib"], "MiB",
                note="retained, not a target: the target is on peaks")
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- printing


def _fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e5 or a < 1e-3:
        return f"{value:.3g}" if a >= 1e5 else f"{value:.2e}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}" if a < 100 else f"{value:,.1f}"


def format_table(table: pd.DataFrame) -> str:
    """Render the benchmark rows as an aligned text table, one block per section."""
    lines = []
    for section, grp in table.groupby("section", sort=False):
        lines.append(f"== {section} ==")
        cells = [["method", "scenarios", "metric", "value", "unit", "target", "met", "note"]]
        for r in grp.itertuples(index=False):
            met = "" if r.met is None or r.met != r.met else ("yes" if r.met else "NO")
            n = "" if r.n_scenarios is None or r.n_scenarios != r.n_scenarios \
                else f"{int(r.n_scenarios):,}"
            cells.append([r.method or "", n, r.metric, _fmt(r.value), r.unit, r.target, met,
                          r.note])
        widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]) - 1)]
        for c in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(c[:-1], widths, strict=True))
                         + ("  " + c[-1] if c[-1] else ""))
        lines.append("")
    return "\n".join(lines)


def bench_main(argv: list[str]) -> int:
    """``risk-engine bench``: run the benchmark and print the table."""
    p = argparse.ArgumentParser(prog="risk-engine bench", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default="100000,1000000,10000000",
                   help="comma-separated scenario counts; the first one also drives the "
                        "throughput and accuracy sections (default %(default)s)")
    p.add_argument("--positions", type=int, default=2000, help="option positions")
    p.add_argument("--underlyings", type=int, default=50, help="a multiple of 10")
    p.add_argument("--desks", type=int, default=10)
    p.add_argument("--horizon-days", type=int, default=10)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--scale-master", metavar="URL",
                   help="master of the scaling points (default: --master), e.g. a standalone "
                        "cluster on this machine, spark://127.0.0.1:7077, where the driver "
                        "JVM does not also run the executor")
    p.add_argument("--methods", default="full,grid",
                   help=f"revaluation methods to compare, of {', '.join(METHODS)}")
    p.add_argument("--scale-methods", default="full",
                   help="methods run at every scenario count (default %(default)s)")
    p.add_argument("--block-size", type=int, default=10_000)
    p.add_argument("--accuracy-scenarios", type=int, default=20_000)
    p.add_argument("--driver-memory", default="1g")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating single-process / Spark rounds; the best of each is kept")
    p.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
    args = p.parse_args(argv)
    scen = [int(float(s)) for s in args.scenarios.split(",") if s.strip()]
    table = run_benchmark(
        scen, positions=args.positions, underlyings=args.underlyings, desks=args.desks,
        horizon_days=args.horizon_days, master=args.master,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        scale_methods=[m.strip() for m in args.scale_methods.split(",") if m.strip()],
        block_size=args.block_size, accuracy_scenarios=args.accuracy_scenarios,
        driver_memory=args.driver_memory, rounds=args.rounds, scale_master=args.scale_master,
        log=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True),
    )
    print(format_table(table))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(bench_main(sys.argv[1:]))
