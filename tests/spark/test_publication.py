"""Date-level publication: a process killed at every step of a commit, a commit that fails
midway, and the per-date lock held by another process. No JVM: the commit and the lock are
plain file-system code, exercised in real subprocesses killed with ``os._exit(137)``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from risk_engine.spark.publication import (
    ConcurrentRunError,
    DateLock,
    clean_stale_staging,
    journal_path,
    recover_date,
    staging_root,
)

ROOT = Path(__file__).resolve().parents[2]
D = dt.date(2026, 11, 20)
OLD, NEW = "run-old", "run-new"
TABLES = [f"t{i}" for i in range(10)]
OLD_TABLES = TABLES[:9]  # t9 is new in the new run
NEW_TABLES = TABLES[:7] + ["t9"]  # t7, t8 are not produced by the new run: removed


def _write_part(folder: Path, run_id: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"run_id": [run_id] * 3, "x": [1.0, 2.0, 3.0]}),
                   folder / "part-00000.parquet")


def _manifest(path: Path, run_id: str, status: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"run_id": [run_id], "status": [status]}), path)


def _setup(root: Path) -> Path:
    """A date published by OLD, and NEW staged with its final manifest, NEW's live manifest
    saying running."""
    part = f"as_of_date={D}"
    for t in OLD_TABLES:
        _write_part(root / t / part, OLD)
    _manifest(root / "run_manifest" / part / f"{OLD}.parquet", OLD, "completed")
    staging = staging_root(root, D) / NEW
    for t in NEW_TABLES:
        _write_part(staging / t / part, NEW)
    _manifest(staging / "_manifest" / f"{NEW}.parquet", NEW, "completed")
    _manifest(root / "run_manifest" / part / f"{NEW}.parquet", NEW, "running")
    return staging


_CHILD = textwrap.dedent("""
    import datetime as dt, json, os, sys
    from pathlib import Path
    from risk_engine.spark.publication import commit_date
    root, kill_at, fail_at = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
    steps = []
    def hook(step):
        steps.append(step)
        print(step, flush=True)
        if step in fail_at and steps.count(step) == 1:
            raise PermissionError(13, "injected: permission denied", step)
        if len(steps) == kill_at:
            os._exit(137)
    staging = root / "_staging" / "as_of_date=2026-11-20" / "run-new"
    try:
        commit_date(root, staging, dt.date(2026, 11, 20), "run-new",
                    [f"t{i}" for i in range(10)],
                    manifest=staging / "_manifest" / "run-new.parquet", hook=hook)
    except Exception as exc:
        print("FAILED", type(exc).__name__, exc, flush=True)
        from risk_engine.spark.io import discard_staging
        discard_staging(str(staging))  # as the job does after a failed publication
        sys.exit(3)
