"""The hedging stage inside the in-process nightly run on the demo book."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine import schemas
from risk_engine.errors import ConfigError
from risk_engine.hedging.stage import desk_exposures
from risk_engine.pipeline import InputTables
from risk_engine.tools.demo_data import generate
from tests import helpers as h

HEDGE_TABLES = ("hedge_baskets", "hedge_recommendations", "hedge_summary")


@pytest.fixture(scope="module")
def demo() -> InputTables:
    return InputTables(**generate(n_positions=600))


def demo_config(**hedging):
    return h.config(scenario_model={"source": "history"},
                    monte_carlo={"n_scenarios": 2000, "block_size": 1000},
                    worst_case={"enabled": False}, governance={"enabled": False},
                    **({"hedging": hedging} if hedging else {}))


def test_hedging_on_gives_three_tables_and_leaves_the_others_unchanged(demo):
    _, off, _ = h.run(demo_config(), demo)
    prepared, on, _ = h.run(demo_config(enabled=True), demo)
    assert not set(HEDGE_TABLES) & set(off)
    assert set(on) == set(off) | set(HEDGE_TABLES)
    for name, frame in off.items():
        pd.testing.assert_frame_equal(on[name], frame)
    for name in HEDGE_TABLES:
        table = schemas.OUTPUT_TABLES[name]
        assert list(on[name].columns) == list(table.pandas_dtypes())
        assert on[name].dtypes.astype(str).to_dict() == table.pandas_dtypes()
    book = prepared.book
    summary = on["hedge_summary"].set_index("desk")
    assert list(summary.index) == list(book.desks)
    assert (summary["risk_after_hedge"] <= summary["exposure_risk"]).all()
    assert (summary["risk_after_baskets"] <= summary["exposure_risk"] * (1 + 1e-12)).all()
    assert ((summary["gap"] >= 0) & (summary["gap"] < 1)).all()
    assert (summary["continuous_bound"] <= summary["risk_after_hedge"] + summary["cost"]).all()
    recs = on["hedge_recommendations"]
    expo = desk_exposures(book)
    for desk, rows in recs.groupby("desk"):
        want = {book.underlyings[u]: expo[desk][u] for u in range(len(book.underlyings))}
        np.testing.assert_allclose(rows["exposure_shares"],
                                   [want[u] for u in rows["underlying"]])
        np.testing.assert_allclose(rows["residual_shares"],
                                   rows["exposure_shares"] - rows["basket_shares"])
    assert (recs["shares"] == recs["lots"] * recs["lot_size"]).all()
    baskets = on["hedge_baskets"]
    kept = baskets[baskets["kept"]]
    assert (kept["half_life_days"] <= 30).all()
    assert (baskets.loc[~baskets["kept"], "lots"] == 0).all()
    assert baskets["reason"].isna().eq(baskets["kept"]).all()


def test_firm_scope_is_one_row(demo):
    _, tables, _ = h.run(demo_config(enabled=True, scope="firm", max_assets=3), demo)
    summary = tables["hedge_summary"]
    assert summary["desk"].tolist() == ["firm"] and summary["scope"].tolist() == ["firm"]
    sizes = tables["hedge_baskets"].groupby("basket_id").size()
    assert (sizes <= 3).all() and (sizes >= 2).all()


@pytest.mark.parametrize(("key", "value"), [("max_assets", 1), ("objective", "determinant"),
                                            ("cvar_level", 1.5), ("cvar_blocks", 0),
                                            ("significance", 0.02), ("scope", "book"),
                                            ("cost_bps", -1)])
def test_bad_hedging_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"hedging.{key}"):
        h.config(hedging={key: value})


def test_hedge_history_finds_the_lots_of_a_basket_day_by_day(demo):
    from risk_engine.hedging.settings import HedgingSettings
    from risk_engine.hedging.stage import hedging_tables
    from risk_engine.pipeline import prepare

    cfg = demo_config(enabled=True)
    prepared = prepare(cfg, demo)
    book, settings = prepared.book, HedgingSettings(enabled=True)
    tables, _ = hedging_tables(book, prepared.model, demo.history, settings)
    kept = tables["hedge_baskets"][tables["hedge_baskets"]["kept"]]
    assert len(kept), "the demo book has kept baskets"
    desk, basket_id = kept.iloc[0][["desk", "basket_id"]]
    basket = kept[(kept["desk"] == desk) & (kept["basket_id"] == basket_id)]
    other = next(u for u in book.underlyings if u not in set(basket["underlying"]))
    dates = pd.date_range("2026-10-01", periods=5, freq="B").date
    rows = []
    for t, day in enumerate(dates, start=1):
        sign = -1 if t % 2 else 1
        rows += [(day, desk, u, float(sign * t * w))
                 for u, w in zip(basket["underlying"], basket["weight"], strict=True)]
        rows.append((day, desk, other, 3.0))  # a few shares of noise
    rows.append((dates[0], desk, "NOT_IN_BOOK", 100.0))
    ph = pd.DataFrame(rows, columns=["date", "desk", "underlying", "shares"])
    tables, warnings = hedging_tables(book, prepared.model, demo.history, settings,
                                      position_history=ph)
    hist = tables["hedge_history"]
    assert list(hist.columns) == list(schemas.HEDGE_HISTORY.pandas_dtypes())
    assert hist["desk"].eq(desk).all() and hist["date"].tolist() == list(dates)
    assert hist["gross_lots"].tolist() == [1, 2, 3, 4, 5]
    assert hist["n_baskets_used"].eq(1).all()
    np.testing.assert_allclose(hist["residual_gross_shares"], 3.0)
    assert (hist["basket_risk_share"] > 0.9).all()
    assert hist["status"].eq("optimal").all()
    assert any("outside the book" in w for w in warnings)
    # Through the nightly run: the optional input gives the fourth table.
    inputs = InputTables(**{**demo.__dict__, "position_history": ph})
    _, run_tables, _ = h.run(demo_config(enabled=True), inputs)
    pd.testing.assert_frame_equal(run_tables["hedge_history"], hist)


def test_without_history_the_hedge_covers_the_whole_exposure():
    cfg = h.config(hedging={"enabled": True, "cost_per_share": 0.0}, **h.MC_ONLY,
                   monte_carlo={"n_scenarios": 1000, "block_size": 500})
    inputs = InputTables(
        h.positions([("p1", "d1", "equity", "AAA", 250.0, None, None, 1.0),
                     ("p2", "d1", "equity", "BBB", -1234.0, None, None, 1.0),
                     ("p3", "d2", "equity", "AAA", 0.0, None, None, 1.0)]),
        h.market([("AAA", 100.0, 0.2, 0.0, "tech"), ("BBB", 50.0, 0.3, 0.0, "tech")]),
        h.flat_rates(),
        factor_model=h.factor_model([("AAA", 0.05, 0.2), ("BBB", 0.05, 0.3)]),
        correlations=h.correlations([("AAA", "BBB", 0.5)]))
    from risk_engine.engine import InProcessEngine
    from risk_engine.pipeline import RunLog, nightly_run

    rl = RunLog()
    tables = nightly_run(cfg, inputs, InProcessEngine(), rl).tables
    assert any("no history table" in w for w in rl.warnings)
    assert "hedging" in rl.timings
    assert tables["hedge_baskets"].empty
    summary = tables["hedge_summary"].set_index("desk")
    assert summary.loc["d1", "decomposition_status"] == "not_applicable"
    assert summary.loc["d1", "basket_risk_share"] == 0.0
    assert summary.loc["d2", "status"] == "not_applicable"  # nothing to hedge
    assert np.isnan(summary.loc["d2", "basket_risk_share"])
    recs = tables["hedge_recommendations"].set_index(["desk", "underlying"])
    # Zero cost and uncorrelated enough: flatten to the nearest whole lots.
    assert recs.loc[("d1", "AAA"), "lots"] == -2 and recs.loc[("d1", "BBB"), "lots"] == 12


def test_cvar_objective_lowers_the_residual_es_on_the_runs_scenarios(demo):
    from risk_engine.hedging.decomposition import scenario_share_pnl
    from risk_engine.measures import var_es

    prepared, var_tables, _ = h.run(demo_config(enabled=True), demo)
    _, cvar_tables, _ = h.run(demo_config(enabled=True, objective="cvar", cvar_level=0.95), demo)
    for name, frame in var_tables.items():
        if name not in HEDGE_TABLES:
            pd.testing.assert_frame_equal(cvar_tables[name], frame)
    source = prepared.spec.source
    x = source.block(0)  # cvar_blocks: 1
    col = [list(source.model.underlyings).index(n) for n in prepared.book.underlyings]
    pnl = scenario_share_pnl(prepared.book.spot, x[:, col])
    where = {n: i for i, n in enumerate(prepared.book.underlyings)}

    def es(rows):
        q = np.zeros(len(where))
        q[[where[n] for n in rows["underlying"]]] = rows["residual_shares"].to_numpy()
        return var_es(-(pnl @ q), [0.95])[0].es

    summary = cvar_tables["hedge_summary"].set_index("desk")
    var_recs = var_tables["hedge_recommendations"].groupby("desk")
    for desk, rows in cvar_tables["hedge_recommendations"].groupby("desk"):
        row = summary.loc[desk]
        if row["n_kept"] == 0:  # no basket: nothing to decompose
            assert row["decomposition_method"] == "none"
            continue
        assert row["decomposition_method"].startswith("cvar:")
        assert f"of the residual {es(rows):.6g} on {x.shape[0]} scenarios" in row["message"]
        assert es(rows) <= es(var_recs.get_group(desk)) * (1 + 1e-12)
    assert (summary["n_kept"] > 0).any()
    used = summary[summary["decomposition_method"] == "cvar:milp"]
    assert (used["decomposition_status"] == "optimal").all()


def test_cvar_without_scenarios_falls_back_to_variance(demo):
    from risk_engine.hedging.settings import HedgingSettings
    from risk_engine.hedging.stage import hedging_tables

    prepared, _, _ = h.run(demo_config(), demo)
    # A generous time limit: both runs' exact solves finish, whatever the machine's load.
    var, _ = hedging_tables(prepared.book, prepared.model, demo.history,
                            HedgingSettings(enabled=True, time_limit_seconds=120.0))
    cvar, warnings = hedging_tables(prepared.book, prepared.model, demo.history,
                                    HedgingSettings(enabled=True, objective="cvar",
                                                    time_limit_seconds=120.0))
    assert any("without the run's scenarios" in w for w in warnings)
    for name in HEDGE_TABLES:
        pd.testing.assert_frame_equal(cvar[name], var[name])
