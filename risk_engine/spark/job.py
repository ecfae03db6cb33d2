"""The nightly job: ``main(spark, cfg)`` reads, calls the pure core, writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from risk_engine import __version__, schemas
from risk_engine.config import Config
from risk_engine.attribution import attribution_requests, position_tables
from risk_engine.governance.settings import parse_governance
from risk_engine.governance.stage import governance_tables
from risk_engine.pipeline import InputTables, prepare, risk_tables
from risk_engine.spark.io import read_dated, read_table, to_pandas, write_partition
from risk_engine.spark.stages import attribution, block_pnl_frame, collect_pnl

log = logging.getLogger("risk_engine.job")
T_ = TypeVar("T_")


@dataclass
class RunSummary:
    """What a run did: identifiers, status, where results went and the firm figures."""

    run_id: str
    as_of_date: dt.date
    status: str
    output_root: str
    timings: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    message: str | None = None


def new_run_id(as_of: dt.date) -> str:
    """``<as_of>T<utc time>-<8 hex>``: sortable and unique."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{as_of.isoformat()}-{now}-{uuid.uuid4().hex[:8]}"


def governance_settings(cfg: Config):  # noqa: ANN201 - GovernanceSettings
    """The parsed ``governance`` section (validated when the config was loaded)."""
    return parse_governance(cfg.governance)


def read_inputs(spark: SparkSession, cfg: Config) -> InputTables:
    """Read the snapshot of ``cfg.as_of_date`` with explicit schemas."""
    root, as_of = cfg.input.root, cfg.as_of_date
    positions = read_dated(spark, root, schemas.POSITIONS, as_of)
    market = read_dated(spark, root, schemas.MARKET, as_of)
    rates = read_dated(spark, root, schemas.RATES, as_of)
    assert positions is not None and market is not None and rates is not None
    from pyspark.sql import functions as F

    factor_model = correlations = None
    by_history = cfg.scenario_model.source == "history"
    # History feeds the scenario model, and the governance stage's hypothetical P&L.
    hist = read_table(spark, root, schemas.HISTORY, required=by_history)
    history = None
    if hist is not None:
        days = cfg.scenario_model.history_window_days
        lookback = governance_settings(cfg).performance.lookback_days
        days = max(days, lookback or days)
        # Calendar days comfortably covering the window of trading days.
        start = as_of - dt.timedelta(days=int(days * 1.6) + 14)
        history = to_pandas(hist.where((F.col("date") <= F.lit(as_of))
                                       & (F.col("date") >= F.lit(start))))
    if not by_history:
        fm = read_table(spark, root, schemas.FACTOR_MODEL)
        assert fm is not None
        factor_model = to_pandas(fm)
        corr = read_table(spark, root, schemas.CORRELATIONS, required=False)
        correlations = to_pandas(corr) if corr is not None else None
    pnl = read_table(spark, root, schemas.PNL_HISTORY, required=False)
    pnl_history = to_pandas(pnl.where(F.col("date") <= F.lit(as_of))) if pnl is not None else None
    return InputTables(positions, market, rates, history, factor_model, correlations,
                       pnl_history)


