"""The current book on the efficient frontier's basis: same moments, same formulas, inside it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from risk_engine import schemas
from risk_engine.portfolio import (
    FRONTIER_COLUMNS,
    Bounds,
    PortfolioSettings,
    current_book,
    desk_portfolio_tables,
    frontier_table,
    min_variance,
)

NAMES = ["AAA", "BBB", "CCC", "DDD"]
MU = np.array([0.05, 0.08, 0.11, 0.07])
VOLS = np.array([0.18, 0.24, 0.33, 0.21])
CORR = np.array([[1.0, 0.3, 0.2, 0.1],
                 [0.3, 1.0, 0.4, 0.25],
                 [0.2, 0.4, 1.0, 0.3],
                 [0.1, 0.25, 0.3, 1.0]])
SIGMA = VOLS[:, None] * CORR * VOLS[None, :]
SETTINGS = PortfolioSettings(n_frontier_points=8, risk_free_rate=0.02)


def _direct(w: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> tuple[float, float]:
    """w' mu and sqrt(w' Sigma w) by plain sums, independent of the package's helpers."""
    ret = sum(w[i] * mu[i] for i in range(len(w)))
    var = sum(w[i] * sigma[i, j] * w[j] for i in range(len(w)) for j in range(len(w)))
    return float(ret), float(np.sqrt(var))


def test_frontier_columns_are_declared_once_in_schemas() -> None:
    cols = schemas.FRONTIER.names
    new = ["current_weight", "current_expected_return", "current_volatility", "current_status"]
    assert cols[cols.index("message") + 1:cols.index("message") + 5] == new
    assert list(FRONTIER_COLUMNS)[-4:] == new
    assert schemas.FRONTIER.column("current_volatility").unit == "annual"


def test_current_book_point_is_w_mu_and_sqrt_w_sigma_w_on_every_row() -> None:
    w = np.array([0.4, 0.3, 0.2, 0.1])
    df = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS, current_weights=w)
    assert {str(t) for t in df.dtypes} <= set(FRONTIER_COLUMNS.values())
    ret, vol = _direct(w, MU, SIGMA)
    assert df["current_expected_return"].to_numpy() == pytest.approx(np.full(len(df), ret),
                                                                      rel=1e-14)
    assert df["current_volatility"].to_numpy() == pytest.approx(np.full(len(df), vol),
                                                                 rel=1e-14)
    assert set(df["current_status"]) == {"evaluated"}
    for point, grp in df.groupby("point"):
        np.testing.assert_array_equal(grp["current_weight"].to_numpy(), w)
        assert list(grp["underlying"]) == NAMES, point


def test_the_frontier_columns_are_unchanged_by_the_current_book() -> None:
    with_cur = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS,
                              current_weights=[0.25, 0.25, 0.25, 0.25])
    without = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS)
    old = [c for c in FRONTIER_COLUMNS if not c.startswith("current_")]
    pd.testing.assert_frame_equal(with_cur[old], without[old])
    assert set(without["current_status"]) == {"no_weights"}
    assert without["current_volatility"].isna().all()


def _max_return_at_volatility(vol: float) -> float:
    """The frontier's return at volatility ``vol``, a second formulation (long-only):
    maximize mu' w subject to ||L' w|| <= vol, sum w = 1, w >= 0 (Sigma = L L')."""
    import cvxpy as cp

    w = cp.Variable(len(NAMES))
    chol = np.linalg.cholesky(SIGMA)
    prob = cp.Problem(cp.Maximize(MU @ w),
                      [cp.norm(chol.T @ w) <= vol, cp.sum(w) == 1, w >= 0])
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    return float(prob.value)


@pytest.mark.parametrize("seed", range(6))
def test_a_feasible_book_lies_on_or_inside_the_frontier(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(len(NAMES), 0.7))
    df = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS, current_weights=w)
    assert (df["status"] == "optimal").all()
    ret = float(df["current_expected_return"].iloc[0])
    vol = float(df["current_volatility"].iloc[0])
    # Left of the frontier? No: the frontier problem solved at the book's own return has
    # no more volatility than the book ...
    best = min_variance(MU, SIGMA, target_return=ret, target_mode="eq",
                        bounds=SETTINGS.bounds)
    assert best.status == "optimal"
    assert best.volatility <= vol + 1e-9
    # ... and above it? No: at the book's volatility the best return is no lower (solver
    # tolerance 1e-7 of the conic solver).
    assert _max_return_at_volatility(vol) >= ret - 1e-7
    # The published minimum-variance point (point 0) is never riskier than the book.
    assert float(df[df["point"] == 0]["volatility"].iloc[0]) <= vol + 1e-9


def test_a_book_holding_a_frontier_portfolio_is_on_that_point() -> None:
    fr = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS)
    point = fr[fr["point"] == 5]
    w = point["weight"].to_numpy()
    df = frontier_table("eq", NAMES, MU, SIGMA, SETTINGS, current_weights=w)
    row = df[df["point"] == 5].iloc[0]
    assert row["current_expected_return"] == pytest.approx(row["expected_return"], abs=1e-13)
    assert row["current_volatility"] == pytest.approx(row["volatility"], abs=1e-13)


