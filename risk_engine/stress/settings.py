"""Config sections of the stress stages: ``stressed_var`` and ``stress`` (both off by default)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from risk_engine.settings import require

MAX_STRESS_HISTORY_DAYS = 10_000
"""Longest history searched for the stressed window (about 40 years of trading days)."""


@dataclass(frozen=True)
class StressedVarSettings:
    """The ``stressed_var`` section: today's book over its worst rolling historical window.

    Attributes
    ----------
    enabled
        Compute the ``stressed_var`` table (default off).
    window_days
        Daily changes in each rolling window (default 250, one year).
    history_days
        Daily changes searched at most, counted back from the as-of date (default 2,520).
    block_size
        Historical dates revalued per block of the distributed pass.
    """

    enabled: bool = False
    window_days: int = 250
    history_days: int = 2520
    block_size: int = 250

    def __post_init__(self) -> None:
        require(2 <= self.window_days <= MAX_STRESS_HISTORY_DAYS, "window_days",
                self.window_days, f"trading days, >= 2 and <= {MAX_STRESS_HISTORY_DAYS:_}")
        require(self.window_days <= self.history_days <= MAX_STRESS_HISTORY_DAYS,
                "history_days", self.history_days,
                f"trading days, >= window_days and <= {MAX_STRESS_HISTORY_DAYS:_}")
        require(1 <= self.block_size <= 10_000_000, "block_size", self.block_size,
                "historical dates per block, >= 1 and <= 10_000_000")


@dataclass(frozen=True)
class StressSettings:
    """The ``stress`` section: user stress scenarios and the spot-vol grid.

    Attributes
    ----------
    enabled
        Compute ``stress_results`` (when the ``stress_scenarios`` input exists) and
        ``stress_grid`` (default off).
    grid
        Compute the spot-vol grid.
    spot_shocks
        Relative spot moves of the grid (default -30% to +30% by 5%).
    vol_shocks
        Implied-vol moves of the grid in vol points (default -10 to +10 by 5; 5 means
        ``sigma + 0.05``); a shocked vol below zero is floored at zero.
    worst_positions
        Positions listed per scenario and desk in ``stress_results``.
    """

    enabled: bool = False
    grid: bool = True
    spot_shocks: tuple[float, ...] = (-0.30, -0.25, -0.20, -0.15, -0.10, -0.05, 0.0,
                                      0.05, 0.10, 0.15, 0.20, 0.25, 0.30)
    vol_shocks: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
    worst_positions: int = 5

    def __post_init__(self) -> None:
        for i, x in enumerate(self.spot_shocks):
            require(math.isfinite(x) and x > -1.0, f"spot_shocks[{i}]", x,
                    "a relative move > -1 (-0.3 for -30%)")
        for i, x in enumerate(self.vol_shocks):
            require(math.isfinite(x) and -100.0 <= x <= 500.0, f"vol_shocks[{i}]", x,
                    "a vol move in vol points, in [-100, 500] (5 for +5 points)")
        require(len(self.spot_shocks) > 0, "spot_shocks", self.spot_shocks, "at least one")
        require(len(self.vol_shocks) > 0, "vol_shocks", self.vol_shocks, "at least one")
        require(1 <= self.worst_positions <= 100, "worst_positions", self.worst_positions,
                ">= 1 and <= 100")
