"""The nightly job: ``main(spark, cfg)`` reads, calls the pure core, writes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from risk_engine import __version__, schemas
from risk_engine.config import Config
from risk_engine.errors import RiskEngineError
from risk_engine.governance.alerts import Alert, delivery_warnings, dispatch_alerts
from risk_engine.logformat import RUN_ID, STAGE
from risk_engine.pipeline import InputTables, Prepared, RunLog, nightly_run
from risk_engine.scenarios.historical import scenario_count
from risk_engine.spark.backtest_window import (
    PublishedResults,
    WindowSnapshots,
    with_published,
)
from risk_engine.spark.engine import ReadyBlocks, SparkEngine
from risk_engine.spark.io import (
    discard_staging,
    mark_interrupted,
    publish_partitions,
    write_manifest,
    write_partition,
)
from risk_engine.spark.progress import n_blocks_of, run_progress
from risk_engine.spark.snapshot import read_snapshot

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
    """Read the snapshot of ``cfg.as_of_date`` with explicit schemas.

    :func:`read_snapshot`, then :func:`with_published` (what earlier dates published).
    """
    return with_published(spark, cfg, read_snapshot(spark, cfg))


class Run:
    """One run's lifecycle: manifest while running, staged tables, atomic publication."""

    def __init__(self, spark: SparkSession, cfg: Config, run_id: str) -> None:
        self.spark, self.cfg, self.run_id = spark, cfg, run_id
        self.started = dt.datetime.now(dt.timezone.utc)
        self.log = RunLog(on_stage=self._on_stage)
        self.summary = RunSummary(run_id, cfg.as_of_date, "running", cfg.output.root,
                                  timings=self.log.timings, warnings=self.log.warnings)
        self.staging = (f"{cfg.output.root.rstrip('/')}/_staging/"
                        f"as_of_date={cfg.as_of_date.isoformat()}/{run_id}")
        self.committed = False
        self._unlock: Callable[[], None] | None = None  # releases the date's lock

    # -- exclusivity and recovery -------------------------------------------------------
    def begin(self) -> None:
        """Take the date's lock, then repair what earlier runs of the date left behind.

        Under the lock: finish an interrupted publication (:func:`recover_date`), mark
        manifests still ``running`` as ``interrupted``, delete stale staging folders. Local
        roots only; a remote root has no lock (runs of one date must not be started
        together there).

        Raises
        ------
        ConcurrentRunError
            If another run of the date holds the lock; nothing has been written then.
        """
        from risk_engine.spark.io import local_root
        from risk_engine.spark.publication import DateLock, clean_stale_staging, recover_date

        root, as_of = self.cfg.output.root, self.cfg.as_of_date
        local = local_root(root)
        if local is not None:
            self._unlock = DateLock(local, as_of, self.run_id).acquire().release
        try:
            done = recover_date(local, as_of) if local is not None else None
            if done:
                log.warning("run %s: an interrupted publication of %s was finished: %s",
                            self.run_id, as_of, done)
            interrupted = mark_interrupted(self.spark, root, as_of)
            if interrupted:
                log.warning("run %s: earlier run(s) of %s marked interrupted: %s",
                            self.run_id, as_of, ", ".join(interrupted))
            if local is not None:
                clean_stale_staging(local, as_of, keep=self.run_id)
        except BaseException:
            self.end()
            raise

    def _on_stage(self, run_log: RunLog) -> None:
        """A stage starts: name it in log records, write the running manifest."""
        STAGE.set(run_log.current)
        self.write_manifest()

    def end(self) -> None:
        """Release the date's lock (if held)."""
        if self._unlock is not None:
            unlock, self._unlock = self._unlock, None
            unlock()

    def add_warnings(self, warnings: list[str]) -> None:
        """Record warnings that arise after publication (undelivered alerts, ...).

        A ``completed`` run becomes ``completed_with_warnings``; the manifest is rewritten.
        """
        if not warnings:
            return
        self.summary.warnings.extend(warnings)
        if self.summary.status == "completed":
            self.summary.status = "completed_with_warnings"
        self.write_manifest(finished=self.summary.status != "running")


    # -- manifest ---------------------------------------------------------------------
    def manifest_row(self, finished: bool) -> pd.DataFrame:
        """The manifest row as of now."""
        cfg, counts = self.cfg, self.log.row_counts
        n_scenarios, block_size = cfg.monte_carlo.n_scenarios, cfg.monte_carlo.block_size
        if cfg.scenario_model.source == "historical":
            n_scenarios = scenario_count(cfg.historical, cfg.monte_carlo.horizon_days)
            block_size = cfg.historical.block_size
        return pd.DataFrame([{
            "run_id": self.run_id, "status": self.summary.status, "started_at": self.started,
            "finished_at": dt.datetime.now(dt.timezone.utc) if finished else None,
            "config_hash": cfg.hash(), "seed": cfg.monte_carlo.seed,
            "n_scenarios": n_scenarios,
            "horizon_days": np.int32(cfg.monte_carlo.horizon_days),
            "block_size": block_size, "code_version": __version__,
            "spark_version": self.spark.version, "spark_master": self.spark.sparkContext.master,
            "positions_in": counts.get("positions", {}).get("in", 0),
            "positions_rejected": counts.get("positions", {}).get("rejected", 0),
            "row_counts": json.dumps(counts), "stage_timings": json.dumps(
                {**self.summary.timings, **({} if finished else {"current": self.log.current})}),
            "warnings": json.dumps(self.summary.warnings), "message": self.summary.message,
            "config": json.dumps(cfg.to_dict(), sort_keys=True),
            "scenario_model": (None if self.log.scenario_model is None
                               else json.dumps(self.log.scenario_model, sort_keys=True)),
        }])

    def write_manifest(self, finished: bool = False) -> None:
        """Write (or replace) this run's manifest file; every run keeps its own row."""
        write_manifest(self.spark, self.manifest_row(finished), self.cfg.output.root,
                       self.cfg.as_of_date, self.run_id)

    # -- results ----------------------------------------------------------------------
    def publish(self, tables: dict[str, pd.DataFrame], extra: list[str]) -> None:
        """Stage every table, then publish them all for the date (old results replaced).

        The run's final status is decided here: on a local root the final manifest is
        staged too and installed by the same commit as the tables.
        """
        for name, frame in tables.items():
            write_partition(self.spark, frame.assign(run_id=self.run_id),
                            schemas.OUTPUT_TABLES[name], self.staging, self.cfg.as_of_date)
        from risk_engine.spark.io import local_root, stage_manifest

        produced = list(tables) + extra
        self.summary.status = ("completed_with_warnings" if self.summary.warnings
                               else "completed")
        local = local_root(self.cfg.output.root)
        manifest = None if local is None else stage_manifest(self.manifest_row(finished=True),
                                                      self.staging, self.run_id)
        publish_partitions(self.spark, self.staging, self.cfg.output.root, self.cfg.as_of_date,
                           produced, [t for t in schemas.OUTPUT_TABLES if t != "run_manifest"],
                           run_id=self.run_id, manifest=manifest)
        self.committed = True