""")


def _child(root: Path, kill_at: int, fail_at: str = "-") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _CHILD, str(root), str(kill_at), fail_at],
                          capture_output=True, text=True, env=env, timeout=120)


def _state(root: Path) -> tuple[dict[str, set[str]], dict[str, str]]:
    """run ids per published table folder of D, and status per manifest file."""
    tables = {}
    for t in TABLES:
        folder = root / t / f"as_of_date={D}"
        if folder.exists():
            tables[t] = set(pq.read_table(folder)["run_id"].to_pylist())
    man = pd.read_parquet(root / "run_manifest" / f"as_of_date={D}")
    return tables, dict(zip(man["run_id"], man["status"], strict=True))


def _assert_one_run(root: Path) -> str:
    tables, manifests = _state(root)
    runs = set().union(*tables.values())
    assert len(runs) == 1, tables
    (run,) = runs
    assert all(len(ids) == 1 for ids in tables.values())
    if run == OLD:
        assert sorted(tables) == OLD_TABLES
        assert manifests == {OLD: "completed", NEW: "running"}  # NEW: marked interrupted next
    else:
        assert sorted(tables) == sorted(NEW_TABLES)
        assert manifests == {OLD: "completed", NEW: "completed"}
    assert not journal_path(root, D).exists()
    return run


def test_commit_killed_after_every_step_recovers_to_exactly_one_run(tmp_path):
    full = _child(_setup(tmp_path / "full").parents[2], kill_at=0)
    assert full.returncode == 0, full.stderr
    steps = full.stdout.split()
    assert steps[0] == "journal" and "manifest" in steps and len(steps) >= 12
    assert _assert_one_run(tmp_path / "full") == NEW
    seen = set()
    for k in range(0, len(steps) + 1):
        root = tmp_path / f"k{k}"
        _setup(root)
        if k > 0:  # k == 0: killed before the commit point, nothing published
            res = _child(root, kill_at=k)
            assert res.returncode == 137, (k, res.stderr)
            assert journal_path(root, D).exists() or k >= steps.index("journal_removed") + 1
        recover_date(root, D)
        assert recover_date(root, D) is None  # idempotent: nothing left to do
        run = _assert_one_run(root)
        seen.add(run)
        assert run == (OLD if k == 0 else NEW)
        clean_stale_staging(root, D)
        assert not staging_root(root, D).exists() or not any(staging_root(root, D).iterdir())
    assert seen == {OLD, NEW}


def test_failure_midway_is_undone_and_a_kill_while_undoing_is_finished(tmp_path):
    full = _child(_setup(tmp_path / "probe").parents[2], kill_at=0)
    steps = full.stdout.split()
    fail_at = steps[6]  # a move in the middle of the commit fails
    # The failure alone: the commit undoes what it did and reports the error.
    root = tmp_path / "fail"
    _setup(root)
    res = _child(root, kill_at=0, fail_at=fail_at)
    assert res.returncode == 3 and "permission denied" in res.stdout
    assert _assert_one_run(root) == OLD
    # Killed at every step of the undoing: the next recovery finishes undoing it.
    undo_steps = res.stdout.splitlines()[7:-1]
    assert undo_steps[0] == "journal_backward" and len(undo_steps) >= 4
    for j in range(1, len(undo_steps) + 1):
        root = tmp_path / f"undo{j}"
        _setup(root)
        killed = _child(root, kill_at=7 + j, fail_at=fail_at)
        assert killed.returncode == 137, killed.stderr
        recover_date(root, D)
        assert _assert_one_run(root) == OLD


def test_undo_that_fails_too_keeps_journal_and_staging_for_the_next_run(tmp_path):
    probe = _child(_setup(tmp_path / "probe").parents[2], kill_at=0).stdout.split()
    root = tmp_path / "out"
    staging = _setup(root)
    res = _child(root, kill_at=0, fail_at=f"{probe[6]},journal_backward")
    assert res.returncode == 3 and "FAILED PublicationError" in res.stdout
    assert "undoing it failed too" in res.stdout
    assert journal_path(root, D).exists() and staging.exists()  # the old results are there
    assert recover_date(root, D) == f"rolled back run {NEW}"
    assert _assert_one_run(root) == OLD


def test_real_io_error_on_one_table_leaves_the_previous_run(tmp_path):
    """One table's folder is on another file system (a symlink to /dev/shm): its move fails
    with a real OSError (EXDEV) midway through the commit, after other tables moved."""
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a second file system at /dev/shm")
    root = tmp_path / "out"
    _setup(root)
    away = Path(tempfile.mkdtemp(dir=other))
    try:
        shutil.move(str(root / "t4"), str(away / "t4"))
        (root / "t4").symlink_to(away / "t4")
        res = _child(root, kill_at=0)
        assert res.returncode == 3 and "Invalid cross-device link" in res.stdout
        assert "t0:exchanged" in res.stdout.splitlines()  # tables before t4 had moved
        assert _assert_one_run(root) == OLD
        assert not journal_path(root, D).exists()
    finally:
        shutil.rmtree(away, ignore_errors=True)


_HOLDER = textwrap.dedent("""
    import datetime as dt, sys, time
    from pathlib import Path
    from risk_engine.spark.publication import DateLock
    lock = DateLock(Path(sys.argv[1]), dt.date(2026, 11, 20), "run-holder").acquire()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_date_lock_excludes_a_second_process_and_dies_with_its_holder(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConcurrentRunError,
                           match=rf"another run of as_of_date 2026-11-20 is in progress "
                                 rf"\(run run-holder, pid {holder.pid} on "):
            DateLock(tmp_path, D, "run-second").acquire()
        # another date is not locked
        DateLock(tmp_path, D + dt.timedelta(days=1), "other").acquire().release()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # killed holder: the lock went with it
    with DateLock(tmp_path, D, "run-third"):
        info = json.loads((tmp_path / "_locks" / f"as_of_date={D}.lock").read_text())
        assert info["run_id"] == "run-third" and info["pid"] == os.getpid()


def test_stale_staging_of_the_date_is_cleaned_and_other_dates_kept(tmp_path):
    a = staging_root(tmp_path, D) / "killed-run"
    b = staging_root(tmp_path, D) / "current"
    other = staging_root(tmp_path, D + dt.timedelta(days=1)) / "live-run-of-another-date"
    legacy = tmp_path / "_staging" / f"{D}-20261120T010203Z-abcdef12"
    for f in (a, b, other, legacy):
        (f / "t0").mkdir(parents=True)
    removed = clean_stale_staging(tmp_path, D, keep="current")
    assert sorted(removed) == sorted(["killed-run", legacy.name])
    assert not a.exists() and not legacy.exists() and b.exists() and other.exists()
