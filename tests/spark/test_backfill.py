"""``backfill``: every date of a range in one session, oldest first; reruns give the same bits."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from risk_engine.cli import build_parser
from risk_engine.config import config_from_dict
from risk_engine.spark.backfill import backfill, backfill_dates
from tests.helpers import D1, D2


def _cfg(inp, out):
    return config_from_dict({
        "as_of_date": D1.isoformat(),
        "input": {"root": str(inp)}, "output": {"root": str(out)},
        "monte_carlo": {"n_scenarios": 2_000, "block_size": 1_000, "horizon_days": 1},
        "risk": {"confidence_levels": [0.95]},
        "scenario_model": {"history_window_days": 250},
        "worst_case": {"enabled": False}, "governance": {"enabled": False},
        "backtest": {"enabled": True, "window": 2},
    })


def _tables(out, names, day):
    got = {}
    for name in names:
        frame = pq.read_table(out / name / f"as_of_date={day}").to_pandas()
        cols = sorted(c for c in frame.columns if c != "run_id")
        got[name] = frame[cols].sort_values(cols[:6]).reset_index(drop=True)
    return got


def test_backfill_runs_each_date_in_order_and_twice_gives_the_same_bits(
        spark, snapshot_root, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(snapshot_root, inp)
    pnl = pd.DataFrame({"date": [D1, D2] * 3,
                        "desk": ["index_vol", "index_vol", "tech_mm", "tech_mm", "delta_one",
                                 "delta_one"],
                        "pnl": [-1e3, 2e3, 5e2, -4e2, 0.0, 1e2]})
    pq.write_table(pa.Table.from_pandas(pnl, preserve_index=False), inp / "pnl_history.parquet")
    cfg = _cfg(inp, out)
    start, end = D1 - dt.timedelta(days=3), D2 + dt.timedelta(days=2)  # Mon .. Sun
    assert backfill_dates(cfg, start, end) == [D1, D2]
    first = backfill(spark, cfg, start, end)
    assert [s.as_of_date for s in first] == [D1, D2]
    assert all(s.status in ("completed", "completed_with_warnings") for s in first)
    names = ["risk_measures", "backtest", "backtest_series"]
    before = _tables(out, names, D2)
    bt = before["backtest"]
    # D2's backtest used the VaR that D1's run of this backfill published
    desk = bt[(bt["desk"] == "tech_mm") & (bt["series"] == "actual")].iloc[0]
    assert desk["observations"] == 1
    second = backfill(spark, cfg, start, end)
    assert {s.run_id for s in second}.isdisjoint({s.run_id for s in first})
    after = _tables(out, names, D2)
    for name in names:
        pd.testing.assert_frame_equal(after[name], before[name], check_exact=True)


def test_backfill_command_line():
    args = build_parser().parse_args(["backfill", "--config", "conf/local.yaml",
                                      "--from", "2026-01-05", "--to", "2026-12-31"])
    assert (args.start, args.end, args.command) == ("2026-01-05", "2026-12-31", "backfill")
