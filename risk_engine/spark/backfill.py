"""``risk-engine backfill``: the nightly job for every business date of a range, in order.

One Spark session runs the dates one after another, oldest first, each exactly as the
nightly run does (:func:`risk_engine.spark.job.main`: staged, then published as one commit
per date). The order matters: a date's ``backtest`` stage reads the VaR the dates before it
published. A killed backfill leaves each date either fully old or fully new (the per-date
commit); running it again republishes every date with the same numbers (only ``run_id`` and
the manifests' times differ). The dates' scenario blocks are not fanned out together: each
date's blocks are spread over the cluster as in a nightly run.
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
from risk_engine.errors import RiskEngineError
from risk_engine.spark.job import RunSummary, main
from risk_engine.spark.progress import format_progress, is_terminal

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


def backfill(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date
             ) -> list[RunSummary]:
    """Run the nightly job for each date of :func:`backfill_dates`, oldest first.

    A date that fails is logged and its summary kept (its manifest says ``failed``; its
    previous results stay); the next dates still run.

    Returns
    -------
    list of RunSummary
        One per date, in date order.
    """
    out = []
    days = backfill_dates(cfg, start, end)
    t0 = time.monotonic()
    for i, day in enumerate(days):
        if is_terminal(sys.stderr):  # one line per date, above the run's progress line
            print(format_progress(f"backfill {day}", i, len(days), time.monotonic() - t0,
                                  unit="dates"), file=sys.stderr, flush=True)
        day_cfg = dataclasses.replace(cfg, as_of_date=day)
        try:
            out.append(main(spark, day_cfg))
        except RiskEngineError as exc:
            log.error("backfill: %s failed: %s", day, exc)
            out.append(RunSummary("", day, "failed", cfg.output.root, message=str(exc)))
    return out
