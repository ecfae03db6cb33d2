"""The nightly job in Spark local mode: end to end, partition invariance, reruns, schemas."""

from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from risk_engine import schemas
from risk_engine.config import config_from_dict
from risk_engine.errors import SchemaError
from risk_engine.measures import var_es
from risk_engine.pipeline import run_in_process
from risk_engine.spark.job import main, read_inputs
from risk_engine.spark.stages import (
    collect_pnl,
    default_slices,
    settle_worker,
    simulate_blocks,
    tail_summary,
)
from risk_engine.tails import (
    block_histograms,
    block_losses,
    first_specs,
    merge_histograms,
    summarize_matrix,
    unpack_histogram,
)
from tests.helpers import D1, D2


def _cfg(root, out, day=D2, **mc):
    return config_from_dict({
        "as_of_date": day.isoformat(),
        "input": {"root": str(root)},
        "output": {"root": str(out), "write_scenario_pnl": True},
        "monte_carlo": {"n_scenarios": 12_000, "block_size": 1_500, "horizon_days": 10, **mc},
        "scenario_model": {"history_window_days": 250},
        "worst_case": {"confidence_levels": [0.99], "optimize": False},
        "hedging": {"enabled": True},
    })


def _read(out, table, day):
    frame = pq.read_table(out / table / f"as_of_date={day}").to_pandas()
    return frame


