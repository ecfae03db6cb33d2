"""What a date's backtest reads of earlier dates: their input snapshots and published results.

The backtest of ``as_of_date`` compares the VaR published for each day of its window with
the P&L that followed (:mod:`risk_engine.backtest`). It reads:

* ``risk_measures`` that completed runs published for the window's earlier dates
  (:func:`read_published_risk`);
* the desk hypothetical and risk-theoretical P&L earlier runs published in
  ``backtest_series`` (:func:`read_published_hypothetical`), reused instead of revalued;
* the ``positions``, ``market`` and ``rates`` snapshots of the window's dates
  (:func:`read_window_snapshots`), to revalue the days no earlier run did.

A backfill reads these once for many dates instead of once a date:
:class:`WindowSnapshots` holds the snapshots of a group of dates, and
:class:`PublishedResults` the published results of the whole range, kept up to date in
memory as each date publishes (:meth:`PublishedResults.record`). Either gives each date
exactly the rows its own reads would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from risk_engine import schemas
from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.config import Config
from risk_engine.pipeline import InputTables
from risk_engine.spark.io import as_published, local_root, read_table, to_pandas

#: Statuses of a run whose published rows count.
COMPLETED = ("completed", "completed_with_warnings")
#: Columns of the published ``risk_measures`` rows the backtest reads.
RISK_COLUMNS = ["run_id", "scope", "desk", "measure", "confidence_level", "horizon_days",
                "value", "as_of_date"]
#: Columns of the published hypothetical rows the backtest reads.
HYPOTHETICAL_COLUMNS = ["date", "desk", "pnl", "rtpl", "rtpl_factors"]


def window_start(cfg: Config) -> dt.date:
    """The first date whose snapshot or results the backtest of ``cfg.as_of_date`` reads.

    The business day before the window's first day (the VaR of the first day's day before,
    the snapshot its hypothetical P&L starts from).
    """
    return previous_business_day(window_dates(cfg.as_of_date, cfg.backtest.window)[0])


def with_published(spark: SparkSession, cfg: Config, inputs: InputTables,
                   window: WindowSnapshots | None = None,
                   published: PublishedResults | None = None) -> InputTables:
    """``inputs`` with the backtest's reads of what earlier dates published.

    ``published_risk`` (:func:`read_published_risk`) and ``backtest_snapshots``
    (:func:`read_window_snapshots`, from ``window`` if given, and key ``hypothetical``:
    :func:`read_published_hypothetical`) when the backtest is on; read when called, so a
    date's backtest sees every date published before this call.
    ``published``: a backfill's results kept in memory, used instead of reading them.
    """
    if not cfg.backtest.enabled:
        return inputs
    risk = (published.risk(cfg) if published is not None
            else read_published_risk(spark, cfg))
    snapshots = None
    if cfg.backtest.hypothetical:
        snapshots = read_window_snapshots(spark, cfg, window)
        # days earlier runs already revalued are reused, not revalued again
        snapshots["hypothetical"] = (published.hypothetical(cfg) if published is not None
                                     else read_published_hypothetical(spark, cfg))
    return dataclasses.replace(inputs, published_risk=risk, backtest_snapshots=snapshots)


# ------------------------------------------------------------------------ input snapshots


def _read_snapshot_range(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date
                         ) -> dict[str, pd.DataFrame | None]:
    """``positions``, ``market`` and ``rates`` rows dated ``start`` .. ``end`` (None: no table)."""
    from pyspark.sql import functions as F

    out: dict[str, pd.DataFrame | None] = {}
    for table in (schemas.POSITIONS, schemas.MARKET, schemas.RATES):
        df = read_table(spark, cfg.input.root, table, required=False)
        day = F.col("as_of_date").cast("date")
        out[table.name] = None if df is None else to_pandas(
            df.where((day >= F.lit(start)) & (day <= F.lit(end))))
    return out


@dataclass(frozen=True)
class WindowSnapshots:
    """The backtest windows' input snapshots of several dates, read once (a backfill's).

    ``tables`` hold ``positions``, ``market`` and ``rates`` from ``start`` to ``end``; a
    date's window is cut from them (:func:`read_window_snapshots`) with the rows a read of
    that window alone gives: each date's rows come from its own files, in file order.
    """

    start: dt.date
    end: dt.date
    tables: dict[str, pd.DataFrame | None]
    days: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    """Each table's ``as_of_date`` as datetime64 (NaT: none), for the cuts."""

    @classmethod
    def read(cls, spark: SparkSession, cfg: Config, days: list[dt.date]) -> WindowSnapshots:
        """The snapshots every date of ``days`` (``cfg`` with each as-of date) reads."""
        start = min(window_start(dataclasses.replace(cfg, as_of_date=d)) for d in days)
        end = max(days)
        tables = _read_snapshot_range(spark, cfg, start, end)
        return cls(start, end, tables, {
            name: pd.to_datetime(frame["as_of_date"], errors="coerce").to_numpy("datetime64[ns]")
            for name, frame in tables.items() if frame is not None})

    def cut(self, start: dt.date, end: dt.date) -> dict[str, pd.DataFrame | None] | None:
        """The rows dated ``start`` .. ``end``; None if the range is not inside the one read."""
        if start < self.start or end > self.end:
            return None
        lo, hi = np.datetime64(start, "ns"), np.datetime64(end, "ns")
        out: dict[str, pd.DataFrame | None] = {}
        for name, frame in self.tables.items():
            if frame is None:
                out[name] = None
                continue
            day = self.days[name]
            out[name] = frame.loc[(day >= lo) & (day <= hi)].reset_index(drop=True)
        return out


