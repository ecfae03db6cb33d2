"""The ``governance:`` section of the run config, as typed settings.

```yaml
governance:
  enabled: true
  attribution: true            # position-level contributions (second pass over blocks)
  attribution_chunk: 256       # positions revalued at once by attribution (memory only)
  limits:
    default: {max_position_share: 0.20, max_sector_share: 0.30, max_leverage: 2.0,
              var_limits: {0.99: 5000000}, es_limits: {0.975: 6000000}}
    desks:                     # per-desk keys merged over the default
      tech_mm: {capital: 20000000, var_limits: {0.99: 1000000}}
  alerts: {warning_utilization: 0.90, max_drawdown: 0.10,
           notification: {kind: http, url: "http://127.0.0.1:8080/alerts"}}
  performance: {risk_free_rate: 0.02, lookback_days: null}
  portfolio: {bounds: {lower: 0.0, upper: null}, n_frontier_points: 20, risk_free_rate: 0.02}
```
The run config's builder (:func:`risk_engine.settings.build`, called by
:func:`risk_engine.config.config_from_dict`) makes ``cfg.governance`` from it; every
unknown key or bad value is a :class:`~risk_engine.errors.ConfigError` naming the dotted
key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from risk_engine.governance.alerts import AlertSettings
from risk_engine.governance.limits import GovernanceLimits
from risk_engine.governance.performance import PerformanceSettings
from risk_engine.portfolio.settings import PortfolioSettings
from risk_engine.settings import require


@dataclass(frozen=True)
class GovernanceSettings:
    """Everything the governance stage needs."""

    enabled: bool = True
    attribution: bool = True
    attribution_chunk: int = 256
    """Positions revalued at once by attribution (memory only; results do not depend on it)."""
    limits: GovernanceLimits = field(default_factory=GovernanceLimits)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)

    def __post_init__(self) -> None:
        require(self.attribution_chunk >= 1, "attribution_chunk", self.attribution_chunk,
                "positions revalued at once, >= 1")
