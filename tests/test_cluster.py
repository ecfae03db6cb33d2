"""End to end on a real Spark standalone cluster (master + one worker on 127.0.0.1).

Builds the executor environment with ``deploy/build_env.sh``, submits the job through
``deploy/submit.sh`` and checks that the cluster run reproduces the local-mode run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                       reason="no Java runtime: Spark cannot start"),
]

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
HOST = "127.0.0.1"
N_POSITIONS = 400
N_SCENARIOS = 20_000
BLOCK_SIZE = 5_000


@dataclass(frozen=True)
class Cluster:
    url: str  # spark://127.0.0.1:<port>
    work_dir: Path  # the worker's --work-dir (app-*/<executor>/ folders)


def _spark_bin() -> Path:
    """``bin/`` of the Spark that submit.sh uses: SPARK_HOME's, else the pyspark package's."""
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"]) / "bin"
    import pyspark

    return Path(pyspark.__file__).parent / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(SPARK_LOCAL_IP=HOST, SPARK_LOCAL_HOSTNAME=HOST, PYTHON=sys.executable,
               PYSPARK_DRIVER_PYTHON=sys.executable)
    for var in ("PYSPARK_PYTHON", "SPARK_MASTER_HOST", "SPARK_MASTER_PORT", "MASTER"):
        env.pop(var, None)
    return env


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group (JVM and everything it started), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # Children (executors, Python workers) may outlive the group leader: kill the group anyway.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def _run(cmd: list[str], *, log: Path, timeout: float, cwd: Path) -> int:
    """Run ``cmd`` in its own process group, output to ``log``; kill the group on timeout."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n{_tail(log)}")
        finally:
            _kill_group(proc, grace=5)


def _tail(path: Path, n: int = 60) -> str:
    if not path.exists():
        return f"({path} missing)"
    lines = path.read_text(errors="replace").splitlines()
    return f"--- last {min(n, len(lines))} lines of {path} ---\n" + "\n".join(lines[-n:])


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Spark standalone master and one worker (2 cores, 2g) on 127.0.0.1."""
    spark_class = _spark_bin() / "spark-class"
    assert spark_class.exists(), f"{spark_class} missing"
    base = tmp_path_factory.mktemp("standalone")
    port, ui_port, worker_ui = _free_port(), _free_port(), _free_port()
    url = f"spark://{HOST}:{port}"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(name: str, args: list[str]) -> None:
        log = base / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(spark_class), *args], cwd=base, env=_env(), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        procs.append((proc, log))

    def logs() -> str:
        return "\n".join(_tail(log, 40) for _, log in procs)

    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", HOST,
                         "--port", str(port), "--webui-port", str(ui_port)])
        start("worker", ["org.apache.spark.deploy.worker.Worker", url, "--host", HOST,
                         "--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui),
                         "--work-dir", str(base / "work")])
        # Ready when the master's JSON status lists an ALIVE worker.
        deadline = time.monotonic() + 90
        while True:
            for proc, log in procs:
                if proc.poll() is not None:
                    pytest.fail(f"{log.stem} exited with {proc.returncode}\n{logs()}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"http://{HOST}:{ui_port}/json/", timeout=2) as r:
                    state = json.load(r)
                if any(w.get("state") == "ALIVE" for w in state.get("workers", [])):
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"no worker registered with {url} within 90s\n{logs()}")
            time.sleep(0.5)
        yield Cluster(url, base / "work")
    finally:
        for proc, _ in reversed(procs):
            _kill_group(proc)
        # The unpacked executor envs (~400 MB each); executor logs are kept.
        for env_dir in (base / "work").glob("app-*/*/environment"):
            shutil.rmtree(env_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def executor_env() -> Path:
    """deploy/build_env.sh run with this interpreter (a no-op when the archive is current)."""
    log = ROOT / "deploy" / "build" / "test_build_env.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    rc = _run(["bash", str(DEPLOY / "build_env.sh")], log=log, timeout=900, cwd=ROOT)
    assert rc == 0, f"build_env.sh failed ({rc})\n{_tail(log)}"
    archive = DEPLOY / "build" / "risk_engine_env.tar.gz"
    assert archive.is_file()
    return archive


@pytest.fixture(scope="module")
def job_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo snapshot (400 positions) and a config overlay extending conf/cluster.yaml."""
    from risk_engine.demo_data import DEFAULT_AS_OF, generate, write_tables

    base = tmp_path_factory.mktemp("job")
    write_tables(generate(DEFAULT_AS_OF, n_positions=N_POSITIONS), base / "input")
    cfg = {
        "extends": str(ROOT / "conf" / "cluster.yaml"),
        "as_of_date": DEFAULT_AS_OF.isoformat(),
        "input": {"root": str(base / "input")},
        "output": {"root": str(base / "out_cluster")},
        "monte_carlo": {"n_scenarios": N_SCENARIOS, "block_size": BLOCK_SIZE},
        "spark": {"conf": {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}},
    }
    path = base / "cluster_test.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _read(root: Path, table: str) -> pd.DataFrame:
    parts = list(root.glob(f"{table}/as_of_date=*"))
    assert len(parts) == 1, f"expected one as_of_date partition of {table} under {root}: {parts}"
    return pd.read_parquet(parts[0])


