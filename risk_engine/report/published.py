"""Read one published date back from ``<output.root>`` with pyarrow (no Spark).

A date is *published* when a run of it completed (``completed`` or
``completed_with_warnings`` in ``run_manifest``); its tables are then the ones under
``<root>/<table>/as_of_date=D``. Local roots only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from risk_engine import schemas

GOOD = ("completed", "completed_with_warnings")

@dataclass(frozen=True)
class PublishedDate:
    """One date as the report sees it: its latest run's manifest row and its tables."""

    as_of: dt.date
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _root(root: str) -> Path:
    return Path(root[len("file://"):] if root.startswith("file://") else root)


def manifest_rows(root: str, as_of: dt.date) -> pd.DataFrame:
    """Every run's manifest row of ``as_of``, oldest start first (empty if none)."""
    part = _root(root) / schemas.RUN_MANIFEST.name / f"as_of_date={as_of.isoformat()}"
    files = sorted(part.glob("*.parquet")) if part.is_dir() else []
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    return frame.sort_values(["started_at", "run_id"], kind="stable").reset_index(drop=True)


def latest_run(root: str, as_of: dt.date, *, completed: bool = False) -> dict[str, Any] | None:
    """The manifest row of the date's latest run (``completed``: latest completed run)."""
    rows = manifest_rows(root, as_of)
    if completed and len(rows):
        rows = rows[rows["status"].isin(GOOD)]
    if not len(rows):
        return None
    row: dict[str, Any] = rows.iloc[-1].to_dict()
    return row


def published_dates(root: str) -> list[dt.date]:
    """Dates with a completed run under ``root``, oldest first."""
    base = _root(root) / schemas.RUN_MANIFEST.name
    dates = []
    for part in sorted(base.glob("as_of_date=*")) if base.is_dir() else []:
        day = dt.date.fromisoformat(part.name.partition("=")[2])
        if latest_run(root, day, completed=True) is not None:
            dates.append(day)
    return dates


def read_tables(root: str, as_of: dt.date) -> dict[str, pd.DataFrame]:
    """Every output table published for ``as_of`` (tables without a partition left out)."""
    out: dict[str, pd.DataFrame] = {}
    for name in schemas.OUTPUT_TABLES:
        if name == schemas.RUN_MANIFEST.name:
            continue
        part = _root(root) / name / f"as_of_date={as_of.isoformat()}"
        if part.is_dir() and any(part.glob("*.parquet")):
            out[name] = pq.read_table(part).to_pandas()
    return out


def read_published(root: str, as_of: dt.date) -> tuple[PublishedDate, PublishedDate | None,
                                                          PublishedDate | None]:
    """What the report of ``as_of`` needs: (the date, its last good date, the one before).

    Returns
    -------
    (date, good, previous)
        ``date``: the latest run of ``as_of`` (its manifest; tables if it completed).
        ``good``: the latest published date on or before ``as_of`` (None if none).
        ``previous``: the published date before ``good`` (None if none).

    Raises
    ------
    RiskEngineError
        If no run of ``as_of`` is recorded under ``root``.
    """
    from risk_engine.errors import RiskEngineError

    row = latest_run(root, as_of)
    if row is None:
        raise RiskEngineError(f"report: no run of {as_of} under {root}/run_manifest")
    dates = [d for d in published_dates(root) if d <= as_of]
    good = prev = None
    if dates:
        g = dates[-1]
        grow = latest_run(root, g, completed=True)
        assert grow is not None
        good = PublishedDate(g, grow, read_tables(root, g))
        if len(dates) > 1:
            p = dates[-2]
            prow = latest_run(root, p, completed=True)
            assert prow is not None
            prev = PublishedDate(p, prow, read_tables(root, p))
    this = good if good is not None and good.as_of == as_of and row["status"] in GOOD \
        else PublishedDate(as_of, row, {})
    return this, good, prev


def loads(text: Any, default: Any) -> Any:
    """JSON of a manifest column, ``default`` when empty or null."""
    if text is None or (isinstance(text, float) and pd.isna(text)) or text == "":
        return default
    return json.loads(text)
