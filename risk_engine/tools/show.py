"""``risk-engine show``: a published date's key tables, readably, without Spark.

Reads the Parquet files under ``<output.root>/<table>/as_of_date=D/`` with pyarrow (fast: no
JVM). The date's committed run is the one whose rows the published ``risk_measures`` folder
holds (publication installs every table of a date from one run); only its rows are shown.
When no run of the date was published, the latest manifest of the date says why.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from risk_engine import schemas
from risk_engine.errors import RiskEngineError

_WIDE = {"display.width": 200, "display.max_columns": 40, "display.max_rows": 10_000,
         "display.max_colwidth": 80, "display.float_format": "{:,.4f}".format}


def read_published(root: Path, table: str, as_of: dt.date) -> pd.DataFrame | None:
    """The rows of ``table`` published for ``as_of`` (None if the date has no such folder)."""
    folder = root / table / f"as_of_date={as_of.isoformat()}"
    if not folder.is_dir() or not any(p.suffix == ".parquet" for p in folder.rglob("*")):
        return None
    return pq.read_table(folder).to_pandas()


def manifests(root: Path, as_of: dt.date) -> pd.DataFrame:
    """Every manifest row of ``as_of`` (one per run), oldest start first; may be empty."""
    frame = read_published(root, schemas.RUN_MANIFEST.name, as_of)
    if frame is None:
        return pd.DataFrame(columns=list(schemas.RUN_MANIFEST.pandas_dtypes()))
    return frame.sort_values("started_at").reset_index(drop=True)


def committed_run(root: Path, as_of: dt.date) -> str | None:
    """The run id of the date's published tables (from ``risk_measures``), or None."""
    frame = read_published(root, schemas.RISK_MEASURES.name, as_of)
    if frame is None or len(frame) == 0:
        return None
    ids = frame["run_id"].unique()
    return str(sorted(ids)[-1])


def _num(x: float) -> str:
    return "" if pd.isna(x) else f"{x:,.0f}"


def _section(title: str, body: str) -> str:
    return f"\n{title}\n{'-' * len(title)}\n{body}\n"


def _risk(frame: pd.DataFrame) -> str:
    f = frame.assign(desk=frame["desk"].fillna("FIRM"),
                     column=frame["measure"] + " " + frame["confidence_level"].map("{:.3f}".format))
    table = f.pivot_table(index=["scope", "desk"], columns="column", values="value",
                          aggfunc="first")
    order = {"firm": 0, "desk": 1}
    table = table.sort_index(key=lambda idx: idx.map(lambda v: order.get(v, v)))
    table = table.droplevel("scope")
    table.columns.name = None
    return table.map(_num).to_string()


def _worst_case(frame: pd.DataFrame) -> str:
    cur = frame[frame["portfolio"] == "current"]
    if len(cur) == 0:
        return "(no rows)"
    table = cur.pivot_table(index=["desk", "confidence_level"], columns="model",
                            values="value", aggfunc="first", dropna=False)
    mc = cur.groupby(["desk", "confidence_level"])["mc_var"].first()
    worst = table.max(axis=1, skipna=True)
    out = table.map(_num)
    out["MC VaR"] = mc.map(_num)
    out["worst / MC"] = [("" if pd.isna(w) or not m else f"{w / m:.2f}x")
                         for w, m in zip(worst, mc.reindex(table.index), strict=True)]
    out.columns.name = None
    out.index = out.index.set_levels(out.index.levels[1].map("{:.3f}".format), level=1)
    return out.to_string()


def _breaches(frame: pd.DataFrame) -> str:
    b = frame[frame["breached"].fillna(False).astype(bool)]
    if len(b) == 0:
        return f"none ({len(frame)} checks)"
    b = b.sort_values("utilization", ascending=False)
    return b[["desk", "check", "subject", "value", "limit", "utilization"]].to_string(
        index=False, formatters={"utilization": "{:.0%}".format, "value": "{:,.4g}".format,
                                 "limit": "{:,.4g}".format})


def _alerts(frame: pd.DataFrame) -> str:
    if len(frame) == 0:
        return "none"
    rank = {"critical": 0, "warning": 1, "info": 2}
    f = frame.sort_values("severity", key=lambda s: s.map(lambda v: rank.get(v, 3)))
    return "\n".join(f"[{r.severity}] {r.desk or '-'}: {r.message}" for r in f.itertuples())