def _canonical(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.drop(columns=["run_id"])
    return frame.sort_values(keys, na_position="first").reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(job_config: Path) -> Iterator[Callable[[], int]]:
    """The same config in local mode (``local[2]``), in a separate process, other output root.

    Started as soon as the data exist, so that it overlaps with building the executor env
    and starting the cluster (fixtures requested after this one); yields ``wait() -> rc``.
    """
    base = job_config.parent
    log = base / "local.log"
    cmd = [sys.executable, "-m", "risk_engine.cli", "run", "--config", str(job_config),
           "--master", "local[2]", "--set", f"output.root={base / 'out_local'}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=base, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def wait() -> int:
        try:
            rc = proc.wait(300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"local run timed out\n{_tail(log)}")
        assert rc == 0, f"local run exited with {rc}\n{_tail(log)}"
        return rc

    try:
        yield wait
    finally:
        _kill_group(proc, grace=5)


# Fixture order matters for the wall time: local_run starts first and runs while the cluster
# starts and the env is built; the cluster submission then has the machine to itself.
def test_submit_to_standalone_matches_local(local_run: Callable[[], int],
                                            standalone_master: Cluster, executor_env: Path,
                                            job_config: Path) -> None:
    base = job_config.parent
    out_cluster, out_local = base / "out_cluster", base / "out_local"
    local_run()

    # The cluster run, through the deploy script (the env is current: no rebuild).
    log = base / "submit.log"
    rc = _run(["bash", str(DEPLOY / "submit.sh"), "--master", standalone_master.url,
               "--config", str(job_config),
               "--conf", f"spark.driver.host={HOST}", "--conf", f"spark.driver.bindAddress={HOST}",
               "--conf", "spark.executor.memory=1g"],
              log=log, timeout=300, cwd=base)
    assert rc == 0, f"submit.sh exited with {rc}\n{_tail(log)}"
    # The executors ran the packed venv.
    assert list(standalone_master.work_dir.glob("app-*/*/environment/bin/python")), \
        "no executor unpacked the environment archive"

    manifest = _read(out_cluster, "run_manifest")
    assert len(manifest) == 1
    assert manifest["spark_master"].iloc[0].startswith(f"spark://{HOST}:")
    assert manifest["status"].iloc[0].startswith("completed")
    assert _read(out_local, "run_manifest")["spark_master"].iloc[0] == "local[2]"

    keys = {
        "risk_measures": ["scope", "desk", "measure", "confidence_level"],
        "contributions": ["desk", "position_id", "measure", "confidence_level"],
    }
    for table, key in keys.items():
        cluster = _canonical(_read(out_cluster, table), key)
        local = _canonical(_read(out_local, table), key)
        assert len(cluster) > 0
        pd.testing.assert_frame_equal(cluster, local, check_exact=True, obj=table)
    measures = _read(out_cluster, "risk_measures")
    assert (measures["n_scenarios"] == N_SCENARIOS).all()