def read_window_snapshots(spark: SparkSession, cfg: Config,
                          window: WindowSnapshots | None = None
                          ) -> dict[str, pd.DataFrame | None]:
    """``positions``, ``market`` and ``rates`` of every date of the backtest window.

    From the business day before the window's first day to ``as_of_date`` (for the
    hypothetical P&L of each day); a table without those dates is None or partial. Cut from
    ``window`` when it covers them, else read.
    """
    start = window_start(cfg)
    cut = window.cut(start, cfg.as_of_date) if window is not None else None
    return cut if cut is not None else _read_snapshot_range(spark, cfg, start, cfg.as_of_date)


# ----------------------------------------------------------------------- published results


def _published_rows(spark: SparkSession, cfg: Config, table: schemas.Table, start: dt.date,
                    end: dt.date, merge_schema: bool = False) -> DataFrame | None:
    """Rows of ``<output.root>/<table>`` that completed runs published, ``start`` to ``end``.

    Dates ``start`` <= as_of_date < ``end``.
    ``as_of_date`` is a date column. None if nothing is published. ``merge_schema``: read
    the union of the files' columns (a column added later is null in older dates' files).
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    root = cfg.output.root.rstrip("/")
    local = local_root(cfg.output.root)
    if local is not None and not all((local / t).is_dir()
                                     for t in (table.name, schemas.RUN_MANIFEST.name)):
        return None
    try:
        reader = spark.read.option("mergeSchema", "true") if merge_schema else spark.read
        rows = reader.parquet(f"{root}/{table.name}")
        manifest = spark.read.parquet(f"{root}/{schemas.RUN_MANIFEST.name}")
    except AnalysisException:  # a remote root without published results
        return None
    day = F.col("as_of_date").cast("date")
    done = (manifest.where((day >= F.lit(start)) & (day < F.lit(end)))
            .where(F.col("status").isin(*COMPLETED)).select("run_id").distinct())
    return (rows.where((day >= F.lit(start)) & (day < F.lit(end)))
            .join(done, "run_id", "left_semi").withColumn("as_of_date", day))


def _risk_rows(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date
               ) -> pd.DataFrame | None:
    rows = _published_rows(spark, cfg, schemas.RISK_MEASURES, start, end)
    return None if rows is None else to_pandas(rows.select(*RISK_COLUMNS))


def read_published_risk(spark: SparkSession, cfg: Config) -> pd.DataFrame | None:
    """The ``risk_measures`` of the backtest window's earlier dates, completed runs only.

    Reads ``<output.root>/risk_measures`` for the dates from the business day before the
    window's first day up to the day before ``as_of_date``, keeping the rows of runs whose
    manifest says ``completed`` or ``completed_with_warnings`` (with the date-level commit
    a published date is one run). None if nothing was published under the root yet.
    """
    return _risk_rows(spark, cfg, window_start(cfg), cfg.as_of_date)


def _hypothetical_rows(spark: SparkSession, cfg: Config, start: dt.date, end: dt.date
                       ) -> pd.DataFrame | None:
    """Desk hypothetical rows with a P&L published for ``start`` <= date < ``end``.

    Columns ``as_of_date`` (the publishing run's date) and :data:`HYPOTHETICAL_COLUMNS`,
    one row per (as_of_date, date, desk).
    """
    from pyspark.sql import functions as F

    rows = _published_rows(spark, cfg, schemas.BACKTEST_SERIES, start, end, merge_schema=True)
    if rows is None:
        return None
    factors = (F.col("rtpl_factors") if "rtpl_factors" in rows.columns
               else F.lit(None).cast("string")).alias("rtpl_factors")
    rows = (rows.where((F.col("series") == "hypothetical") & F.col("desk").isNotNull()
                       & F.col("pnl").isNotNull() & ~F.isnan("pnl"))
            .select("as_of_date", "date", "desk", "pnl", "rtpl", factors).distinct())
    return to_pandas(rows)


def _latest_per_day(rows: pd.DataFrame | None) -> pd.DataFrame | None:
    """One row per (date, desk): the latest publishing date's; sorted by date and desk."""
    if rows is None or len(rows) == 0:
        return None
    latest = (rows.sort_values(["as_of_date", "date", "desk"], kind="stable")
              .drop_duplicates(["date", "desk"], keep="last"))
    latest = latest.sort_values(["date", "desk"], kind="stable")
    return latest[HYPOTHETICAL_COLUMNS].reset_index(drop=True)


def read_published_hypothetical(spark: SparkSession, cfg: Config) -> pd.DataFrame | None:
    """Desk hypothetical and risk-theoretical P&L that earlier runs of the window published.

    From ``backtest_series`` (completed runs, series ``hypothetical``, desk rows with a
    P&L), one row per (date, desk): the latest run's, in date and desk order. Columns
    ``date``, ``desk``, ``pnl``, ``rtpl``, ``rtpl_factors`` (the factors that RTPL moved;
    null in files published before the column existed, i.e. ``spot``). None if nothing was
    published.
    """
    return _latest_per_day(_hypothetical_rows(spark, cfg, window_start(cfg), cfg.as_of_date))


class PublishedResults:
    """The results a backfill's dates read of earlier dates, kept in memory.

    Read once for the whole range (every date a date of the range reads: from the first
    date's window start to the last date), then each date's commit replaces that date's
    rows (:meth:`record`), as it replaces its partitions on disk; a date that fails keeps
    its earlier rows, as on disk. :meth:`risk` and :meth:`hypothetical` give a date
    what :func:`read_published_risk` and :func:`read_published_hypothetical` would read.
    """

    def __init__(self, risk: pd.DataFrame | None, hypothetical: pd.DataFrame | None) -> None:
        self._risk = risk
        self._hypothetical = hypothetical

    @classmethod
    def read(cls, spark: SparkSession, cfg: Config, days: list[dt.date]) -> PublishedResults:
        """What the dates ``days`` (``cfg`` with each as-of date) read, published so far."""
        start = min(window_start(dataclasses.replace(cfg, as_of_date=d)) for d in days)
        end = max(days) + dt.timedelta(days=1)
        hypothetical = (_hypothetical_rows(spark, cfg, start, end)
                        if cfg.backtest.hypothetical else None)
        return cls(_risk_rows(spark, cfg, start, end), hypothetical)

    def risk(self, cfg: Config) -> pd.DataFrame | None:
        """The rows :func:`read_published_risk` reads for ``cfg.as_of_date``."""
        return _dated(self._risk, window_start(cfg), cfg.as_of_date)

    def hypothetical(self, cfg: Config) -> pd.DataFrame | None:
        """The rows :func:`read_published_hypothetical` reads for ``cfg.as_of_date``."""
        return _latest_per_day(_dated(self._hypothetical, window_start(cfg), cfg.as_of_date))

    def record(self, as_of: dt.date, run_id: str, tables: dict[str, pd.DataFrame]) -> None:
        """The run ``run_id`` published ``tables`` for ``as_of`` (replacing the date's rows).

        Each table goes through the Arrow conversion of the published files
        (:func:`risk_engine.spark.io.as_published`), so the rows are what a read gives.
        """
        if "risk_measures" in tables:
            risk = as_published(tables["risk_measures"], schemas.RISK_MEASURES, as_of, run_id)
            self._risk = _replaced(self._risk, as_of, risk[RISK_COLUMNS])
        else:  # the commit replaced the date's partitions with none
            self._risk = _replaced(self._risk, as_of, None)
        if "backtest_series" in tables:
            series = as_published(tables["backtest_series"], schemas.BACKTEST_SERIES, as_of,
                                  run_id)
            keep = ((series["series"] == "hypothetical") & series["desk"].notna()
                    & ~np.isnan(series["pnl"].to_numpy(float))).to_numpy(bool)
            rows = (series.loc[keep, ["as_of_date", *HYPOTHETICAL_COLUMNS]]
                    .drop_duplicates().reset_index(drop=True))
            self._hypothetical = _replaced(self._hypothetical, as_of, rows)
        else:
            self._hypothetical = _replaced(self._hypothetical, as_of, None)


def _dated(rows: pd.DataFrame | None, start: dt.date, end: dt.date) -> pd.DataFrame | None:
    """The rows with ``start`` <= ``as_of_date`` < ``end``."""
    if rows is None:
        return None
    day = rows["as_of_date"]
    keep = ((day >= start) & (day < end)).to_numpy(bool)
    return rows.loc[keep].reset_index(drop=True)


def _replaced(rows: pd.DataFrame | None, as_of: dt.date, new: pd.DataFrame | None
              ) -> pd.DataFrame | None:
    """``rows`` without the date ``as_of``'s, then ``new`` (if any)."""
    if rows is None:
        return None if new is None else new.reset_index(drop=True)
    kept = rows.loc[(rows["as_of_date"] != as_of).to_numpy(bool)]
    if new is None:
        return kept.reset_index(drop=True)
    return pd.concat([kept, new], ignore_index=True)
