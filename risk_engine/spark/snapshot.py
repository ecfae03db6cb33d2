"""The input snapshot of one date: every input table its run reads, as pandas.

:func:`read_snapshot` decides what is read for a date (which tables, which date ranges,
from the config); a :class:`Tables` decides how. :class:`Tables` reads each table with
Spark when asked; :class:`GroupTables` (a backfill's) reads each table once for a group of
dates and gives each date the rows its own read would, cut from those.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from risk_engine import schemas
from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.config import Config
from risk_engine.pipeline import InputTables
from risk_engine.schemas import Table
from risk_engine.spark.io import read_dated, read_dates, read_table, to_pandas


class Tables:
    """Input tables under ``root``, each read with Spark when asked."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark, self.root = spark, root

    def dated(self, table: Table, as_of: dt.date, *, required: bool = True
              ) -> pd.DataFrame | None:
        """The rows of ``as_of`` (and rows without an ``as_of_date``); None: no table."""
        return read_dated(self.spark, self.root, table, as_of, required=required)

    def dated_until(self, table: Table, end: dt.date, start: dt.date | None = None, *,
                    required: bool = True) -> pd.DataFrame | None:
        """The rows whose ``date`` is from ``start`` (if given) to ``end``; None: no table."""
        df = read_table(self.spark, self.root, table, required=required)
        if df is None:
            return None
        keep = F.col("date") <= F.lit(end)
        if start is not None:
            keep = keep & (F.col("date") >= F.lit(start))
        return to_pandas(df.where(keep))

    def whole(self, table: Table, *, required: bool = True) -> pd.DataFrame | None:
        """Every row; None: no table."""
        df = read_table(self.spark, self.root, table, required=required)
        return None if df is None else to_pandas(df)


class GroupTables(Tables):
    """The input tables of a group of dates ``days``, each table read once for them all.

    A date's rows are cut from the group's read, in its order: a date's ``dated`` rows are
    those of its partition (and the rows without a date), its ``dated_until`` rows those of
    its range, as a read for the date alone gives them. A table that cannot be read (or
    is missing and required) raises on each date that asks for it, as a read would.
    """

    def __init__(self, spark: SparkSession, root: str, days: Sequence[dt.date]) -> None:
        super().__init__(spark, root)
        self.days = sorted(set(days))
        self._read: dict[tuple[str, str, bool], tuple[pd.DataFrame | None, np.ndarray]] = {}

    def _once(self, kind: str, table: Table, required: bool
              ) -> tuple[pd.DataFrame | None, np.ndarray]:
        key = (kind, table.name, required)
        if key not in self._read:
            if kind == "dated":
                frame = read_dates(self.spark, self.root, table, self.days, required=required)
                column = "as_of_date"
            elif kind == "until":
                frame = super().dated_until(table, self.days[-1], required=required)
                column = "date"
            else:
                frame, column = super().whole(table, required=required), ""
            day = (np.empty(0, dtype="datetime64[ns]") if frame is None or not column
                   else pd.to_datetime(frame[column]).to_numpy("datetime64[ns]"))
            self._read[key] = (frame, day)
        return self._read[key]

    def dated(self, table: Table, as_of: dt.date, *, required: bool = True
              ) -> pd.DataFrame | None:
        """See :meth:`Tables.dated`; ``as_of`` must be one of the group's days."""
        frame, day = self._once("dated", table, required)
        if frame is None:
            return None
        keep = (day == np.datetime64(as_of, "ns")) | np.isnat(day)
        return frame.loc[keep].reset_index(drop=True)

    def dated_until(self, table: Table, end: dt.date, start: dt.date | None = None, *,
                    required: bool = True) -> pd.DataFrame | None:
        """See :meth:`Tables.dated_until`; ``end`` at most the group's last day."""
        frame, day = self._once("until", table, required)
        if frame is None:
            return None
        keep = ~np.isnat(day) & (day <= np.datetime64(end, "ns"))
        if start is not None:
            keep &= day >= np.datetime64(start, "ns")
        return frame.loc[keep].reset_index(drop=True)

    def whole(self, table: Table, *, required: bool = True) -> pd.DataFrame | None:
        """See :meth:`Tables.whole`."""
        frame, _ = self._once("whole", table, required)
        return frame


