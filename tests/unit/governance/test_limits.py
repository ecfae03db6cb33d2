"""Limit checks on books built to breach (or nearly breach) each limit."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import ConfigError
from risk_engine.governance import (
    LIMIT_CHECK_COLUMNS,
    GovernanceLimits,
    LimitSettings,
    check_desk_limits,
    check_name,
)


def book() -> pd.DataFrame:
    # gross 1000, net 600
    return pd.DataFrame({
        "position_id": ["P1", "P2", "P3", "P4", "P5"],
        "sector": ["tech", "tech", "energy", "health", "utilities"],
        "market_value": [300.0, 100.0, -200.0, 150.0, 250.0],
        "extra": [1, 2, 3, 4, 5],
    })


def _rows(df: pd.DataFrame, check: str) -> pd.DataFrame:
    return df[df["check"] == check].reset_index(drop=True)


def test_columns_dtypes_and_input_untouched() -> None:
    positions = book()
    before = positions.copy()
    df = check_desk_limits("d1", positions)
    assert {c: str(t) for c, t in df.dtypes.items()} == LIMIT_CHECK_COLUMNS
    pd.testing.assert_frame_equal(positions, before)
    assert (df["desk"] == "d1").all()
    assert list(dict.fromkeys(df["check"])) == ["position_concentration",
                                                "sector_concentration", "leverage"]


def test_position_concentration_every_position_worst_first() -> None:
    pos = _rows(check_desk_limits("d1", book()), "position_concentration")
    assert pos["subject"].tolist() == ["P1", "P5", "P3", "P4", "P2"]
    assert pos["rank"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(pos["value"], [0.30, 0.25, 0.20, 0.15, 0.10])
    np.testing.assert_allclose(pos["utilization"], pos["value"] / 0.20)
    # strict: P3 is exactly at the limit -> not breached, utilization 100%
    assert pos["breached"].tolist() == [True, True, False, False, False]
    assert pos.loc[2, "utilization"] == pytest.approx(1.0)


def test_sector_concentration_uses_gross_within_sector() -> None:
    sec = _rows(check_desk_limits("d1", book()), "sector_concentration")
    assert sec["subject"].tolist() == ["tech", "utilities", "energy", "health"]
    np.testing.assert_allclose(sec["value"], [0.40, 0.25, 0.20, 0.15])
    assert sec["breached"].tolist() == [True, False, False, False]
    assert sec.loc[0, "limit"] == 0.30


def test_missing_sector_is_grouped_as_unassigned() -> None:
    b = book()
    b.loc[[0, 1], "sector"] = [None, np.nan]
    sec = _rows(check_desk_limits("d1", b), "sector_concentration")
    assert sec.loc[0, "subject"] == "unassigned"
    assert sec.loc[0, "value"] == pytest.approx(0.40)


def test_leverage_default_capital_is_abs_net_value() -> None:
    lev = _rows(check_desk_limits("d1", book()), "leverage")
    assert len(lev) == 1 and lev.loc[0, "subject"] is None
    assert lev.loc[0, "value"] == pytest.approx(1000 / 600)
    assert not lev.loc[0, "breached"]
    assert "net market value" in lev.loc[0, "message"]


def test_leverage_breach_with_configured_and_given_capital() -> None:
    lev = _rows(check_desk_limits("d1", book(), limits=LimitSettings(capital=450.0)), "leverage")
    assert lev.loc[0, "value"] == pytest.approx(1000 / 450)
    assert lev.loc[0, "breached"]
    # the run's capital overrides the configured one
    lev2 = _rows(check_desk_limits("d1", book(), limits=LimitSettings(capital=450.0),
                                   capital=1000.0), "leverage")
    assert lev2.loc[0, "value"] == pytest.approx(1.0)
    assert not lev2.loc[0, "breached"]


def test_hedged_book_with_default_capital_has_infinite_leverage() -> None:
    b = pd.DataFrame({"position_id": ["L", "S"], "sector": ["x", "x"],
                      "market_value": [500.0, -500.0]})
    lev = _rows(check_desk_limits("d1", b), "leverage")
    assert math.isinf(lev.loc[0, "value"]) and lev.loc[0, "breached"]
    assert "configure" in lev.loc[0, "message"]


def test_var_and_es_limits() -> None:
    limits = LimitSettings(var_limits={0.99: 100.0}, es_limits={0.975: 85.0, 0.99: 150.0})
    figures = pd.DataFrame({"measure": ["VaR", "ES", "VaR"],
                            "confidence_level": [0.99, 0.975, 0.95],
                            "value": [120.0, 80.0, 70.0]})
    df = check_desk_limits("d1", book(), limits=limits, risk_figures=figures)
    var = _rows(df, "var_0.99")
    assert var.loc[0, "value"] == 120.0 and var.loc[0, "breached"]
    assert var.loc[0, "utilization"] == pytest.approx(1.2)
    es = _rows(df, "es_0.975")
    assert not es.loc[0, "breached"] and es.loc[0, "utilization"] == pytest.approx(80 / 85)
    missing = _rows(df, "es_0.99")
    assert math.isnan(missing.loc[0, "value"]) and not missing.loc[0, "breached"]
    assert "no ES figure" in missing.loc[0, "message"]
    # no limit configured at 0.95 -> no row
    assert "var_0.95" not in set(df["check"])


def test_risk_figures_as_mapping() -> None:
    df = check_desk_limits("d1", book(), limits=LimitSettings(var_limits=((0.99, 100.0),)),
                           risk_figures={("var", 0.99): 99.0})
    var = _rows(df, "var_0.99")
    assert var.loc[0, "value"] == 99.0 and not var.loc[0, "breached"]


def test_empty_desk_and_zero_gross() -> None:
    empty = pd.DataFrame({"position_id": [], "sector": [], "market_value": []})
    df = check_desk_limits("d1", empty)
    assert len(df) == 3
    assert df["value"].isna().all()
    assert not df["breached"].any()
    assert "no positions" in df.loc[0, "message"]


def test_bad_input_is_an_evaluation_row() -> None:
    df = check_desk_limits("d1", book().drop(columns=["sector"]))
    assert df["check"].tolist() == ["evaluation"]
    assert "sector" in df.loc[0, "message"]
    dup = book()
    dup.loc[1, "position_id"] = "P1"
    assert "duplicate" in check_desk_limits("d1", dup).loc[0, "message"]
    nan = book()
    nan.loc[0, "market_value"] = np.nan
    assert "not finite" in check_desk_limits("d1", nan).loc[0, "message"]


def test_check_name() -> None:
    assert check_name("VaR", 0.99) == "var_0.99"
    assert check_name("ES", 0.975) == "es_0.975"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_position_share": 20}, {"max_sector_share": 0.0}, {"max_leverage": -1.0},
     {"capital": 0.0}, {"var_limits": {99: 1e6}}, {"es_limits": {0.975: -5.0}}],
)
def test_limit_settings_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        LimitSettings(**kwargs)


def test_governance_limits_per_desk_override() -> None:
    base = LimitSettings()
    strict = dataclasses.replace(base, max_position_share=0.1, capital=1e6)
    gl = GovernanceLimits(default=base, desks={"rates": strict})
    assert gl.for_desk("rates") == strict
    assert gl.for_desk("equity") == base
    assert LimitSettings(var_limits={0.99: 5.0}).var_limits == ((0.99, 5.0),)
