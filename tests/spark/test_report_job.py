"""The nightly job's ``report`` stage: written after publication, and for a failed run."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from risk_engine.config import config_from_dict
from risk_engine.errors import SchemaError
from risk_engine.report import report_path
from risk_engine.report.published import manifest_rows
from risk_engine.spark.job import main
from tests.helpers import D2


def _cfg(root, out):
    return config_from_dict({
        "as_of_date": D2.isoformat(),
        "input": {"root": str(root)},
        "output": {"root": str(out), "write_scenario_pnl": True},
        "monte_carlo": {"n_scenarios": 4_000, "block_size": 1_000, "horizon_days": 10},
        "scenario_model": {"history_window_days": 250},
        "worst_case": {"confidence_levels": [0.99], "optimize": False},
        "hedging": {"enabled": True},
    })


def test_the_run_writes_the_report_and_a_failed_rerun_says_so(spark, snapshot_root, tmp_path):
    out = tmp_path / "out"
    summary = main(spark, _cfg(snapshot_root, out))
    assert summary.status in ("completed", "completed_with_warnings")
    assert not [w for w in summary.warnings if w.startswith("report:")]
    path = report_path(str(out), D2)
    text = path.read_text()
    assert f"Run {summary.run_id}: {summary.status}" in text
    assert "loss distribution" in text and "Hedge recommendations" in text
    assert "report" in json.loads(manifest_rows(str(out), D2)["stage_timings"].iloc[-1])

    bad = tmp_path / "in"
    shutil.copytree(snapshot_root, bad)
    part = bad / "market" / f"as_of_date={D2}" / "part-00000.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["volatility"]), part)
    try:
        main(spark, _cfg(bad, out))
    except SchemaError:
        pass
    text = path.read_text()
    assert ": failed</div>" in text and "missing column(s): volatility" in text
    assert f"The figures below are from the last good date, {D2}" in text
