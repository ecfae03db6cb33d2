"""The optional vol_surface input through the Spark job: read, used, same bits as in process."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from risk_engine.config import config_from_dict
from risk_engine.pipeline import run_in_process
from risk_engine.spark.job import main, read_inputs
from risk_engine.tools.demo_data import generate, write_tables
from tests.helpers import D2


def test_job_reads_the_surface_prices_off_it_and_matches_the_in_process_run(spark, tmp_path):
    root, out = tmp_path / "in", tmp_path / "out"
    tables = generate(D2, n_underlyings=10, n_positions=120, history_days=300, seed=5,
                      vol_surface=True)
    write_tables(tables, root)
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(), "input": {"root": str(root)},
        "output": {"root": str(out)},
        "monte_carlo": {"n_scenarios": 4_000, "block_size": 1_000},
        "scenario_model": {"history_window_days": 250},
        "worst_case": {"enabled": False}, "governance": {"enabled": False},
    })
    inputs = read_inputs(spark, cfg)
    assert inputs.vol_surface is not None
    assert len(inputs.vol_surface) == len(tables["vol_surface"])
    summary = main(spark, cfg)
    result, _ = run_in_process(cfg, inputs)
    book = result.prepared.book
    assert sorted(book.surfaces) == sorted(set(tables["vol_surface"]["underlying"])
                                           & set(book.underlyings))
    surfaced = np.isin(np.asarray(book.underlyings)[book.underlying_index], list(book.surfaces))
    market_vol = tables["market"].set_index("underlying")["volatility"]
    opt = book.kind != 0
    names = np.asarray(book.underlyings, dtype=object)[book.underlying_index]
    assert np.all(book.volatility[opt & ~surfaced]
                  == market_vol[names[opt & ~surfaced]].to_numpy())
    assert np.any(book.volatility[opt & surfaced] != market_vol[names[opt & surfaced]].to_numpy())
    got = pq.read_table(out / "risk_measures" / f"as_of_date={D2}").to_pandas()
    exp = result.tables["risk_measures"]
    key = ["scope", "desk", "measure", "confidence_level"]
    got = got.sort_values(key, na_position="first").reset_index(drop=True)
    exp = exp.sort_values(key, na_position="first").reset_index(drop=True)
    np.testing.assert_array_equal(got["value"].to_numpy(), exp["value"].to_numpy())
    assert summary.status in ("completed", "completed_with_warnings")
    assert not any("arbitrage" in w for w in summary.warnings)
