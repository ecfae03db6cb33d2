"""One benchmark run: the book, throughput, accuracy and scaling sections in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from risk_engine.revaluation_grid import METHODS
from risk_engine.tools.bench.accuracy import accuracy_rows
from risk_engine.tools.bench.backfill import backfill_rows
from risk_engine.tools.bench.hedging import hedging_rows
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.bench.scaling import scaling_rows
from risk_engine.tools.bench.stage import cores_of
from risk_engine.tools.bench.stress import stress_rows
from risk_engine.tools.bench.throughput import method_specs, spark_throughput
from risk_engine.tools.bench.workload import bench_prepare, book_rows


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
    hedging_objectives: Sequence[str] = ("variance", "cvar"),
    hedging_positions: int = 2000,
    backfill_days: int = 0,
    backfill_scenarios: int = 10_000,
    backfill_settings: Mapping[str, Any] | None = None,
    stress_years: int = 10,
    log: Any = None,
) -> pd.DataFrame:
    """Run the benchmark; one row per measured figure (see :data:`.report.COLUMNS`).

    The throughput and accuracy sections run at the first scenario count; the scaling
    section runs every count for each of ``scale_methods`` (each point in a fresh process
    when ``scale_subprocess``), on ``scale_master`` if given (e.g. a standalone cluster,
    where the driver JVM is not also the executor), else on ``master``. The hedging section
    times the hedging stage on the demo book (``hedging_positions`` positions, 6 desks) for
    each of ``hedging_objectives`` (none: no section). The stress section times historical
    VaR, stressed VaR over ``stress_years`` of demo history and the spot-vol grid (0: none).
    The backfill section (opt-in: it takes minutes) backfills ``backfill_days`` > 0 dates of
    demo data at ``backfill_scenarios`` a date, ``backfill_settings`` (dotted keys) over its
    config (:mod:`.backfill`).
    """
    for m in (*methods, *scale_methods):
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {METHODS}")
    say = log or (lambda msg: None)
    cores = cores_of(master)
    rows = Rows()
    n0 = int(scenarios[0])
    prep = bench_prepare(n0, positions=positions, underlyings=underlyings, desks=desks,
                         horizon_days=horizon_days, block_size=block_size)
    n_positions = prep.book.n_positions
    book_rows(rows, prep.book, cores, master)
    specs = method_specs(rows, prep, methods, n0, say)
    pnls = spark_throughput(rows, specs, methods, master=master, driver_memory=driver_memory,
                            cores=cores, rounds=rounds, n0=n0, n_positions=n_positions,
                            say=say)
    say("accuracy")
    accuracy_rows(rows, prep, specs, pnls, methods, n0, accuracy_scenarios)
    if hedging_objectives:
        hedging_rows(rows, hedging_objectives, positions=hedging_positions,
                     block_size=block_size, cores=cores, say=say)
    if stress_years:
        stress_rows(rows, positions=hedging_positions, years=stress_years, cores=cores,
                    say=say)
    if backfill_days > 0:
        backfill_rows(rows, backfill_days, scenarios=backfill_scenarios, master=master,
                      driver_memory=driver_memory, settings=backfill_settings, say=say)
    point = {"positions": positions, "underlyings": underlyings, "desks": desks,
             "horizon_days": horizon_days, "block_size": block_size,
             "master": scale_master or master, "driver_memory": driver_memory}
    scaling_rows(rows, scenarios, scale_methods, point=point, where=scale_master or master,
                 n_positions=n_positions, subprocess_each=scale_subprocess, say=say)
    return rows.frame()
