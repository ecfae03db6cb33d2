"""Command line: ``risk-engine run | backfill | demo-data | demo | bench | bench-worst-case``.

``risk-engine run`` and ``spark-submit jobs/nightly_risk.py`` share :func:`run_job`; the
only difference is who chooses the Spark master (the config, or spark-submit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from risk_engine.config import Config, load_config
from risk_engine.errors import RiskEngineError

log = logging.getLogger("risk_engine")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", required=True, metavar="YAML",
                   help="config file; repeat to overlay several (later ones win)")
    p.add_argument("--as-of", metavar="YYYY-MM-DD", help="as-of date (overrides the config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set monte_carlo.n_scenarios=10000")


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise RiskEngineError(f"--set needs KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value
    if args.as_of:
        overrides["as_of_date"] = args.as_of
    return load_config(*args.config, overrides=overrides)


def run_job(cfg: Config, *, master: str | None) -> int:
    """Build the session, run the nightly job, print a summary; return the exit code."""
    from risk_engine.spark.job import main
    from risk_engine.spark.session import build_session

    spark = build_session(cfg.spark, master=master)
    try:
        summary = main(spark, cfg)
    finally:
        spark.stop()
    _print_summary(summary)
    return 0 if summary.status in ("completed", "completed_with_warnings") else 1


def _print_summary(summary: Any) -> None:
    measures = summary.tables["risk_measures"]
    firm = measures[measures["scope"] == "firm"]
    print(f"run {summary.run_id}: {summary.status}")
    print(f"as of {summary.as_of_date}, {int(firm['n_scenarios'].iloc[0]):,} scenarios, "
          f"horizon {int(firm['horizon_days'].iloc[0])} trading day(s)")
    print("firm        level        VaR            ES")
    for level, grp in firm.groupby("confidence_level"):
        v = grp.set_index("measure")["value"]
        print(f"            {level:<8.3f} {v['VaR']:>14,.0f} {v['ES']:>14,.0f}")
    for w in summary.warnings:
        print(f"warning: {w}")
    print(f"timings (s): {summary.timings}")
    root = summary.output_root
    where = root if "://" in root else str(Path(root).resolve())
    print(f"results: {where}/<table>/as_of_date={summary.as_of_date}/ for tables "
          f"{', '.join(sorted(summary.tables))}, run_manifest")


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    return run_job(cfg, master=args.master or cfg.spark.master)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from risk_engine.tools.demo_data import DEFAULT_AS_OF, generate, generate_days, write_tables

    as_of = dt.date.fromisoformat(args.as_of) if args.as_of else DEFAULT_AS_OF
    days = getattr(args, "days", 1)
    if days > 1 and getattr(args, "vol_surface", False):
        raise SystemExit("demo-data: --vol-surface writes one as-of date; drop --days")
    if days > 1:
        tables = generate_days(as_of, days, n_positions=args.positions, seed=args.seed)
    else:
        tables = generate(as_of, n_positions=args.positions, seed=args.seed,
                          years=getattr(args, "years", None),
                          vol_surface=getattr(args, "vol_surface", False),
                          one_desk=getattr(args, "one_desk", None))
    paths = write_tables(tables, args.out)
    if days > 1:
        print(f"wrote {len(paths)} Parquet file(s) for {days} as-of dates ending {as_of} under "
              f"{Path(args.out).resolve()}, with pnl_history")
        return 0
    print(f"wrote {len(paths)} Parquet file(s) for as_of_date {as_of} under "
          f"{Path(args.out).resolve()}: {len(tables['positions'])} positions, "
          f"{len(tables['market'])} underlyings, {tables['history']['date'].nunique()} days "
          "of history")
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from risk_engine.spark.backfill import backfill
    from risk_engine.spark.session import build_session

    args.as_of = args.as_of or args.start  # the config needs one; each date replaces it
    cfg = _config(args)
    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    spark = build_session(cfg.spark, master=args.master or cfg.spark.master)
    try:
        fan_out = {} if args.fan_out is None else {"fan_out": args.fan_out}
        summaries = backfill(spark, cfg, start, end, **fan_out)
    finally:
        spark.stop()
    for s in summaries:
        print(f"{s.as_of_date}: {s.status} {s.run_id}" + (f" ({s.message})" if s.message else ""))
    ok = all(s.status in ("completed", "completed_with_warnings") for s in summaries)
    return 0 if ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    args.as_of = None
    _cmd_demo_data(args)
    cfg = load_config(args.config, overrides={"input.root": args.out})
    return run_job(cfg, master=cfg.spark.master)


def _cmd_bench_worst_case(args: argparse.Namespace) -> int:
    import pandas as pd

    from risk_engine.tools.worst_case_bench import benchmark_worst_case

    sizes = []
    for item in args.sizes:
        u, _, o = item.partition("x")
        sizes.append((int(u), int(o)))
    table = benchmark_worst_case(sizes=sizes, horizon_days=args.horizon_days)
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.max_rows", 500):
        print(table.to_string(index=False))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from risk_engine.tools.show import show

    as_of = dt.date.fromisoformat(args.as_of)
    root = args.output_root
    if root is None:
        root = (load_config(*args.config, overrides={"as_of_date": args.as_of}).output.root
                if args.config else "output")
    sys.stdout.write(show(root, as_of, args.table))
    return 0


def _add_show_parser(sub: Any) -> None:
    show = sub.add_parser("show", help="print a published date's key tables (no Spark)")
    show.add_argument("--as-of", required=True, metavar="YYYY-MM-DD")
    show.add_argument("--table", metavar="T", help="print this whole table instead")
    show.add_argument("--output-root", metavar="PATH",
                      help="output root (default: output.root of --config, else ./output)")
    show.add_argument("--config", action="append", default=[], metavar="YAML",
                      help="config whose output.root to read; repeat to overlay")
    show.set_defaults(func=_cmd_show)


def _add_console_args(parser: argparse.ArgumentParser, *, sub: bool = False) -> None:
    """``--log-format``, before or (``sub``) after the subcommand."""
    parser.add_argument("--log-format", choices=("text", "json"),
                        default=argparse.SUPPRESS if sub else None,
                        help="text, or json: one JSON object per log line (default: "
                             "$RISK_ENGINE_LOG_FORMAT, else text)")


def _setup_logging(args: argparse.Namespace) -> None:
    from risk_engine.logformat import configure_logging, resolve_format

    try:
        fmt = resolve_format(args.log_format)
    except ValueError as exc:
        raise SystemExit(f"risk-engine: error: {exc}") from None
    configure_logging(logging.INFO if args.verbose else logging.WARNING, fmt)


def _cmd_report(args: argparse.Namespace) -> int:
    from risk_engine.report import write_report

    cfg = _config(args)
    path = write_report(cfg.output.root, cfg.as_of_date,
                        top_positions=cfg.report.top_positions)
    print(f"report: {path.resolve()}")
    return 0


def _add_report_parser(sub: Any) -> None:
    """``risk-engine report --config ... --as-of D``: the morning report of a published date."""
    report = sub.add_parser("report", help="write the HTML morning report of a date from its "
                                           "published tables (no Spark)")
    _add_run_args(report)
    report.set_defaults(func=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``risk-engine`` command."""
    parser = argparse.ArgumentParser(prog="risk-engine", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    _add_console_args(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the nightly job for one as-of date")
    _add_run_args(run)
    run.add_argument("--master", help="Spark master (default: spark.master of the config)")
    run.set_defaults(func=_cmd_run)

    backfill = sub.add_parser("backfill", help="run the nightly job for every business date "
                                               "of a range, oldest first, in one session")
    _add_run_args(backfill)
    backfill.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    backfill.add_argument("--master", help="Spark master (default: spark.master of the config)")
    backfill.add_argument("--fan-out", type=int, metavar="N",
                          help="dates whose scenario blocks are simulated in one Spark job "
                               "(default 16; 1: one date after another)")
    backfill.set_defaults(func=_cmd_backfill)
    _add_report_parser(sub)

    _add_show_parser(sub)

    demo_data = sub.add_parser("demo-data", help="write the synthetic demo snapshot")
    demo_data.add_argument("--out", default="data/demo", help="output folder (data/demo)")
    demo_data.add_argument("--as-of", help="as-of date (default 2026-11-20)")
    demo_data.add_argument("--positions", type=int, default=2000,
                           help="positions (default 2000); a larger book keeps the first "
                                "2000 and the universe")
    demo_data.add_argument("--seed", type=int, default=7)
    demo_data.add_argument("--one-desk", metavar="DESK",
                           help="book every position on this one desk")
    demo_data.add_argument("--days", type=int, default=1,
                           help="business days of snapshots ending at --as-of, on one market "
                                "path, with pnl_history (default 1: one snapshot)")
    demo_data.add_argument("--years", type=int, default=None,
                           help="a long history of 252 x YEARS trading days with a crash and "
                                "vol spikes, for stressed VaR (default: two calm years)")
    demo_data.add_argument("--vol-surface", action="store_true",
                           help="also write a vol_surface table (skewed, term-structured "
                                "quotes for every other underlying; one as-of date only)")
    demo_data.set_defaults(func=_cmd_demo_data)

    demo = sub.add_parser("demo", help="write the demo snapshot and run the job on it locally")
    demo.add_argument("--config", default="conf/local.yaml")
    demo.add_argument("--out", default="data/demo")
    demo.add_argument("--positions", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)
    sub.add_parser("bench", add_help=False,
                   help="benchmark the Monte Carlo stage (risk-engine bench --help)")

    bench_wc = sub.add_parser("bench-worst-case",
                              help="time worst-case VaR solves against desk size")
    bench_wc.add_argument("--sizes", nargs="+", default=["10x20", "50x100", "100x200"],
                          metavar="UxO", help="underlyings x options (10x20 50x100 100x200)")
    bench_wc.add_argument("--horizon-days", type=int, default=21)
    bench_wc.set_defaults(func=_cmd_bench_worst_case)
    for command in sub.choices.values():
        _add_console_args(command, sub=True)
    return parser


def main(argv: Sequence[str] | None = None, *, master_from_submit: bool = False) -> int:
    """Entry point of the ``risk-engine`` command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own options: risk-engine bench --help
        from risk_engine.tools.bench import bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    try:
        if master_from_submit:
            return run_job(_config(args), master=None)
        return int(args.func(args))
    except RiskEngineError as exc:
        print(f"risk-engine: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line, the traceback only with -v
        from risk_engine.spark.job import error_line

        if args.verbose:
            raise
        print(f"risk-engine: run failed: {type(exc).__name__}: {error_line(exc)} "
              "(rerun with -v for the traceback; the run manifest records the failure)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