@dataclass(frozen=True)
class Ahead:
    """What a backfill did for a date before the date's run: read, prepared, simulated.

    ``inputs`` come from :func:`read_snapshot` (the run adds :func:`with_published`),
    ``prepared`` is :func:`risk_engine.pipeline.prepare` of them, ``blocks`` the date's
    scenario blocks simulated with other dates' (None: the run simulates them itself).
    """

    inputs: InputTables
    prepared: Prepared
    blocks: ReadyBlocks | None = None
    window: WindowSnapshots | None = None
    """The backtest window's snapshots, read once for several dates."""


def main(spark: SparkSession, cfg: Config, *, run_id: str | None = None,
         ahead: Ahead | None = None, published: PublishedResults | None = None
         ) -> RunSummary:
    """Run the nightly risk job for ``cfg.as_of_date`` and publish its Parquet results.

    Reads the snapshot, runs :func:`risk_engine.pipeline.nightly_run` on the Spark engine,
    publishes every table of the date and only then sends the run's alerts. Results are
    staged under ``<output>/_staging/as_of_date=D/<run_id>`` and published at the end, as
    one commit per date; a run that fails or is killed before the commit leaves the date's
    previous results in place, one killed after it is finished by the next run. Every run
    writes its own manifest row (status ``running`` until it ends); runs of the date still
    marked ``running`` when a new run starts are marked ``interrupted``. Runs of one date
    are exclusive (a lock under a local output root).

    ``ahead`` (a backfill's): the date's snapshot, prepared run and scenario blocks from
    before the run started; only what earlier dates published is read here, and the run's
    numbers are the same as without it. ``published`` (a backfill's): what earlier dates
    published, kept in memory instead of read (:class:`PublishedResults`); the run records
    its own results there when it publishes.

    Raises
    ------
    ConcurrentRunError
        If another run of the date is in progress (nothing is written).
    RiskEngineError
        For bad config, schema or data (the manifest says ``failed`` with the message).
    """
    run = Run(spark, cfg, run_id or new_run_id(cfg.as_of_date))
    summary = run.summary
    run.begin()  # the date's lock; ConcurrentRunError before anything is written
    log_context = (RUN_ID.set(run.run_id), STAGE.set("start"))
    try:
        with run.log.stage("read_inputs"):
            inputs = with_published(
                spark, cfg, read_snapshot(spark, cfg) if ahead is None else ahead.inputs,
                None if ahead is None else ahead.window, published)
        engine = SparkEngine(spark, partitions=cfg.spark.partitions, faults=cfg.testing,
                             staging=run.staging, run_id=run.run_id, as_of=cfg.as_of_date,
                             ready=None if ahead is None else ahead.blocks)
        mc = cfg.monte_carlo
        n_scen, size = mc.n_scenarios, mc.block_size
        if cfg.scenario_model.source == "historical":
            n_scen = scenario_count(cfg.historical, mc.horizon_days)
            size = cfg.historical.block_size
        with run_progress(spark, lambda: run.log.current, n_blocks=n_blocks_of(n_scen, size)):
            result = nightly_run(cfg, inputs, engine, run.log,
                                 prepared=None if ahead is None else ahead.prepared)
        with run.log.stage("publish"):
            run.publish(result.tables, list(result.engine_tables))
        if published is not None and cfg.backtest.enabled:
            published.record(cfg.as_of_date, run.run_id, result.tables)
        summary.tables = result.tables
        _send_alerts(run, result.alerts)
        _write_report(run)
    except BaseException as exc:
        if run.committed:  # the results are published: the manifest must keep saying so
            summary.warnings.append(f"after publication: {type(exc).__name__}: "
                                    f"{error_line(exc)}")
            summary.status = "completed_with_warnings"
            raise
        summary.status = "failed"
        summary.message = (str(exc) if isinstance(exc, RiskEngineError)
                           else f"{type(exc).__name__} in stage {run.log.current}: "
                                f"{error_line(exc)}")
        discard_staging(run.staging)
        raise
    finally:
        try:
            if not run.committed:
                run.write_manifest(finished=True)
                if summary.status == "failed":
                    _write_report(run)
            else:  # the commit installed the final row; this one adds the publish timing
                try:
                    run.write_manifest(finished=True)
                except OSError as exc:
                    log.warning("run %s: manifest not updated after publication: %s",
                                run.run_id, exc)
        finally:
            run.end()
            STAGE.reset(log_context[1])
            RUN_ID.reset(log_context[0])
    return summary


