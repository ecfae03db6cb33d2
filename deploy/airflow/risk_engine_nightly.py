"""Airflow DAG ``risk_engine_nightly``: the nightly risk run of one business day on Spark.

Tested with Airflow 3.1 and apache-airflow-providers-apache-spark 5.x
(tests/cluster/test_airflow.py runs it with ``airflow dags test`` against a Spark standalone
master). Copy or link this file into the DAGs folder of the Airflow deployment.

Schedule: Tuesday to Saturday at 01:30 UTC, each run for the business day that just ended.
The timetable is a cron trigger with a one-day data interval, so a run triggered on Tuesday
01:30 has the interval Monday 01:30 to Tuesday 01:30 and runs the as-of date **Monday**
(``data_interval_start``'s date); a run started by hand or by ``airflow dags test`` for
a logical date D runs D - 1 day the same way, unless the run's ``as_of`` parameter names
the date.

One task, ``nightly_risk``, does what ``deploy/submit.sh`` does: it runs
``deploy/build_env.sh`` (the packed executor environment; a no-op when it is current), then
``spark-submit --archives ...#environment jobs/nightly_risk.py run --config ... --as-of D`` in
client mode through :class:`RiskEngineSubmitOperator`, a ``SparkSubmitOperator`` that tells
the job's exit codes apart: 2 is a configuration or input-data error (``deploy/README.md``)
and fails the task at once, without retry; any other failure (Spark, cluster, network) is
retried (``retries=2``, 10 minutes apart).

Two runs of one date never overlap: ``max_active_runs=1`` here, and the engine itself holds
a per-date lock (``<output.root>/_locks``): a second run of a date that is running exits 2.

Settings: each is a DAG parameter (override per run, e.g. ``airflow dags trigger -c
'{"as_of": "2026-11-20"}'``); when a run does not set it, the Airflow Variable
``risk_engine_<name>`` (e.g. ``risk_engine_config``) is used if it exists, else the default:

============== ==================================================================
``home``       the risk-engine checkout on the worker (jobs/, conf/, deploy/);
               default: two folders above this file
``python``     the driver's interpreter, with risk-engine and pyspark installed;
               default ``<home>/.venv/bin/python``
``config``     list of config files (``--config``, overlaid in order);
               default ``["<home>/conf/cluster.yaml"]``
``overrides``  list of ``KEY=VALUE`` config overrides (``--set``); default none
``conn_id``    the Spark connection: its host is the master (``spark://host:7077``,
               ``yarn``, ``k8s://...``); default ``spark_default``
``spark_conf`` extra Spark properties (``--conf``); default none
``as_of``      the as-of date; default ``data_interval_start``'s date
============== ==================================================================

``spark-submit`` must be on the worker's PATH (the provider refuses other binaries): put
``$SPARK_HOME/bin`` of the cluster's Spark, or the ``bin`` folder of the driver venv's pyspark
package, first on it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pendulum
from airflow.exceptions import AirflowException, AirflowFailException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, Variable
from airflow.timetables.trigger import CronTriggerTimetable

#: risk-engine's exit code for a configuration or input-data error: retrying cannot help.
DATA_ERROR_EXIT = 2

#: The checkout this file is in (deploy/airflow/risk_engine_nightly.py).
DEFAULT_HOME = str(Path(__file__).resolve().parents[2])

_EXIT_CODE = re.compile(r"Error code is: (-?\d+)")


def setting(context: Any, name: str) -> Any:
    """A run's setting ``name``.

    The run's own conf, else the Airflow Variable ``risk_engine_<name>``, else the parameter's
    default (a list or dict in a Variable is JSON).
    """
    run_conf = getattr(context.get("dag_run"), "conf", None) or {}
    if name in run_conf:
        return run_conf[name]
    default = context["params"][name]
    return Variable.get(f"risk_engine_{name}", default=default,
                        deserialize_json=isinstance(default, (list, dict)))


class RiskEngineSubmitOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` for ``jobs/nightly_risk.py``; exit code 2 is not retried.

    The arguments come from the run's settings (:func:`setting`). Exit code 2, a
    configuration or input-data error, fails the task without retry.

    The provider's hook raises a plain ``AirflowException`` for any non-zero exit code of
    spark-submit; in client mode that is the driver's own exit code. It is read back from
    the hook's process (``_submit_sp.returncode``), else from the exception's message
    (``... Error code is: N.``), and turned into ``AirflowFailException``, which Airflow
    never retries, when it is 2.
    """

    def execute(self, context: Any) -> None:
        """Resolve the settings of this run, submit, and classify a failure."""
        home = str(setting(context, "home") or DEFAULT_HOME)
        python = str(setting(context, "python") or f"{home}/.venv/bin/python")
        configs = list(setting(context, "config") or [f"{home}/conf/cluster.yaml"])
        as_of = setting(context, "as_of") or context["data_interval_start"].date().isoformat()
        dt.date.fromisoformat(as_of)  # a malformed date is a data error of this run
        args = ["run"]
        for path in configs:
            args += ["--config", str(path)]
        args += ["--as-of", as_of]
        for item in setting(context, "overrides") or []:
            args += ["--set", str(item)]
        self.application = f"{home}/jobs/nightly_risk.py"
        self.application_args = args
        self._archives = f"{home}/deploy/build/risk_engine_env.tar.gz#environment"
        self._conn_id = str(setting(context, "conn_id"))
        # As deploy/submit.sh: executors run the packed env, the driver the given Python.
        self.conf = {"spark.pyspark.python": "./environment/bin/python",
                     "spark.pyspark.driver.python": python,
                     **(setting(context, "spark_conf") or {})}
        self.env_vars = {"PYSPARK_DRIVER_PYTHON": python,
                         "PYSPARK_PYTHON": "./environment/bin/python"}
        self._hook = None  # built by SparkSubmitOperator.execute from the fields above
        self.build_env(home, python)
        try:
            super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            code = self.exit_code(exc)
            if code == DATA_ERROR_EXIT:
                raise AirflowFailException(
                    f"risk-engine exited with {code}: configuration or input-data error for "
                    f"as-of {as_of}; not retried (see the task log)") from exc
            raise

    def build_env(self, home: str, python: str) -> None:
        """Run ``deploy/build_env.sh`` with the driver's interpreter (no-op when current)."""
        proc = subprocess.run(["bash", f"{home}/deploy/build_env.sh"], cwd=home,
                              env={**os.environ, "PYTHON": python}, capture_output=True,
                              text=True, check=False)
        for line in (proc.stdout + proc.stderr).splitlines():
            self.log.info("%s", line)
        if proc.returncode == DATA_ERROR_EXIT:  # e.g. the interpreter lacks risk-engine
            raise AirflowFailException(f"deploy/build_env.sh: bad setup (exit 2) with {python}")
        if proc.returncode != 0:
            raise AirflowException(f"deploy/build_env.sh failed with exit {proc.returncode}")

    def exit_code(self, exc: BaseException) -> int | None:
        """spark-submit's exit code after ``exc``, or None when it did not run to an end."""
        proc = getattr(self._hook, "_submit_sp", None)
        code = getattr(proc, "returncode", None)
        if isinstance(code, int):
            return code
        match = _EXIT_CODE.search(str(exc))
        return int(match.group(1)) if match else None


with DAG(
    dag_id="risk_engine_nightly",
    description="Nightly market-risk run (risk-engine on Spark) for the business day just ended",
    schedule=CronTriggerTimetable("30 1 * * 2-6", timezone="UTC",
                                  interval=dt.timedelta(days=1)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # never two runs at once; the engine's date lock is the second guard
    max_active_tasks=1,
    tags=["risk-engine"],
    params={
        "home": Param(DEFAULT_HOME, type="string"),
        "python": Param("", type="string"),
        "config": Param([], type="array"),
        "overrides": Param([], type="array"),
        "conn_id": Param("spark_default", type="string"),
        "spark_conf": Param({}, type="object"),
        "as_of": Param("", type="string"),
    },
    default_args={
        "owner": "risk",
        "retries": 2,  # infrastructure failures only (see RiskEngineSubmitOperator)
        "retry_delay": dt.timedelta(minutes=10),
        "execution_timeout": dt.timedelta(hours=4),
    },
) as dag:
    nightly_risk = RiskEngineSubmitOperator(
        task_id="nightly_risk",
        name="risk-engine-nightly",
        deploy_mode="client",
        verbose=False,
    )