def test_a_book_outside_the_bounds_is_flagged_and_can_lie_above_the_frontier() -> None:
    tight = PortfolioSettings(n_frontier_points=6, bounds=Bounds(lower=0.0, upper=0.3))
    w = np.array([0.0, 0.0, 1.0, 0.0])  # all in the best asset: over the 0.3 cap
    df = frontier_table("eq", NAMES, MU, SIGMA, tight, current_weights=w)
    assert set(df["current_status"]) == {"outside_bounds"}
    ret, vol = _direct(w, MU, SIGMA)
    assert float(df["current_expected_return"].iloc[0]) == pytest.approx(ret, rel=1e-14)
    assert ret > float(df["expected_return"].max())  # above the capped frontier's top
    assert float(df["current_volatility"].iloc[0]) == pytest.approx(vol, rel=1e-14)


def test_current_book_statuses() -> None:
    assert current_book(MU, SIGMA, None).status == "no_weights"
    bad = current_book(MU, SIGMA, [0.5, 0.5])
    assert bad.status == "not_applicable" and "shape" in bad.message
    assert np.isnan(bad.volatility)
    short = current_book(MU, SIGMA, [1.2, -0.2, 0.0, 0.0])
    assert short.status == "outside_bounds" and "lower bound" in short.message
    assert current_book(MU, SIGMA, [1.2, -0.2, 0.0, 0.0],
                        bounds=Bounds.unbounded()).status == "evaluated"
    partial = current_book(MU, SIGMA, [0.5, 0.2, 0.0, 0.0])
    assert partial.status == "outside_bounds" and "sum to 0.7" in partial.message


def test_failed_desk_row_still_places_the_current_book() -> None:
    frontier = desk_portfolio_tables("d", ["A", "B"], MU, SIGMA,
                                     current_weights=[0.25] * 4).frontier
    assert len(frontier) == 1 and frontier["underlying"].iloc[0] is None
    assert frontier["status"].iloc[0] == "not_applicable"
    assert frontier["current_status"].iloc[0] == "evaluated"
    assert np.isnan(frontier["current_weight"].iloc[0])
    broken = SIGMA.copy()
    broken[0, 0] = np.nan
    frontier = desk_portfolio_tables("d", NAMES, MU, broken,
                                     current_weights=[0.25] * 4).frontier
    assert frontier["current_status"].iloc[0] == "not_applicable"
    assert np.isnan(frontier["current_volatility"].iloc[0])


def test_nightly_run_places_each_desk_on_its_own_frontier_basis() -> None:
    """Whole in-process run: the current point is w' mu, sqrt(w' Sigma w) with the scenario
    model's moments of the desk and its net delta-equivalent weights (those the risk parity
    table decomposes when the desk is long-only)."""
    from risk_engine.config import config_from_dict
    from risk_engine.pipeline import InputTables
    from risk_engine.tools.demo_data import generate
    from tests import helpers as h

    snap = generate(h.D2, n_positions=40, seed=5)
    cfg = config_from_dict({"as_of_date": h.D2.isoformat(),
                            "monte_carlo": {"n_scenarios": 1000, "block_size": 500},
                            "worst_case": {"enabled": False}})
    inputs = InputTables(**{k: v for k, v in snap.items()
                            if k in InputTables.__dataclass_fields__})
    prepared, tables, _ = h.run(cfg, inputs)
    book = prepared.book
    fr, rp = tables["frontier"], tables["risk_parity"]
    seen = set()
    for desk, grp in fr.groupby("desk"):
        names = list(grp[grp["point"] == 0]["underlying"])
        status = grp["current_status"].iloc[0]
        seen.add(status)
        # the desk's delta-equivalent exposure per underlying, from the book directly
        m = book.desk_mask(desk)
        expo = np.array([sum(book.delta[k] * book.quantity[k] * book.spot[book.underlying_index[k]]
                             for k in np.flatnonzero(m)
                             if book.underlyings[book.underlying_index[k]] == name)
                         for name in names])
        cur = rp[(rp["desk"] == desk) & (rp["portfolio"] == "current")]
        if expo.sum() <= 0:
            assert status == "no_weights" and cur.empty
            assert grp["current_volatility"].isna().all()
            continue
        w = grp[grp["point"] == 0]["current_weight"].to_numpy()
        np.testing.assert_allclose(w, expo / expo.sum(), rtol=1e-12, atol=1e-14)
        assert status == ("evaluated" if (expo >= 0).all() else "outside_bounds")
        sub = prepared.model.subset(tuple(names))
        ret, vol = _direct(w, sub.mu, sub.cov)
        assert (grp["current_expected_return"] == grp["current_expected_return"].iloc[0]).all()
        assert float(grp["current_expected_return"].iloc[0]) == pytest.approx(ret, rel=1e-12)
        assert float(grp["current_volatility"].iloc[0]) == pytest.approx(vol, rel=1e-12)
        if status == "evaluated":
            # the same weights as risk parity's current rows, and the same volatility
            np.testing.assert_array_equal(w, cur.set_index("underlying").loc[names, "weight"])
            assert float(cur["volatility"].iloc[0]) == pytest.approx(vol, rel=1e-12)
            best = min_variance(sub.mu, sub.cov, target_return=ret, target_mode="eq")
            assert best.volatility <= vol + 1e-9
        else:
            assert cur.empty
    assert {"evaluated", "outside_bounds", "no_weights"} <= seen