def read_snapshot(spark: SparkSession, cfg: Config, tables: Tables | None = None
                  ) -> InputTables:
    """The input tables of ``cfg.as_of_date``, without what earlier runs published.

    Everything :func:`risk_engine.pipeline.prepare` reads (so a date can be prepared before
    the dates before it are published); ``published_risk`` and ``backtest_snapshots`` are
    None (see :func:`risk_engine.spark.backtest_window.with_published`). ``tables``: how
    the tables are read (default: each with Spark now).
    """
    src = tables or Tables(spark, cfg.input.root)
    as_of = cfg.as_of_date
    positions = src.dated(schemas.POSITIONS, as_of)
    market = src.dated(schemas.MARKET, as_of)
    rates = src.dated(schemas.RATES, as_of)
    assert positions is not None and market is not None and rates is not None
    factor_model = correlations = None
    by_history = cfg.scenario_model.source in ("history", "historical")
    # History feeds the scenario model, and the governance stage's hypothetical P&L.
    days = cfg.scenario_model.history_window_days
    lookback = cfg.governance.performance.lookback_days
    days = max(days, lookback or days)
    if cfg.scenario_model.source == "historical":
        days = max(days, cfg.historical.window_days + 1)
    if cfg.stressed_var.enabled or cfg.stress.enabled:  # stress: historical replays
        days = max(days, cfg.stressed_var.history_days + 1)
    if cfg.hedging.enabled:  # the hedging stage's baskets use their own window
        days = max(days, cfg.hedging.window_days)
    # Calendar days comfortably covering the window of trading days.
    history = src.dated_until(schemas.HISTORY, as_of,
                              as_of - dt.timedelta(days=int(days * 1.6) + 14),
                              required=by_history or cfg.stressed_var.enabled)
    if not by_history:
        factor_model = src.whole(schemas.FACTOR_MODEL)
        assert factor_model is not None
        correlations = src.whole(schemas.CORRELATIONS, required=False)
    pnl_history = src.dated_until(schemas.PNL_HISTORY, as_of, required=False)
    position_history = (src.dated_until(schemas.POSITION_HISTORY, as_of, required=False)
                        if cfg.hedging.enabled else None)
    vol_surface = src.dated(schemas.VOL_SURFACE, as_of, required=False)
    stress_scenarios = (src.whole(schemas.STRESS_SCENARIOS, required=False)
                        if cfg.stress.enabled else None)
    factors = _factor_inputs(src, cfg)
    return InputTables(positions, market, rates, history, factor_model, correlations,
                       pnl_history, position_history, stress_scenarios=stress_scenarios,
                       vol_surface=vol_surface, **factors)


def _factor_inputs(src: Tables, cfg: Config) -> dict[str, pd.DataFrame | None]:
    """The optional vol and rate factor inputs the config asks for (none when both are off).

    ``vol_history`` / ``rate_history`` (source history, up to ``as_of_date`` and over the
    history window) or ``factor_vols`` (source factor_model). With the backtest's
    hypothetical series on, the histories also cover the backtest window (whatever the
    source): the risk-theoretical P&L moves the factors by the day's realized moves.
    """
    sm, as_of = cfg.scenario_model, cfg.as_of_date
    out: dict[str, pd.DataFrame | None] = {}
    if not (sm.vol_factors.enabled or sm.rate_factor.enabled):
        return out
    rtpl = cfg.backtest.enabled and cfg.backtest.hypothetical
    days = sm.history_window_days
    if sm.source == "historical":  # the historical window's vol and rate levels
        days = max(days, cfg.historical.window_days + 1)
    start = as_of - dt.timedelta(days=int(days * 1.6) + 14)
    if sm.source == "factor_model":
        out["factor_vols"] = src.whole(schemas.FACTOR_VOLS, required=False)
        if not rtpl:
            return out
        start = as_of
    if rtpl:
        start = min(start, previous_business_day(window_dates(as_of, cfg.backtest.window)[0]))
    for name, table, on in (("vol_history", schemas.VOL_HISTORY, sm.vol_factors.enabled),
                            ("rate_history", schemas.RATE_HISTORY, sm.rate_factor.enabled)):
        out[name] = src.dated_until(table, as_of, start, required=False) if on else None
    return out
