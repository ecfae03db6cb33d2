"""The nightly job: ``main(spark, cfg)`` reads, calls the pure core, writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from risk_engine import __version__, schemas
from risk_engine.config import Config
from risk_engine.errors import RiskEngineError
from risk_engine.governance.alerts import Alert, dispatch_alerts
from risk_engine.pipeline import InputTables, RunLog, nightly_run
from risk_engine.spark.engine import SparkEngine
from risk_engine.spark.io import (
    discard_staging,
    mark_interrupted,
    publish_partitions,
    read_dated,
    read_table,
    to_pandas,
    write_manifest,
    write_partition,
)

log = logging.getLogger("risk_engine.job")


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


def error_line(exc: BaseException) -> str:
    """The informative line of an exception.

    For a Python worker's traceback, its last ``SomeError: message`` line, else the first.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b.*", line):
            return line
    return lines[0] if lines else type(exc).__name__


def new_run_id(as_of: dt.date) -> str:
    """``<as_of>T<utc time>-<8 hex>``: sortable and unique."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{as_of.isoformat()}-{now}-{uuid.uuid4().hex[:8]}"


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
        lookback = cfg.governance.performance.lookback_days
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


class Run:
    """One run's lifecycle: manifest while running, staged tables, atomic publication."""

    def __init__(self, spark: SparkSession, cfg: Config, run_id: str) -> None:
        self.spark, self.cfg, self.run_id = spark, cfg, run_id
        self.started = dt.datetime.now(dt.timezone.utc)
        self.log = RunLog(on_stage=lambda _: self.write_manifest())
        self.summary = RunSummary(run_id, cfg.as_of_date, "running", cfg.output.root,
                                  timings=self.log.timings, warnings=self.log.warnings)
        self.staging = f"{cfg.output.root.rstrip('/')}/_staging/{run_id}"

    # -- manifest ---------------------------------------------------------------------
    def manifest_row(self, finished: bool) -> pd.DataFrame:
        """The manifest row as of now."""
        cfg, counts = self.cfg, self.log.row_counts
        return pd.DataFrame([{
            "run_id": self.run_id, "status": self.summary.status, "started_at": self.started,
            "finished_at": dt.datetime.now(dt.timezone.utc) if finished else None,
            "config_hash": cfg.hash(), "seed": cfg.monte_carlo.seed,
            "n_scenarios": cfg.monte_carlo.n_scenarios,
            "horizon_days": np.int32(cfg.monte_carlo.horizon_days),
            "block_size": cfg.monte_carlo.block_size, "code_version": __version__,
            "spark_version": self.spark.version, "spark_master": self.spark.sparkContext.master,
            "positions_in": counts.get("positions", {}).get("in", 0),
            "positions_rejected": counts.get("positions", {}).get("rejected", 0),
            "row_counts": json.dumps(counts), "stage_timings": json.dumps(
                {**self.summary.timings, **({} if finished else {"current": self.log.current})}),
            "warnings": json.dumps(self.summary.warnings), "message": self.summary.message,
            "config": json.dumps(cfg.to_dict(), sort_keys=True),
        }])

    def write_manifest(self, finished: bool = False) -> None:
        """Write (or replace) this run's manifest file; every run keeps its own row."""
        write_manifest(self.spark, self.manifest_row(finished), self.cfg.output.root,
                       self.cfg.as_of_date, self.run_id)

    # -- results ----------------------------------------------------------------------
    def publish(self, tables: dict[str, pd.DataFrame], extra: list[str]) -> None:
        """Stage every table, then publish them all for the date (old results replaced)."""
        for name, frame in tables.items():
            write_partition(self.spark, frame.assign(run_id=self.run_id),
                            schemas.OUTPUT_TABLES[name], self.staging, self.cfg.as_of_date)
        produced = list(tables) + extra
        publish_partitions(self.spark, self.staging, self.cfg.output.root, self.cfg.as_of_date,
                           produced, [t for t in schemas.OUTPUT_TABLES if t != "run_manifest"])


def main(spark: SparkSession, cfg: Config, *, run_id: str | None = None) -> RunSummary:
    """Run the nightly risk job for ``cfg.as_of_date`` and publish its Parquet results.

    Reads the snapshot, runs :func:`risk_engine.pipeline.nightly_run` on the Spark engine,
    publishes every table of the date at the end and only then sends the run's alerts.
    Results are staged under ``<output>/_staging/<run_id>``; a run that fails or is killed
    leaves the date's previous results in place. Every run writes its own manifest row
    (status ``running`` until it ends); runs of the date still marked ``running`` when a
    new run starts are marked ``interrupted``.

    Raises
    ------
    RiskEngineError
        For bad config, schema or data (the manifest says ``failed`` with the message).
    """
    run = Run(spark, cfg, run_id or new_run_id(cfg.as_of_date))
    summary = run.summary
    mark_interrupted(spark, cfg.output.root, cfg.as_of_date)
    try:
        with run.log.stage("read_inputs"):
            inputs = read_inputs(spark, cfg)
        engine = SparkEngine(spark, partitions=cfg.spark.partitions, faults=cfg.testing,
                             staging=run.staging, run_id=run.run_id, as_of=cfg.as_of_date)
        result = nightly_run(cfg, inputs, engine, run.log)
        with run.log.stage("publish"):
            run.publish(result.tables, list(result.engine_tables))
    except BaseException as exc:
        summary.status = "failed"
        summary.message = (str(exc) if isinstance(exc, RiskEngineError)
                           else f"{type(exc).__name__} in stage {run.log.current}: "
                                f"{error_line(exc)}")
        discard_staging(run.staging)
        run.write_manifest(finished=True)
        raise
    summary.status = "completed_with_warnings" if summary.warnings else "completed"
    summary.tables = result.tables
    run.write_manifest(finished=True)
    _send_alerts(run, result.alerts)
    return summary


def _send_alerts(run: Run, alerts: list[Alert]) -> None:
    """Log and notify the published run's alerts; an undelivered one is a run warning."""
    settings = run.cfg.governance.alerts
    sent = dispatch_alerts(alerts, run.cfg.as_of_date, settings, log=log)
    failures = sent[len(alerts):]
    if failures:
        run.summary.warnings.extend(f"alerts: {a.message}" for a in failures)
        run.summary.status = "completed_with_warnings"
        run.write_manifest(finished=True)
