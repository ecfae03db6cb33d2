"""Spark session construction from :class:`risk_engine.config.SparkConfig`."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from pyspark import SparkContext
from pyspark.sql import SparkSession

from risk_engine.config import SparkConfig

_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.pythonUDF.arrow.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
}
#: Local masters only: the driver JVM is then also the executor, on the cores of the Python
#: workers. A ``spark.driver.extraJavaOptions`` in the config replaces these.
#:
#: * ``-XX:TieredStopAtLevel=1``: the quick JIT compiler (C1) only. The optimizing one (C2)
#:   recompiles every query's generated classes: measured on a 100,000-scenario Monte Carlo
#:   stage (2 cores), 0.96 s of JVM CPU per stage with C2 and 0.39 s with C1, and the demo
#:   job 12% faster. The JVM's share of this work is moving small rows.
#: * G1 starts a concurrent collection at 80% heap occupancy, not at its adaptive threshold
#:   (45% to start with). Spark's own live data (about 65 MB) sits above 45% of the small
#:   initial heap, so every large allocation started a concurrent cycle and G1 answered the
#:   overhead by doubling the heap: driver JVM peak 541 MiB at 10M scenarios against 396 at
#:   100k with the default, 450 against 393 with this setting.
#: * The JVM talks to its Python workers over Unix domain sockets, not TCP on the loopback
#:   (Spark 4.1 and later). Over TCP the first input batch of every Python task reached the
#:   worker a constant 42 ms after the task started (the size of Linux's delayed TCP
#:   acknowledgement), against 2 ms over a Unix socket; an empty ``mapInPandas`` job took
#:   140 ms, and 94 ms. Not set for cluster masters: the socket files go under
#:   ``java.io.tmpdir``, which on YARN can exceed the 108-byte socket path limit; a cluster
#:   sets it with ``spark.python.unix.domain.socket.dir`` pointing to a short path.
_LOCAL_DEFAULTS = {
    "spark.driver.extraJavaOptions": " ".join([
        "-XX:TieredStopAtLevel=1",
        "-XX:-G1UseAdaptiveIHOP", "-XX:InitiatingHeapOccupancyPercent=80",
    ]),
    # PySpark refuses the setting where Python has no AF_UNIX (Windows).
    "spark.python.unix.domain.socket.enabled": str(hasattr(socket, "AF_UNIX")).lower(),
}


log = logging.getLogger("risk_engine.spark")

#: Where the driver JVM's console output went (None: to this process's stderr).
JVM_LOG: Path | None = None


def _verbose() -> bool:
    """True when INFO is logged (``risk-engine -v``)."""
    return logging.getLogger("risk_engine").isEnabledFor(logging.INFO)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` while the JVM is started (it inherits it)."""
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def _quiet_python_side() -> None:
    """Silence the Python-side echoes of a failed Spark job (the engine reports it once)."""
    logging.getLogger("py4j").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"toPandas attempted Arrow optimization",
                            category=UserWarning)


def session_running() -> bool:
    """Whether this process already has a running SparkContext (``getOrCreate`` reuses it)."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def build_session(settings: SparkConfig, *, master: str | None = None) -> SparkSession:
    """Get or create the session.

    Parameters
    ----------
    settings
        ``spark`` section of the config: app name, extra ``conf``.
    master
        The master URL to set; ``None`` leaves it to ``spark-submit`` (or Spark's default).
        For a ``local`` master the Python workers use this interpreter unless
        ``PYSPARK_PYTHON`` says otherwise.

    Notes
    -----
    Unless INFO is logged (``risk-engine -v``), the console output of a driver JVM started
    here (log4j at WARN, executor and Python worker tracebacks, the workers' own stderr)
    goes to ``<tmp>/risk-engine-spark-<pid>.log`` (:data:`JVM_LOG`), not to stderr: a failed
    task would otherwise print a hundred lines of stack traces before the engine's one-line
    error. With ``-v`` it stays on stderr.
    """
    builder = SparkSession.builder.appName(settings.app_name)
    defaults = dict(_DEFAULTS)
    if master is not None:
        builder = builder.master(master)
        if master.startswith("local"):
            # The driver decides the workers' interpreter from PYSPARK_PYTHON when it is not
            # launched by spark-submit; default to this very interpreter (same packages).
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = builder.config("spark.driver.host", "127.0.0.1")
            builder = builder.config("spark.driver.bindAddress", "127.0.0.1")
            defaults.update(_LOCAL_DEFAULTS)
    for key, value in {**defaults, **dict(settings.conf)}.items():
        builder = builder.config(key, value)
    global JVM_LOG
    quiet = not _verbose()
    if quiet:
        _quiet_python_side()
    starts_jvm = SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ
    if quiet and starts_jvm:  # not under spark-submit, whose JVM is already running
        path = Path(tempfile.gettempdir()) / f"risk-engine-spark-{os.getpid()}.log"
        with _stderr_to(path):
            spark = builder.getOrCreate()
        JVM_LOG = path
        log.debug("Spark driver log: %s", path)
    else:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
