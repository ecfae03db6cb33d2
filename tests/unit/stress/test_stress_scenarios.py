"""User stress scenarios and the spot-vol grid against Black-Scholes on shocked inputs."""

import numpy as np
import pandas as pd
import pytest

from risk_engine.pipeline import InputTables
from risk_engine.pricing.black_scholes import black_scholes_price
from risk_engine.tools.demo_data import generate
from tests import helpers as h

COLS = ["scenario_id", "description", "scope", "target", "spot_shock", "vol_shock",
        "rate_shock", "start_date", "end_date"]


def _book_rows():
    return h.positions([
        ("S1", "d1", "equity", "AAA", 100, None, None, 1),
        ("C1", "d1", "call", "AAA", 10, 100.0, "2027-05-20", 100),
        ("P1", "d2", "put", "BBB", -5, 50.0, "2027-02-19", 100),
        ("S2", "d2", "equity", "BBB", -40, None, None, 1),
        ("S3", "d3", "equity", "AAA", 7, None, None, 1),
    ])


def _market():
    return h.market([("AAA", 100.0, 0.25, 0.01, "tech"), ("BBB", 50.0, 0.4, 0.0, "energy")])


def _history():
    days = pd.bdate_range(end=pd.Timestamp(h.AS_OF), periods=80)
    rng = np.random.default_rng(1)
    rows = []
    for u, s0 in (("AAA", 100.0), ("BBB", 50.0)):
        path = s0 * np.exp(np.cumsum(rng.normal(0, 0.01, days.size)) * 1.0)
        path *= s0 / path[-1]
        rows += [(d.date(), u, float(c)) for d, c in zip(days, path, strict=True)]
    return pd.DataFrame(rows, columns=["date", "underlying", "close"])


def _run(scenarios, **stress):
    cfg = h.config(scenario_model={"source": "factor_model"},
                   monte_carlo={"n_scenarios": 1000, "block_size": 1000},
                   stress={"enabled": True, **stress}, **h.MC_ONLY)
    inputs = InputTables(_book_rows(), _market(), h.flat_rates(0.03),
                         history=_history(),
                         factor_model=h.factor_model([("AAA", 0.05, 0.25), ("BBB", 0.05, 0.4)]),
                         correlations=h.correlations(),
                         stress_scenarios=None if scenarios is None
                         else pd.DataFrame(scenarios, columns=COLS))
    return h.run(cfg, inputs)


def _bs(book, i, spot, vol, rate):
    return float(black_scholes_price(
        spots=spot, strikes=book.strike[i], expiries=book.expiry_years[i], volatilities=vol,
        rates=rate, dividend_yields=book.dividend_yield[i],
        is_call=book.kind[i] == 1)) * book.quantity[i]


def test_stock_and_option_under_a_stress_equal_black_scholes_on_shocked_inputs():
    prep, tables, _ = _run([
        ("up", "AAA +10%", "underlying", "AAA", 0.10, None, None, None, None),
        ("mix", "all -20%, vol +5, rates +50bp", "all", None, -0.20, 5.0, 50.0, None, None),
        ("mix", None, "sector", "energy", -0.10, 3.0, None, None, None),
    ])
    book = prep.book
    res = tables["stress_results"]
    ix = {p: i for i, p in enumerate(book.position_id)}
    # Stock: exactly its value change.
    up = res[(res["scenario_id"] == "up") & (res["desk"] == "d1")].iloc[0]
    i_c = ix["C1"]
    call_up = _bs(book, i_c, 110.0, 0.25, book.rate[i_c]) - _bs(book, i_c, 100.0, 0.25,
                                                                 book.rate[i_c])
    assert up["pnl"] == pytest.approx(100 * 110.0 - 100 * 100.0 + call_up, rel=1e-12)
    d3 = res[(res["scenario_id"] == "up") & (res["desk"] == "d3")].iloc[0]
    assert d3["pnl"] == 7 * (100.0 * 1.1) - 7 * 100.0
    # Combined rows: BBB gets (1 - 0.2)(1 - 0.1), vol + 0.08, rate + 0.005.
    mix = res[(res["scenario_id"] == "mix") & (res["desk"] == "d2")].iloc[0]
    i_p = ix["P1"]
    s_b = 50.0 * 0.8 * 0.9
    want_value = (_bs(book, i_p, s_b, 0.4 + 0.08, book.rate[i_p] + 0.005)
                  + (-40) * s_b)
    base = _bs(book, i_p, 50.0, 0.4, book.rate[i_p]) + (-40) * 50.0
    assert mix["stressed_value"] == pytest.approx(want_value, rel=1e-12)
    assert mix["base_value"] == pytest.approx(base, rel=1e-12)
    assert mix["pnl"] == pytest.approx(want_value - base, rel=1e-12)
    firm = res[(res["scenario_id"] == "mix") & (res["scope"] == "firm")].iloc[0]
    desks = res[(res["scenario_id"] == "mix") & (res["scope"] == "desk")]
    assert firm["pnl"] == pytest.approx(desks["pnl"].sum(), rel=1e-12)
    worst = firm["worst_positions"].split(",")
    assert len(worst) == 5 and list(firm["worst_pnl"]) == sorted(firm["worst_pnl"])


