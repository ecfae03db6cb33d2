"""Baskets: Johansen on planted cointegration, random walks, the OU half-life."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import ConfigError
from risk_engine.hedging.baskets import (
    clean_closes,
    estimate_baskets,
    group_baskets,
    johansen_rank,
    ou_fit,
    whole_shares,
)
from risk_engine.hedging.settings import HedgingSettings

NAMES = ("A", "B", "C", "D")


def planted(seed: int, n_obs: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Prices of 4 assets driven by 2 random walks; 2 cointegrating vectors (columns)."""
    rng = np.random.default_rng(seed)
    walks = 100.0 + np.cumsum(rng.normal(0, 1.0, (n_obs, 2)), axis=0)
    load = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    stationary = np.zeros((n_obs, 4))
    for t in range(1, n_obs):  # AR(1) noise with coefficient 0.7 (half-life ~2 days)
        stationary[t] = 0.7 * stationary[t - 1] + rng.normal(0, 0.5, 4)
    prices = walks @ load.T + stationary + 50.0
    # Vectors beta with beta' load = 0: C - A - B and D - 2A + B.
    beta = np.array([[-1.0, -1.0, 1.0, 0.0], [-2.0, 1.0, 0.0, 1.0]]).T
    return prices, beta


def max_angle_deg(span_a: np.ndarray, span_b: np.ndarray) -> float:
    """Largest principal angle between two column spans, in degrees."""
    qa, _ = np.linalg.qr(span_a)
    qb, _ = np.linalg.qr(span_b)
    s = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.degrees(np.arccos(np.clip(s.min(), -1.0, 1.0))))


def test_planted_vectors_are_found_with_rank_two():
    prices, beta = planted(1)
    assert johansen_rank(prices, 0.05) == 2
    kept = [b for b in group_baskets(prices, NAMES, "g", HedgingSettings()) if b.kept]
    assert len(kept) == 2
    span = np.zeros((4, 2))
    for j, b in enumerate(kept):
        for name, w in zip(b.names, b.weights, strict=True):
            span[NAMES.index(name), j] = w
    assert max_angle_deg(span, beta) < 5.0
    for b in kept:
        assert b.statistic > b.critical_value
        assert b.half_life_days < 10


def test_independent_random_walks_keep_no_basket_in_most_seeds():
    seeds = range(20)
    with_kept = 0
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        prices = 100.0 + np.cumsum(rng.normal(0, 1.0, (300, 4)), axis=0)
        if any(b.kept for b in group_baskets(prices, NAMES, "g", HedgingSettings())):
            with_kept += 1
    assert with_kept <= 0.1 * len(seeds)


def test_ou_half_life_of_a_ten_day_process():
    rng = np.random.default_rng(3)
    b = 0.5 ** (1 / 10)  # half-life 10 days
    x = np.zeros(2000)
    for t in range(1, x.size):
        x[t] = b * x[t - 1] + rng.normal()
    speed, hl = ou_fit(x + 5.0)
    assert abs(hl - 10.0) / 10.0 < 0.2
    assert math.isclose(speed, math.log(2) / hl)


def test_random_walk_has_no_half_life_or_is_slow():
    rng = np.random.default_rng(4)
    _, hl = ou_fit(np.cumsum(rng.normal(size=2000)))
    assert hl > 30


def test_whole_shares_and_sparsity():
    assert whole_shares(np.array([-0.5, 0.25, 0.0]), 100).tolist() == [100, -50, 0]
    prices, _ = planted(2)
    rng = np.random.default_rng(9)
    extra = 100.0 + np.cumsum(rng.normal(0, 1.0, (prices.shape[0], 2)), axis=0)
    wide = np.hstack([prices, extra])
    names = (*NAMES, "E", "F")
    out = group_baskets(wide, names, "g", HedgingSettings(max_assets=3))
    assert out and all(2 <= len(b.names) <= 3 for b in out)
    assert all(np.abs(b.weights).max() == 100 for b in out)


def test_pca_method_finds_a_stationary_basket():
    prices, _ = planted(5)
    out = group_baskets(prices, NAMES, "g", HedgingSettings(method="pca"))
    assert any(b.kept for b in out)
    assert all(b.test == "adf" for b in out)


def test_estimate_from_history_frame_groups_and_short_history():
    prices, _ = planted(6, 200)
    dates = pd.date_range("2025-01-01", periods=200, freq="B").date
    rows = [(d, n, prices[t, j]) for t, d in enumerate(dates) for j, n in enumerate(NAMES)]
    history = pd.DataFrame(rows, columns=["date", "underlying", "close"])
    closes = clean_closes(history, NAMES)
    baskets, warnings = estimate_baskets(closes, {"s1": NAMES, "s2": ("A",)}, HedgingSettings())
    assert baskets and not warnings
    assert {b.basket_id.split("-")[0] for b in baskets} == {"s1"}
    _, warnings = estimate_baskets(closes.tail(10), {"s1": NAMES}, HedgingSettings())
    assert warnings and "fewer than" in warnings[0]


def test_bad_objective_and_cvar_settings_are_refused():
    assert HedgingSettings(objective="cvar").cvar_level == 0.975
    with pytest.raises(ConfigError, match="objective"):
        HedgingSettings(objective="determinant")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="cvar_level"):
        HedgingSettings(objective="cvar", cvar_level=1.0)
    with pytest.raises(ConfigError, match="cvar_blocks"):
        HedgingSettings(objective="cvar", cvar_blocks=0)
