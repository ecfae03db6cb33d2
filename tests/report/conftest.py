"""A published output root built with the in-process engine and pyarrow (no JVM).

Dates: ``D1`` and ``D2`` completed (``D2`` compares with ``D1``), ``D3`` failed.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from risk_engine.config import config_from_dict
from risk_engine.engine import InProcessEngine
from risk_engine.pipeline import InputTables, RunLog, nightly_run
from risk_engine.tools.demo_data import generate

D1, D2, D3 = dt.date(2026, 11, 19), dt.date(2026, 11, 20), dt.date(2026, 11, 23)


def _manifest(root: Path, as_of: dt.date, run_id: str, status: str, *, message=None,
              warnings=(), timings=None, counts=None) -> None:
    started = dt.datetime.combine(as_of, dt.time(22, 0), tzinfo=dt.timezone.utc)
    row = {"run_id": run_id, "status": status, "started_at": started,
           "finished_at": started + dt.timedelta(minutes=3), "config_hash": "abc123",
           "seed": 7, "n_scenarios": 4000, "horizon_days": 10, "block_size": 1000,
           "code_version": "test", "spark_version": "none", "spark_master": "in-process",
           "positions_in": 60, "positions_rejected": 0, "row_counts": json.dumps(counts or {}),
           "stage_timings": json.dumps(timings or {}), "warnings": json.dumps(list(warnings)),
           "message": message, "config": "{}"}
    part = root / "run_manifest" / f"as_of_date={as_of.isoformat()}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([row]), part / f"{run_id}.parquet")


def publish_date(root: Path, as_of: dt.date, seed: int, *, years: int | None = None,
                 extra: dict | None = None, stress_scenarios=None) -> dict:
    """Run the in-process engine on the demo snapshot of ``as_of`` and publish its tables.

    ``years``, ``extra`` (config sections) and ``stress_scenarios`` (an input frame) turn
    on the stress stages; returns the published tables (without run_id).
    """
    snap = generate(as_of, n_positions=60, seed=seed, years=years)
    if stress_scenarios is not None:
        snap["stress_scenarios"] = stress_scenarios(snap)
    cfg = config_from_dict({"as_of_date": as_of.isoformat(),
                            "monte_carlo": {"n_scenarios": 4000, "block_size": 1000},
                            "output": {"write_scenario_pnl": True},
                            "hedging": {"enabled": True}, **(extra or {})})
    inputs = InputTables(**{k: v for k, v in snap.items()
                            if k in InputTables.__dataclass_fields__})
    rl = RunLog()
    result = nightly_run(cfg, inputs, InProcessEngine(), rl)
    run_id = f"{as_of.isoformat()}-run"
    for name, frame in result.tables.items():
        part = root / name / f"as_of_date={as_of.isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame.assign(run_id=run_id), preserve_index=False)
        pq.write_table(table, part / "part-00000.parquet")
    status = "completed_with_warnings" if rl.warnings else "completed"
    _manifest(root, as_of, run_id, status, warnings=rl.warnings,
              timings=dict(rl.timings),
              counts=result.prepared.row_counts)
    return dict(result.tables)


@pytest.fixture(scope="session")
def published_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("published")
    publish_date(root, D1, seed=8)
    publish_date(root, D2, seed=7)
    _manifest(root, D3, f"{D3.isoformat()}-run", "failed",
              message="DataError: market: no row for underlying TECH01 on 2026-11-23")
    return root


def _stress_scenarios(snap):
    """Named shocks, a sector shock, a rates shock and a replay of the history's crash."""
    import pandas as pd

    hist = snap["history"]
    wide = hist.pivot(index="date", columns="underlying", values="close").sort_index()
    crash = int(np.log(wide).diff().mean(axis=1).to_numpy()[1:].argmin()) + 1
    days = list(wide.index)
    return pd.DataFrame({
        "scenario_id": ["crash", "tech_selloff", "vol_spike", "rates_up", "replay"],
        "description": ["-20% and +10 vol", "technology -15%", "+15 vol points",
                        "+100 bp", "the history's crash week"],
        "scope": ["all", "sector", "all", "all", "historical"],
        "target": [None, "technology", None, None, None],
        "spot_shock": [-0.2, -0.15, None, None, None],
        "vol_shock": [10.0, None, 15.0, None, None],
        "rate_shock": [None, None, None, 100.0, None],
        "start_date": [None, None, None, None, days[max(crash - 3, 0)]],
        "end_date": [None, None, None, None, days[min(crash + 2, len(days) - 1)]]})