def _write_report(run: Run) -> None:
    """The ``report`` stage: the morning report from the published tables (local roots).

    Runs after publication (or after a failed run's final manifest, to say it failed), so
    it never changes the published numbers; a failure is a run warning (logged for a
    failed run), never a failed run.
    """
    from risk_engine.spark.io import local_root

    cfg = run.cfg
    if not cfg.report.enabled or local_root(cfg.output.root) is None:
        return
    try:
        from risk_engine.report import write_report

        if run.committed:
            with run.log.stage("report"):
                run.write_manifest(finished=True)  # the report shows this run's timings
                write_report(cfg.output.root, cfg.as_of_date,
                             top_positions=cfg.report.top_positions)
        else:
            write_report(cfg.output.root, cfg.as_of_date,
                         top_positions=cfg.report.top_positions)
    except Exception as exc:  # noqa: BLE001 - any report failure is a warning
        if run.committed:
            run.add_warnings([f"report: {type(exc).__name__}: {error_line(exc)}"])
        else:
            log.warning("run %s: report not written: %s", run.run_id, error_line(exc))


def _send_alerts(run: Run, alerts: list[Alert]) -> None:
    """Log and notify the published run's alerts; an undelivered one is a run warning."""
    sent = dispatch_alerts(alerts, run.cfg.as_of_date, run.cfg.governance.alerts, log=log)
    run.add_warnings(delivery_warnings(sent))
