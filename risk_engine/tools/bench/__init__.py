"""``risk-engine bench``: throughput, accuracy, scaling and memory of the Monte Carlo stage.

One run measures, on a generated option book (:mod:`.workload`):

* throughput (:mod:`.throughput`), per revaluation method: position revaluations per second
  per core of the kernel alone (one process, scenarios drawn beforehand), of the whole block
  work (draw + revalue, ``simulate_block``) in one process per core without Spark
  (:mod:`.processes`), and of the Spark fan-out (``simulate_blocks``, plus the first
  histogram pass that materializes it) at equal cores (:mod:`.stage`), and the ratio of the
  last two; and the job's whole Monte Carlo stage, the tail passes of
  :mod:`risk_engine.tails` included;
* accuracy (:mod:`.accuracy`): full revaluation against an independent pricer built on
  ``scipy.stats.norm``; every other method against full revaluation on the same scenarios
  (desk and firm VaR and ES, largest pricing error per contract);
* scaling (:mod:`.scaling`): Spark stage time, session start-up and peak memory of the
  driver (Python and JVM) and of the Python workers at each scenario count (:mod:`.memory`),
  each point in a fresh process with its own Spark session (so peaks belong to that point).
* hedging (:mod:`.hedging`): seconds the hedging stage adds to the nightly run on the demo
  book (6 desks), per decomposition objective, against the 30 s target.
* backfill (:mod:`.backfill`, opt-in: ``--backfill-days 260``): a year of demo dates
  backfilled (1-day horizon, 10,000 scenarios a date): wall time, dates a minute, the
  year's minutes against the 15-minute target, seconds per stage, the backtest's zone.

Rows and the printed table are :mod:`.report`'s; the command line is :mod:`.command`'s.
Numbers are wall-clock on a possibly shared machine: compare ratios taken from one run, and
rerun when the machine is busy. This is a measurement tool, not a timed test.
"""

from risk_engine.tools.bench.command import bench_main
from risk_engine.tools.bench.report import COLUMNS, TARGETS, format_table
from risk_engine.tools.bench.run import run_benchmark
from risk_engine.tools.bench.workload import bench_tables

__all__ = ["COLUMNS", "TARGETS", "bench_main", "bench_tables", "format_table",
           "run_benchmark"]