def main(spark: SparkSession, cfg: Config, *, run_id: str | None = None) -> RunSummary:
    """Run the nightly risk job for ``cfg.as_of_date`` and write its Parquet results."""
    run_id = run_id or new_run_id(cfg.as_of_date)
    summary = RunSummary(run_id, cfg.as_of_date, "running", cfg.output.root)
    started = dt.datetime.now(dt.timezone.utc)

    def stage(name: str, fn: Callable[[], T_]) -> T_:
        t0 = time.perf_counter()
        out = fn()
        summary.timings[name] = round(time.perf_counter() - t0, 3)
        log.info("stage %s: %.2fs", name, summary.timings[name])
        return out

    inputs = stage("read_inputs", lambda: read_inputs(spark, cfg))
    prepared = stage("prepare", lambda: prepare(cfg, inputs))
    summary.warnings.extend(prepared.warnings)
    book = prepared.book

    def simulate() -> np.ndarray:
        df = block_pnl_frame(spark, prepared.spec, cfg.n_blocks, cfg.spark.partitions)
        if cfg.output.write_scenario_pnl:
            df = df.persist()
        pnl = collect_pnl(df, cfg.monte_carlo.n_scenarios, len(book.desks))
        if cfg.output.write_scenario_pnl:
            _write_scenario_pnl(spark, df, cfg, run_id, book.desks)
            df.unpersist()
        return pnl

    pnl = stage("monte_carlo", simulate)
    tables = stage("risk_measures", lambda: risk_tables(pnl, book, cfg))
    tables["rejected_rows"] = prepared.rejected
    gov = governance_settings(cfg)
    if gov.enabled and gov.attribution:
        def attribute() -> None:
            requests = attribution_requests(pnl, cfg.risk.confidence_levels)
            contrib, sample = attribution(spark, book, prepared.spec.source, requests,
                                          cfg.risk.confidence_levels, cfg.spark.partitions)
            rows, position_risk = position_tables(book, requests, contrib, sample)
            tables["contributions"] = pd.concat([tables["contributions"], rows],
                                                ignore_index=True)
            tables["position_risk"] = position_risk

        stage("attribution", attribute)
    if gov.enabled:
        def govern() -> None:
            out, _ = governance_tables(book, prepared.model, tables["risk_measures"], gov,
                                       cfg.as_of_date, history=inputs.history,
                                       pnl_history=inputs.pnl_history)
            tables.update(out)

        stage("governance", govern)

    def write() -> None:
        for name, frame in tables.items():
            out = frame.assign(run_id=run_id)
            write_partition(spark, out, schemas.OUTPUT_TABLES[name], cfg.output.root,
                            cfg.as_of_date)

    stage("write", write)
    summary.status = "completed_with_warnings" if summary.warnings else "completed"
    summary.tables = tables
    counts = prepared.row_counts
    manifest = pd.DataFrame([{
        "run_id": run_id, "status": summary.status, "started_at": started,
        "finished_at": dt.datetime.now(dt.timezone.utc), "config_hash": cfg.hash(),
        "seed": cfg.monte_carlo.seed, "n_scenarios": cfg.monte_carlo.n_scenarios,
        "horizon_days": cfg.monte_carlo.horizon_days, "block_size": cfg.monte_carlo.block_size,
        "code_version": __version__, "spark_version": spark.version,
        "spark_master": spark.sparkContext.master,
        "positions_in": counts.get("positions", {}).get("in", 0),
        "positions_rejected": counts.get("positions", {}).get("rejected", 0),
        "row_counts": json.dumps(counts), "stage_timings": json.dumps(summary.timings),
        "warnings": json.dumps(summary.warnings), "message": None,
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
    }])
    manifest["horizon_days"] = manifest["horizon_days"].astype(np.int32)
    write_partition(spark, manifest, schemas.RUN_MANIFEST, cfg.output.root, cfg.as_of_date)
    tables["run_manifest"] = manifest
    return summary


def _write_scenario_pnl(spark: SparkSession, df: Any, cfg: Config, run_id: str,
                        desks: tuple[str, ...]) -> None:
    from pyspark.sql import functions as F

    desk_col = F.element_at(F.array(*[F.lit(d) for d in desks]), F.col("desk_index") + 1)
    out = df.select(
        F.lit(run_id).alias("run_id"), F.col("block_id"), desk_col.alias("desk"),
        F.col("first_scenario"), F.col("pnl"), F.lit(cfg.as_of_date).alias("as_of_date"),
    )
    (out.write.mode("overwrite").partitionBy("as_of_date")
        .option("partitionOverwriteMode", "dynamic")
        .parquet(f"{cfg.output.root.rstrip('/')}/{schemas.SCENARIO_PNL.name}"))
