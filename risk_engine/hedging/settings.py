"""The ``hedging:`` section of the run config, as typed settings.

```yaml
hedging:
  enabled: false              # off by default: a run without it is unchanged
  scope: desk                 # desk (one decomposition per desk) or firm (the whole book)
  method: johansen            # johansen (within sectors) or pca (smallest principal components)
  max_assets: 4               # underlyings per basket, at least 2
  max_half_life_days: 30      # baskets reverting slower than this are dropped
  significance: 0.05          # test level: 0.10, 0.05 or 0.01
  window_days: 500            # closes used to estimate the baskets
  basket_scale_shares: 100    # largest |weight| of one basket lot, in shares
  default_lot_size: 100       # shares per lot of a single-underlying hedge trade
  lot_sizes: {AAPL: 50}       # per underlying, over the default
  cost_per_share: 0.01        # currency per share traded
  cost_bps: 0.0               # basis points of traded notional
  max_gross_notional: null    # cap on the hedge's gross traded notional, currency
  max_underlyings_traded: null
  time_limit_seconds: 10.0    # per exact solve; past it rounding + local search is used
  exact_max_variables: 20     # larger problems go straight to the (deterministic) fallback
  history_days: 250           # last dates of the optional position_history input decomposed
  objective: variance         # variance (MIQP, SCIP) or cvar (expected shortfall, MILP, HiGHS)
  cvar_level: 0.975           # cvar: confidence level of the residual's expected shortfall
  cvar_blocks: 1              # cvar: Monte Carlo blocks of the run's scenarios used
  cvar_time_limit_seconds: 20.0  # cvar: per MILP solve; past it a local search on the ES
```
``cvar_level`` defaults to 0.975, the FRTB expected-shortfall level; ``cvar_blocks``
defaults to 1 (one block of the run's scenarios, 10,000 by default): the MILP has one
continuous variable and one constraint per scenario, and HiGHS solves 10,000 in seconds.
This module imports nothing heavy (no cvxpy, no statsmodels): :mod:`risk_engine.config`
imports it directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from risk_engine.settings import require

SIGNIFICANCE_LEVELS = (0.10, 0.05, 0.01)
"""Levels with tabulated Johansen and ADF critical values."""


@dataclass(frozen=True)
class HedgingSettings:
    """Everything the hedging stage needs (see the module docstring for the keys)."""

    enabled: bool = False
    scope: Literal["desk", "firm"] = "desk"
    method: Literal["johansen", "pca"] = "johansen"
    max_assets: int = 4
    max_half_life_days: float = 30.0
    significance: float = 0.05
    window_days: int = 500
    basket_scale_shares: int = 100
    default_lot_size: int = 100
    lot_sizes: tuple[tuple[str, int], ...] = ()
    cost_per_share: float = 0.01
    cost_bps: float = 0.0
    max_gross_notional: float | None = None
    max_underlyings_traded: int | None = None
    time_limit_seconds: float = 10.0
    exact_max_variables: int = 20
    history_days: int = 250
    max_lots: int = 10_000
    objective: Literal["variance", "cvar"] = "variance"
    cvar_level: float = 0.975
    cvar_blocks: int = 1
    cvar_time_limit_seconds: float = 20.0

    def __post_init__(self) -> None:
        require(2 <= self.max_assets <= 12, "max_assets", self.max_assets,
                "underlyings per basket, >= 2 and <= 12 (Johansen critical values)")
        require(math.isfinite(self.max_half_life_days) and self.max_half_life_days > 0,
                "max_half_life_days", self.max_half_life_days, "trading days, > 0")
        require(self.significance in SIGNIFICANCE_LEVELS, "significance", self.significance,
                f"one of {SIGNIFICANCE_LEVELS} (tabulated critical values)")
        require(20 <= self.window_days <= 10_000, "window_days", self.window_days,
                "trading days, >= 20 and <= 10000")
        require(1 <= self.basket_scale_shares <= 1_000_000, "basket_scale_shares",
                self.basket_scale_shares, "shares, >= 1 and <= 1e6")
        require(1 <= self.default_lot_size <= 1_000_000, "default_lot_size",
                self.default_lot_size, "shares per lot, >= 1 and <= 1e6")
        for name, size in self.lot_sizes:
            require(1 <= size <= 1_000_000, f"lot_sizes.{name}", size,
                    "shares per lot, >= 1 and <= 1e6")
        require(math.isfinite(self.cost_per_share) and self.cost_per_share >= 0,
                "cost_per_share", self.cost_per_share, "currency per share, >= 0")
        require(math.isfinite(self.cost_bps) and 0 <= self.cost_bps <= 10_000, "cost_bps",
                self.cost_bps, "basis points of notional, >= 0 and <= 10000")
        if self.max_gross_notional is not None:
            require(math.isfinite(self.max_gross_notional) and self.max_gross_notional >= 0,
                    "max_gross_notional", self.max_gross_notional, "currency, >= 0 or null")
        if self.max_underlyings_traded is not None:
            require(self.max_underlyings_traded >= 0, "max_underlyings_traded",
                    self.max_underlyings_traded, ">= 0 or null")
        require(math.isfinite(self.time_limit_seconds) and 0 < self.time_limit_seconds <= 3600,
                "time_limit_seconds", self.time_limit_seconds, "seconds, > 0 and <= 3600")
        require(0 <= self.exact_max_variables <= 10_000, "exact_max_variables",
                self.exact_max_variables, "integer variables of an exact solve, >= 0")
        require(1 <= self.history_days <= 10_000, "history_days", self.history_days,
                "last dates of position_history decomposed, >= 1 and <= 10000")
        require(1 <= self.max_lots <= 10**9, "max_lots", self.max_lots,
                "largest |lots| of one basket or trade, >= 1 and <= 1e9")
        require(self.objective in ("variance", "cvar"), "objective", self.objective,
                "'variance' or 'cvar'")
        require(math.isfinite(self.cvar_level) and 0.5 <= self.cvar_level < 1.0,
                "cvar_level", self.cvar_level, "confidence level, >= 0.5 and < 1")
        require(1 <= self.cvar_blocks <= 100, "cvar_blocks", self.cvar_blocks,
                "Monte Carlo blocks, >= 1 and <= 100")
        require(math.isfinite(self.cvar_time_limit_seconds)
                and 0 < self.cvar_time_limit_seconds <= 3600, "cvar_time_limit_seconds",
                self.cvar_time_limit_seconds, "seconds, > 0 and <= 3600")

    def lot_size(self, underlying: str) -> int:
        """Shares per lot of ``underlying`` (``lot_sizes`` over ``default_lot_size``)."""
        return dict(self.lot_sizes).get(underlying, self.default_lot_size)
