"""Position attribution against brute force over every scenario."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from risk_engine.attribution import (
    Tiling,
    attribute_in_process,
    attribution_requests,
    position_chunks,
    position_tables,
)
from risk_engine.book import select_positions
from risk_engine.measures import euler_contributions, tail_rank, var_es
from risk_engine.pipeline import InputTables
from risk_engine.tails import summarize_matrix
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import (
    contract_ids,
    position_pnl,
    position_values,
    summed_position_values,
)
from tests import helpers as h

LEVELS = (0.95, 0.99)


@pytest.fixture(scope="module")
def case():
    t = generate(h.AS_OF, n_positions=150, seed=5)
    cfg = h.config(monte_carlo={"n_scenarios": 6000, "block_size": 1000},
                   risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY)
    prep, tables, pnl = h.run(cfg, InputTables(
        t["positions"], t["market"], t["rates"], factor_model=t["factor_model"],
        correlations=t["correlations"]))
    requests = attribution_requests(summarize_matrix(pnl, 1000, LEVELS))
    contrib, sample = attribute_in_process(prep.book, prep.spec.source, requests, LEVELS, pnl)
    # Brute force: every position's loss on every scenario.
    src = prep.spec.source
    x = np.concatenate([src.block(b) for b in range(src.n_blocks)])
    pos_loss = -(position_values(prep.book, x) - prep.book.value)
    return prep, tables, pnl, requests, contrib, sample, pos_loss


def test_contributions_equal_brute_force_euler_and_add_up(case):
    prep, tables, pnl, requests, contrib, _, pos_loss = case
    book = prep.book
    for d, _desk in enumerate(book.desks):
        cols = np.flatnonzero(book.desk_index == d)
        brute = euler_contributions(pos_loss[:, cols], LEVELS)
        for alpha, (var_c, es_c) in zip(LEVELS, brute, strict=False):
            es_req = [i for i, r in enumerate(requests)
                      if r.desk_index == d and r.measure == "ES" and r.confidence_level == alpha]
            var_req = [i for i, r in enumerate(requests)
                       if r.desk_index == d and r.measure == "VaR" and r.confidence_level == alpha]
            got_es = contrib[es_req[0], cols]
            got_var = contrib[var_req[0], cols]
            desk_est = var_es(-pnl[:, d], [alpha])[0]
            assert got_es.sum() == pytest.approx(desk_est.es, rel=1e-9)
            assert got_var.sum() == pytest.approx(desk_est.var, rel=1e-9)
            scale = np.abs(got_es).max()
            np.testing.assert_allclose(got_es, es_c, atol=1e-8 * scale)
            np.testing.assert_allclose(got_var, var_c, atol=1e-6 * scale)
            assert np.all(contrib[es_req[0], np.flatnonzero(book.desk_index != d)] == 0)


def test_incremental_var_and_correlation_on_block_zero(case):
    prep, _, _, _, _, sample, pos_loss = case
    book = prep.book
    n0 = prep.spec.source.block_length(0)
    loss0 = pos_loss[:n0]
    by = sample.set_index(["position_id", "confidence_level"])
    for d in range(len(book.desks)):
        cols = np.flatnonzero(book.desk_index == d)
        desk = loss0[:, cols].sum(axis=1)
        for alpha in LEVELS:
            k = tail_rank(n0, alpha)
            var_desk = np.sort(desk)[k - 1]
            for p in cols[:5]:
                without = np.sort(desk - loss0[:, p])[k - 1]
                got = by.loc[(book.position_id[p], alpha)]
                assert got["incremental_var"] == pytest.approx(var_desk - without, rel=1e-9,
                                                               abs=1e-6)
                expected_corr = np.corrcoef(loss0[:, p], desk)[0, 1]
                assert got["correlation"] == pytest.approx(expected_corr, rel=1e-9)


def test_position_tables(case):
    prep, _, _, requests, contrib, sample, _ = case
    rows, risk = position_tables(prep.book, requests, contrib, sample)
    assert len(rows) == prep.book.n_positions * len(LEVELS) * 2
    for (_desk, _measure, _alpha), grp in rows.groupby(["desk", "measure", "confidence_level"]):
        assert grp["share"].sum() == pytest.approx(1.0, rel=1e-9)
    ok = risk["market_value"] != 0
    np.testing.assert_allclose(risk.loc[ok, "marginal_var"] * risk.loc[ok, "market_value"],
                               risk.loc[ok, "var_contribution"], rtol=1e-12)


def test_tiling_changes_no_bit(case):
    """Attribution tiles of any shape give the bits of the default tiling."""
    prep, _, pnl, requests, contrib, sample, _ = case
    src = prep.spec.source
    for tiling in (Tiling(positions=3, scenarios=7), Tiling(positions=2, scenarios=50),
                   Tiling(positions=1000, scenarios=100_000)):
        got, got_sample = attribute_in_process(prep.book, src, requests, LEVELS, pnl,
                                               tiling=tiling)
        assert np.array_equal(got, contrib), tiling
        pd.testing.assert_frame_equal(got_sample, sample, check_exact=True)


def test_position_chunks_never_leave_one_position_alone():
    for n in range(0, 40):
        for size in (1, 2, 3, 7, 50):
            parts = position_chunks(n, size)
            covered = np.concatenate([np.arange(n)[s] for s in parts]) if parts else []
            assert list(covered) == list(range(n))
            assert all(s.stop - s.start <= max(size, 2) + 1 for s in parts)
            assert n == 1 or all(s.stop - s.start >= 2 for s in parts)


def test_positions_on_one_contract_are_revalued_once_with_the_same_bits(case):
    prep = case[0]
    book = prep.book
    rng = np.random.default_rng(3)
    idx = rng.integers(0, book.n_positions, 400)  # many positions share a contract
    dup = select_positions(book, idx)
    dup = dataclasses.replace(dup, quantity=np.round(rng.normal(0, 30, idx.size)))
    x = prep.spec.source.block(1)[:300]
    expected = position_values(dup, x) - dup.value
    contract = contract_ids(dup)
    assert np.unique(contract).size < idx.size
    for max_values in (1, 1000, 10**9):
        got = position_pnl(dup, x, contract, max_values=max_values)
        assert np.array_equal(got, expected)
        total = summed_position_values(dup, x, contract, max_values=max_values)
        assert np.array_equal(total, position_values(dup, x).sum(axis=1))