@pytest.fixture(scope="module")
def run(spark, snapshot_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    cfg = _cfg(snapshot_root, out)
    summary = main(spark, cfg)
    return cfg, out, summary


def _canonical(frame, columns):
    """``frame``'s ``columns`` in a row order that does not depend on how it was built."""
    frame = frame[columns].reset_index(drop=True)
    if frame.empty:
        return frame
    keys = [c for c in columns if not isinstance(frame[c].iloc[0] if len(frame) else 0,
                                                  np.ndarray | list)]
    order = frame[keys].astype(str).apply(tuple, axis=1).sort_values().index
    return frame.loc[order].reset_index(drop=True)


def test_every_output_table_matches_the_in_process_run_bit_for_bit(spark, run):
    cfg, out, summary = run
    result, ref_pnl = run_in_process(cfg, read_inputs(spark, cfg))
    assert set(result.tables) == set(summary.tables) | {"scenario_pnl"}
    for name, exp in result.tables.items():
        got = _read(out, name, D2)
        assert set(got["run_id"]) <= {summary.run_id}, name
        columns = [c for c in schemas.OUTPUT_TABLES[name].names
                   if c not in ("run_id", "as_of_date")]
        got, exp = _canonical(got, columns), _canonical(exp, columns)
        assert len(got) == len(exp), name
        for c in columns:
            if name == "scenario_pnl" and c == "pnl":
                for g, e in zip(got[c], exp[c], strict=True):
                    np.testing.assert_array_equal(np.asarray(g), e)
                continue
            g = got[c].to_numpy()
            e = exp[c].to_numpy()
            if got[c].dtype.kind in "fiu":
                np.testing.assert_array_equal(g.astype(float), e.astype(float),
                                              err_msg=f"{name}.{c}")
            else:
                assert [None if pd.isna(v) else str(v) for v in g] == \
                    [None if pd.isna(v) else str(v) for v in e], f"{name}.{c}"
    assert ref_pnl.shape == (cfg.monte_carlo.n_scenarios, len(result.prepared.book.desks))
    assert len(result.tables["rejected_rows"]) == 0  # the snapshot is clean


def test_outputs_agree_with_an_independent_recomputation_from_the_audit_table(run):
    cfg, out, _ = run
    audit = _read(out, "scenario_pnl", D2)
    desks = sorted(audit["desk"].unique())
    pnl = np.zeros((cfg.monte_carlo.n_scenarios, len(desks)))
    for row in audit.itertuples():
        pnl[row.first_scenario:row.first_scenario + len(row.pnl), desks.index(row.desk)] = row.pnl
    rm = _read(out, "risk_measures", D2)
    for alpha in cfg.risk.confidence_levels:
        n = pnl.shape[0]
        k = int(np.ceil(round(alpha * n, 6)))
        for scope, loss in [("firm", -pnl.sum(axis=1))] + [
            (d, -pnl[:, j]) for j, d in enumerate(desks)
        ]:
            srt = np.sort(loss)
            var = srt[k - 1]
            es = (srt[k:].sum() + (k - alpha * n) * var) / (n * (1 - alpha))
            sel = rm[(rm["confidence_level"] == alpha)
                     & ((rm["scope"] == "firm") if scope == "firm" else (rm["desk"] == scope))]
            got = sel.set_index("measure")["value"]
            assert got["VaR"] == pytest.approx(var, rel=1e-12)
            assert got["ES"] == pytest.approx(es, rel=1e-12)


def test_firm_es_at_most_sum_of_desk_es_and_contributions_add_up(run):
    _, out, _ = run
    rm = _read(out, "risk_measures", D2)
    contrib = _read(out, "contributions", D2)
    contrib = contrib[contrib["position_id"].isna()]  # desk-to-firm rows
    for _, grp in rm[rm["measure"] == "ES"].groupby("confidence_level"):
        firm = grp.loc[grp["scope"] == "firm", "value"].iloc[0]
        assert firm <= grp.loc[grp["scope"] == "desk", "value"].sum()
    for (measure, alpha), grp in contrib.groupby(["measure", "confidence_level"]):
        firm = rm[(rm["scope"] == "firm") & (rm["measure"] == measure)
                  & (rm["confidence_level"] == alpha)]["value"].iloc[0]
        assert grp["contribution"].sum() == pytest.approx(firm, rel=1e-9)
        assert grp["share"].sum() == pytest.approx(1.0, rel=1e-9)


def test_greeks_and_manifest_written(run):
    cfg, out, summary = run
    greeks = _read(out, "greeks", D2)
    assert {"delta", "gamma", "vega", "theta", "rho", "market_value"} <= set(greeks.columns)
    assert greeks["n_positions"].sum() == 400
    manifest = _read(out, "run_manifest", D2)
    row = manifest.iloc[0]
    assert row["status"] in ("completed", "completed_with_warnings")
    assert row["seed"] == cfg.monte_carlo.seed and row["n_scenarios"] == 12_000
    assert row["config_hash"] == cfg.hash() and row["positions_in"] == 400
    assert "monte_carlo" in row["stage_timings"]
    import json

    sm = json.loads(row["scenario_model"])
    assert sm["source"] == "history" and sm["vol_tenors_days"] == [] and not sm["rate_factor"]


def test_read_inputs_reads_the_factor_histories_only_when_factors_are_on(spark, run):
    cfg, _, _ = run
    from risk_engine.config import config_from_dict
    from risk_engine.pipeline import prepare

    assert read_inputs(spark, cfg).vol_history is None
    on = config_from_dict({**cfg.to_dict(), "scenario_model": {
        "history_window_days": 250, "vol_factors": {"enabled": True, "tenors_days": [21, 252]},
        "rate_factor": {"enabled": True}}})
    inputs = read_inputs(spark, on)
    assert inputs.vol_history is not None and inputs.rate_history is not None
    assert inputs.factor_vols is None
    prepared = prepare(on, inputs)
    lay = prepared.spec.source.layout
    assert lay.n_vol_buckets == 2 and lay.rate_factor
    assert lay.width == 3 * len(prepared.book.underlyings) + 1
    assert prepared.spec.source.block(0).shape == (1_500, lay.width)
    # the backtest's risk-theoretical P&L needs the factor moves of its whole window
    import datetime as dt

    from risk_engine.backtest.series import previous_business_day, window_dates

    bt = config_from_dict({**on.to_dict(), "backtest": {"enabled": True, "window": 100},
                           "scenario_model": {**on.to_dict()["scenario_model"],
                                              "history_window_days": 20,
                                              "min_history_days": 2}})
    start = previous_business_day(window_dates(bt.as_of_date, 100)[0])
    got = read_inputs(spark, bt)
    for frame in (got.vol_history, got.rate_history):
        first = pd.to_datetime(frame["date"]).min().date()
        assert start <= first <= start + dt.timedelta(days=3)


def test_results_identical_for_1_3_and_8_partitions(spark, run):
    cfg, _, _ = run
    from risk_engine.pipeline import prepare

    prepared = prepare(cfg, read_inputs(spark, cfg))
    n, n_desks = cfg.monte_carlo.n_scenarios, len(prepared.book.desks)
    levels = cfg.risk.confidence_levels
    # Rows without (1 partition) and with (3, 8) the first histogram binned in the task.
    frames = [simulate_blocks(spark, prepared.spec, cfg.n_blocks, p, levels=lv)
              for p, lv in ((1, ()), (3, levels), (8, levels))]
    results = [collect_pnl(f) for f in frames]
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    # The histograms binned in the tasks equal the blocks' own, merged on the driver.
    size = cfg.monte_carlo.block_size
    specs = first_specs(n_desks + 1, levels)
    expected = merge_histograms(
        block_histograms(block_losses(results[0][f:f + size], f), specs)
        for f in range(0, n, size))
    assert frames[0].frame.where("hist IS NOT NULL").count() == 0
    for f, parts in ((frames[1], 3), (frames[2], 8)):
        packed = f.frame.where("hist IS NOT NULL").select("hist").toPandas()["hist"]
        assert len(packed) == parts
        got_hist = merge_histograms(unpack_histogram(h) for h in packed)
        pd.testing.assert_frame_equal(got_hist, expected)
    # The tail passes on executors equal the in-process reference on the gathered matrix.
    ref = summarize_matrix(results[0], size, levels)
    for f in frames:
        got = tail_summary(f, levels)
        for a, b in zip(got.tails, ref.tails, strict=True):
            assert a.estimate == b.estimate and a.var_scenario == b.var_scenario
        np.testing.assert_array_equal(got.firm(0).desk_es, ref.firm(0).desk_es)
        # Local mode: every pass ran where the block files are.
        assert f.recomputed.value == 0
        f.unpersist()


def test_blocks_missing_on_the_reader_are_regenerated_and_files_are_cleaned_up(spark, run):
    """A pass that does not find a block's file (another executor, a lost one) regenerates
    the block from its seed: same P&L, same tails, and the reads are counted."""
    import os

    cfg, _, _ = run
    from risk_engine.pipeline import prepare

    prepared = prepare(cfg, read_inputs(spark, cfg))
    levels = cfg.risk.confidence_levels
    blocks = simulate_blocks(spark, prepared.spec, cfg.n_blocks, 3, levels=levels)
    ref_pnl, ref = collect_pnl(blocks), tail_summary(blocks, levels)
    paths = list(blocks.frame.select("path").toPandas()["path"])
    assert len(paths) == cfg.n_blocks and all(os.path.getsize(p) > 0 for p in paths)
    assert blocks.recomputed.value == 0
    for p in paths[::2]:  # as if those blocks' executor had been lost
        os.remove(p)
    with open(paths[1], "r+b") as f:  # and a truncated file is not trusted either
        f.truncate(8)
    np.testing.assert_array_equal(collect_pnl(blocks), ref_pnl)
    regenerated = len(paths[::2]) + 1
    assert blocks.recomputed.value == regenerated
    got = tail_summary(blocks, levels)
    for a, b in zip(got.tails, ref.tails, strict=True):
        assert a.estimate == b.estimate and a.var_scenario == b.var_scenario
    assert blocks.recomputed.value > regenerated  # the band passes read them again
    blocks.unpersist()
    assert not any(os.path.exists(p) for p in paths)
    assert not os.path.exists(os.path.dirname(paths[0]))


def test_rerun_replaces_that_date_only(spark, snapshot_root, tmp_path):
    out = tmp_path / "out"
    s1 = main(spark, _cfg(snapshot_root, out, D1, n_scenarios=3000))
    s2 = main(spark, _cfg(snapshot_root, out, D2, n_scenarios=3000))
    s3 = main(spark, _cfg(snapshot_root, out, D1, n_scenarios=3000, seed=99))
    d1 = _read(out, "risk_measures", D1)
    d2 = _read(out, "risk_measures", D2)
    assert set(d1["run_id"]) == {s3.run_id}
    assert set(d2["run_id"]) == {s2.run_id}
    assert s1.run_id != s3.run_id
    all_rows = pd.read_parquet(out / "risk_measures")
    assert len(all_rows) == len(d1) + len(d2)


def test_missing_column_fails_before_computation_naming_table_and_column(spark, snapshot_root,
                                                                          tmp_path):
    import shutil

    root = tmp_path / "in"
    shutil.copytree(snapshot_root, root)
    path = root / "market" / f"as_of_date={D2}" / "part-00000.parquet"
    table = pq.read_table(path).drop_columns(["volatility"])
    pq.write_table(table, path)
    for other in (root / "market").iterdir():
        if other.name != f"as_of_date={D2}":
            shutil.rmtree(other)
    with pytest.raises(SchemaError, match="table market: missing column\\(s\\): volatility"):
        main(spark, _cfg(root, tmp_path / "out"))


def test_var_es_helpers_on_spark_output_are_consistent(run):
    """Firm VaR from the job equals var_es on the firm P&L rebuilt from the audit table."""
    cfg, out, _ = run
    audit = _read(out, "scenario_pnl", D2)
    firm = np.zeros(cfg.monte_carlo.n_scenarios)
    for row in audit.itertuples():
        firm[row.first_scenario:row.first_scenario + len(row.pnl)] += row.pnl
    est = var_es(-firm, [0.99])[0]
    rm = _read(out, "risk_measures", D2)
    got = rm[(rm["scope"] == "firm") & (rm["confidence_level"] == 0.99)
             & (rm["measure"] == "VaR")]["value"].iloc[0]
    assert got == pytest.approx(est.var, rel=1e-12)


def test_position_attribution_via_spark_equals_in_process_and_adds_up(spark, run):
    from risk_engine.attribution import attribute_in_process, attribution_requests
    from risk_engine.pipeline import prepare
    from risk_engine.spark.stages import attribution
    from risk_engine.tails import summarize_matrix

    cfg, out, _ = run
    prepared = prepare(cfg, read_inputs(spark, cfg))
    audit = _read(out, "scenario_pnl", D2)
    desks = list(prepared.book.desks)
    pnl = np.zeros((cfg.monte_carlo.n_scenarios, len(desks)))
    for row in audit.itertuples():
        pnl[row.first_scenario:row.first_scenario + len(row.pnl), desks.index(row.desk)] = row.pnl
    levels = cfg.risk.confidence_levels
    requests = attribution_requests(summarize_matrix(pnl, cfg.monte_carlo.block_size, levels))
    blocks = simulate_blocks(spark, prepared.spec, cfg.n_blocks, 3)
    got, got_sample = attribution(spark, blocks, prepared.book, requests, levels)
    ref, ref_sample = attribute_in_process(prepared.book, prepared.spec.source, requests,
                                           levels, pnl)
    np.testing.assert_array_equal(got, ref)
    # Summation groups of 3 blocks straddle the 3 partitions' boundaries (8 blocks: 0-1,
    # 2-4, 5-7): the executors' group sums still equal the reference's bit for bit.
    got3, _ = attribution(spark, blocks, prepared.book, requests, levels, group=3)
    blocks.unpersist()
    ref3, _ = attribute_in_process(prepared.book, prepared.spec.source, requests, levels,
                                   pnl, group=3)
    np.testing.assert_array_equal(got3, ref3)
    np.testing.assert_allclose(got3, ref, rtol=1e-12, atol=1e-9 * np.abs(ref).max())
    pd.testing.assert_frame_equal(got_sample.reset_index(drop=True),
                                  ref_sample.reset_index(drop=True), check_dtype=False)
    contrib = _read(out, "contributions", D2)
    rm = _read(out, "risk_measures", D2)
    pos = contrib[contrib["position_id"].notna()]
    for (desk, measure, alpha), grp in pos.groupby(["desk", "measure", "confidence_level"]):
        total = rm[(rm["desk"] == desk) & (rm["measure"] == measure)
                   & (rm["confidence_level"] == alpha)]["value"].iloc[0]
        assert grp["contribution"].sum() == pytest.approx(total, rel=1e-9)
    risk = _read(out, "position_risk", D2)
    assert len(risk) == 400 * len(cfg.risk.confidence_levels)


def test_governance_tables_written(run):
    _, out, _ = run
    for table in ("limit_checks", "alerts", "min_variance", "frontier", "risk_parity",
                  "performance"):
        frame = _read(out, table, D2)
        assert len(frame) > 0, table
    checks = _read(out, "limit_checks", D2)
    assert {"position_concentration", "sector_concentration", "leverage"} <= set(checks["check"])
    perf = _read(out, "performance", D2)
    assert set(perf["source"]) == {"hypothetical"}
    assert (perf["n_days"] > 100).all()


def test_breached_limits_raise_critical_alerts_and_notify_a_file(spark, snapshot_root, tmp_path):
    import json

    note = tmp_path / "alerts.jsonl"
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(), "input": {"root": str(snapshot_root)},
        "output": {"root": str(tmp_path / "out")},
        "monte_carlo": {"n_scenarios": 2000, "block_size": 1000},
        "worst_case": {"enabled": False},
        "governance": {
            "attribution": False,
            "limits": {"default": {"var_limits": {0.99: 1.0}, "max_leverage": 1000.0},
                       "desks": {"delta_one": {"var_limits": {0.99: 1.0e12}}}},
            "alerts": {"notification": {"kind": "file", "path": str(note)}},
        },
    })
    main(spark, cfg)
    alerts = _read(tmp_path / "out", "alerts", D2)
    var_alerts = alerts[alerts["check"] == "var_0.99"]
    assert set(var_alerts["severity"]) == {"critical"}
    assert "delta_one" not in set(var_alerts["desk"])
    assert len(var_alerts) == 5
    lines = [json.loads(x) for x in note.read_text().splitlines()]
    assert len(lines) == len(alerts)
    assert not (tmp_path / "out" / "position_risk").exists()


