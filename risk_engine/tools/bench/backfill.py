"""Backfill: a year of demo history published date by date, in one Spark session.

The demo data of ``days`` business days (:func:`risk_engine.tools.demo_data.generate_days`:
a book that trades every day on one simulated market path, with its actual P&L) is written
to a temporary folder and backfilled (:func:`risk_engine.spark.backfill.backfill`) at a
1-day horizon, ``scenarios`` a date, with the backtest on: each date reads the inputs, runs
every stage of the nightly defaults but the worst-case optimization (a driver-side solve with
its own benchmark, ``risk-engine bench-worst-case``) and the HTML report, and is published.
Reported: wall time, dates a minute, the time a 260-date year takes at that rate (against
the 15-minute target), the mean seconds per date of each stage (from the run manifests),
and the firm's backtest of the last date (99% VaR, actual P&L): exceptions and zone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from risk_engine.config import config_from_dict
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.bench.stage import bench_session, cores_of, release_session
from risk_engine.tools.demo_data import DEFAULT_AS_OF, generate_days, write_tables

#: Business days of the demo year (the target's).
YEAR_DAYS = 260


def backfill_rows(rows: Rows, days: int = YEAR_DAYS, *, scenarios: int = 10_000,
                  positions: int = 2000, master: str = "local[2]", driver_memory: str = "1g",
                  fan_out: int | None = None, workdir: str | Path | None = None,
                  settings: Mapping[str, Any] | None = None,
                  say: Callable[[str], None] | None = None) -> None:
    """Add the ``backfill`` section: backfill ``days`` demo dates and time it.

    Parameters
    ----------
    rows : Rows
        The benchmark's rows.
    days : int
        Business days of demo data backfilled (the last ends at the demo's as-of date).
    scenarios : int
        Monte Carlo scenarios a date (blocks of 10,000).
    positions : int
        Positions of the demo book each day.
    master, driver_memory : str
        The Spark session's.
    fan_out : int, optional
        Dates whose blocks are simulated together (default: the backfill's).
    workdir : path, optional
        Where the demo inputs and outputs go (default: a temporary folder, removed after).
    settings : mapping, optional
        Dotted config keys set over the section's (e.g. ``{"governance.enabled": False}``).
    say : callable, optional
        Progress messages.
    """
    from risk_engine.spark.backfill import backfill

    log = say or (lambda msg: None)
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="bench-backfill-") if own else str(workdir))
    try:
        log(f"backfill: demo data, {days} days")
        tables = generate_days(DEFAULT_AS_OF, days, n_positions=positions)
        inp, out = root / "input", root / "output"
        write_tables(tables, inp)
        dates = sorted(pd.to_datetime(tables["positions"]["as_of_date"]).dt.date.unique())
        doc: dict[str, Any] = {
            "as_of_date": dates[0].isoformat(),
            "input": {"root": str(inp)}, "output": {"root": str(out)},
            "monte_carlo": {"n_scenarios": scenarios, "horizon_days": 1},
            "worst_case": {"enabled": False}, "report": {"enabled": False},
            "backtest": {"enabled": True},
        }
        for key, value in (settings or {}).items():
            *path, leaf = key.split(".")
            node = doc
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = value
        cfg = config_from_dict(doc)
        spark = bench_session(master, driver_memory)
        try:
            log(f"backfill: {len(dates)} dates on {master}")
            t0 = time.perf_counter()
            kw = {} if fan_out is None else {"fan_out": fan_out}
            summaries = backfill(spark, cfg, dates[0], dates[-1], **kw)
            wall = time.perf_counter() - t0
        finally:
            release_session(spark)
        _add(rows, summaries, wall, out, dates[-1], scenarios, master, positions,
             dict(settings or {}))
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _add(rows: Rows, summaries: Sequence[Any], wall: float, out: Path, last: object,
         scenarios: int, master: str, positions: int, settings: dict[str, Any]) -> None:
    n = len(summaries)
    failed = sum(s.status not in ("completed", "completed_with_warnings") for s in summaries)
    rate = 60.0 * n / wall if wall > 0 else float("nan")
    note = (f"demo book ({positions} positions, 6 desks), 1-day horizon, {cores_of(master)} "
            "cores, worst case and report off"
            + "".join(f", {k}={v}" for k, v in settings.items())
            + "; wall clock on a possibly shared machine")
    section, method = "backfill", "full"
    rows.add(section, method, scenarios, "dates", float(n), "dates", note=note)
    rows.add(section, method, scenarios, "failed_dates", float(failed), "dates")
    rows.add(section, method, scenarios, "wall_s", wall, "s")
    rows.add(section, method, scenarios, "dates_per_min", rate, "dates/min")
    rows.add(section, method, scenarios, "year_min", YEAR_DAYS / rate if rate else float("nan"),
             "min", target="backfill_year_min",
             note=f"{YEAR_DAYS} dates at this rate" + ("" if n == YEAR_DAYS
                                                      else f" (extrapolated from {n})"))
    stages: dict[str, list[float]] = {}
    for s in summaries:
        for name, seconds in s.timings.items():
            stages.setdefault(name, []).append(float(seconds))
    for name, values in stages.items():
        rows.add(section, method, scenarios, f"stage_{name}_s", sum(values) / len(values),
                 "s/date", note="mean over the dates, from the run's stage timings")
    rows.add(section, method, scenarios, "outside_stages_s",
             (wall - sum(sum(v) for v in stages.values())) / max(n, 1), "s/date",
             note="reading and preparing ahead, the fan-out of the blocks, manifests")
    part = out / "backtest" / f"as_of_date={last}"
    if not part.is_dir():
        return
    bt = pd.read_parquet(part)
    firm = bt[(bt["scope"] == "firm") & (bt["series"] == "actual")
              & (bt["confidence_level"] == 0.99)]
    if len(firm):
        r = firm.iloc[0]
        rows.add(section, method, scenarios, "backtest_exceptions_99", float(r["exceptions"]),
                 "days", note=json.dumps({
                     "zone": r["zone"], "observations": int(r["observations"]),
                     "missing": int(r["missing"]), "kupiec_p": r["kupiec_p"],
                     "series": "actual", "scope": "firm", "as_of": str(last)}, default=str))
