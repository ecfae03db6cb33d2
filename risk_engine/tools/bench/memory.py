"""Memory and CPU of this driver, its Spark JVM and the PySpark Python workers (``/proc``)."""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path
from typing import Any


def _status_kib(pid: int, key: str = "VmHWM") -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(p.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spark_processes() -> tuple[list[int], list[int]]:
    """(JVM pids started by this driver, PySpark Python worker pids below them)."""
    jvms = [c for c in _children(os.getpid()) if "java" in _cmdline(c)]
    workers, stack = [], list(jvms)
    while stack:
        pid = stack.pop()
        for c in _children(pid):
            stack.append(c)
            if "pyspark" in _cmdline(c):
                workers.append(c)
    return jvms, workers


def spark_cpu() -> tuple[float, float]:
    """CPU seconds used so far by (Python workers, JVM) of this driver's Spark."""
    jvms, workers = _spark_processes()
    return (sum(_cpu_seconds(p) for p in workers), sum(_cpu_seconds(p) for p in jvms))


def process_peaks() -> dict[str, float]:
    """Peak resident memory (MiB) of this driver, its JVM and the PySpark Python workers."""
    # VmHWM, not getrusage: ru_maxrss survives execve, so a child started from a big
    # parent would report the parent's peak.
    own = _status_kib(os.getpid())
    if own is None:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, float] = {"driver_python_peak_mib": own / 1024}
    jvms, pids = _spark_processes()
    jvm_peak = max([(_status_kib(j) or 0) / 1024 for j in jvms], default=0.0)
    workers = [(_status_kib(p) or 0) / 1024 for p in pids]
    out["driver_jvm_peak_mib"] = jvm_peak
    out["python_worker_peak_mib"] = max(workers) if workers else float("nan")
    out["python_workers_sum_peak_mib"] = float(sum(workers)) if workers else float("nan")
    out["python_worker_processes"] = float(len(workers))
    return out


def jvm_live_heap_mib(spark: Any) -> float:
    """Heap the driver JVM retains (MiB): heap in use right after a full collection.

    The JVM's resident size follows its collector's heap sizing (it grows towards
    ``spark.driver.memory`` under allocation pressure); this is what it keeps.
    """
    jvm = spark.sparkContext._jvm
    jvm.java.lang.System.gc()
    usage = jvm.java.lang.management.ManagementFactory.getMemoryMXBean().getHeapMemoryUsage()
    return float(usage.getUsed()) / 2**20
