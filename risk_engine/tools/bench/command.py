"""``risk-engine bench``: throughput, accuracy, scaling and memory of the Monte Carlo stage.

Also the time of the hedging stage on the demo book.

The command line of :func:`risk_engine.tools.bench.run.run_benchmark`: it prints the table
of :func:`risk_engine.tools.bench.report.format_table`.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import yaml

from risk_engine.revaluation_grid import METHODS
from risk_engine.tools.bench.backfill import backfill_rows
from risk_engine.tools.bench.positions import positions_rows
from risk_engine.tools.bench.report import Rows, format_table
from risk_engine.tools.bench.run import run_benchmark


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="risk-engine bench", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default="100000,1000000,10000000",
                   help="comma-separated scenario counts; the first one also drives the "
                        "throughput and accuracy sections (default %(default)s)")
    p.add_argument("--positions", type=int, default=2000, help="option positions")
    p.add_argument("--underlyings", type=int, default=50, help="a multiple of 10")
    p.add_argument("--desks", type=int, default=10)
    p.add_argument("--horizon-days", type=int, default=10)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--scale-master", metavar="URL",
                   help="master of the scaling points (default: --master), e.g. a standalone "
                        "cluster on this machine, spark://127.0.0.1:7077, where the driver "
                        "JVM does not also run the executor")
    p.add_argument("--methods", default="full,grid",
                   help=f"revaluation methods to compare, of {', '.join(METHODS)}")
    p.add_argument("--scale-methods", default="full",
                   help="methods run at every scenario count (default %(default)s)")
    p.add_argument("--block-size", type=int, default=10_000)
    p.add_argument("--accuracy-scenarios", type=int, default=20_000)
    p.add_argument("--driver-memory", default="1g")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating single-process / Spark rounds; the best of each is kept")
    p.add_argument("--hedging-objectives", default="variance,cvar",
                   help="hedging.objective values timed on the demo book ('' for none)")
    p.add_argument("--backfill-days", type=int, default=0, metavar="N",
                   help="also backfill N dates of demo data (260: the demo year; takes "
                        "minutes) and report its time (default 0: no backfill section)")
    p.add_argument("--backfill-scenarios", type=int, default=10_000,
                   help="scenarios a date of the backfill section (default %(default)s)")
    p.add_argument("--backfill-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config key of the backfill section (YAML value), e.g. "
                        "governance.enabled=false; repeatable")
    p.add_argument("--backfill-only", action="store_true",
                   help="only the backfill section (with --backfill-days N)")
    p.add_argument("--stress-years", type=int, default=10,
                   help="years of demo history for the stress section: historical VaR, "
                        "stressed VaR, spot-vol grid (0 for none)")
    p.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
    p.add_argument("--positions-axis", default="", metavar="N,N,...",
                   help="also run the whole nightly job on the demo book grown to these "
                        "position counts, at the first --scenarios count, e.g. "
                        "2000,20000,200000 (default: no positions section)")
    p.add_argument("--positions-only", action="store_true",
                   help="only the positions section")
    p.add_argument("--config", action="append", default=None, metavar="YAML",
                   help="config of the positions section's runs (default conf/local.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the positions section's runs, e.g. "
                        "worst_case.enabled=false")
    p.add_argument("--one-desk", metavar="DESK",
                   help="positions section: book every position on this one desk")
    return p


def bench_main(argv: list[str]) -> int:
    """``risk-engine bench``: run the benchmark and print the table."""
    args = _parser().parse_args(argv)
    scen = [int(float(s)) for s in args.scenarios.split(",") if s.strip()]
    say = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    counts = [int(float(s)) for s in args.positions_axis.split(",") if s.strip()]
    backfill_settings = {k: yaml.safe_load(v) for k, _, v in
                         (s.partition("=") for s in args.backfill_set)}
    if args.backfill_only:
        if args.backfill_days < 1:
            raise SystemExit("risk-engine bench: --backfill-only needs --backfill-days N")
        rows = Rows()
        backfill_rows(rows, args.backfill_days, scenarios=args.backfill_scenarios,
                      master=args.master, driver_memory=args.driver_memory,
                      settings=backfill_settings, say=say)
        return _emit(rows.frame(), args.csv)
    if args.positions_only:
        if not counts:
            raise SystemExit("risk-engine bench: --positions-only needs --positions-axis")
        rows = Rows()
        positions_rows(rows, counts, n_scenarios=scen[0], master=args.master,
                       config=args.config or ["conf/local.yaml"],
                       overrides=dict(kv.split("=", 1) for kv in args.set),
                       one_desk=args.one_desk, say=say)
        return _emit(rows.frame(), args.csv)
    table = run_benchmark(
        scen, positions=args.positions, underlyings=args.underlyings, desks=args.desks,
        horizon_days=args.horizon_days, master=args.master,
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        scale_methods=[m.strip() for m in args.scale_methods.split(",") if m.strip()],
        block_size=args.block_size, accuracy_scenarios=args.accuracy_scenarios,
        driver_memory=args.driver_memory, rounds=args.rounds, scale_master=args.scale_master,
        hedging_objectives=[o.strip() for o in args.hedging_objectives.split(",")
                            if o.strip()],
        backfill_days=args.backfill_days, backfill_scenarios=args.backfill_scenarios,
        backfill_settings=backfill_settings,
        stress_years=args.stress_years,
        log=say,
    )
    if counts:
        rows = Rows()
        positions_rows(rows, counts, n_scenarios=scen[0], master=args.master,
                       config=args.config or ["conf/local.yaml"],
                       overrides=dict(kv.split("=", 1) for kv in args.set),
                       one_desk=args.one_desk, say=say)
        table = pd.concat([table, rows.frame()], ignore_index=True)
    return _emit(table, args.csv)


def _emit(table: pd.DataFrame, csv: str | None) -> int:
    print(format_table(table))
    if csv:
        table.to_csv(csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(bench_main(sys.argv[1:]))
