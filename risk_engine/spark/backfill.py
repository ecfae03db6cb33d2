"""``risk-engine backfill``: the nightly job for every business date of a range, in order.

One Spark session runs the dates oldest first, in groups of ``fan_out`` dates:

1. each date of the group is read (its snapshot,
   :func:`risk_engine.spark.snapshot.read_snapshot`, cut from one read of each input table
   for the group's dates, :class:`~risk_engine.spark.snapshot.GroupTables`) and prepared
   (:func:`risk_engine.pipeline.prepare`) on the driver, and the input snapshots its
   backtest window needs are read once for the group
   (:class:`~risk_engine.spark.backtest_window.WindowSnapshots`);
2. the group's scenario blocks fan out together, one Spark job over every (date, block)
   pair (:func:`risk_engine.spark.engine.simulate_together`);
3. then each date, in date order, runs the rest of the nightly run
   (:func:`risk_engine.spark.job.main` with the date's :class:`~risk_engine.spark.job.Ahead`:
   :func:`risk_engine.pipeline.nightly_run`, the one run order, from its prepared run and
   blocks) and is published as one commit, as the nightly run does.

The order matters: a date's ``backtest`` stage reads the VaR (and hypothetical P&L) the
dates before it published, so it runs in step 3, after the earlier dates' commits; steps 1
and 2 read only inputs. Those results are read once for the whole range and kept in memory
(:class:`~risk_engine.spark.backtest_window.PublishedResults`), each date's commit
replacing its rows there as on disk, instead of a Spark read of the window per date.
Every published number is the same bits as a single-date run of the date. A killed
backfill leaves each date either fully old or fully new (the per-date commit; the next run
of a date finishes an interrupted commit); running it again republishes every date with
the same numbers (only ``run_id`` and the manifests' times differ).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sys
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from risk_engine.config import Config
from risk_engine.errors import RejectionCeilingError, RiskEngineError
from risk_engine.pipeline import Prepared, attribution_tiling, check_rejection_ceiling, prepare
from risk_engine.simulation import smile_of
from risk_engine.spark.backtest_window import PublishedResults, WindowSnapshots
from risk_engine.spark.engine import simulate_together
from risk_engine.spark.job import Ahead, RunSummary, main
from risk_engine.spark.progress import format_progress, is_terminal
from risk_engine.spark.snapshot import GroupTables, read_snapshot
from risk_engine.spark.stages import SampleRequest

log = logging.getLogger("risk_engine.backfill")


def backfill_dates(cfg: Config, start: dt.date, end: dt.date) -> list[dt.date]:
    """Business days (Monday to Friday) from ``start`` to ``end``, both included.

    Under a local input root, only the dates with a ``positions`` partition
    (``<input.root>/positions/as_of_date=D/``); a remote root: every business day.
    """
    if end < start:
        raise RiskEngineError(f"backfill: --to {end} is before --from {start}")
    days = [d.date() for d in pd.bdate_range(start, end)]
    root = cfg.input.root
    if "://" in root and not root.startswith("file://"):
        return days
    folder = Path(root.removeprefix("file://")) / "positions"
    return [d for d in days if (folder / f"as_of_date={d.isoformat()}").is_dir()]


#: Dates whose scenario blocks fan out together (driver memory: their inputs at once).
DEFAULT_FAN_OUT = 16


def backfill(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date, *,
             fan_out: int = DEFAULT_FAN_OUT) -> list[RunSummary]:
    """Run the nightly job for each date of :func:`backfill_dates`, oldest first.

    Dates go in groups of ``fan_out``: the group's dates are prepared, their scenario
    blocks simulated in one Spark job, then each date runs and is published in date order
    (see the module). ``fan_out=1`` runs one date after another. A date that fails is
    logged and its summary kept (its manifest says ``failed``; its previous results stay);
    the next dates still run.

    Returns
    -------
    list of RunSummary
        One per date, in date order.

    Raises
    ------
    RiskEngineError
        If ``fan_out`` < 1 or the range is reversed.
    """
    if fan_out < 1:
        raise RiskEngineError(f"backfill: --fan-out must be at least 1, got {fan_out}")
    out = []
    days = backfill_dates(cfg, start, end)
    published = _published(spark, cfg, days)
    t0 = time.monotonic()
    for first in range(0, len(days), fan_out):
        group = days[first:first + fan_out]
        aheads = _ahead(spark, cfg, group) if fan_out > 1 else [None] * len(group)
        try:
            for i, (day, ahead) in enumerate(zip(group, aheads, strict=True)):
                if is_terminal(sys.stderr):  # a line per date, above the run's progress line
                    print(format_progress(f"backfill {day}", first + i, len(days),
                                          time.monotonic() - t0, unit="dates"),
                          file=sys.stderr, flush=True)
                day_cfg = dataclasses.replace(cfg, as_of_date=day)
                try:
                    out.append(main(spark, day_cfg, ahead=ahead, published=published))
                except RiskEngineError as exc:
                    log.error("backfill: %s failed: %s", day, exc)
                    out.append(RunSummary("", day, "failed", cfg.output.root,
                                          message=str(exc)))
        finally:  # blocks no run took (it stopped before its Monte Carlo, or we stop here)
            for ahead in aheads:
                if ahead is not None and ahead.blocks is not None:
                    ahead.blocks.release()
    return out


def _published(spark: SparkSession, cfg: Config, days: list[dt.date]
               ) -> PublishedResults | None:
    """What the dates' backtests read of earlier results, read once (None: each date reads)."""
    if not (cfg.backtest.enabled and days):
        return None
    try:
        return PublishedResults.read(spark, cfg, days)
    except Exception as exc:  # noqa: BLE001 - each date reads its own and reports it
        log.info("backfill: published results not read ahead (%s)", type(exc).__name__)
        return None


