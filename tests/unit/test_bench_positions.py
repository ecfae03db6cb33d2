"""The positions section of ``risk-engine bench``: its rows and targets (no Spark here)."""

import math

from risk_engine.tools.bench.positions import _point_rows
from risk_engine.tools.bench.report import Rows, format_table
from risk_engine.tools.demo_data import generate


def _result(job_s, python, jvm):
    return {"job_s": job_s, "session_s": 4.0, "status": "completed",
            "timings": {"monte_carlo": job_s / 2, "attribution": 1.0},
            "driver_python_peak_mib": python, "driver_jvm_peak_mib": jvm,
            "python_worker_peak_mib": 300.0, "python_workers_sum_peak_mib": 600.0,
            "driver_jvm_live_heap_mib": 80.0}


def test_point_rows_check_the_driver_peak_target():
    rows = Rows()
    _point_rows(rows, "200,000 positions", 100_000, _result(300.0, 1800.0, 1000.0), "local[2]")
    _point_rows(rows, "20,000 positions", 100_000, _result(30.0, 2500.0, 1000.0), "local[2]")
    frame = rows.frame()
    peaks = frame[frame["metric"] == "driver_peak_mib"]
    assert list(peaks["value"]) == [2800.0, 3500.0]
    assert list(peaks["met"]) == [True, False]
    job = frame[frame["metric"] == "job_s"].iloc[0]
    assert "monte_carlo 150" in job["note"] and job["unit"] == "s"
    assert "== positions ==" in format_table(frame)


def test_demo_book_grows_on_the_same_universe_and_can_sit_on_one_desk():
    small, big = generate(n_positions=300), generate(n_positions=900, one_desk="all")
    assert big["market"].equals(small["market"])
    assert set(big["positions"]["desk"]) == {"all"}
    same = ["position_id", "instrument_type", "underlying", "quantity", "strike", "expiry"]
    assert big["positions"][same].iloc[:300].equals(small["positions"][same])
    assert not math.isnan(big["positions"]["quantity"].abs().sum())
