"""Failure handling: bad input, ceilings, clean errors, atomic reruns, killed drivers,
task retries. Each test provokes the failure it is named after."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from risk_engine.config import config_from_dict
from risk_engine.errors import DataError, RejectionCeilingError, SchemaError
from risk_engine.spark.job import main
from tests.helpers import D2

ROOT = Path(__file__).resolve().parents[2]


def _cfg(inp, out, **extra):
    data = {"as_of_date": D2.isoformat(), "input": {"root": str(inp)},
            "output": {"root": str(out)},
            "monte_carlo": {"n_scenarios": 4000, "block_size": 1000},
            "governance": {"attribution": False}, "worst_case": {"enabled": False}}
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(data)


def _copy(snapshot_root, tmp_path):
    root = tmp_path / "in"
    shutil.copytree(snapshot_root, root)
    return root


def _positions_path(root):
    return root / "positions" / f"as_of_date={D2}" / "part-00000.parquet"


def _manifests(out):
    return pd.read_parquet(out / "run_manifest" / f"as_of_date={D2}")


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "risk_engine.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_wrong_column_type_names_table_column_expected_and_actual(spark, snapshot_root,
                                                                  tmp_path):
    root = _copy(snapshot_root, tmp_path)
    path = _positions_path(root)
    table = pq.read_table(path)
    i = table.schema.get_field_index("quantity")
    table = table.set_column(i, "quantity", pa.array([str(q) for q in
                                                      table.column("quantity").to_pylist()]))
    pq.write_table(table, path)
    with pytest.raises(SchemaError, match=r"table positions: wrong type: quantity "
                                          r"\(expected double, got string\)"):
        main(spark, _cfg(root, tmp_path / "out"))
    assert _manifests(tmp_path / "out")["status"].tolist() == ["failed"]


def test_rejection_ceiling_fails_the_run_and_keeps_previous_results(spark, snapshot_root,
                                                                    tmp_path):
    root = _copy(snapshot_root, tmp_path)
    out = tmp_path / "out"
    first = main(spark, _cfg(root, out))
    before = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    path = _positions_path(root)
    pos = pq.read_table(path).to_pandas()
    pos.loc[:59, "underlying"] = "NOSUCH"  # 60 of 400 positions
    pq.write_table(pa.Table.from_pandas(pos, preserve_index=False), path)
    with pytest.raises(RejectionCeilingError, match="exceed validation.max_rejected_positions"):
        main(spark, _cfg(root, out, validation={"max_rejected_positions": 50}))
    after = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    pd.testing.assert_frame_equal(before, after)
    assert set(after["run_id"]) == {first.run_id}
    man = _manifests(out).set_index("status")
    assert "failed" in man.index and "exceed" in man.loc["failed", "message"]
    # Under the ceiling the good rows go on and the bad ones are kept with their reason.
    ok = main(spark, _cfg(root, out, validation={"max_rejected_positions": 100,
                                                  "max_rejected_share": 0.5}))
    assert ok.status == "completed_with_warnings"
    rejected = pd.read_parquet(out / "rejected_rows" / f"as_of_date={D2}")
    assert len(rejected) == 60 and set(rejected["column"]) == {"underlying"}
    greeks = pd.read_parquet(out / "greeks" / f"as_of_date={D2}")
    assert greeks["n_positions"].sum() == 340


def test_empty_book_single_position_desk_and_zero_desk(spark, snapshot_root, tmp_path):
    root = _copy(snapshot_root, tmp_path)
    path = _positions_path(root)
    pos = pq.read_table(path).to_pandas()
    pq.write_table(pa.Table.from_pandas(pos.iloc[:0], preserve_index=False), path)
    with pytest.raises(DataError, match="positions: no rows for as_of_date 2026-11-20"):
        main(spark, _cfg(root, tmp_path / "o1"))
    bad = pos.iloc[:2].assign(underlying="NOSUCH")  # rows, but none valid
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), path)
    with pytest.raises(DataError, match="no valid position for as_of_date 2026-11-20 "
                                        r"\(2 row\(s\) read, 2 rejected\)"):
        main(spark, _cfg(root, tmp_path / "o1"))
    single = pos.iloc[:3].copy()
    single["desk"] = ["solo", "zero", "zero"]
    single.loc[single.index[1:], "quantity"] = 0.0
    pq.write_table(pa.Table.from_pandas(single, preserve_index=False), path)
    summary = main(spark, _cfg(root, tmp_path / "o2"))
    rm = summary.tables["risk_measures"]
    assert rm["value"].notna().all() and rm["value_pct"].notna().all()
    zero = rm[rm["desk"] == "zero"]
    assert (zero["value"] == 0).all() and (zero["value_pct"] == 0).all()


def test_cli_gives_one_clear_message_and_non_zero_exit(snapshot_root, tmp_path):
    conf = ROOT / "conf" / "local.yaml"
    bad = _cli("run", "--config", str(conf), "--set", "risk.confidence_levels=[99]")
    assert bad.returncode == 2
    assert "risk.confidence_levels[0]" in bad.stderr and "Traceback" not in bad.stderr
    neg = _cli("run", "--config", str(conf), "--set", "monte_carlo.horizon_days=-1")
    assert neg.returncode == 2 and "monte_carlo.horizon_days" in neg.stderr
    unknown = _cli("run", "--config", str(conf), "--set", "montecarlo.n_scenarios=5")
    assert unknown.returncode == 2 and "unknown config key" in unknown.stderr
    nodate = _cli("run", "--config", str(conf), "--as-of", "2026-11-18",
                  "--set", f"input.root={snapshot_root}", "--set", f"output.root={tmp_path}",
                  "--set", "spark.master=local[1]")
    assert nodate.returncode == 2, nodate.stderr
    assert "positions: no rows for as_of_date 2026-11-18" in nodate.stderr
    assert "Traceback" not in nodate.stderr


def test_rerun_is_atomic_for_a_concurrent_reader(spark, snapshot_root, tmp_path):
    out = tmp_path / "out"
    main(spark, _cfg(snapshot_root, out))
    part = out / "risk_measures" / f"as_of_date={D2}"
    n_rows = len(pd.read_parquet(part))
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                frame = pq.read_table(part).to_pandas()
                seen.append((frozenset(frame["run_id"]), len(frame)))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for seed in (1, 2, 3):
            main(spark, _cfg(snapshot_root, out, monte_carlo={"seed": seed}))
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert len(seen) > 10
    assert all(len(ids) == 1 and n == n_rows for ids, n in seen)
    assert len({ids for ids, _ in seen}) >= 2  # the reader saw old and new results


def test_killed_driver_leaves_previous_results_and_the_next_run_completes(spark, snapshot_root,
                                                                          tmp_path):
    out = tmp_path / "out"
    first = main(spark, _cfg(snapshot_root, out))
    before = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    args = ["run", "--config", str(ROOT / "conf" / "local.yaml"),
            "--set", f"input.root={snapshot_root}", "--set", f"output.root={out}",
            "--set", "monte_carlo.n_scenarios=8000", "--set", "monte_carlo.block_size=1000",
            "--set", "testing.block_delay_seconds=3", "--set", "spark.master=local[1]",
            "--set", "worst_case.enabled=false"]
    proc = subprocess.Popen([sys.executable, "-m", "risk_engine.cli", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            man = _manifests(out)
            running = man[man["status"] == "running"]
            if len(running) and json.loads(running["stage_timings"].iloc[0]).get(
                    "current") == "monte_carlo":
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("the run never reached the Monte Carlo stage")
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    after = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    pd.testing.assert_frame_equal(before, after)
    man = _manifests(out)
    assert sorted(man["status"]) == ["completed", "running"]
    nxt = main(spark, _cfg(snapshot_root, out))
    man = _manifests(out).set_index("run_id")
    killed = man.drop(index=[first.run_id, nxt.run_id])
    assert killed["status"].tolist() == ["interrupted"]
    assert "during stage monte_carlo" in killed["message"].iloc[0]
    assert man.loc[nxt.run_id, "status"] == "completed"
    final = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    assert set(final["run_id"]) == {nxt.run_id}


def test_task_retries_give_bit_identical_results(spark, snapshot_root, tmp_path):
    clean = main(spark, _cfg(snapshot_root, tmp_path / "clean"))
    res = _cli("run", "--config", str(ROOT / "conf" / "local.yaml"), "--master", "local[2,4]",
               "--set", f"input.root={snapshot_root}", "--set", f"output.root={tmp_path}/faulty",
               "--set", "monte_carlo.n_scenarios=4000", "--set", "monte_carlo.block_size=1000",
               "--set", "governance.attribution=false", "--set", "worst_case.enabled=false",
               "--set", "testing.fail_blocks=[0,2]", "--set", "testing.fail_attempts=2")
    assert res.returncode == 0, res.stderr[-2000:]
    got = pd.read_parquet(tmp_path / "faulty" / "risk_measures" / f"as_of_date={D2}")
    exp = clean.tables["risk_measures"]
    key = ["scope", "desk", "measure", "confidence_level"]
    got, exp = got.sort_values(key).reset_index(drop=True), exp.sort_values(key).reset_index(
        drop=True)
    np.testing.assert_array_equal(got["value"].to_numpy(), exp["value"].to_numpy())
    np.testing.assert_array_equal(got["std_error"].to_numpy(), exp["std_error"].to_numpy())
    # and the faults really happened: without retries the same run fails
    res1 = _cli("run", "--config", str(ROOT / "conf" / "local.yaml"), "--master", "local[2,1]",
                "--set", f"input.root={snapshot_root}", "--set", f"output.root={tmp_path}/f1",
                "--set", "monte_carlo.n_scenarios=4000", "--set", "monte_carlo.block_size=1000",
                "--set", "testing.fail_blocks=[0]", "--set", "testing.fail_attempts=1",
                "--set", "worst_case.enabled=false")
    assert res1.returncode == 1 and "injected fault" in res1.stderr


def test_non_psd_correlations_are_repaired_and_recorded_in_the_manifest(spark, snapshot_root,
                                                                        tmp_path):
    root = _copy(snapshot_root, tmp_path)
    corr = pd.read_parquet(root / "correlations.parquet")
    names = sorted(set(corr["underlying_a"]) | set(corr["underlying_b"]))[:3]
    bad = {(names[0], names[1]): 0.99, (names[1], names[2]): 0.99, (names[0], names[2]): -0.99}
    for (a, b), rho in bad.items():
        hit = ((corr["underlying_a"] == a) & (corr["underlying_b"] == b)) | (
            (corr["underlying_a"] == b) & (corr["underlying_b"] == a))
        corr.loc[hit, "correlation"] = rho
    pq.write_table(pa.Table.from_pandas(corr, preserve_index=False),
                   root / "correlations.parquet")
    summary = main(spark, _cfg(root, tmp_path / "out",
                               scenario_model={"source": "factor_model"}))
    assert summary.status == "completed_with_warnings"
    man = _manifests(tmp_path / "out").iloc[0]
    assert man["status"] == "completed_with_warnings"
    assert any("not positive semidefinite" in w for w in json.loads(man["warnings"]))
    assert np.isfinite(summary.tables["risk_measures"]["value"]).all()


def _run_args(inp, out, *more):
    return ["run", "--config", str(ROOT / "conf" / "local.yaml"),
            "--set", f"input.root={inp}", "--set", f"output.root={out}",
            "--set", "monte_carlo.n_scenarios=4000", "--set", "monte_carlo.block_size=1000",
            "--set", "governance.attribution=false", "--set", "worst_case.enabled=false",
            "--set", "spark.master=local[1]", *more]


def _date_run_ids(out):
    """run ids found in every published table folder of D2 (manifest excluded)."""
    found = {}
    for table in sorted(p.name for p in out.iterdir() if not p.name.startswith("_")):
        folder = out / table / f"as_of_date={D2}"
        if table not in ("run_manifest", "report") and folder.exists():
            ids = frozenset(pq.read_table(folder, columns=["run_id"])["run_id"].to_pylist())
            if ids:  # an empty table names no run
                found[table] = ids
    return found


def test_run_killed_during_publication_is_finished_by_the_next_run(spark, snapshot_root,
                                                                  tmp_path):
    from risk_engine.spark.publication import KILL_AFTER_STEP_ENV, journal_path

    out = tmp_path / "out"
    first = main(spark, _cfg(snapshot_root, out))
    env = {**os.environ, KILL_AFTER_STEP_ENV: "3"}  # journal, then two tables exchanged
    killed = subprocess.run([sys.executable, "-m", "risk_engine.cli",
                             *_run_args(snapshot_root, out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr[-2000:]
    # The kill left the date mixed, with the journal that says how to finish it.
    assert journal_path(out, D2).exists()
    mixed = set().union(*_date_run_ids(out).values())
    assert len(mixed) == 2 and first.run_id in mixed
    (victim,) = mixed - {first.run_id}
    assert _manifests(out).set_index("run_id").loc[victim, "status"] == "running"
    nxt = main(spark, _cfg(snapshot_root, out, monte_carlo={"seed": 5}))
    man = _manifests(out).set_index("run_id")["status"].to_dict()
    # The next run rolled the killed one forward (its manifest is final), then replaced it.
    assert man == {first.run_id: "completed", victim: "completed", nxt.run_id: "completed"}
    assert set(_date_run_ids(out).values()) == {frozenset({nxt.run_id})}
    assert not journal_path(out, D2).exists()
    assert not (out / "_staging").exists()


def test_second_run_of_a_date_fails_at_once_and_changes_nothing(spark, snapshot_root,
                                                               tmp_path):
    out = tmp_path / "out"
    slow = subprocess.Popen([sys.executable, "-m", "risk_engine.cli",
                             *_run_args(snapshot_root, out,
                                        "--set", "testing.block_delay_seconds=3",
                                        "--set", "monte_carlo.n_scenarios=8000")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            folder = out / "run_manifest" / f"as_of_date={D2}"
            if folder.exists() and any(folder.glob("*.parquet")):
                man = _manifests(out)
                if json.loads(man["stage_timings"].iloc[0]).get("current") == "monte_carlo":
                    break
            assert slow.poll() is None, "the first run ended before the second started"
            time.sleep(0.5)
        else:
            pytest.fail("the first run never reached the Monte Carlo stage")
        before = _manifests(out)
        second = _cli(*_run_args(snapshot_root, out))
        assert slow.poll() is None, "the first run must still be running"
        after = _manifests(out)
    finally:
        if slow.poll() is None:
            os.killpg(slow.pid, signal.SIGKILL)
        slow.wait(timeout=30)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith("risk-engine: error: another run of as_of_date 2026-11-20 is "
                                "in progress (run " + before["run_id"].iloc[0])
    assert "must not overlap" in lines[-1]
    # Nothing changed: the live run was not marked, no manifest row for the refused run.
    assert after["run_id"].tolist() == before["run_id"].tolist()
    assert after["status"].tolist() == ["running"]
    # The killed first run's lock went with its process: the next run goes ahead.
    nxt = main(spark, _cfg(snapshot_root, out))
    man = _manifests(out).set_index("run_id")["status"].to_dict()
    assert man == {before["run_id"].iloc[0]: "interrupted", nxt.run_id: "completed"}
    assert not (out / "_staging").exists()


def test_executor_failure_prints_one_line_not_stack_traces(snapshot_root, tmp_path):
    res = _cli(*_run_args(snapshot_root, tmp_path / "out", "--master", "local[2,1]",
                          "--set", "testing.fail_blocks=[0]",
                          "--set", "testing.fail_attempts=1"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) <= 3, res.stderr[:3000]  # was 132 lines of Python and Java traces
    assert lines[-1].startswith("risk-engine: run failed: PythonException: RuntimeError: "
                                "injected fault: block 0, task attempt 0 (rerun with -v")
    assert "Traceback" not in res.stderr and "\tat " not in res.stderr
    assert _manifests(tmp_path / "out")["status"].tolist() == ["failed"]


def test_undelivered_alerts_after_publication_become_manifest_warnings(spark, tmp_path):
    """The contract for dispatching alerts after publication: ``delivery_warnings`` of the
    dispatched list go to ``Run.add_warnings``, which turns ``completed`` into
    ``completed_with_warnings`` in the manifest."""
    from risk_engine.governance.alerts import Alert, delivery_warnings, notify
    from risk_engine.governance.alerts import NotificationSettings as NS
    from risk_engine.spark.job import Run

    run = Run(spark, _cfg(tmp_path / "in", tmp_path / "out"), "r1")
    run.summary.status = "completed"
    run.write_manifest(finished=True)
    crit = Alert("critical", "limits", "d1", "var_0.99", "desk d1: VaR breached", D2)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    final = notify([crit], NS(kind="file", path=str(blocked / "alerts.jsonl")), D2)
    run.add_warnings(delivery_warnings(final))
    man = _manifests(tmp_path / "out").iloc[0]
    assert man["status"] == "completed_with_warnings"
    (warning,) = json.loads(man["warnings"])
    assert warning.startswith("alert notification failed, 1 critical alert(s) not delivered")