def attribution_sample(cfg: Config, prepared: Prepared) -> SampleRequest | None:
    """The block-0 sample statistics the run of ``cfg`` will ask its blocks for, if any.

    None when the run has no attribution stage; else the arguments
    :func:`risk_engine.pipeline.nightly_run` gives the stage: the prepared book, the
    confidence levels, :func:`risk_engine.pipeline.attribution_tiling`, the plan's smile
    dynamics. (Were they ever to
    differ from the stage's, the statistics would not be used, only computed again.)
    """
    tiling = attribution_tiling(cfg)
    if tiling is None:
        return None
    return SampleRequest(prepared.book, tuple(cfg.risk.confidence_levels), tiling,
                                smile_of(prepared.spec.plan))


def _ahead(spark: SparkSession, cfg: Config, days: list[dt.date]) -> list[Ahead | None]:
    """Read and prepare each date, then simulate their scenario blocks in one job.

    A date that cannot be read or prepared gets None: its run reads and prepares it again
    and fails as a single-date run would (manifest, message). A date above the rejection
    ceiling is prepared but not simulated (its run fails on the ceiling).
    """
    prepared: list[Ahead | None] = []
    simulate: list[int] = []  # indexes of the dates whose blocks are simulated here
    tables = GroupTables(spark, cfg.input.root, days)  # each input table read once
    for day in days:
        day_cfg = dataclasses.replace(cfg, as_of_date=day)
        try:
            inputs = read_snapshot(spark, day_cfg, tables)
            prep = prepare(day_cfg, inputs)
        except Exception as exc:  # noqa: BLE001 - the date's own run reports it
            log.info("backfill: %s not prepared ahead (%s); its run tries again", day,
                     type(exc).__name__)
            prepared.append(None)
            continue
        try:
            check_rejection_ceiling(day_cfg, inputs, prep)
            simulate.append(len(prepared))
        except RejectionCeilingError:
            pass
        prepared.append(Ahead(inputs, prep))
    runs = [a.prepared for i in simulate if (a := prepared[i]) is not None]
    ready = simulate_together(spark, [p.spec for p in runs], partitions=cfg.spark.partitions,
                              faults=cfg.testing, levels=cfg.risk.confidence_levels,
                              samples=[attribution_sample(cfg, p) for p in runs])
    for i, blocks in zip(simulate, ready, strict=True):
        a = prepared[i]
        assert a is not None
        prepared[i] = dataclasses.replace(a, blocks=blocks)
    if cfg.backtest.enabled and cfg.backtest.hypothetical:
        try:  # the windows' input snapshots, read once for the group
            window = WindowSnapshots.read(spark, cfg, days)
        except Exception as exc:  # noqa: BLE001 - each run reads its own and reports it
            log.info("backfill: window snapshots not read ahead (%s)", type(exc).__name__)
        else:
            prepared = [None if a is None else dataclasses.replace(a, window=window)
                        for a in prepared]
    return prepared
