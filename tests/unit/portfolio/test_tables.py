"""Per-desk portfolio tables: columns, dtypes, content and failed desks as rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import ConfigError
from risk_engine.portfolio import (
    FRONTIER_COLUMNS,
    MIN_VARIANCE_COLUMNS,
    RISK_PARITY_COLUMNS,
    Bounds,
    PortfolioSettings,
    desk_portfolio_tables,
    frontier_table,
    min_variance_table,
    risk_parity_table,
)

NAMES = ["AAA", "BBB", "CCC"]
MU = np.array([0.06, 0.09, 0.12])
VOLS = np.array([0.2, 0.25, 0.35])
CORR = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.4], [0.2, 0.4, 1.0]])
SIGMA = VOLS[:, None] * CORR * VOLS[None, :]


def _dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


def test_desk_tables_columns_and_content() -> None:
    settings = PortfolioSettings(n_frontier_points=5, risk_free_rate=0.02,
                                 risk_budgets={"CCC": 2.0})
    t = desk_portfolio_tables("eq", NAMES, MU, SIGMA, current_weights=[0.5, 0.3, 0.2],
                              settings=settings)
    assert _dtypes(t.min_variance) == MIN_VARIANCE_COLUMNS
    assert _dtypes(t.frontier) == FRONTIER_COLUMNS
    assert _dtypes(t.risk_parity) == RISK_PARITY_COLUMNS

    mv = t.min_variance
    assert list(mv["underlying"]) == NAMES
    assert (mv["status"] == "optimal").all()
    assert mv["weight"].sum() == pytest.approx(1.0, abs=1e-8)

    fr = t.frontier
    assert len(fr) == 5 * 3
    assert sorted(fr["point"].unique()) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(fr[fr["point"] == 0]["weight"].to_numpy(),
                               mv["weight"].to_numpy(), atol=1e-9)
    per_point = fr.groupby("point").first()
    np.testing.assert_allclose(per_point["sharpe"],
                               (per_point["expected_return"] - 0.02) / per_point["volatility"])
    assert (fr.groupby("point")["weight"].sum() - 1).abs().max() < 1e-7

    rp = t.risk_parity
    sol = rp[rp["portfolio"] == "risk_parity"]
    cur = rp[rp["portfolio"] == "current"]
    assert len(sol) == 3 and len(cur) == 3
    np.testing.assert_allclose(sol["risk_budget"], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(sol["risk_share"], sol["risk_budget"], atol=1e-9)
    assert sol["risk_contribution"].sum() == pytest.approx(sol["volatility"].iloc[0])
    assert set(cur["status"]) == {"evaluated"}
    np.testing.assert_allclose(cur["adjustment"], cur["risk_budget"] / cur["risk_share"])


def test_failed_desk_is_a_row_in_each_table() -> None:
    bad_sigma = SIGMA.copy()
    bad_sigma[0, 0] = np.nan
    t = desk_portfolio_tables("broken", NAMES, MU, bad_sigma, current_weights=[1, 0, 0])
    for df, cols in ((t.min_variance, MIN_VARIANCE_COLUMNS), (t.frontier, FRONTIER_COLUMNS),
                     (t.risk_parity, RISK_PARITY_COLUMNS)):
        assert _dtypes(df) == cols
        assert len(df) == 1
        row = df.iloc[0]
        assert row["desk"] == "broken"
        assert row["underlying"] is None
        assert row["status"] == "not_applicable"
        assert "non-finite" in row["message"]


def test_mismatched_underlyings_and_infeasible_target_are_rows() -> None:
    df = min_variance_table("d", ["A", "B"], MU, SIGMA)
    assert df["status"].tolist() == ["not_applicable"]
    infeasible = min_variance_table("d", NAMES, MU, SIGMA,
                                    PortfolioSettings(target_return=0.5))
    assert (infeasible["status"] == "infeasible").all()
    assert infeasible["weight"].isna().all()
    assert (infeasible["target_return"] == 0.5).all()


def test_unbounded_frontier_table_keeps_point_zero_and_says_why() -> None:
    df = frontier_table("d", NAMES, MU, SIGMA, PortfolioSettings(bounds=Bounds.unbounded()))
    assert df["point"].unique().tolist() == [0]
    assert (df["status"] == "optimal").all()
    assert (df["frontier_status"] == "unbounded").all()
    assert df["message"].str.contains("max_target_return").all()


def test_risk_parity_table_zero_current_weights() -> None:
    df = risk_parity_table("d", NAMES, SIGMA, current_weights=[0.0, 0.0, 0.0])
    cur = df[df["portfolio"] == "current"]
    assert set(cur["status"]) == {"not_applicable"}
    assert set(cur["note"]) == {"zero_portfolio_volatility"}


@pytest.mark.parametrize(
    "kwargs",
    [{"target_mode": "gt"}, {"n_frontier_points": 1}, {"risk_free_rate": 2.0},
     {"risk_budgets": {"A": -1.0}}, {"solver": "ECOS"}],
)
def test_settings_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PortfolioSettings(**kwargs)


def test_bounds_validation() -> None:
    with pytest.raises(ConfigError, match="exceeds"):
        Bounds(lower=0.5, upper=0.2)
