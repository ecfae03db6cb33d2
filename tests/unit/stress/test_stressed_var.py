"""Stressed VaR against a brute-force search over every window."""

import numpy as np
import pandas as pd
import pytest

from risk_engine.measures import var_es
from risk_engine.pipeline import InputTables
from risk_engine.revaluation import desk_pnl, plan_revaluation
from risk_engine.stress.stressed_var import rolling_tails
from risk_engine.tools.demo_data import generate
from risk_engine.valuation import position_values
from tests import helpers as h

LEVELS = (0.975, 0.99)


@pytest.fixture(scope="module")
def long_demo():
    return generate(h.AS_OF, n_underlyings=10, n_positions=200, seed=8, years=3)


def test_long_demo_keeps_the_book_and_has_a_crash(long_demo):
    base = generate(h.AS_OF, n_underlyings=10, n_positions=200, seed=8)
    pd.testing.assert_frame_equal(base["positions"], long_demo["positions"])
    pd.testing.assert_frame_equal(base["market"], long_demo["market"])
    hist = long_demo["history"]
    assert hist["date"].nunique() == 3 * 252 + 1
    wide = hist.pivot(index="date", columns="underlying", values="close")
    worst = np.log(wide).diff().min().min()
    assert worst < -0.14
    last = wide.iloc[-1]
    spots = long_demo["market"].set_index("underlying")["spot"]
    np.testing.assert_allclose(last[spots.index], spots.round(4), rtol=0, atol=1e-4)


def _run(t, positions, window=250, horizon=10):
    cfg = h.config(scenario_model={"source": "history"},
                   monte_carlo={"n_scenarios": 2000, "block_size": 1000,
                                "horizon_days": horizon},
                   stressed_var={"enabled": True, "window_days": window, "block_size": 97},
                   risk={"confidence_levels": list(LEVELS)}, **h.MC_ONLY)
    return h.run(cfg, InputTables(positions, t["market"], t["rates"], history=t["history"]))


def test_single_underlying_stressed_var_equals_brute_force(long_demo):
    t = long_demo
    pos = t["positions"]
    und = pos["underlying"].value_counts().index[0]
    one = pos[pos["underlying"] == und]
    prep, tables, _ = _run(t, one)
    book = prep.book
    assert book.underlyings == (und,)
    sv = tables["stressed_var"]
    hist = t["history"]
    closes = hist[hist["underlying"] == und].sort_values("date")
    logs = np.log(closes["close"].to_numpy(float))
    dates = closes["date"].to_numpy()
    x = (logs[10:] - logs[:-10])[:, None]
    pnl = desk_pnl(plan_revaluation(book), x, 1024)
    # An independent revaluation, position by position.
    pv = position_values(book, x) - book.value
    np.testing.assert_allclose(pnl.sum(axis=1), pv.sum(axis=1), rtol=1e-9, atol=1e-6)
    m = 250 - 10 + 1
    n_windows = x.shape[0] - m + 1
    assert n_windows == len(dates) - 1 - 250 + 1
    series = [("desk", d, -pnl[:, i]) for i, d in enumerate(book.desks)]
    series.append(("firm", None, -pnl.sum(axis=1)))
    for scope, desk, loss in series:
        per_window = [var_es(loss[s:s + m], LEVELS) for s in range(n_windows)]
        for j, alpha in enumerate(LEVELS):
            for measure in ("VaR", "ES"):
                vals = np.array([getattr(w[j], measure.lower()) for w in per_window])
                s = int(np.argmax(vals))
                sel = sv[(sv["scope"] == scope) & (sv["measure"] == measure)
                         & (sv["confidence_level"] == alpha)]
                if desk is not None:
                    sel = sel[sel["desk"] == desk]
                row = sel.iloc[0]
                assert len(sel) == 1 and row["n_windows"] == n_windows
                assert row["window_start"] == dates[s] and row["window_end"] == dates[s + 250]
                if measure == "VaR":
                    assert row["value"] == vals[s]
                else:
                    assert row["value"] == pytest.approx(vals[s], rel=1e-12)


def test_rolling_tails_equal_var_es_per_window():
    rng = np.random.default_rng(3)
    loss = rng.standard_t(3, 700)
    var, es = rolling_tails(loss, 120, LEVELS)
    for s in (0, 17, 580):
        ref = var_es(loss[s:s + 120], LEVELS)
        for j in range(len(LEVELS)):
            assert var[j, s] == ref[j].var
            assert es[j, s] == pytest.approx(ref[j].es, rel=1e-13)


def test_stressed_window_contains_the_crash(long_demo):
    t = long_demo
    prep, tables, _ = _run(t, t["positions"])
    sv = tables["stressed_var"]
    firm = sv[(sv["scope"] == "firm") & (sv["measure"] == "VaR")]
    dates = sorted(t["history"]["date"].unique())
    crash = dates[int(3 * 252 * 0.4) + 1]
    assert len(firm) == len(LEVELS)
    assert ((firm["window_start"] <= crash) & (firm["window_end"] >= crash)).all()
    # The stressed VaR is above the ordinary one.
    rm = tables["risk_measures"]
    for alpha in LEVELS:
        base = rm[(rm["scope"] == "firm") & (rm["measure"] == "VaR")
                  & (rm["confidence_level"] == alpha)]["value"].iloc[0]
        assert firm[firm["confidence_level"] == alpha]["value"].iloc[0] > base


def test_short_history_gives_a_warning_and_no_rows(long_demo):
    t = long_demo
    cfg = h.config(scenario_model={"source": "history"},
                   monte_carlo={"n_scenarios": 1000, "block_size": 1000},
                   stressed_var={"enabled": True, "window_days": 2000, "history_days": 2000},
                   **h.MC_ONLY)
    from risk_engine.pipeline import run_in_process

    result, _ = run_in_process(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                                history=t["history"]))
    assert len(result.tables["stressed_var"]) == 0
    assert list(result.tables["stressed_var"].columns)[:3] == ["scope", "desk", "measure"]


def test_off_by_default_leaves_no_table(long_demo):
    t = long_demo
    cfg = h.config(scenario_model={"source": "history"},
                   monte_carlo={"n_scenarios": 1000, "block_size": 1000}, **h.MC_ONLY)
    _, tables, _ = h.run(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                          history=t["history"]))
    assert "stressed_var" not in tables
