"""`risk-engine bench` end to end on a small book: every section is measured, none fails.

Speed targets are not asserted here (figures vary with the machine); accuracy targets are,
since they do not depend on timing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine.tools.bench import format_table, run_benchmark


def test_bench_small_book_measures_every_section():
    table = run_benchmark(
        (2_000, 20_000), positions=200, underlyings=10, desks=4, block_size=1_000,
        accuracy_scenarios=2_000, rounds=1, methods=("full", "grid"), hedging_positions=600)
    assert not (table["metric"] == "failed").any(), table[table["metric"] == "failed"]
    got = {(r.section, r.method, r.metric): r for r in table.itertuples()}

    for m in ("full", "grid"):
        for metric in ("kernel_only_rate", "single_process_rate", "spark_stage_rate"):
            assert got[("throughput", m, metric)].value > 0
    # Accuracy against the independent scipy pricer and of the grid against full.
    assert got[("accuracy", "full", "desk_var_es_rel_error_vs_scipy")].value <= 1e-9
    assert got[("accuracy", "grid", "desk_var_es_rel_error")].value <= 1e-4

    scaling = table[table["section"] == "scaling"]
    for n in (2_000, 20_000):
        point = scaling[scaling["n_scenarios"] == n].set_index("metric")["value"]
        assert point["stage_s"] > 0 and point["tail_band_losses"] > 0
        assert point["spark_vs_single_process"] > 0  # paired with its own reference run
        for key in ("driver_python_peak_mib", "driver_jvm_peak_mib",
                    "python_worker_peak_mib", "driver_jvm_live_heap_mib"):
            assert np.isfinite(point[key]) and point[key] > 0
    assert "time_ratio_vs_2000" in set(scaling["metric"])
    # The hedging stage on the demo book, per objective, against the 30 s target.
    for objective in ("variance", "cvar"):
        stage = got[("hedging", objective, "stage_s")]
        assert stage.value > 0 and stage.target == "<= 30" and stage.met in (True, False)
        assert "6 desks" in stage.note
        with_baskets = got[("hedging", objective, "desks_with_baskets")].value
        assert 0 < with_baskets <= 6
        assert got[("hedging", objective, "decompositions_optimal")].value <= 6
    assert got[("hedging", "cvar", "stage_s")].n_scenarios == 1_000  # one block
    text = format_table(table)
    assert "== throughput ==" in text and "== scaling ==" in text
    assert "== hedging ==" in text and "== stress ==" in text
    assert got[("stress", "stressed_var", "wall_s")].value > 0


@pytest.mark.heavy
def test_run_benchmark_smoke():
    table = run_benchmark(scenarios=(20_000,), positions=200, underlyings=10, desks=4,
                          methods=("full", "grid"), accuracy_scenarios=2_000,
                          scale_subprocess=False, rounds=1)
    assert {"section", "method", "metric", "value"} <= set(table.columns)
    through = table[table["section"] == "throughput"]
    assert (through["metric"] == "spark_vs_single_process").sum() == 2
    acc = table[(table["section"] == "accuracy") & (table["method"] == "grid")]
    assert acc.set_index("metric").loc["desk_var_es_rel_error", "value"] < 1e-4
    assert (table["section"] == "scaling").any()
    text = format_table(table)
    assert "grid" in text and "full" in text


def test_bench_backfill_section_backfills_the_demo_days_and_reads_their_backtest(tmp_path,
                                                                                 capsys):
    from risk_engine.tools.bench.command import bench_main

    with pytest.raises(SystemExit, match="needs --backfill-days"):
        bench_main(["--backfill-only"])
    csv = tmp_path / "bench.csv"
    assert bench_main(["--backfill-only", "--backfill-days", "3", "--backfill-scenarios",
                       "1000", "--csv", str(csv)]) == 0
    assert "== backfill ==" in capsys.readouterr().out
    table = pd.read_csv(csv)
    got = table.set_index("metric")
    assert (table["section"] == "backfill").all()
    assert got.loc["dates", "value"] == 3 and got.loc["failed_dates", "value"] == 0
    assert got.loc["wall_s", "value"] > 0 and got.loc["dates_per_min", "value"] > 0
    year = got.loc["year_min"]
    assert year["target"] == "<= 15" and year["met"] in (True, False, "True", "False")
    assert "extrapolated from 3" in year["note"]
    assert {"stage_monte_carlo_s", "stage_backtest_s", "stage_publish_s"} <= set(got.index)
    # the last date's firm backtest saw the two dates before it, published by the backfill
    bt = got.loc["backtest_exceptions_99"]
    assert 0 <= bt["value"] <= 2 and '"observations": 2' in bt["note"]
    assert any(f'"zone": "{z}"' in bt["note"] for z in ("green", "yellow", "red"))
