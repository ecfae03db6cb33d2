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


@pytest.mark.parametrize(("key", "value"), [("max_assets", 1), ("objective", "cvar"),
                                            ("significance", 0.02), ("scope", "book"),
                                            ("cost_bps", -1)])
def test_bad_hedging_config_names_the_key(key, value):
    with pytest.raises(ConfigError, match=f"hedging.{key}"):
        h.config(hedging={key: value})