def test_bad_rows_are_rejected_and_the_other_scenarios_run():
    prep, tables, _ = _run([
        ("ok", None, "all", None, -0.05, None, None, None, None),
        ("bad_scope", None, "galaxy", None, -0.05, None, None, None, None),
        ("bad_target", None, "underlying", "ZZZ", -0.05, None, None, None, None),
        ("bad_sector", None, "sector", "shipping", -0.05, None, None, None, None),
        ("inf", None, "all", None, np.inf, None, None, None, None),
        ("neg_spot", None, "all", None, -1.0, None, None, None, None),
        ("neg_spot", None, "underlying", "AAA", 0.1, None, None, None, None),
        ("neg_vol", None, "all", None, 0.0, -30.0, None, None, None),
    ])
    res = tables["stress_results"]
    assert set(res["scenario_id"]) == {"ok"}
    rej = tables["rejected_rows"]
    rej = rej[rej["table"] == "stress_scenarios"]
    assert len(rej) == 7
    reasons = " | ".join(rej["reason"])
    for word in ("unknown scope", "unknown target", "not a finite number",
                 "spot to zero or below", "below zero", "another row of scenario neg_spot"):
        assert word in reasons


def test_historical_replay_moves_spots_by_the_close_ratio():
    hist = _history()
    days = sorted(hist["date"].unique())
    start, end = days[10], days[40]
    prep, tables, _ = _run([("replay", "d10..d40", "historical", None, None, None, None,
                             start, end)])
    book = prep.book
    wide = hist.pivot(index="date", columns="underlying", values="close")
    ratio = wide.loc[end] / wide.loc[start]
    res = tables["stress_results"]
    d1 = res[(res["scenario_id"] == "replay") & (res["desk"] == "d1")].iloc[0]
    i_c = list(book.position_id).index("C1")
    s = 100.0 * ratio["AAA"]
    want = 100 * s + _bs(book, i_c, s, 0.25, book.rate[i_c])
    assert d1["stressed_value"] == pytest.approx(want, rel=1e-12)


def test_grid_equals_black_scholes_per_cell_and_zero_at_the_origin():
    prep, tables, _ = _run(None)
    assert "stress_results" not in tables
    grid = tables["stress_grid"]
    book = prep.book
    assert len(grid) == (13 * 5) * (2 + 2 + 2)  # per desk: its underlying + all
    origin = grid[(grid["spot_shock"] == 0.0) & (grid["vol_shock"] == 0.0)]
    assert (origin["pnl"] == 0.0).all()
    i_c = list(book.position_id).index("C1")
    cell = grid[(grid["desk"] == "d1") & (grid["underlying"] == "AAA")
                & (grid["spot_shock"] == -0.3) & (grid["vol_shock"] == 10.0)].iloc[0]
    r = book.rate[i_c]
    want = (100 * (70.0 - 100.0) + _bs(book, i_c, 70.0, 0.35, r) - _bs(book, i_c, 100.0, 0.25, r))
    assert cell["pnl"] == pytest.approx(want, rel=1e-12)
    # Vol floored at zero: -10 points on a 25% vol is fine, so no floor here; the desk row
    # (every underlying of the desk) equals the sum of its underlyings' rows.
    d2 = grid[grid["desk"] == "d2"]
    both = d2[d2["underlying"].isna()].set_index(["spot_shock", "vol_shock"])["pnl"]
    one = d2[d2["underlying"] == "BBB"].set_index(["spot_shock", "vol_shock"])["pnl"]
    pd.testing.assert_series_equal(both, one)


def test_stress_off_by_default_and_grid_on_demo_book():
    t = generate(h.AS_OF, n_underlyings=10, n_positions=100, seed=2)
    cfg = h.config(monte_carlo={"n_scenarios": 1000, "block_size": 1000}, **h.MC_ONLY)
    _, tables, _ = h.run(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                          factor_model=t["factor_model"],
                                          correlations=t["correlations"]))
    assert not {"stress_grid", "stress_results"} & set(tables)
