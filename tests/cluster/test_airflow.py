"""The Airflow DAG deploy/airflow/risk_engine_nightly.py, run for real with ``airflow dags test``.

Airflow and the Spark provider live in their own virtual environment, ``<repo>/.airflow-venv``
(created on first use from PyPI, reused while its stamp matches :data:`AIRFLOW_REQUIREMENTS`;
delete the folder to reinstall). The DAG's task submits the job to the standalone master of
``tests/cluster`` through ``SparkSubmitOperator``; the date's tables must be published, and a
data error (exit 2) must fail the task on its first try although the DAG allows retries.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.cluster.test_cluster import HOST, ROOT, Cluster, _env, _spark_bin, _tail

#: What the test installs (the ranges the DAG is tested with), from PyPI only.
AIRFLOW_REQUIREMENTS = ("apache-airflow>=3.1,<3.2", "apache-airflow-providers-apache-spark>=5.6,<6")
VENV = ROOT / ".airflow-venv"
DAG_ID = "risk_engine_nightly"


def _venv_python() -> Path:
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def airflow_venv() -> Path:
    """``<repo>/.airflow-venv`` with Airflow and the Spark provider (installed once)."""
    stamp = VENV / "requirements.stamp"
    wanted = "\n".join(AIRFLOW_REQUIREMENTS)
    if stamp.is_file() and stamp.read_text() == wanted and _venv_python().exists():
        return VENV
    log = ROOT / "deploy" / "build" / "airflow_install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("wb") as out:
        for cmd in ([sys.executable, "-m", "venv", "--clear", str(VENV)],
                    [str(_venv_python()), "-m", "pip", "install", "--disable-pip-version-check",
                     *AIRFLOW_REQUIREMENTS]):
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False,
                                timeout=1800).returncode
            assert rc == 0, f"{cmd[:3]} failed ({rc})\n{_tail(log)}"
    stamp.write_text(wanted)
    print(f"installed {', '.join(AIRFLOW_REQUIREMENTS)} in {time.monotonic() - start:.0f}s")
    return VENV


@pytest.fixture(scope="module")
def airflow(airflow_venv: Path, standalone_master: Cluster, executor_env: Path,
            tmp_path_factory: pytest.TempPathFactory):
    """Run the ``airflow`` CLI of the venv against a fresh AIRFLOW_HOME (sqlite), with the
    DAG folder deploy/airflow and the connection ``spark_default`` pointing at the master."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = _env()
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "deploy" / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_SPARK_DEFAULT=json.dumps({"conn_type": "spark",
                                               "host": standalone_master.url}),
        # The provider runs `spark-submit` from PATH: the driver venv's pyspark one.
        PATH=f"{_spark_bin()}{os.pathsep}{env.get('PATH', '')}",
    )

    def run(args: list[str], log_name: str, timeout: float = 600) -> tuple[int, Path]:
        log = home / log_name
        with log.open("wb") as out:
            proc = subprocess.run([str(airflow_venv / "bin" / "airflow"), *args], cwd=home,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        return proc.returncode, log

    rc, log = run(["db", "migrate"], "migrate.log")
    assert rc == 0, f"airflow db migrate failed ({rc})\n{_tail(log)}"

    def task_instances() -> list[tuple[str, str, str, int, int]]:
        with sqlite3.connect(home / "airflow.db") as db:
            return db.execute("SELECT dag_run.logical_date, task_id, task_instance.state, "
                              "try_number, max_tries FROM task_instance JOIN dag_run "
                              "ON dag_run.run_id = task_instance.run_id").fetchall()

    run.task_instances = task_instances  # type: ignore[attr-defined]
    return run


def _run_conf(config: Path) -> str:
    return json.dumps({
        "config": [str(config)],
        "python": sys.executable,
        "spark_conf": {"spark.driver.host": HOST, "spark.driver.bindAddress": HOST,
                       "spark.executor.memory": "1g"},
    })


def test_dag_publishes_the_business_day(airflow, job_config: Path) -> None:
    from risk_engine.tools.demo_data import DEFAULT_AS_OF

    base = job_config.parent
    out = base / "out_airflow"
    config = base / "airflow.yaml"
    config.write_text(yaml.safe_dump({"extends": str(job_config), "output": {"root": str(out)}}))
    # The run triggered the next morning processes the business day that just ended.
    logical = DEFAULT_AS_OF + dt.timedelta(days=1)
    rc, log = airflow(["dags", "test", DAG_ID, logical.isoformat(), "-c", _run_conf(config)],
                      "dags_test_ok.log")
    assert rc == 0, f"airflow dags test exited with {rc}\n{_tail(log, 120)}"
    part = f"as_of_date={DEFAULT_AS_OF.isoformat()}"
    for table in ("risk_measures", "contributions", "run_manifest"):
        assert (out / table / part).is_dir(), f"{table}/{part} not published under {out}"
    manifest = pd.read_parquet(out / "run_manifest" / part)
    assert len(manifest) == 1
    assert manifest["status"].iloc[0].startswith("completed")
    assert manifest["spark_master"].iloc[0].startswith(f"spark://{HOST}:")
    assert len(pd.read_parquet(out / "risk_measures" / part)) > 0
    states = [t for t in airflow.task_instances() if t[0].startswith(logical.isoformat())]
    assert [(t[1], t[2], t[3]) for t in states] == [("nightly_risk", "success", 1)]


def test_data_error_is_not_retried(airflow, job_config: Path) -> None:
    from risk_engine.tools.demo_data import DEFAULT_AS_OF

    base = job_config.parent
    (base / "no_input").mkdir(exist_ok=True)
    config = base / "airflow_bad.yaml"
    config.write_text(yaml.safe_dump({"extends": str(job_config),
                                      "input": {"root": str(base / "no_input")},
                                      "output": {"root": str(base / "out_airflow_bad")}}))
    logical = DEFAULT_AS_OF + dt.timedelta(days=4)  # Tuesday's run, for Monday
    rc, log = airflow(["dags", "test", DAG_ID, logical.isoformat(), "-c", _run_conf(config)],
                      "dags_test_bad.log")
    text = log.read_text(errors="replace")
    assert rc != 0, f"the run should fail\n{_tail(log, 120)}"
    assert "input table positions not found" in text, _tail(log, 120)
    assert "risk-engine exited with 2" in text, _tail(log, 120)
    states = [t for t in airflow.task_instances() if t[0].startswith(logical.isoformat())]
    # Failed on its first try, with retries allowed: exit 2 is not retried.
    assert [(t[1], t[2], t[3]) for t in states] == [("nightly_risk", "failed", 1)]
    assert states[0][4] == 2


def test_dag_as_airflow_loads_it(airflow_venv: Path) -> None:
    """The DAG as Airflow loads it: one run at a time, retries allowed, the schedule in UTC."""
    script = (
        "import json, sys\n"
        "from airflow.models.dagbag import DagBag\n"
        f"bag = DagBag({str(ROOT / 'deploy' / 'airflow')!r}, include_examples=False)\n"
        "assert not bag.import_errors, bag.import_errors\n"
        f"dag = bag.dags[{DAG_ID!r}]\n"
        "task = dag.get_task('nightly_risk')\n"
        "print(json.dumps({'max_active_runs': dag.max_active_runs, 'retries': task.retries,\n"
        "    'operator': type(task).__mro__[1].__name__, 'tasks': sorted(dag.task_ids),\n"
        "    'timezone': str(dag.timetable._timezone), 'catchup': dag.catchup}))\n"
    )
    env = {**_env(), "AIRFLOW_HOME": str(ROOT / "deploy" / "build" / "airflow_home_parse"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", script], env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info == {"max_active_runs": 1, "retries": 2, "operator": "SparkSubmitOperator",
                    "tasks": ["nightly_risk"], "timezone": "UTC", "catchup": False}
