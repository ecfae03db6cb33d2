"""The exact tail aggregation against a full sort of every scenario's loss."""

import math

import numpy as np
import pandas as pd
import pytest

from risk_engine import tails
from risk_engine.measures import euler_contributions, tail_rank, var_es

LEVELS = (0.95, 0.975, 0.99)


def _series(pnl):
    loss = -pnl
    return [loss[:, d] for d in range(pnl.shape[1])] + [loss.sum(axis=1)]


def _check_against_full_sort(pnl, summary, levels):
    n = pnl.shape[0]
    for s, x in enumerate(_series(pnl)):
        order = np.argsort(x, kind="stable")
        for j, ref in enumerate(var_es(x, levels)):
            got = summary.get(s, j)
            assert got.estimate.var == ref.var
            assert got.estimate.var_std_error == ref.var_std_error
            assert got.estimate.es == pytest.approx(ref.es, rel=1e-13, abs=1e-300)
            assert got.estimate.es_std_error == pytest.approx(ref.es_std_error, rel=1e-9,
                                                              abs=1e-12)
            k = tail_rank(n, levels[j])
            assert got.var_scenario == order[k - 1]  # ties broken by scenario index
            mw = math.ceil(0.5 * math.sqrt(n * levels[j] * (1 - levels[j])))
            np.testing.assert_array_equal(got.window, order[max(k - 1 - mw, 0):min(k + mw, n)])


@pytest.fixture(scope="module")
def heavy_tailed():
    rng = np.random.default_rng(1)
    pnl = rng.standard_t(4, size=(60_007, 4)) * np.array([1.0, 250.0, 3e4, 1e-3])
    pnl[:, 0] = np.round(pnl[:, 0], 2)  # many ties
    return pnl


def test_order_keys_sort_like_the_floats():
    x = np.array([-np.inf, -1e300, -2.5, -1e-300, -0.0, 0.0, 5e-324, 1.0, 1.5, 1e300, np.inf])
    keys = tails.order_keys(x)
    assert np.all(np.diff(keys[[0, 1, 2, 3, 5, 6, 7, 8, 9, 10]]) > 0)
    assert keys[4] == keys[5]  # -0.0 and 0.0 are one loss
    for v in (-2.5, 1.5, 1e-300, -1e300):
        assert tails.key_value(int(tails.order_keys(np.array([v]))[0])) == v


def test_var_es_and_ranks_equal_a_full_sort(heavy_tailed):
    summary = tails.summarize_matrix(heavy_tailed, 7_000, LEVELS)
    _check_against_full_sort(heavy_tailed, summary, LEVELS)
    assert summary.histogram_passes == 1
    # Only the bands reach the driver: a small share of the 5 x 60,007 losses.
    assert summary.band_losses < 0.1 * heavy_tailed.size


def test_firm_euler_contributions_equal_the_full_sort_and_add_up(heavy_tailed):
    summary = tails.summarize_matrix(heavy_tailed, 7_000, LEVELS)
    brute = euler_contributions(-heavy_tailed, LEVELS)
    for j, (var_c, es_c) in enumerate(brute):
        firm = summary.firm(j)
        np.testing.assert_allclose(firm.desk_es, es_c, rtol=0, atol=1e-12 * abs(es_c).sum())
        np.testing.assert_allclose(firm.desk_var, var_c, rtol=0, atol=1e-12 * abs(var_c).sum())
        assert firm.desk_es.sum() == pytest.approx(firm.estimate.es, rel=1e-12)
        assert firm.desk_var.sum() == pytest.approx(firm.estimate.var, rel=1e-12)