def test_worst_case_at_least_monte_carlo_var_on_every_desk(run):
    _, out, _ = run
    wc = _read(out, "worst_case_var", D2)
    cur = wc[(wc["portfolio"] == "current") & (wc["status"] == "optimal")]
    assert set(cur["desk"]) == set(_read(out, "risk_measures", D2)["desk"].dropna())
    for model in ("WCVaR", "WCQVaR"):
        rows = cur[cur["model"] == model]
        assert len(rows) == 6
        assert (rows["value"] >= rows["mc_var"]).all(), rows[["desk", "value", "mc_var"]]
    na = wc[wc["status"] == "not_applicable"]
    assert na["message"].str.len().gt(0).all()


def test_local_sessions_get_the_local_mode_options(spark):
    # build_session's local-mode defaults (risk_engine/spark/session.py) reach the JVM.
    bean = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    args = list(bean.getInputArguments())
    for flag in ("-XX:TieredStopAtLevel=1", "-XX:-G1UseAdaptiveIHOP",
                 "-XX:InitiatingHeapOccupancyPercent=80"):
        assert flag in args
    assert spark.conf.get("spark.python.unix.domain.socket.enabled") == "true"


def test_python_workers_exempt_their_start_up_objects_from_the_gc(spark, run):
    """PySpark's daemon runs a full ``gc.collect()`` after every task of a reused worker: the
    engine's UDFs freeze what a worker holds at its first task, so that walk stays short."""
    import gc
    import os

    cfg, _, _ = run
    from risk_engine.pipeline import prepare

    blocks = simulate_blocks(spark, prepare(cfg, read_inputs(spark, cfg)).spec, cfg.n_blocks,
                             spark.sparkContext.defaultParallelism)
    collect_pnl(blocks)  # the fan-out, then a pass over the blocks

    def probe(batches):
        import sys

        for _ in batches:
            pass
        # A module the engine's UDFs loaded at the worker's first task: its namespace was
        # frozen then, so the collector no longer lists (and walks) it.
        namespace = sys.modules["risk_engine.simulation"].__dict__
        listed = any(o is namespace for o in gc.get_objects())
        yield pd.DataFrame({"pid": [os.getpid()], "frozen": [gc.get_freeze_count() > 0],
                            "listed": [listed]})

    workers = spark.range(0, 2, 1, 2).mapInPandas(
        probe, "pid long, frozen boolean, listed boolean").toPandas()
    blocks.unpersist()
    assert workers["frozen"].all() and not workers["listed"].any(), workers


