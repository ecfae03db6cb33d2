"""The attribution stage on Spark: the contributions' bits, with or without the shuffle.

With every block in one summation group the driver adds the blocks' rows itself (no
``groupBy`` shuffle); with more groups the executors add each group. Both give the bits of
:func:`risk_engine.attribution.attribute_in_process`: zeros plus the blocks in order per
group, then the groups in order into zeros.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from risk_engine.attribution import SUM_GROUP, Tiling, attribute_in_process, attribution_requests
from risk_engine.config import config_from_dict
from risk_engine.pipeline import prepare
from risk_engine.simulation import simulate_block, smile_of
from risk_engine.spark import stages
from risk_engine.spark.job import read_inputs
from risk_engine.tails import summarize_matrix
from tests.helpers import D2

NO_SHUFFLE = "one summation group, added on the driver"


@pytest.mark.parametrize(("n_scenarios", "block_size", "group"), [
    (4_000, 1_000, SUM_GROUP),   # 4 blocks, one group: the driver adds them
    (1_700, 100, SUM_GROUP),     # 17 blocks: groups of 16 and 1, added by executors
    (4_000, 1_000, 3),           # groups of 3 and 1
    (3_000, 1_000, 3),           # 3 blocks, exactly one group of 3
])
def test_contributions_equal_the_in_process_bits_with_and_without_the_shuffle(
        spark, snapshot_root, tmp_path, caplog, n_scenarios, block_size, group):
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(), "input": {"root": str(snapshot_root)},
        "output": {"root": str(tmp_path)},
        "monte_carlo": {"n_scenarios": n_scenarios, "block_size": block_size,
                        "horizon_days": 10, "chunk_size": 64},
        "scenario_model": {"history_window_days": 250},
    })
    prepared = prepare(cfg, read_inputs(spark, cfg))
    spec, book = prepared.spec, prepared.book
    n_blocks = spec.source.n_blocks
    pnl = np.concatenate([simulate_block(spec, b) for b in range(n_blocks)])
    levels = cfg.risk.confidence_levels
    requests = attribution_requests(summarize_matrix(pnl, block_size, levels))
    tiling, smile = Tiling(positions=32, scenarios=64), smile_of(spec.plan)
    want, _ = attribute_in_process(book, spec.source, requests, levels, pnl, group=group,
                                   tiling=tiling, smile=smile)
    assert np.count_nonzero(want) > 0
    blocks = stages.simulate_blocks(spark, spec, n_blocks, 3)
    try:
        with caplog.at_level(logging.DEBUG, logger="risk_engine.spark.stages"):
            got, _ = stages.attribution(spark, blocks, book, requests, levels, group=group,
                                        tiling=tiling, smile=smile)
    finally:
        blocks.unpersist()
    assert (NO_SHUFFLE in caplog.text) == (n_blocks <= group)
    assert got.tobytes() == want.tobytes()
