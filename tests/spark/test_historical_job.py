"""Historical simulation, stressed VaR and the stress stage through the Spark job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from risk_engine import schemas
from risk_engine.config import config_from_dict
from risk_engine.pipeline import run_in_process
from risk_engine.spark.job import main, read_inputs
from risk_engine.tools.demo_data import generate, write_tables
from tests.helpers import D2


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("hs_snapshot")
    tables = generate(D2, n_underlyings=10, n_positions=150, seed=21, years=3)
    days = sorted(tables["history"]["date"].unique())
    tables["stress_scenarios"] = pd.DataFrame({
        "scenario_id": ["crash", "crash", "replay", "bad"],
        "description": ["-20% and +10 vol", None, "the crash window", None],
        "scope": ["all", "sector", "historical", "galaxy"],
        "target": [None, "technology", None, None],
        "spot_shock": [-0.2, -0.05, None, 0.1],
        "vol_shock": [10.0, None, None, None],
        "rate_shock": [None, 25.0, None, None],
        "start_date": [None, None, days[290], None],
        "end_date": [None, None, days[320], None],
    })
    write_tables(tables, root)
    out = tmp_path_factory.mktemp("hs_out")
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(),
        "input": {"root": str(root)},
        "output": {"root": str(out)},
        "monte_carlo": {"horizon_days": 10},
        "scenario_model": {"source": "historical"},
        "historical": {"window_days": 500, "block_size": 64, "filter": "ewma"},
        "stressed_var": {"enabled": True, "window_days": 250, "block_size": 101},
        "stress": {"enabled": True},
        "worst_case": {"enabled": False},
        "governance": {"enabled": False},
    })
    summary = main(spark, cfg)
    return cfg, out, summary


def _canonical(frame, columns):
    frame = frame[columns].reset_index(drop=True)
    if frame.empty:
        return frame
    keys = [c for c in columns if not isinstance(frame[c].iloc[0], np.ndarray | list)]
    order = frame[keys].astype(str).apply(tuple, axis=1).sort_values().index
    return frame.loc[order].reset_index(drop=True)


def test_historical_run_on_spark_matches_in_process_bit_for_bit(spark, run):
    cfg, out, summary = run
    assert summary.status in ("completed", "completed_with_warnings"), summary.message
    result, _ = run_in_process(cfg, read_inputs(spark, cfg))
    assert {"stressed_var", "stress_results", "stress_grid"} <= set(result.tables)
    assert set(result.tables) == set(summary.tables)
    assert (result.tables["risk_measures"]["n_scenarios"] == 500 - 10 + 1).all()
    for name, exp in result.tables.items():
        got = pq.read_table(out / name / f"as_of_date={D2}").to_pandas()
        columns = [c for c in schemas.OUTPUT_TABLES[name].names
                   if c not in ("run_id", "as_of_date")]
        got, exp = _canonical(got, columns), _canonical(exp, columns)
        assert len(got) == len(exp), name
        for c in columns:
            if got[c].dtype.kind in "fiu":
                np.testing.assert_array_equal(got[c].to_numpy(float), exp[c].to_numpy(float),
                                              err_msg=f"{name}.{c}")
            elif c == "worst_pnl":
                for g, e in zip(got[c], exp[c], strict=True):
                    np.testing.assert_array_equal(np.asarray(g, float), np.asarray(e, float))
            else:
                assert [None if pd.isna(v) else str(v) for v in got[c]] == \
                    [None if pd.isna(v) else str(v) for v in exp[c]], f"{name}.{c}"
    rej = result.tables["rejected_rows"]
    assert list(rej.loc[rej["table"] == "stress_scenarios", "column"]) == ["scope"]


def test_manifest_states_the_historical_scenarios_and_method(run):
    import json

    cfg, out, summary = run
    row = pq.read_table(out / "run_manifest" / f"as_of_date={D2}").to_pandas().iloc[0]
    assert row["n_scenarios"] == 500 - 10 + 1 and row["block_size"] == 64
    conf = json.loads(row["config"])
    assert conf["scenario_model"]["source"] == "historical"
    assert conf["historical"]["horizon_method"] == "overlapping"
    assert conf["historical"]["filter"] == "ewma"
    timings = json.loads(row["stage_timings"])
    assert {"stressed_var", "stress"} <= set(timings)