def _header(as_of: dt.date, run: pd.Series | None, run_id: str | None,
            all_runs: pd.DataFrame) -> str:
    lines = [f"as of {as_of}"]
    if run is None:
        lines.append(f"published run: {run_id or 'none'} (no manifest row)")
    else:
        lines.append(f"published run: {run['run_id']}: {run['status']}")
        lines.append(f"started {run['started_at']}, finished {run['finished_at']}; "
                     f"{int(run['n_scenarios']):,} scenarios, horizon "
                     f"{int(run['horizon_days'])} day(s); positions {int(run['positions_in'])} "
                     f"in, {int(run['positions_rejected'])} rejected")
        timings = json.loads(run["stage_timings"] or "{}")
        if timings:
            lines.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
        for w in json.loads(run["warnings"] or "[]"):
            lines.append(f"warning: {w}")
        if run["message"]:
            lines.append(f"message: {run['message']}")
    later = all_runs[all_runs["run_id"] != (run_id or "")]
    if run is not None:
        later = later[later["started_at"] > run["started_at"]]
    for r in later.itertuples():
        lines.append(f"later run {r.run_id}: {r.status}" + (f": {r.message}" if r.message else "")
                     + " (not published)")
    return "\n".join(lines)


def show(root: str | Path, as_of: dt.date, table: str | None = None) -> str:
    """The text ``risk-engine show`` prints for ``as_of`` under the output ``root``.

    Without ``table``: the run summary (manifest status, warnings, message), firm and desk
    VaR / ES, worst-case against Monte Carlo VaR, limit breaches and alerts (sections whose
    table was not published are left out). With ``table``: that whole table.

    Raises
    ------
    RiskEngineError
        If the root is remote, ``table`` is not an output table, or nothing (neither tables
        nor a manifest) exists for the date.
    """
    text = str(root)
    if "://" in text and not text.startswith("file://"):
        raise RiskEngineError(f"show reads a local output root; got {text}")
    base = Path(text.removeprefix("file://"))
    runs = manifests(base, as_of)
    run_id = committed_run(base, as_of)
    if run_id is None and len(runs) == 0:
        raise RiskEngineError(f"show: nothing published for {as_of} under {base.resolve()}")
    if table is not None:
        if table not in schemas.OUTPUT_TABLES:
            raise RiskEngineError(f"show: unknown table {table!r}; one of "
                                  f"{', '.join(sorted(schemas.OUTPUT_TABLES))}")
        frame = (runs if table == schemas.RUN_MANIFEST.name
                 else read_published(base, table, as_of))
        if frame is None:
            return f"{table}: nothing published for {as_of}"
        if run_id is not None and table != schemas.RUN_MANIFEST.name:
            frame = frame[frame["run_id"] == run_id]
        with pd.option_context(*[x for kv in _WIDE.items() for x in kv]):
            return f"{table} as of {as_of} ({len(frame)} rows)\n{frame.to_string(index=False)}"
    match = runs[runs["run_id"] == run_id] if run_id is not None else runs.iloc[0:0]
    run = match.iloc[-1] if len(match) else None
    if run_id is None:  # nothing published: the latest attempt says why
        latest = runs.iloc[-1]
        msg = f": {latest['message']}" if latest["message"] else ""
        return (f"as of {as_of}: no published results; latest run {latest['run_id']} "
                f"{latest['status']}{msg}")
    out = [_header(as_of, run, run_id, runs)]
    sections = (("VaR and ES (currency, positive loss)", schemas.RISK_MEASURES.name, _risk),
                ("Worst-case VaR vs Monte Carlo VaR (current books)",
                 schemas.WORST_CASE_VAR.name, _worst_case),
                ("Limit breaches", schemas.LIMIT_CHECKS.name, _breaches),
                ("Alerts", schemas.ALERTS.name, _alerts))
    for title, name, render in sections:
        frame = read_published(base, name, as_of)
        if frame is None:
            continue
        out.append(_section(title, render(frame[frame["run_id"] == run_id])))
    return "\n".join(out).rstrip() + "\n"
