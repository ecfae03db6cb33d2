"""End to end on a real Spark standalone cluster (a master and workers on 127.0.0.1).

Builds the executor environment with ``deploy/build_env.sh``, submits the job through
``deploy/submit.sh`` and checks that the cluster run reproduces the local-mode run, also when
a worker machine is lost while the Monte Carlo stage runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from typing import NoReturn

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

# No skip without Java: Java 17 is a stated prerequisite, and a missing JVM must fail CI.

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HOST = "127.0.0.1"
N_POSITIONS = 400
N_SCENARIOS = 20_000
BLOCK_SIZE = 1_250  # 16 blocks: 16 Monte Carlo tasks, enough to lose a worker in the middle


@dataclass(frozen=True)
class Worker:
    proc: subprocess.Popen[bytes]  # the Worker JVM, leader of its own process group
    work_dir: Path  # its --work-dir (app-*/<executor>/ folders: stdout, stderr, environment/)
    log: Path


@dataclass(frozen=True)
class Cluster:
    url: str  # spark://127.0.0.1:<port>
    workers: tuple[Worker, ...]
    logs: Callable[[], str]  # the tails of the master's and workers' logs

    @property
    def work_dir(self) -> Path:
        """The first worker's --work-dir."""
        return self.workers[0].work_dir


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