@pytest.mark.parametrize("cores", [1, 2, 8])
def test_default_slices_bound_each_task_s_work_and_fill_every_core(cores):
    # relative_cost 0.2 (the grid) carries 5 times the blocks of full revaluation.
    for relative_cost, most in ((1.0, 8), (0.2, 40)):
        for n_blocks in (1, 3, 10, 16, 17, 100, 1000, 10_007):
            slices = default_slices(n_blocks, cores, relative_cost)
            assert 1 <= slices <= n_blocks
            assert -(-n_blocks // slices) <= most  # spark.range splits evenly, +-1 block
            if n_blocks >= cores:
                assert slices % cores == 0
            if slices > cores:  # no more slices than the bound needs
                assert -(-n_blocks // (slices - cores)) > most


def _tracked_outside_the_frozen_set(obj):
    # gc.get_objects() lists the three generations, not the permanent (frozen) one.
    return any(o is obj for o in gc.get_objects())


def test_worker_heap_is_frozen_once_only():
    # Later tasks' objects stay collectable: a second call must not freeze them. (Counting
    # frozen objects is unsound: the count falls whenever a frozen object is freed.)
    assert gc.get_freeze_count() == 0  # the test process itself never freezes
    early = [[]]
    try:
        settle_worker()
        assert gc.get_freeze_count() > 0
        assert not _tracked_outside_the_frozen_set(early)
        later = [[i] for i in range(1000)]
        settle_worker()
        assert _tracked_outside_the_frozen_set(later) and gc.is_tracked(later[0])
    finally:
        gc.unfreeze()