def test_result_does_not_depend_on_how_blocks_are_grouped_or_ordered(heavy_tailed):
    """The Spark job groups blocks into tasks; histogram counts and fsums make that moot."""
    pnl, size = heavy_tailed, 5_000
    n, n_desks = pnl.shape
    blocks = [(b, b * size, tails.block_losses(pnl[b * size:(b + 1) * size]))
              for b in range(-(-n // size))]
    ref = tails.summarize_matrix(pnl, size, LEVELS)
    rng = np.random.default_rng(3)

    def hist(specs):
        parts = [tails.merge_histograms([tails.block_histograms(x, specs) for _, _, x in grp])
                 for grp in np.array_split(np.array(blocks, dtype=object), 3)]
        return tails.merge_histograms(parts[::-1])

    def partials(bands):
        frames = [tails.block_partials(x, b, f, bands, n_desks) for b, f, x in blocks]
        return pd.concat([frames[i] for i in rng.permutation(len(frames))], ignore_index=True)

    got = tails.summarize(n, n_desks, LEVELS, hist, partials)
    for a, b in zip(got.tails, ref.tails, strict=True):
        assert a.estimate == b.estimate and a.var_scenario == b.var_scenario
        np.testing.assert_array_equal(a.window, b.window)
    np.testing.assert_array_equal(got.firm(0).desk_es, ref.firm(0).desk_es)


def test_ties_and_narrowed_bands_stay_exact(monkeypatch):
    rng = np.random.default_rng(2)
    n = 40_000
    pnl = np.column_stack([
        rng.normal(size=n),
        np.zeros(n),  # a desk with no P&L at all
        np.where(rng.random(n) < 0.5, -5.0, 3.0),  # two values only
    ])
    for cap in (1 << 16, 100, 1):
        monkeypatch.setattr(tails, "BAND_CAP", cap)
        summary = tails.summarize_matrix(pnl, 6_000, (0.975, 0.99))
        _check_against_full_sort(pnl, summary, (0.975, 0.99))
        if cap == 100:  # the normal desk's bands are narrowed by finer histograms
            assert summary.histogram_passes > 1


def test_fewer_scenarios_than_a_block_and_one_scenario():
    pnl = np.array([[1.0, -2.0], [-3.0, 0.5], [0.25, 0.25]])
    _check_against_full_sort(pnl, tails.summarize_matrix(pnl, 10, (0.5, 0.9)), (0.5, 0.9))
    one = tails.summarize_matrix(np.array([[-4.0]]), 10, (0.99,))
    assert one.firm(0).estimate.var == 4.0 and one.firm(0).estimate.es == 4.0


def test_a_missing_block_is_an_error_not_a_wrong_number(heavy_tailed):
    pnl, size = heavy_tailed, 10_000
    n, n_desks = pnl.shape
    blocks = [(b, b * size, tails.block_losses(pnl[b * size:(b + 1) * size]))
              for b in range(-(-n // size))]
    with pytest.raises(RuntimeError, match="missing"):
        tails.summarize(
            n, n_desks, LEVELS,
            lambda specs: tails.merge_histograms(
                tails.block_histograms(x, specs) for _, _, x in blocks),
            lambda bands: pd.concat([tails.block_partials(x, b, f, bands, n_desks)
                                     for b, f, x in blocks[1:]], ignore_index=True))


def test_a_non_finite_loss_names_its_scenario():
    pnl = np.zeros((4, 2))
    pnl[2, 1] = np.nan
    with pytest.raises(ValueError, match="scenario 102 \\(desk 1\\) is nan"):
        tails.block_losses(pnl, first_scenario=100)


def test_first_pass_bins_only_block_tails_and_falls_back_when_a_lump_reaches_a_band():
    rng = np.random.default_rng(4)
    pnl = rng.normal(size=(30_000, 2))
    specs = tails.first_specs(3, LEVELS)
    hist = tails.block_histograms(tails.block_losses(pnl[:10_000]), specs)
    full = tails.block_histograms(tails.block_losses(pnl[:10_000]), tails.first_specs(3))
    assert len(hist) < 0.5 * len(full)  # 15% of each block is binned, the rest lumped
    assert hist.loc[hist["bin"] == tails.LUMP, "count"].tolist() == [8500] * 3
    ok = tails.summarize_matrix(pnl, 10_000, LEVELS)
    assert ok.histogram_passes == 1
    # Block 0 lives in another regime: its lumped losses lie above the other blocks' tails,
    # so the lumps reach the bands and the series are binned again, whole.
    pnl[:10_000, 0] -= 50.0
    shifted = tails.summarize_matrix(pnl, 10_000, LEVELS)
    assert shifted.histogram_passes == 2
    _check_against_full_sort(pnl, shifted, LEVELS)