def write_risk_factor_var(root: Path, as_of: dt.date, risk_measures) -> None:
    """A ``risk_factor_var`` partition written by hand to its declared layout (run_id, scope,
    desk, measure, confidence_level, factor_class, horizon_days, value, std_error,
    n_scenarios; as_of_date is the partition): the ``all`` rows are ``risk_measures``, the
    single classes fixed fractions of them."""
    share = {"spot": 0.8, "vol": 0.35, "rate": 0.02, "all": 1.0}
    rows = [{"run_id": f"{as_of.isoformat()}-run", "scope": r.scope,
             "desk": None if r.scope == "firm" else r.desk, "measure": r.measure,
             "confidence_level": float(r.confidence_level), "factor_class": fc,
             "horizon_days": int(r.horizon_days), "value": float(r.value) * k,
             "std_error": float(r.std_error) * k, "n_scenarios": int(r.n_scenarios)}
            for r in risk_measures.itertuples(index=False) for fc, k in share.items()]
    schema = pa.schema([("run_id", pa.string()), ("scope", pa.string()),
                        ("desk", pa.string()), ("measure", pa.string()),
                        ("confidence_level", pa.float64()), ("factor_class", pa.string()),
                        ("horizon_days", pa.int32()), ("value", pa.float64()),
                        ("std_error", pa.float64()), ("n_scenarios", pa.int64())])
    part = root / "risk_factor_var" / f"as_of_date={as_of.isoformat()}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), part / "part-00000.parquet")


@pytest.fixture(scope="session")
def stress_root(tmp_path_factory) -> Path:
    """``D2`` published with stress results, the spot-vol grid and stressed VaR (three years
    of demo history with its crash), plus a hand-written ``risk_factor_var`` partition."""
    root = tmp_path_factory.mktemp("published_stress")
    tables = publish_date(root, D2, seed=7, years=3, stress_scenarios=_stress_scenarios,
                          extra={"stress": {"enabled": True},
                                 "stressed_var": {"enabled": True, "window_days": 250}})
    write_risk_factor_var(root, D2, tables["risk_measures"])
    return root


def _day(frame, day):
    return frame[frame["as_of_date"] == day].reset_index(drop=True)


@pytest.fixture(scope="session")
def backtest_root(tmp_path_factory) -> Path:
    """13 business days published on one market path; the last one with the backtest."""
    import pandas as pd

    from risk_engine.tools.demo_data import generate_days

    root = tmp_path_factory.mktemp("published_backtest")
    snap = generate_days(D2, 13, n_underlyings=10, n_positions=30, seed=3)
    days = sorted(snap["positions"]["as_of_date"].unique())
    published = []
    for i, day in enumerate(days):
        last = i == len(days) - 1
        cfg = config_from_dict({
            "as_of_date": pd.Timestamp(day).date().isoformat(),
            "monte_carlo": {"n_scenarios": 2000, "block_size": 1000, "horizon_days": 1},
            "worst_case": {"enabled": last, "optimize": False},
            "backtest": {"enabled": last, "window": 12, "hypothetical": False},
            "output": {"write_scenario_pnl": last}})
        inputs = InputTables(
            positions=_day(snap["positions"], day), market=_day(snap["market"], day),
            rates=_day(snap["rates"], day), history=snap["history"],
            factor_model=snap["factor_model"], correlations=snap["correlations"],
            pnl_history=snap["pnl_history"],
            published_risk=pd.concat(published, ignore_index=True) if published else None)
        rl = RunLog()
        result = nightly_run(cfg, inputs, InProcessEngine(), rl)
        as_of = cfg.as_of_date
        run_id = f"{as_of.isoformat()}-run"
        published.append(result.tables["risk_measures"].assign(run_id=run_id, as_of_date=as_of))
        for name, frame in result.tables.items():
            part = root / name / f"as_of_date={as_of.isoformat()}"
            part.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(frame.assign(run_id=run_id),
                                                preserve_index=False),
                           part / "part-00000.parquet")
        _manifest(root, as_of, run_id, "completed_with_warnings" if rl.warnings else "completed",
                  warnings=rl.warnings, timings=dict(rl.timings),
                  counts=result.prepared.row_counts)
    return root
