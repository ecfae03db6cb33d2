"""The operator's console, end to end through the CLI in subprocesses.

JSON log lines for log shippers, no progress line when stderr is not a terminal (and one
when it is: a pseudo-terminal), and ``risk-engine show`` on a date a real run published.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import D1, D2

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"time", "level", "logger", "run_id", "stage", "message"}


def _write_cfg(path: Path, inp: Path, out: Path) -> Path:
    # Slowed blocks: the Monte Carlo stage lasts several polls of the progress line.
    path.write_text(
        f"as_of_date: {D2.isoformat()}\n"
        f"input: {{root: {inp}}}\noutput: {{root: {out}}}\n"
        "spark: {master: 'local[2]'}\n"
        "monte_carlo: {n_scenarios: 4000, block_size: 1000}\n"
        "governance: {attribution: false}\nworst_case: {enabled: false}\n"
        "testing: {block_delay_seconds: 1.0}\n")
    return path


def _cli(*args: str, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "risk_engine.cli", *args], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)


@pytest.fixture(scope="module")
def json_run(snapshot_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    cfg = _write_cfg(tmp / "cfg.yaml", snapshot_root, tmp / "out")
    proc = _cli("-v", "run", "--config", str(cfg), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = re.match(r"run (\S+): ", proc.stdout).group(1)
    return cfg, tmp / "out", run_id, proc


def test_json_log_lines_name_run_and_stage(json_run):
    _, _, run_id, proc = json_run
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert records
    for rec in records:
        assert KEYS <= set(rec), rec
    ours = [r for r in records if r["logger"].startswith("risk_engine")]
    stages = {r["stage"] for r in ours if r["run_id"] == run_id}
    assert {"read_inputs", "prepare", "monte_carlo", "publish"} <= stages
    # No line of our loggers in the text format.
    assert not re.search(r"^\S+ \S+ (INFO|WARNING|ERROR|CRITICAL) risk_engine", proc.stderr,
                         re.MULTILINE)


def test_no_progress_line_when_stderr_is_not_a_terminal(json_run):
    _, _, _, proc = json_run
    assert "\r" not in proc.stderr
    assert "blocks (" not in proc.stderr


def test_show_prints_the_published_run(json_run):
    cfg, out, run_id, _ = json_run
    proc = _cli("show", "--as-of", D2.isoformat(), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"published run: {run_id}: completed" in text
    measures = pd.read_parquet(out / "risk_measures" / f"as_of_date={D2}")
    firm = measures[(measures["scope"] == "firm") & (measures["measure"] == "VaR")
                    & (measures["confidence_level"] == 0.99)]["value"].iloc[0]
    firm_row = next(line for line in text.splitlines() if line.startswith("FIRM"))
    assert f"{firm:,.0f}" in firm_row.split()
    for title in ("VaR and ES", "Limit breaches", "Alerts"):
        assert title in text
    assert "Worst-case VaR" not in text  # the stage was off: its section is left out

    whole = _cli("show", "--as-of", D2.isoformat(), "--output-root", str(out),
                 "--table", "risk_measures")
    assert whole.returncode == 0
    assert whole.stdout.startswith(f"risk_measures as of {D2} ({len(measures)} rows)")

    none = _cli("show", "--as-of", D1.isoformat(), "--output-root", str(out))
    assert none.returncode == 2 and "nothing published" in none.stderr
    bad = _cli("show", "--as-of", D2.isoformat(), "--output-root", str(out), "--table", "nope")
    assert bad.returncode == 2 and "unknown table 'nope'" in bad.stderr


def test_progress_line_on_a_terminal(snapshot_root, tmp_path):
    cfg = _write_cfg(tmp_path / "cfg.yaml", snapshot_root, tmp_path / "out")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "risk_engine.cli", "run", "--config",
                             str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # every writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    text = b"".join(chunks).decode(errors="replace")
    assert re.search(r"\rmonte_carlo: \d+/4 blocks \(\d+%\)", text), text[-2000:]


def test_a_run_too_large_to_fit_exits_2_at_validation(snapshot_root, tmp_path):
    """An attribution tile above memory: one line naming the key and size, exit code 2."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"as_of_date: {D2.isoformat()}\n"
        f"input: {{root: {snapshot_root}}}\noutput: {{root: {tmp_path / 'out'}}}\n"
        "spark: {master: 'local[1]'}\n"
        "monte_carlo: {n_scenarios: 4000, block_size: 1000}\n"
        "governance: {attribution_chunk: 100000000}\nworst_case: {enabled: false}\n")
    proc = _cli("run", "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "governance.attribution_chunk" in line and "GiB" in line, line
    assert not (tmp_path / "out" / "risk_measures").exists()  # nothing published
