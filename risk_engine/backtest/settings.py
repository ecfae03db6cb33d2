"""The ``backtest`` config section."""

from __future__ import annotations

from dataclasses import dataclass, field

from risk_engine.settings import DEFAULT_FROM, require, require_levels

MAX_WINDOW = 2520
"""Longest backtest window in business days (about 10 years)."""


@dataclass(frozen=True)
class BacktestSettings:
    """Backtesting of the published 1-day VaR against daily P&L.

    Attributes
    ----------
    enabled : bool
        Run the ``backtest`` stage (off by default: runs without it are unchanged).
    window : int
        Business days backtested, ending at the as-of date (Basel: 250).
    confidence_levels : tuple of float
        Levels backtested; absent or null means ``risk.confidence_levels``.
    alerts : bool
        Raise an alert for a yellow (warning) or red (critical) traffic-light zone.
    hypothetical : bool
        Also read the window's input snapshots (positions, market, rates) to compute the
        hypothetical and risk-theoretical P&L (the ``hypothetical`` series and the P&L
        attribution test).
    """

    enabled: bool = False
    window: int = 250
    confidence_levels: tuple[float, ...] = field(
        default=(0.95, 0.975, 0.99), metadata={DEFAULT_FROM: "risk.confidence_levels"})
    alerts: bool = True
    hypothetical: bool = True

    def __post_init__(self) -> None:
        require(1 <= self.window <= MAX_WINDOW, "window", self.window,
                f"business days, >= 1 and <= {MAX_WINDOW}")
        require_levels("confidence_levels", self.confidence_levels)
