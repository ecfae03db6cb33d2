"""A backfill's dates simulate their scenario blocks together, and publish the same bits.

Every table a fanned-out backfill publishes for a date equals, bit for bit, what
single-date runs of the dates (``risk-engine run`` one date after another) publish.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from risk_engine.config import config_from_dict
from risk_engine.spark.backfill import backfill
from risk_engine.spark.job import main
from risk_engine.tools.demo_data import generate_days, write_tables

AS_OF = dt.date(2026, 11, 20)
DAYS = [dt.date(2026, 11, 18), dt.date(2026, 11, 19), AS_OF]
#: Bookkeeping folders, not tables of a date.
NOT_TABLES = {"run_manifest", "report"}


@pytest.fixture(scope="module")
def demo_days(tmp_path_factory):
    """Three daily demo snapshots of a small book on one market path."""
    root = tmp_path_factory.mktemp("demo_days")
    write_tables(generate_days(AS_OF, len(DAYS), n_underlyings=10, n_positions=120,
                               history_days=120, seed=11), root)
    return root


def fan_out_cfg(inp: Path, out: Path, day: dt.date = DAYS[0]):
    """A small run of every stage that reads blocks, the backtest on (1-day horizon)."""
    return config_from_dict(fan_out_settings(inp, out, day))


def fan_out_settings(inp: Path, out: Path, day: dt.date = DAYS[0]) -> dict:
    """The settings of :func:`fan_out_cfg`, as a config file holds them."""
    return {
        "as_of_date": day.isoformat(),
        "input": {"root": str(inp)},
        "output": {"root": str(out), "write_scenario_pnl": True},
        "monte_carlo": {"n_scenarios": 2_000, "block_size": 1_000, "horizon_days": 1},
        "risk": {"confidence_levels": [0.95, 0.99]},
        "scenario_model": {"history_window_days": 100, "min_history_days": 60},
        "worst_case": {"enabled": True, "confidence_levels": [0.99], "optimize": False,
                       "moments": "sample", "models": ["WCVaR"]},
        "report": {"enabled": False},
        "backtest": {"enabled": True, "window": 5},
    }


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted on their scalar columns; array cells as bytes (comparable exactly)."""
    frame = frame.drop(columns=["run_id"])
    for c in frame.columns:
        if frame[c].map(lambda v: isinstance(v, (list, np.ndarray))).any():
            frame[c] = frame[c].map(lambda v: np.asarray(v, dtype=np.float64).tobytes())
    cols = sorted(frame.columns)
    return frame[cols].sort_values(cols).reset_index(drop=True)


def published(out: Path, day: dt.date) -> dict[str, pd.DataFrame]:
    """Every table published for ``day`` under ``out`` (but the manifest), canonical."""
    got = {}
    for folder in sorted(out.iterdir()):
        part = folder / f"as_of_date={day.isoformat()}"
        if folder.name.startswith("_") or folder.name in NOT_TABLES or not part.is_dir():
            continue
        got[folder.name] = _canonical(pq.read_table(part).to_pandas())
    return got


