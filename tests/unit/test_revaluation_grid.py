"""The netted full-revaluation kernel's invariants, and the grid method vs full revaluation."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from risk_engine.book import resolve_book, validate_snapshot
from risk_engine.measures import var_es
from risk_engine.pipeline import InputTables, prepare
from risk_engine.revaluation import desk_pnl, desk_values, plan_revaluation
from risk_engine.revaluation_grid import GridPlan, build_plan, contract_errors, plan_grid
from risk_engine.scenarios import ScenarioModel, block_rng, draw_log_returns
from risk_engine.simulation import simulate_block
from risk_engine.timeaxis import ZeroCurve
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import position_values
from tests import helpers as h

LEVELS = (0.95, 0.975, 0.99)


@pytest.fixture(scope="module")
def demo():
    t = generate(h.AS_OF, n_positions=2000, seed=5)
    cfg = h.config(monte_carlo={"n_scenarios": 20_000, "block_size": 10_000,
                                "horizon_days": 10})
    prep = prepare(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                    factor_model=t["factor_model"],
                                    correlations=t["correlations"]))
    x = draw_log_returns(prep.model, prep.book.horizon_years, 20_000, block_rng(11, 0))
    return prep, x


def _reference_desk_pnl(book, x):
    ref = position_values(book, x) - book.value
    return np.stack([ref[:, book.desk_index == d].sum(axis=1)
                     for d in range(len(book.desks))], axis=1)


# ------------------------------------------------------------------ full kernel invariants


def test_kernel_is_bit_identical_whatever_the_chunk_and_the_scenario_position(demo):
    prep, x = demo
    plan = plan_revaluation(prep.book)
    x = x[:1500]
    base = desk_pnl(plan, x, 1024)
    for chunk in (1, 7, 64, 100_000):
        assert np.array_equal(desk_pnl(plan, x, chunk), base), chunk
    assert np.array_equal(desk_pnl(plan, x[333:341]), base[333:341])
    assert np.array_equal(desk_pnl(plan, x[1499:]), base[1499:])
    np.testing.assert_array_equal(desk_values(plan, x[:5]) - plan.value_today,
                                  desk_pnl(plan, x[:5]))


def test_kernel_nets_contracts_and_prices_once_per_contract(demo):
    prep, _ = demo
    plan = plan_revaluation(prep.book)
    book = prep.book
    live = (book.kind != 0) & (book.tau_h > 0)
    assert plan.n_live < live.sum()  # shared contracts and call/put pairs are priced once
    assert plan.n_positions == book.n_positions


def _small_book(rows, market=(("A", 100.0, 0.3, 0.01, "x"), ("B", 50.0, 0.5, 0.0, "y"))):
    snap = validate_snapshot(h.positions(rows), h.market(list(market)), h.AS_OF)
    return resolve_book(snap, ZeroCurve.from_points([0.25, 1.0], [0.02, 0.03]), as_of=h.AS_OF,
                        horizon_days=10)


EXP_LONG = dt.date(2027, 3, 19)
EXP_SHORT = dt.date(2026, 12, 18)
EXP_IN = dt.date(2026, 11, 27)  # inside the 10-day horizon

EDGE_BOOKS = {
    "puts_only": [("p1", "d1", "put", "A", 3.0, 90.0, EXP_LONG, 100.0),
                  ("p2", "d2", "put", "B", -2.0, 60.0, EXP_SHORT, 100.0)],
    "forward_nets_out": [("c", "d1", "call", "A", 2.0, 100.0, EXP_LONG, 100.0),
                         ("p", "d1", "put", "A", -2.0, 100.0, EXP_LONG, 100.0)],
    "shared_across_desks": [("a", "d1", "call", "A", 1.0, 100.0, EXP_LONG, 100.0),
                            ("b", "d2", "call", "A", -3.0, 100.0, EXP_LONG, 100.0),
                            ("c", "d2", "put", "A", 1.0, 100.0, EXP_LONG, 100.0),
                            ("d", "d3", "equity", "B", 10.0, None, None, 1.0)],
    "stocks_only": [("s1", "d1", "equity", "A", 10.0, None, None, 1.0),
                    ("s2", "d1", "equity", "A", -4.0, None, None, 1.0),
                    ("s3", "d2", "equity", "B", 7.0, None, None, 1.0)],
    "expired_only": [("e1", "d1", "call", "A", 1.0, 95.0, EXP_IN, 100.0),
                     ("e2", "d2", "put", "B", -1.0, 55.0, EXP_IN, 100.0)],
    "mixed_with_empty_groups": [("e1", "d1", "call", "A", 1.0, 95.0, EXP_IN, 100.0),
                                ("c1", "d2", "call", "B", 2.0, 45.0, EXP_SHORT, 100.0),
                                ("s1", "d3", "equity", "A", -5.0, None, None, 1.0)],
}


@pytest.mark.parametrize("name", sorted(EDGE_BOOKS))
def test_kernel_equals_reference_pricer_on_edge_books(name):
    book = _small_book(EDGE_BOOKS[name])
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 0.08, (257, len(book.underlyings)))
    got = desk_pnl(plan_revaluation(book), x, 64)
    ref = _reference_desk_pnl(book, x)
    scale = max(np.abs(book.value).sum(), 1.0) + np.abs(book.quantity).sum() * 100
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * scale)


def test_shared_contracts_use_the_line_gather():
    plan = plan_revaluation(_small_book(EDGE_BOOKS["shared_across_desks"]))
    assert plan.line_contract is not None and plan.n_live == 1 and plan.n_lines == 2


def test_forward_pair_has_no_option_line_left():
    plan = plan_revaluation(_small_book(EDGE_BOOKS["forward_nets_out"]))
    assert plan.n_lines == 0 and plan.n_live == 0


# ------------------------------------------------------------------------- grid method


def test_grid_desk_var_es_within_1e_4_of_full_revaluation(demo):
    prep, x = demo
    book = prep.book
    full = desk_pnl(plan_revaluation(book), x)
    grid_plan = plan_grid(book, prep.model)
    grid = desk_pnl(grid_plan, x)
    gross = book.gross_value()
    assert np.max(np.abs(grid - full) / gross) < 1e-7
    for d in range(len(book.desks)):
        for a, b in zip(var_es(-full[:, d], LEVELS), var_es(-grid[:, d], LEVELS), strict=True):
            assert b.var == pytest.approx(a.var, rel=1e-4), book.desks[d]
            assert b.es == pytest.approx(a.es, rel=1e-4), book.desks[d]
    for a, b in zip(var_es(-full.sum(axis=1), LEVELS), var_es(-grid.sum(axis=1), LEVELS),
                    strict=True):
        assert b.var == pytest.approx(a.var, rel=1e-4)
        assert b.es == pytest.approx(a.es, rel=1e-4)


def test_grid_contract_errors_are_small_against_notional(demo):
    prep, x = demo
    book = prep.book
    errs = contract_errors(book, plan_grid(book, prep.model), x[:2000])
    live = (book.kind != 0) & (book.tau_h > 0)
    assert len(errs) == live.sum()
    assert errs["max_rel_error_notional"].max() < 1e-7
    assert (errs["max_abs_error"] >= 0).all()


def _model(book, vol=0.3):
    n = len(book.underlyings)
    cov = np.eye(n) * vol * vol
    return ScenarioModel(book.underlyings, np.full(n, 0.05), cov, np.eye(n) * vol, "given")


def test_grid_is_exact_for_stocks_and_expired_options():
    rows = EDGE_BOOKS["stocks_only"] + [
        ("e1", "d1", "call", "A", 1.0, 95.0, EXP_IN, 100.0),
        ("e2", "d2", "put", "B", -1.0, 55.0, EXP_IN, 100.0)]
    book = _small_book(rows)
    plan = plan_grid(book, _model(book))
    assert plan.coef.shape[0] == 0
    x = np.random.default_rng(4).normal(0.0, 0.1, (300, 2))
    np.testing.assert_allclose(desk_pnl(plan, x), _reference_desk_pnl(book, x), rtol=1e-14,
                               atol=1e-9)


def test_grid_revalues_scenarios_beyond_the_tables_in_full():
    book = _small_book(EDGE_BOOKS["shared_across_desks"] + EDGE_BOOKS["puts_only"])
    model = _model(book)
    plan = plan_grid(book, model, range_sd=4.0)
    x = np.random.default_rng(5).normal(0.0, 0.05, (100, 2))
    x[17, 0] = 3.0  # far beyond 4 standard deviations (0.3 sqrt(10/252) ~ 0.06)
    x[63, 1] = -2.5
    got = desk_pnl(plan, x)
    full = desk_pnl(plan_revaluation(book), x)
    np.testing.assert_array_equal(got[[17, 63]], full[[17, 63]])
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-6 * np.abs(book.value).sum())


def test_build_plan_selects_the_method_and_simulate_block_uses_it(demo):
    prep, _ = demo
    assert not isinstance(build_plan(prep.book), GridPlan)
    grid = build_plan(prep.book, "grid", model=prep.model)
    assert isinstance(grid, GridPlan)
    with pytest.raises(ValueError, match="unknown revaluation method"):
        build_plan(prep.book, "taylor")
    with pytest.raises(ValueError, match="scenario model"):
        build_plan(prep.book, "grid")
    spec = dataclasses.replace(prep.spec, plan=grid)
    full_block = simulate_block(prep.spec, 1)
    grid_block = simulate_block(spec, 1)
    assert grid_block.shape == full_block.shape
    np.testing.assert_allclose(grid_block, full_block, rtol=0,
                               atol=1e-7 * prep.book.gross_value().sum())


def test_grid_resolution_controls_the_error(demo):
    prep, x = demo
    full = desk_pnl(plan_revaluation(prep.book), x[:3000])
    errs = []
    for res in (3.0, 6.0, 12.0):
        got = desk_pnl(plan_grid(prep.book, prep.model, resolution=res), x[:3000])
        errs.append(np.abs(got - full).max())
    assert errs[0] > errs[1] > errs[2]
    assert errs[0] / errs[2] > 30  # fourth order: (12 / 3)^4 = 256 in theory


@pytest.mark.parametrize("width", [2, 3, 64, 256])
def test_kernel_is_bit_identical_whatever_the_tile_width(demo, monkeypatch, width):
    import risk_engine.revaluation as rv

    prep, x = demo
    plan = plan_revaluation(prep.book)
    base = desk_pnl(plan, x[:600])
    monkeypatch.setattr(rv, "MIN_TILE", width)
    monkeypatch.setattr(rv, "MAX_TILE", width)
    assert np.array_equal(desk_pnl(plan, x[:600]), base)
