"""The morning report: one self-contained HTML page per published date.

:func:`write_report` reads a date back from ``<output.root>`` (:mod:`.published`, pyarrow,
no Spark) and writes ``<output.root>/report/as_of_date=D/report.html`` built by the pure
:func:`risk_engine.report.build.build`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from risk_engine.report.build import build
from risk_engine.report.published import PublishedDate, read_published

__all__ = ["PublishedDate", "build", "read_published", "report_path", "write_report"]


def report_path(root: str, as_of: dt.date) -> Path:
    """``<root>/report/as_of_date=D/report.html`` (local roots)."""
    base = root[len("file://"):] if root.startswith("file://") else root
    return Path(base) / "report" / f"as_of_date={as_of.isoformat()}" / "report.html"


def write_report(root: str, as_of: dt.date, *, top_positions: int = 10) -> Path:
    """Build the report of ``as_of`` from the tables published under ``root``; return its path.

    The file is replaced atomically (written aside, then renamed).

    Raises
    ------
    RiskEngineError
        If no run of ``as_of`` is recorded under ``root``.
    """
    text = build(*read_published(root, as_of), top_positions=top_positions)
    path = report_path(root, as_of)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
