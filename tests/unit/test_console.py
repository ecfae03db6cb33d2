"""Operator console: progress line formatting, JSON log lines, the CLI's log options."""

from __future__ import annotations

import io
import json
import logging

import pytest

from risk_engine.cli import build_parser
from risk_engine.logformat import RUN_ID, STAGE, configure_logging, resolve_format
from risk_engine.spark.progress import (
    ProgressLine,
    clear_before_logs,
    format_progress,
    run_progress,
)


def test_format_progress_blocks_rate_and_time_left():
    assert (format_progress("monte_carlo", 12, 48, 6.0)
            == "monte_carlo: 12/48 blocks (25%), 2.0 blocks/s, 18s left")
    assert (format_progress("backfill 2026-11-20", 3, 250, 90.0, unit="dates")
            == "backfill 2026-11-20: 3/250 dates (1%), 30.0s per date, 2h03m left")
    assert (format_progress("attribution", 30, 60, 200.0)
            == "attribution: 30/60 blocks (50%), 6.7s per block, 3m20s left")


def test_format_progress_edges():
    assert format_progress("monte_carlo", 0, 48, 0.0) == "monte_carlo: 0/48 blocks (0%)"
    assert format_progress("x", 48, 48, 4.0) == "x: 48/48 blocks (100%), 12.0 blocks/s"
    assert format_progress("x", 60, 48, 4.0).startswith("x: 48/48 blocks (100%)")
    assert format_progress("x", 5, 0, 1.0, unit="tasks") == "x: 5 tasks"


def test_progress_line_converts_tasks_to_blocks_in_block_stages():
    stage = ["monte_carlo"]
    line = ProgressLine(None, lambda: stage[0], n_blocks=40,  # type: ignore[arg-type]
                        stream=io.StringIO())
    assert line.line(0, 0, 0.0) is None  # no active stage: nothing shown
    assert line.line(0, 8, 10.0) == "monte_carlo: 0/40 blocks (0%)"
    assert line.line(2, 8, 12.0) == "monte_carlo: 10/40 blocks (25%), 5.0 blocks/s, 6s left"
    stage[0] = "publish"  # not a block stage: tasks, and its rate starts afresh
    assert line.line(1, 4, 13.0) == "publish: 1/4 tasks (25%)"


def test_no_progress_on_a_stream_that_is_not_a_terminal():
    out = io.StringIO()
    with run_progress(None, lambda: "monte_carlo", n_blocks=4,  # type: ignore[arg-type]
                      stream=out):
        pass
    assert out.getvalue() == ""


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_json_log_lines_carry_run_and_stage(restore_logging):
    out = io.StringIO()
    configure_logging(logging.INFO, "json", out)
    log = logging.getLogger("risk_engine.test")
    log.info("outside a run")
    tokens = RUN_ID.set("2026-11-20-x"), STAGE.set("monte_carlo")
    try:
        log.warning("tails: %d passes", 2)
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            log.exception("failed")
    finally:
        STAGE.reset(tokens[1])
        RUN_ID.reset(tokens[0])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    objs = [json.loads(line) for line in lines]
    for obj in objs:
        assert {"time", "level", "logger", "run_id", "stage", "message"} <= set(obj)
        assert obj["time"].endswith("Z") and obj["time"][10] == "T"
    assert objs[0]["run_id"] is None and objs[0]["stage"] is None
    assert objs[1] == {**objs[1], "level": "WARNING", "logger": "risk_engine.test",
                       "run_id": "2026-11-20-x", "stage": "monte_carlo",
                       "message": "tails: 2 passes"}
    assert "ValueError: boom" in objs[2]["exc_info"]


def test_configure_logging_twice_does_not_duplicate_lines(restore_logging):
    out = io.StringIO()
    configure_logging(logging.INFO, "text", out)
    configure_logging(logging.INFO, "text", out)
    logging.getLogger("risk_engine.test").info("once")
    assert out.getvalue().count("once") == 1
    assert " INFO risk_engine.test: once" in out.getvalue()


def test_log_format_option_environment_and_errors(monkeypatch):
    monkeypatch.delenv("RISK_ENGINE_LOG_FORMAT", raising=False)
    assert resolve_format(None) == "text"
    monkeypatch.setenv("RISK_ENGINE_LOG_FORMAT", "JSON")
    assert resolve_format(None) == "json"
    assert resolve_format("text") == "text"  # the option wins
    monkeypatch.setenv("RISK_ENGINE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="RISK_ENGINE_LOG_FORMAT"):
        resolve_format(None)


def test_log_format_before_or_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["--log-format", "json", "run", "--config", "c"]).log_format == "json"
    assert parser.parse_args(["run", "--config", "c", "--log-format", "json"]).log_format == "json"
    assert parser.parse_args(["run", "--config", "c"]).log_format is None
    args = parser.parse_args(["show", "--as-of", "2026-11-20", "--table", "alerts"])
    assert (args.as_of, args.table, args.output_root, args.config) == (
        "2026-11-20", "alerts", None, [])


def test_a_log_line_clears_the_progress_line_first(restore_logging):
    out = io.StringIO()
    configure_logging(logging.INFO, "text", out)
    line = ProgressLine(None, lambda: "monte_carlo", n_blocks=4,  # type: ignore[arg-type]
                        stream=out)
    with clear_before_logs(line):
        line._write("monte_carlo: 1/4 blocks (25%)")
        logging.getLogger("risk_engine.test").warning("hello")
    logging.getLogger("risk_engine.test").warning("after")
    text = out.getvalue()
    shown = "\rmonte_carlo: 1/4 blocks (25%)"
    blank = "\r" + " " * (len(shown) - 1) + "\r"
    assert text.startswith(shown + blank)
    assert text[len(shown + blank):].split("\n")[0].endswith("WARNING risk_engine.test: hello")
    assert text.count("\r") == 3  # nothing cleared once the progress is over