@contextlib.contextmanager
def _standalone(base: Path, n_workers: int, cores: int, memory: str,
                master_opts: str = "") -> Iterator[Cluster]:
    """A Spark standalone master and ``n_workers`` workers on 127.0.0.1, each in its own
    process group (a worker's executors and their Python workers are in the worker's group:
    killing the group is losing the machine). Everything is killed on exit."""
    spark_class = _spark_bin() / "spark-class"
    assert spark_class.exists(), f"{spark_class} missing"
    port, ui_port = _free_port(), _free_port()
    url = f"spark://{HOST}:{port}"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = base / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(spark_class), *args], cwd=base, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        procs.append((proc, log))
        return proc

    def logs() -> str:
        return "\n".join(_tail(log, 40) for _, log in procs)

    work_dirs = [base / ("work" if n_workers == 1 else f"work{i}") for i in range(n_workers)]
    try:
        start("master", ["org.apache.spark.deploy.master.Master", "--host", HOST,
                         "--port", str(port), "--webui-port", str(ui_port)],
              {**_env(), "SPARK_MASTER_OPTS": master_opts})
        workers = []
        for i, work_dir in enumerate(work_dirs):
            name = "worker" if n_workers == 1 else f"worker{i}"
            proc = start(name, ["org.apache.spark.deploy.worker.Worker", url, "--host", HOST,
                                "--cores", str(cores), "--memory", memory,
                                "--webui-port", str(_free_port()), "--work-dir", str(work_dir)],
                         _env())
            workers.append(Worker(proc, work_dir, base / f"{name}.log"))
        # Ready when the master's JSON status lists every worker ALIVE.
        deadline = time.monotonic() + 90
        while True:
            for proc, log in procs:
                if proc.poll() is not None:
                    pytest.fail(f"{log.stem} exited with {proc.returncode}\n{logs()}")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(f"http://{HOST}:{ui_port}/json/", timeout=2) as r:
                    state = json.load(r)
                alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) == n_workers:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{n_workers} worker(s) not registered with {url} within 90s\n"
                            f"{logs()}")
            time.sleep(0.5)
        yield Cluster(url, tuple(workers), logs)
    finally:
        for proc, _ in reversed(procs):
            _kill_group(proc)
        # The unpacked executor envs (~400 MB each); executor logs are kept.
        for work_dir in work_dirs:
            for env_dir in work_dir.glob("app-*/*/environment"):
                shutil.rmtree(env_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def standalone_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Spark standalone master and one worker (2 cores, 2g) on 127.0.0.1."""
    with _standalone(tmp_path_factory.mktemp("standalone"), 1, cores=2, memory="2g") as cluster:
        yield cluster


@pytest.fixture
def two_worker_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A master and two workers (1 core, 1g each) on 127.0.0.1, for one test (it may kill one).

    ``spark.worker.timeout`` (default 60s) is shortened: a lost worker's TCP connections are
    normally reset at once, the timeout is the fallback when they are not.
    """
    with _standalone(tmp_path_factory.mktemp("standalone2"), 2, cores=1, memory="1g",
                     master_opts="-Dspark.worker.timeout=20") as cluster:
        yield cluster


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
    from risk_engine.tools.demo_data import DEFAULT_AS_OF, generate, write_tables

    base = tmp_path_factory.mktemp("job")
    write_tables(generate(DEFAULT_AS_OF, n_positions=N_POSITIONS), base / "input")
    cfg = {
        "extends": str(ROOT / "conf" / "cluster.yaml"),
        "as_of_date": DEFAULT_AS_OF.isoformat(),
        "input": {"root": str(base / "input")},
        "output": {"root": str(base / "out_cluster")},
        "monte_carlo": {"n_scenarios": N_SCENARIOS, "block_size": BLOCK_SIZE},
        # One block per task, so a lost worker interrupts a running task mid-stage (results
        # never depend on the slicing; the local reference uses the same config).
        "spark": {"partitions": N_SCENARIOS // BLOCK_SIZE,
                  "conf": {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false"}},
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


RESULT_KEYS = {
    "risk_measures": ["scope", "desk", "measure", "confidence_level"],
    "contributions": ["desk", "position_id", "measure", "confidence_level"],
}


def _assert_same_results(out: Path, out_local: Path) -> None:
    """The risk measures and contributions under ``out`` equal the local run's, exactly."""
    for table, key in RESULT_KEYS.items():
        cluster = _canonical(_read(out, table), key)
        local = _canonical(_read(out_local, table), key)
        assert len(cluster) > 0
        pd.testing.assert_frame_equal(cluster, local, check_exact=True, obj=table)
    measures = _read(out, "risk_measures")
    assert (measures["n_scenarios"] == N_SCENARIOS).all()


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

    _assert_same_results(out_cluster, out_local)


def test_bench_scaling_point_on_the_standalone_cluster(standalone_master: Cluster) -> None:
    """`risk-engine bench --scale-master spark://...`: the driver apart from the executors."""
    from risk_engine.tools.bench.scaling import scale_in_subprocess

    res = scale_in_subprocess({
        "n_scenarios": 20_000, "positions": 200, "underlyings": 10, "desks": 4,
        "horizon_days": 10, "block_size": 1_000, "method": "full",
        "master": standalone_master.url, "driver_memory": "1g"})
    assert "error" not in res, f"{res.get('error')}\n{standalone_master.logs()}"
    assert res["cores"] == 2 and res["blocks"] == 20 and res["band_losses"] > 0
    assert res["driver_jvm_peak_mib"] > 0 and res["driver_jvm_live_heap_mib"] > 0
    # The Python workers belong to the worker's executor, not to this driver's JVM.
    assert res["python_worker_processes"] == 0


BLOCK_DELAY = 1.0  # seconds per block: 16 blocks on two 1-core executors, >= 8s of Monte Carlo
TASK_LINE = re.compile(r"(Running|Finished) task (\d+)\.(\d+) in stage (\d+\.\d+)")


def _manifest(out: Path) -> pd.DataFrame | None:
    """The only run's manifest row under ``out`` (None before it is written)."""
    files = list(out.glob("run_manifest/as_of_date=*/*.parquet"))
    if len(files) != 1:
        return None
    try:  # the file is replaced atomically, but a read may still race with a rename
        return pq.read_table(files[0]).to_pandas()
    except (OSError, ValueError):
        return None


Task = tuple[str, int, int]  # (stage "12.0", task index, attempt)


def _tasks(work_dir: Path) -> tuple[set[Task], set[Task]]:
    """(started, finished) task attempts of the executors under a worker's work dir, from
    their logs (``Executor: Running task 2.1 in stage 12.0``)."""
    started: set[Task] = set()
    finished: set[Task] = set()
    for log in work_dir.glob("app-*/*/stderr"):
        for event, index, attempt, stage in TASK_LINE.findall(log.read_text(errors="replace")):
            (started if event == "Running" else finished).add((stage, int(index), int(attempt)))
    return started, finished


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


def test_lost_worker_during_monte_carlo(local_run: Callable[[], int],
                                        two_worker_cluster: Cluster, executor_env: Path,
                                        job_config: Path) -> None:
    """Issue 5: a worker machine dies while the Monte Carlo stage runs; the job still
    completes and its results equal the undisturbed (local-mode) run's.

    The same config as the local run, slowed by ``testing.block_delay_seconds`` (which only
    sleeps: the results do not depend on it), on two 1-core executors, one per worker. Once
    the run's manifest says ``monte_carlo`` and the first worker's executor has finished a
    block and started the next, the first worker's process group (Worker JVM, its executor
    JVM and the executor's Python workers) is SIGKILLed: Spark loses the executor with a task
    running, re-runs that task and the remaining ones on the surviving executor.
    """
    cluster = two_worker_cluster
    victim, survivor = cluster.workers
    base = job_config.parent
    out, out_local = base / "out_lost_worker", base / "out_local"

    log = base / "submit_lost_worker.log"
    # --no-build: executor_env just built the archive; concurrent edits of the sources must
    # not trigger a rebuild in the middle of this test.
    cmd = ["bash", str(DEPLOY / "submit.sh"), "--no-build", "--master", cluster.url,
           "--config", str(job_config), "--set", f"output.root={out}",
           "--set", f"testing.block_delay_seconds={BLOCK_DELAY}",
           "--conf", f"spark.driver.host={HOST}", "--conf", f"spark.driver.bindAddress={HOST}",
           "--conf", "spark.executor.memory=1g", "--conf", "spark.executor.cores=1",
           "--conf", "spark.cores.max=2"]
    deadline = time.monotonic() + 240
    with log.open("wb") as stream:
        proc = subprocess.Popen(cmd, cwd=base, env=_env(), stdout=stream,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        def fail(message: str) -> NoReturn:
            pytest.fail(f"{message}\n{_tail(log)}\n{cluster.logs()}")

        def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> None:
            until = min(deadline, time.monotonic() + timeout)
            while not condition():
                if proc.poll() is not None:
                    fail(f"submit.sh exited with {proc.returncode} while waiting for {what}")
                if time.monotonic() > until:
                    fail(f"timed out waiting for {what}")
                time.sleep(0.2)

        def in_monte_carlo() -> bool:
            row = _manifest(out)
            return (row is not None and row["status"].iloc[0] == "running"
                    and json.loads(row["stage_timings"].iloc[0]).get("current") == "monte_carlo")

        wait_for("the manifest to say running/monte_carlo", in_monte_carlo, 180)
        # Stages before monte_carlo ran tasks too: wait until the first worker's executor has
        # finished a task started since (a Monte Carlo block) and is running the next one.
        earlier, _ = _tasks(victim.work_dir)

        def mid_stage() -> bool:
            started, finished = _tasks(victim.work_dir)
            return bool((finished - earlier) and started - finished)

        wait_for("the first worker's executor to finish a Monte Carlo block and start another",
                 mid_stage, 90)

        # Lose the machine: the Worker JVM and everything it started, without warning.
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        assert in_monte_carlo(), "the Monte Carlo stage ended before the worker was killed"
        assert _tasks(survivor.work_dir)[0], "no task ran on the second worker's executor"
        started, finished = _tasks(victim.work_dir)  # its logs, as of its death
        in_flight = started - finished
        assert in_flight, "the first worker's executor was running no task when killed"
        if Path("/proc/self/stat").exists():
            until = time.monotonic() + 10
            while _group_members(victim.proc.pid) and time.monotonic() < until:
                time.sleep(0.2)
            assert not _group_members(victim.proc.pid), "the killed worker's group lives on"

        try:
            rc = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            fail("submit.sh did not finish after the worker was lost")
    finally:
        _kill_group(proc, grace=5)
    assert rc == 0, f"submit.sh exited with {rc}\n{_tail(log)}\n{cluster.logs()}"

    # Spark noticed, and ran the task the lost executor was running again, on the other one.
    assert re.search(rf"Lost executor \d+ on {re.escape(HOST)}", log.read_text(errors="replace")), \
        f"the driver did not report the lost executor\n{_tail(log)}"
    _, survivor_finished = _tasks(survivor.work_dir)
    for stage, index, attempt in in_flight:
        assert any(s == stage and i == index and a > attempt for s, i, a in survivor_finished), \
            f"task {index}.{attempt} of stage {stage}, lost with the worker, was not re-run"

    manifest = _manifest(out)
    assert manifest is not None and len(manifest) == 1
    assert manifest["spark_master"].iloc[0] == cluster.url
    assert manifest["status"].iloc[0] in ("completed", "completed_with_warnings")
    assert "current" not in json.loads(manifest["stage_timings"].iloc[0])
    local_run()  # the reference: the same config in local mode, undisturbed
    _assert_same_results(out, out_local)