def assert_same_tables(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    """The same tables with the same bits."""
    assert sorted(got) == sorted(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


def test_fanned_out_backfill_publishes_what_single_date_runs_publish(
        spark, demo_days, tmp_path, caplog):
    single, fanned = tmp_path / "single", tmp_path / "fanned"
    for day in DAYS:  # risk-engine run, date by date
        summary = main(spark, fan_out_cfg(demo_days, single, day))
        assert summary.status in ("completed", "completed_with_warnings"), summary.message
    with caplog.at_level(logging.INFO, logger="risk_engine.spark"):
        summaries = backfill(spark, fan_out_cfg(demo_days, fanned), DAYS[0], DAYS[-1],
                             fan_out=3)
    assert "together failed" not in caplog.text  # the blocks did fan out together
    assert caplog.text.count("simulated ahead with other dates") == len(DAYS)  # and were used
    # each date's attribution took the block-0 statistics its fan-out computed
    assert caplog.text.count("sample statistics computed in the fan-out") == len(DAYS)
    assert [s.as_of_date for s in summaries] == DAYS
    assert all(s.status in ("completed", "completed_with_warnings") for s in summaries)
    for day in DAYS:
        want = published(single, day)
        assert {"risk_measures", "scenario_pnl", "backtest", "backtest_series",
                "worst_case_var", "position_risk"} <= set(want)
        got = published(fanned, day)
        assert_same_tables(got, want)
        # in particular the block-0 statistics, computed in the fan-out's block-0 task
        # (bits compared as bytes: NaN equals NaN only so)
        for column in ("incremental_var", "correlation"):
            assert (got["position_risk"][column].to_numpy(np.float64).tobytes()
                    == want["position_risk"][column].to_numpy(np.float64).tobytes())
    # the last date's backtest saw the two dates before it published by this backfill
    bt = published(fanned, DAYS[-1])["backtest"]
    firm = bt[bt["scope"] == "firm"]
    assert (firm["observations"] + firm["missing"] == 5).all()
    assert (firm.loc[firm["series"] == "hypothetical", "observations"] == 2).all()


def test_blocks_simulated_together_are_materialized_by_one_job_and_taken_once(spark,
                                                                              demo_days):
    from risk_engine.pipeline import prepare
    from risk_engine.spark.engine import simulate_together
    from risk_engine.spark.snapshot import read_snapshot

    levels = (0.99,)
    specs = []
    for day in DAYS[:2]:
        cfg = fan_out_cfg(demo_days, Path("unused"), day)
        specs.append(prepare(cfg, read_snapshot(spark, cfg)).spec)
    tracker = spark.sparkContext.statusTracker()
    jsc = spark.sparkContext._jsc.sc()  # noqa: SLF001 - the cached RDDs, to count them

    def cached() -> int:
        return sum(1 for info in jsc.getRDDStorageInfo()
                   if 0 < info.numCachedPartitions() == info.numPartitions())

    before = cached()
    spark.sparkContext.setJobGroup("fan-out-test", "simulate_together")
    try:
        ready = simulate_together(spark, specs, partitions=None, faults=fan_out_cfg(
            demo_days, Path("unused")).testing, levels=levels)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    assert len(tracker.getJobIdsForGroup("fan-out-test")) == 1
    assert cached() == before + 2  # both dates' block rows, kept for their later passes
    first, second = ready
    assert first is not None and second is not None
    assert first.take(specs[1], levels) is None  # not its spec
    assert first.take(specs[0], (0.95,)) is None  # other levels: another first pass
    blocks = first.take(specs[0], levels)
    assert blocks is not None and blocks.spec is specs[0]
    assert first.take(specs[0], levels) is None  # taken once
    first.release()  # a no-op once taken
    blocks.unpersist()
    second.release()
    assert second.take(specs[1], levels) is None


def _manifests(out: Path, day: dt.date) -> pd.DataFrame:
    folder = out / "run_manifest" / f"as_of_date={day.isoformat()}"
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True) \
        if files else pd.DataFrame(columns=["run_id", "status"])


@pytest.mark.heavy
def test_killed_backfill_keeps_published_dates_and_a_rerun_completes_it_bit_for_bit(
        spark, demo_days, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    ref, out = tmp_path / "ref", tmp_path / "out"
    backfill(spark, fan_out_cfg(demo_days, ref), DAYS[0], DAYS[-1], fan_out=2)
    want = {day: published(ref, day) for day in DAYS}

    settings = fan_out_settings(demo_days, out)
    settings["as_of_date"] = DAYS[0].isoformat()
    settings["spark"] = {"master": "local[1]", "conf": {"spark.ui.enabled": "false"}}
    config = tmp_path / "backfill.yaml"
    config.write_text(yaml.safe_dump(settings))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "risk_engine.cli", "backfill", "--config", str(config),
           "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), "--fan-out", "2"]
    first, second = (out / "risk_measures" / f"as_of_date={DAYS[0]}",
                     out / "run_manifest" / f"as_of_date={DAYS[1]}")
    log = (tmp_path / "backfill.log").open("w")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own group: the JVM dies with it
    try:
        # Killed once the first date is published and the second date's run has begun.
        deadline = time.monotonic() + 900
        while not (first.is_dir() and second.is_dir()):
            assert proc.poll() is None, (tmp_path / "backfill.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the backfill did not publish its first date"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    killed = {day: _manifests(out, day) for day in DAYS}

    # The date published before the kill is intact; a later date is absent or whole.
    assert_same_tables(published(out, DAYS[0]), want[DAYS[0]])
    assert (killed[DAYS[0]]["status"].str.startswith("completed")).all()
    mid_commit = {day for day in DAYS if (out / "_journal" / f"as_of_date={day}.json").exists()}
    for day in DAYS[1:]:
        if day not in mid_commit and (out / "risk_measures" / f"as_of_date={day}").is_dir():
            assert_same_tables(published(out, day), want[day])
        elif day not in mid_commit:
            assert published(out, day) == {}
    running = killed[DAYS[1]]
    assert len(running) == 1
    was_published = running["status"].iloc[0] != "running"

    # The rerun: every date the bits of the uninterrupted backfill, nothing left over.
    summaries = backfill(spark, fan_out_cfg(demo_days, out), DAYS[0], DAYS[-1], fan_out=2)
    assert all(s.status in ("completed", "completed_with_warnings") for s in summaries)
    for day in DAYS:
        assert_same_tables(published(out, day), want[day])
    assert not any((out / "_journal").glob("*.json"))
    assert not any(p for p in (out / "_staging").rglob("*") if p.is_file())
    after = _manifests(out, DAYS[1]).set_index("run_id")["status"]
    killed_run = running["run_id"].iloc[0]
    if was_published or DAYS[1] in mid_commit:  # the commit point was passed: rolled forward
        assert after[killed_run].startswith("completed")
    else:
        assert after[killed_run] == "interrupted"


def _same_rows(got: pd.DataFrame | None, want: pd.DataFrame | None, keys: list[str]) -> None:
    """The same rows, values, dtypes and bits (in key order: a Spark read has no order)."""
    assert (got is None) == (want is None)
    if got is None or want is None:
        return
    got = got.sort_values(keys, kind="stable").reset_index(drop=True)
    want = want.sort_values(keys, kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_published_results_kept_in_memory_equal_the_reads_of_each_date(spark, demo_days,
                                                                       tmp_path):
    """A backfill's in-memory results give each date what its Spark reads give.

    Before anything is published, after each date's run records its own commit, and when
    read back for a range that was published before (old rows a new run replaces).
    """
    from risk_engine.spark.backtest_window import (
        PublishedResults,
        read_published_hypothetical,
        read_published_risk,
    )

    out = tmp_path / "out"
    risk_keys = ["as_of_date", "scope", "desk", "measure", "confidence_level"]
    hyp_keys = ["date", "desk"]
    cfgs = [fan_out_cfg(demo_days, out, day) for day in DAYS]
    kept = PublishedResults.read(spark, cfgs[0], DAYS)  # nothing published yet
    for cfg in cfgs:
        _same_rows(kept.risk(cfg), read_published_risk(spark, cfg), risk_keys)
        _same_rows(kept.hypothetical(cfg), read_published_hypothetical(spark, cfg), hyp_keys)
        summary = main(spark, cfg, published=kept)
        assert summary.status in ("completed", "completed_with_warnings"), summary.message
    last = dataclasses.replace(cfgs[-1], as_of_date=DAYS[-1] + dt.timedelta(days=1))
    seen = kept.risk(last)
    assert seen is not None and set(seen["as_of_date"]) == set(DAYS)
    for cfg in [*cfgs, last]:  # what the runs recorded equals what they published
        _same_rows(kept.risk(cfg), read_published_risk(spark, cfg), risk_keys)
        _same_rows(kept.hypothetical(cfg), read_published_hypothetical(spark, cfg), hyp_keys)
    again = PublishedResults.read(spark, cfgs[0], DAYS)  # a second backfill of the range
    main(spark, cfgs[1], published=again)  # replaces the second date's rows
    for cfg in [*cfgs, last]:
        _same_rows(again.risk(cfg), read_published_risk(spark, cfg), risk_keys)
        _same_rows(again.hypothetical(cfg), read_published_hypothetical(spark, cfg), hyp_keys)
    hyp = again.hypothetical(last)
    assert hyp is not None and len(hyp) and list(hyp.columns) == [
        "date", "desk", "pnl", "rtpl", "rtpl_factors"]


@pytest.mark.parametrize("extra", [
    {},
    {"scenario_model": {"history_window_days": 100, "min_history_days": 60,
                        "vol_factors": {"enabled": True}, "rate_factor": {"enabled": True}},
     "hedging": {"enabled": True}, "stress": {"enabled": True}},
], ids=["defaults", "factors-hedging-stress"])
def test_input_tables_read_once_for_a_group_give_each_date_its_own_reads(spark, demo_days,
                                                                         extra):
    """Every input frame a date's run reads: the same rows, order, dtypes and bits."""
    from risk_engine.pipeline import InputTables
    from risk_engine.spark.snapshot import GroupTables, read_snapshot

    settings = {**fan_out_settings(demo_days, Path("unused")), **extra}
    group = GroupTables(spark, str(demo_days), DAYS)
    checked = 0
    for day in DAYS:
        cfg = config_from_dict({**settings, "as_of_date": day.isoformat()})
        want, got = read_snapshot(spark, cfg), read_snapshot(spark, cfg, group)
        for field in dataclasses.fields(InputTables):
            a, b = getattr(got, field.name), getattr(want, field.name)
            assert (a is None) == (b is None), field.name
            if b is not None:
                pd.testing.assert_frame_equal(a, b, check_exact=True, obj=field.name)
                checked += len(b) > 0
    assert checked >= 4 * len(DAYS)  # positions, market, rates, history at least


def test_window_snapshots_read_once_give_each_date_its_window_read(spark, demo_days):
    from risk_engine.spark.backtest_window import WindowSnapshots, read_window_snapshots

    cfgs = [fan_out_cfg(demo_days, Path("unused"), day) for day in DAYS]
    window = WindowSnapshots.read(spark, cfgs[0], DAYS)
    rows = 0
    for cfg in cfgs:
        want, got = read_window_snapshots(spark, cfg), read_window_snapshots(spark, cfg, window)
        assert sorted(got) == sorted(want) == ["market", "positions", "rates"]
        for name in ("positions", "market", "rates"):
            pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)
            rows += len(want[name])
    assert rows > 0


def test_block_0_statistics_computed_in_the_fan_out_are_those_of_the_stage_s_own_job(
        spark, demo_days, caplog):
    from risk_engine.attribution import Tiling, attribution_requests, sample_statistics
    from risk_engine.pipeline import prepare
    from risk_engine.spark import stages
    from risk_engine.spark.backfill import attribution_sample
    from risk_engine.spark.engine import simulate_together
    from risk_engine.spark.snapshot import read_snapshot

    cfgs = [fan_out_cfg(demo_days, Path("unused"), day) for day in DAYS[:2]]
    runs = [prepare(cfg, read_snapshot(spark, cfg)) for cfg in cfgs]
    levels = cfgs[0].risk.confidence_levels
    asked = attribution_sample(cfgs[0], runs[0])
    assert asked is not None and asked.book is runs[0].book
    assert asked.tiling == Tiling(cfgs[0].governance.attribution_chunk,
                                  cfgs[0].monte_carlo.chunk_size)
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("fan-out-stats", "simulate_together")
    try:  # each date's blocks in one slice: a task each, side by side
        ready = simulate_together(spark, [r.spec for r in runs], partitions=1,
                                  faults=cfgs[0].testing, levels=levels,
                                  samples=[asked, None])
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    (job,) = tracker.getJobIdsForGroup("fan-out-stats")
    info = tracker.getJobInfo(job)
    assert info is not None
    assert [tracker.getStageInfo(s).numTasks for s in info.stageIds] == [2]  # one per date
    first, second = (r.take(run.spec, levels) for r, run in zip(ready, runs, strict=True)
                     if r is not None)
    try:
        assert first.spec.source.n_blocks == 2
        assert second.sample is None and second.statistics is None  # not asked: not computed
        assert first.statistics is not None
        want = sample_statistics(asked.book, first.spec.source, asked.levels, asked.tiling,
                                 asked.smile)
        pd.testing.assert_frame_equal(first.statistics, want, check_exact=True)

        requests = attribution_requests(stages.tail_summary(first, levels))
        with caplog.at_level(logging.INFO, logger="risk_engine.spark.stages"):
            _, embedded = stages.attribution(spark, first, runs[0].book, requests, levels,
                                             tiling=asked.tiling, smile=asked.smile)
        assert "sample statistics computed in the fan-out" in caplog.text
        pd.testing.assert_frame_equal(embedded, want, check_exact=True)
        caplog.clear()
        # Other arguments (another tiling, another book object): the stage's own job, the
        # same bits (the tiling bounds memory only).
        other = Tiling(positions=7, scenarios=300)
        assert not asked.matches(runs[0].book, levels, other, asked.smile)
        assert not asked.matches(runs[1].book, levels, asked.tiling, asked.smile)
        with caplog.at_level(logging.INFO, logger="risk_engine.spark.stages"):
            _, own = stages.attribution(spark, first, runs[0].book, requests, levels,
                                        tiling=other, smile=asked.smile)
        assert "computed in the fan-out" not in caplog.text
        for column in want.columns:
            np.testing.assert_array_equal(own[column].to_numpy(), want[column].to_numpy())
    finally:
        first.unpersist()
        second.unpersist()
