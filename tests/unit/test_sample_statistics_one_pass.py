"""Block-0 sample statistics valued in one pass have the bits of the two-pass formulation.

The reference below is the former implementation of
:func:`risk_engine.attribution.sample_statistics`: each desk's P&L from
:func:`risk_engine.valuation.summed_position_values`, then its positions revalued again a
chunk at a time. It is kept here only, as the test's reference.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from risk_engine import attribution
from risk_engine.attribution import (
    Tiling,
    position_chunks,
    sample_statistics,
    scenario_terms,
)
from risk_engine.book import select_positions
from risk_engine.measures import tail_rank
from risk_engine.pipeline import InputTables, prepare
from risk_engine.pricing import black_scholes_greeks, black_scholes_price
from risk_engine.simulation import smile_of
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import (
    SUM_GROUP_POSITIONS,
    contract_ids,
    position_pnl,
    summed_position_values,
    summed_positions,
)
from tests import helpers as h

LEVELS = (0.95, 0.975, 0.99)


def two_pass_statistics(book, source, levels, tiling=None, smile="sticky_strike"):
    """The former two-pass ``sample_statistics``, verbatim (the test's reference)."""
    tiling = tiling or Tiling()
    x = source.block(0)
    n = x.shape[0]
    frames = []
    ids = np.asarray(book.position_id, dtype=object)
    contract = contract_ids(book)
    terms = scenario_terms(book, source, smile)
    for d in range(len(book.desks)):
        desk_cols = np.flatnonzero(book.desk_index == d)
        if desk_cols.size == 0:
            continue
        desk = summed_position_values(select_positions(book, desk_cols), x,
                                      contract[desk_cols], minus_value=True,
                                      max_values=tiling.values, **terms)
        dc = desk - desk.mean()
        dd = (dc * dc).sum()
        ks = [tail_rank(n, alpha) for alpha in levels]
        var_desk = [float(np.partition(-desk, k - 1)[k - 1]) for k in ks]
        order = np.argsort(contract[desk_cols], kind="stable")
        corr = np.empty(desk_cols.size)
        inc = np.empty((len(levels), desk_cols.size))
        for part in position_chunks(desk_cols.size, tiling.positions):
            at = order[part]
            cols = desk_cols[at]
            sub = select_positions(book, cols)
            pos_pnl = position_pnl(sub, x, contract[cols],
                                   max_values=max(n, tiling.values), **terms)
            pc = np.ascontiguousarray(pos_pnl - pos_pnl.mean(axis=0))
            denom = np.sqrt(np.ascontiguousarray(pc * pc).sum(axis=0) * dd)
            cov = np.ascontiguousarray(pc * dc[:, None]).sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                corr[at] = np.where(denom > 0, cov / denom, np.nan)
            del pc
            without = np.ascontiguousarray(((-desk)[:, None] + pos_pnl).T)
            del pos_pnl
            kth = sorted({k - 1 for k in ks})
            without.partition(kth, axis=1)
            for j, k in enumerate(ks):
                inc[j, at] = var_desk[j] - without[:, k - 1]
        for j, alpha in enumerate(levels):
            frames.append(pd.DataFrame({
                "position_id": ids[desk_cols], "confidence_level": float(alpha),
                "incremental_var": inc[j], "correlation": corr,
                "sample_scenarios": np.int64(n)}))
    return pd.concat(frames, ignore_index=True)


def _prepared(tables, **sections):
    fields = {f.name for f in dataclasses.fields(InputTables)}
    inputs = InputTables(**{k: v for k, v in tables.items() if k in fields})
    return prepare(h.config(risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY, **sections),
                   inputs)


@pytest.fixture(scope="module")
def demo():
    """The demo book (2,000 positions, 6 desks, equities and options) on 1-day scenarios."""
    p = _prepared(generate(h.AS_OF), monte_carlo={"n_scenarios": 4000, "block_size": 2000,
                                                  "horizon_days": 1})
    return p.book, p.spec.source, smile_of(p.spec.plan)


@pytest.fixture(scope="module")
def factors():
    """Vol and rate factors, sticky-moneyness surfaces, options expiring before the horizon."""
    p = _prepared(generate(h.AS_OF, n_positions=400, seed=5, vol_surface=True),
                  scenario_model={"source": "history",
                                  "vol_factors": {"enabled": True, "tenors_days": [21, 252]},
                                  "rate_factor": {"enabled": True},
                                  "smile_dynamics": "sticky_moneyness"},
                  monte_carlo={"n_scenarios": 1200, "block_size": 600, "horizon_days": 40})
    book = p.book
    layout = p.spec.source.model.layout
    assert layout.n_vol_buckets == 2 and layout.rate_column is not None
    assert smile_of(p.spec.plan) == "sticky_moneyness" and book.surfaces
    assert (book.tau_h <= 0).any() and (book.kind == 0).any()  # intrinsic, equities
    return book, p.spec.source, smile_of(p.spec.plan)


def _one_pass_desks(book, tiling):
    sizes = np.bincount(book.desk_index, minlength=len(book.desks))
    return [s <= attribution.ONE_PASS_CHUNKS * tiling.positions for s in sizes if s]


@pytest.mark.parametrize(("case", "tiling"), [
    ("demo", Tiling()), ("demo", Tiling(positions=1000, scenarios=100_000)),
    ("factors", Tiling()), ("factors", Tiling(positions=3, scenarios=7)),
    ("factors", Tiling(positions=1000, scenarios=100_000)),
], ids=["demo-default", "demo-wide", "factors-default", "factors-3x7", "factors-wide"])
def test_one_pass_has_the_bits_of_two_passes(case, tiling, request):
    book, source, smile = request.getfixturevalue(case)
    expected = two_pass_statistics(book, source, LEVELS, tiling, smile)
    got = sample_statistics(book, source, LEVELS, tiling, smile)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    one_pass = _one_pass_desks(book, tiling)
    # the default and the wide tilings value every desk once, 3 x 7 every desk twice
    assert all(one_pass) if tiling.positions >= Tiling().positions else not any(one_pass)


def test_desks_above_the_cap_take_two_passes_with_the_same_bits(demo):
    book, source, smile = demo
    # desks 0-2 whole, desks 3-5 cut to 100 positions; a cap of 200 positions between them
    keep = np.concatenate([np.flatnonzero(book.desk_index == d)[:None if d < 3 else 100]
                           for d in range(len(book.desks))])
    book = select_positions(book, np.sort(keep))
    tiling = Tiling(positions=200 // attribution.ONE_PASS_CHUNKS, scenarios=700)
    assert _one_pass_desks(book, tiling) == [False] * 3 + [True] * 3
    expected = two_pass_statistics(book, source, LEVELS, tiling, smile)
    got = sample_statistics(book, source, LEVELS, tiling, smile)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_a_single_position_desk_and_empty_desks(demo):
    """One position per desk: the desk is the position (row sums of one column)."""
    book, source, smile = demo
    pick = np.array([np.flatnonzero(book.desk_index == d)[0] for d in (1, 3)])
    small = select_positions(book, pick)
    expected = two_pass_statistics(small, source, LEVELS, None, smile)
    got = sample_statistics(small, source, LEVELS, smile=smile)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert len(got) == 2 * len(LEVELS)


def test_summed_positions_has_the_bits_of_summed_position_values(factors):
    """More positions than one summation group, valued once or in tiles."""
    book, source, smile = factors
    rng = np.random.default_rng(4)
    big = select_positions(book, rng.integers(0, book.n_positions, SUM_GROUP_POSITIONS + 900))
    big = dataclasses.replace(big, quantity=np.round(rng.normal(0, 30, big.n_positions)))
    x = source.block(1)[:40]
    terms = scenario_terms(big, source, smile)
    contract = contract_ids(big)
    for minus_value in (True, False):
        values = position_pnl(big, x, contract, minus_value=minus_value, **terms)
        got = summed_positions(values)
        for max_values in (2 * SUM_GROUP_POSITIONS + 7, 10**9):
            expected = summed_position_values(big, x, contract, minus_value=minus_value,
                                              max_values=max_values, **terms)
            assert np.array_equal(got, expected), max_values


def test_position_values_do_not_depend_on_the_positions_valued_with_them(factors):
    """Per-position P&L is elementwise: a subset valued alone has the bits of the whole."""
    book, source, smile = factors
    x = source.block(0)
    terms = scenario_terms(book, source, smile)
    contract = contract_ids(book)
    whole = position_pnl(book, x, contract, **terms)
    rng = np.random.default_rng(8)
    for size in (1, 2, 37):
        cols = np.sort(rng.choice(book.n_positions, size, replace=False))
        for max_values in (1, 10**9):
            part = position_pnl(select_positions(book, cols), x[:300], contract[cols],
                                max_values=max_values, **terms)
            assert np.array_equal(part, whole[:300, cols])


# --- the price-only Black-Scholes path -------------------------------------------------


def _random_options(rng, shape):
    n = int(np.prod(shape))
    t = rng.uniform(0.0, 3.0, n)
    t[rng.random(n) < 0.15] = 0.0  # expired: intrinsic
    v = rng.uniform(0.0, 0.8, n)
    v[rng.random(n) < 0.15] = 0.0  # no vol: discounted intrinsic of the forward
    r = rng.normal(0.02, 0.03, n)
    q = rng.normal(0.01, 0.02, n)
    k = 100.0 * np.exp(rng.normal(0.0, 0.3, n))
    s = 100.0 * np.exp(rng.normal(0.0, 0.3, n))
    atm = rng.random(n) < 0.15  # at the money forward
    s[atm] = k[atm] * np.exp(-r[atm] * t[atm]) / np.exp(-q[atm] * t[atm])
    call = rng.random(n) < 0.5
    return {"spots": s.reshape(shape), "strikes": k.reshape(shape),
            "expiries": t.reshape(shape), "volatilities": v.reshape(shape),
            "rates": r.reshape(shape), "dividend_yields": q.reshape(shape),
            "is_call": call.reshape(shape)}


def _same(got, expected):
    assert type(got) is type(expected)
    assert np.shape(got) == np.shape(expected)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_price_only_path_has_the_bits_of_the_greeks_price():
    rng = np.random.default_rng(12)
    for shape in [(5000,), (40, 30), (7,), (1,)]:
        args = _random_options(rng, shape)
        _same(black_scholes_price(**args), black_scholes_greeks(**args).price)


def test_price_only_path_broadcasts_as_the_greeks():
    """Scenario-by-option spots against per-option terms, scalars, a wider vol."""
    rng = np.random.default_rng(13)
    opt = _random_options(rng, (25,))
    spots = opt["strikes"] * np.exp(rng.normal(0.0, 0.2, (300, 25)))
    cases = [
        {**opt, "spots": spots},
        {**opt, "spots": spots, "volatilities": np.broadcast_to(opt["volatilities"], (300, 25))},
        {**opt, "spots": spots, "rates": opt["rates"] + rng.normal(0, 0.01, (300, 1))},
        {**opt, "spots": spots, "volatilities": opt["volatilities"] * np.exp(
            rng.normal(0, 0.2, (300, 25)))},
        {**opt, "spots": spots[:, :1], "strikes": opt["strikes"][:1], "expiries": 0.5,
         "volatilities": 0.2, "rates": 0.01, "dividend_yields": 0.0, "is_call": True},
        {**opt, "spots": spots, "volatilities": 0.0},  # no regular element at all
        # the volatility, read by the regular price only, is the widest argument
        {**opt, "volatilities": np.zeros((3, 25))},
        {"spots": 100.0, "strikes": 95.0, "expiries": 0.5, "volatilities": 0.25,
         "rates": 0.02, "dividend_yields": 0.01, "is_call": False},
        {"spots": 100.0, "strikes": 95.0, "expiries": 0.0, "volatilities": 0.25,
         "rates": 0.02},
        {"spots": np.zeros((0, 25)) + 1.0, "strikes": opt["strikes"], "expiries": 1.0,
         "volatilities": 0.2, "rates": 0.0},
    ]
    for args in cases:
        _same(black_scholes_price(**args), black_scholes_greeks(**args).price)


def _error(fn, args):
    with pytest.raises(ValueError) as info:
        fn(**args)
    return str(info.value)


def test_price_only_path_raises_the_errors_of_the_greeks():
    base = {"spots": np.full((4, 3), 100.0), "strikes": np.array([90.0, 100.0, 110.0]),
            "expiries": np.array([0.5, 1.0, 0.0]), "volatilities": np.array([0.2, 0.0, 0.3]),
            "rates": 0.01, "dividend_yields": np.array([0.0, 0.01, 0.02]), "is_call": True}
    bad = []
    for name, value in [("spots", np.nan), ("spots", 0.0), ("spots", -1.0), ("spots", np.inf),
                        ("strikes", 0.0), ("strikes", np.nan), ("expiries", -1e-9),
                        ("expiries", np.inf), ("volatilities", -0.1),
                        ("volatilities", np.nan), ("dividend_yields", np.inf),
                        ("dividend_yields", np.nan)]:
        arr = np.array(base[name], dtype=np.float64)
        arr[(-1,) * arr.ndim] = value  # the last element: the index is the broadcast one
        bad.append({**base, name: arr})
    bad.append({**base, "rates": -np.inf})
    bad.append({**base, "rates": np.array([[0.0], [0.0], [np.nan], [0.0]])})
    # two bad arguments: the first one in the checks' order is named
    bad.append({**base, "strikes": np.array([1.0, -1.0, 1.0]), "spots": np.nan})
    bad.append({**base, "volatilities": np.array([np.nan, 0.2, 0.2]),
                "expiries": np.array([0.5, -1.0, 0.5])})
    bad.append({**base, "strikes": np.array([1.0, 2.0])})  # does not broadcast
    for args in bad:
        expected = _error(black_scholes_greeks, args)
        assert _error(black_scholes_price, args) == expected
        assert "index" in expected or "broadcast" in expected
    # an offending value outside an empty broadcast is not an error, as before
    empty = {**base, "spots": np.zeros((0, 1)) + 1.0, "strikes": np.array([np.nan, 1.0, 1.0])}
    _same(black_scholes_price(**empty), black_scholes_greeks(**empty).price)
