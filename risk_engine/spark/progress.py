"""Progress of a run's long Spark stages on a terminal: one updating line on stderr.

While a run's stages execute, a daemon thread on the driver polls Spark's status tracker
(the active stages' completed and total tasks) and rewrites one line of stderr in place:
the run's current stage, the scenario blocks done of the total (tasks converted to blocks:
each stage's tasks split the block range evenly), the rate and the time left. Nothing is
printed when stderr is not a terminal (logs, schedulers, CI), so their output stays clean.
The numerical core knows nothing of this.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the formatting is importable without pyspark
    from pyspark.sql import SparkSession

#: Seconds between two polls of the status tracker.
POLL_SECONDS = 0.5
#: Stages whose Spark tasks split the scenario block range (shown as blocks, else tasks).
BLOCK_STAGES = frozenset({"monte_carlo", "scenario_pnl", "worst_case", "attribution"})


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def format_progress(label: str, done: float, total: float, elapsed: float,
                    unit: str = "blocks") -> str:
    """One progress line: ``label: done/total unit (pct) rate unit/s, time left``.

    Parameters
    ----------
    label
        What is progressing (a stage name, ``backfill``).
    done, total
        Units done and in all (``total`` <= 0: no fraction, rate or time left is shown).
    elapsed
        Seconds since the units started; the rate is ``done / elapsed`` (below one unit
        a second, shown as seconds per unit).
    unit
        Name of the units (blocks, dates, tasks).
    """
    if total <= 0:
        return f"{label}: {done:,.0f} {unit}"
    done = min(max(done, 0.0), total)
    line = f"{label}: {done:,.0f}/{total:,.0f} {unit} ({done / total:.0%})"
    if elapsed > 0 and done > 0:
        rate = done / elapsed
        line += (f", {rate:,.1f} {unit}/s" if rate >= 1
                 else f", {1 / rate:,.1f}s per {unit.removesuffix('s')}")
        if done < total:
            line += f", {_duration((total - done) / rate)} left"
    return line


def stage_tasks(spark: SparkSession) -> tuple[int, int]:
    """Completed and total tasks of the Spark stages active now (0, 0 when none)."""
    tracker = spark.sparkContext.statusTracker()
    done = total = 0
    for sid in tracker.getActiveStageIds():
        info = tracker.getStageInfo(sid)
        if info is not None:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total


class ProgressLine:
    """Polls the active stages and rewrites one line of ``stream``; see the module doc.

    ``label`` is called at each poll for the current stage's name. In a stage of
    :data:`BLOCK_STAGES`, with ``n_blocks``, task counts are shown as blocks
    (``n_blocks x done / total``), else as tasks.
    """

    def __init__(self, spark: SparkSession, label: Callable[[], str], *,
                 n_blocks: int | None, stream: TextIO) -> None:
        self.spark, self.label, self.n_blocks, self.stream = spark, label, n_blocks, stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="risk-engine-progress",
                                        daemon=True)
        self._width = 0
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._since = 0.0

    def start(self) -> None:
        """Start polling (a daemon thread)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and clear the line."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.clear()

    def _write(self, text: str) -> None:
        with self._lock:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\r" if not text else ""))
            self.stream.flush()
            self._width = len(text)

    def clear(self) -> None:
        """Blank the line (if shown), so that other output starts at column 0."""
        if self._width:
            self._write("")

    def line(self, done: int, total: int, now: float) -> str | None:
        """The line for ``done`` of ``total`` active tasks at time ``now`` (None: idle)."""
        if total <= 0:
            return None
        label = self.label()
        if self._key != (label, total):  # a new pass: its rate starts now
            self._key, self._since = (label, total), now
        if self.n_blocks and label in BLOCK_STAGES:
            return format_progress(label, self.n_blocks * done / total, self.n_blocks,
                                   now - self._since)
        return format_progress(label, done, total, now - self._since, unit="tasks")

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                done, total = stage_tasks(self.spark)
            except Exception:  # noqa: BLE001 - a closing session ends the display, not the run
                return
            text = self.line(done, total, time.monotonic())
            if text is not None:
                self._write(text)


def is_terminal(stream: TextIO) -> bool:
    """True if ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _ClearLine(logging.Filter):
    """Blanks the progress line before a log record is written to its stream."""

    def __init__(self, progress: ProgressLine) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        """Clear the line; never drops the record."""
        self.progress.clear()
        return True


@contextmanager
def clear_before_logs(progress: ProgressLine) -> Iterator[None]:
    """While active, root log handlers writing to ``progress.stream`` clear the line first.

    The next poll redraws it below the log line.
    """
    handlers = [h for h in logging.getLogger().handlers
                if getattr(h, "stream", None) is progress.stream]
    flt = _ClearLine(progress)
    for h in handlers:
        h.addFilter(flt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(flt)


@contextmanager
def run_progress(spark: SparkSession, label: Callable[[], str], *, n_blocks: int | None,
                 stream: TextIO | None = None) -> Iterator[None]:
    """Show :class:`ProgressLine` on ``stream`` (stderr) while the block runs, if a terminal."""
    out = stream if stream is not None else sys.stderr
    if not is_terminal(out):
        yield
        return
    progress = ProgressLine(spark, label, n_blocks=n_blocks, stream=out)
    progress.start()
    try:
        with clear_before_logs(progress):
            yield
    finally:
        progress.stop()


def n_blocks_of(n_scenarios: int, block_size: int) -> int:
    """The number of scenario blocks of a run."""
    return max(1, math.ceil(n_scenarios / block_size))
