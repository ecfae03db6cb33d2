"""The backtest stage in the Spark job: it reads the VaR published by earlier runs."""

from __future__ import annotations

import datetime as dt
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from risk_engine.config import config_from_dict
from risk_engine.spark.backtest_window import read_published_hypothetical, read_published_risk
from risk_engine.spark.job import main
from tests.helpers import D1, D2


def _cfg(inp, out, day, **backtest):
    return config_from_dict({
        "as_of_date": day.isoformat(),
        "input": {"root": str(inp)}, "output": {"root": str(out)},
        "monte_carlo": {"n_scenarios": 2_000, "block_size": 1_000, "horizon_days": 1},
        "risk": {"confidence_levels": [0.99]},
        "scenario_model": {"history_window_days": 250},
        "worst_case": {"enabled": False}, "governance": {"enabled": False},
        "backtest": backtest,
    })


def test_backtest_uses_the_var_published_by_the_completed_run_of_the_day_before(
        spark, snapshot_root, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(snapshot_root, inp)
    main(spark, _cfg(inp, out, D1))
    rm = pq.read_table(out / "risk_measures" / f"as_of_date={D1}").to_pandas()
    var = rm[(rm["scope"] == "desk") & (rm["measure"] == "VaR")].set_index("desk")["value"]
    # every desk loses more than its VaR on D2, but the first desk has no P&L
    pnl = pd.DataFrame({"date": [D2] * (len(var) - 1), "desk": list(var.index[1:]),
                        "pnl": list(-2 * var.iloc[1:])})
    pq.write_table(pa.Table.from_pandas(pnl, preserve_index=False), inp / "pnl_history.parquet")

    summary = main(spark, _cfg(inp, out, D2, enabled=True, window=1))
    bt = pq.read_table(out / "backtest" / f"as_of_date={D2}").to_pandas()
    actual = bt[(bt["series"] == "actual") & (bt["scope"] == "desk")].set_index("desk")
    assert set(actual.index) == set(var.index)
    first, rest = var.index[0], list(var.index[1:])
    assert actual.loc[first, "status"] == "missing" and actual.loc[first, "missing"] == 1
    assert (actual.loc[rest, "exceptions"] == 1).all()
    assert (actual.loc[rest, "observations"] == 1).all()
    series = pq.read_table(out / "backtest_series" / f"as_of_date={D2}").to_pandas()
    s = series[(series["scope"] == "desk") & (series["series"] == "actual")].set_index("desk")
    assert (s.loc[rest, "var"] == var.loc[rest]).all()
    assert s.loc[first, "status"] == "missing_pnl" and s.loc[first, "exception"] is None
    assert summary.status in ("completed", "completed_with_warnings")
    # hypothetical P&L from the snapshots of D1 and D2 under the input root
    hyp = bt[(bt["series"] == "hypothetical") & (bt["scope"] == "desk")]
    assert set(hyp["desk"]) == set(var.index)
    assert (hyp["observations"] + hyp["missing"] == 1).all()
    assert (hyp["observations"] == 1).any()

    # the next date reuses D2's published hypothetical desk rows instead of revaluing them
    nxt = _cfg(inp, out, dt.date(2026, 11, 23), enabled=True, window=2)
    cached = read_published_hypothetical(spark, nxt)
    rows = series[(series["series"] == "hypothetical") & series["desk"].notna()
                  & series["pnl"].notna()].drop_duplicates(["date", "desk"])
    assert len(rows) > 0 and set(cached["date"]) == {D2}
    got = cached.set_index("desk").sort_index()
    want = rows.set_index("desk").sort_index()
    assert list(got.index) == list(want.index)
    assert (got["pnl"] == want["pnl"]).all() and (got["rtpl"] == want["rtpl"]).all()

    # the day's own results are never read; a run not completed is never read
    cfg = _cfg(inp, out, D2, enabled=True, window=1)
    got = read_published_risk(spark, cfg)
    assert set(got["as_of_date"]) == {D1} and len(got) == len(rm)
    manifest = next((out / "run_manifest" / f"as_of_date={D1}").glob("*.parquet"))
    table = pq.read_table(manifest)
    frame = table.to_pandas().assign(status="failed")
    pq.write_table(pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False),
                   manifest)
    assert len(read_published_risk(spark, cfg)) == 0
