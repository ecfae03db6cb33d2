"""The ``governance:`` section of the run config, parsed into the typed settings.

```yaml
governance:
  enabled: true
  attribution: true            # position-level contributions (second pass over blocks)
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
Every unknown key is a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from risk_engine.errors import ConfigError
from risk_engine.governance.alerts import AlertSettings, NotificationSettings
from risk_engine.governance.limits import GovernanceLimits, LimitSettings
from risk_engine.governance.performance import PerformanceSettings
from risk_engine.portfolio.settings import Bounds, PortfolioSettings

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``5e6`` as a string: turn numeric strings into floats, recursively."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, Mapping):
        return {(_numbers(k) if isinstance(k, str) else k): _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def from_mapping(cls: Any, data: Any, key: str, **nested: Any) -> Any:
    """Build dataclass ``cls`` from a mapping, naming ``key`` in every error.

    ``nested`` maps a field name to a callable turning that field's raw value into its type.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping, got {data!r}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'{key}.{u}' for u in unknown)}; "
                          f"known keys here: {', '.join(names)}")
    kwargs = {k: (nested[k](v, f"{key}.{k}") if k in nested else v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{key}': {exc}") from exc


@dataclass(frozen=True)
class GovernanceSettings:
    """Everything the governance stage needs."""

    enabled: bool = True
    attribution: bool = True
    limits: GovernanceLimits = field(default_factory=GovernanceLimits)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)


def _limits(raw: Any, key: str) -> GovernanceLimits:
    raw = _numbers(raw or {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key '{key}' must be a mapping")
    unknown = sorted(set(raw) - {"default", "desks"})
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(f'{key}.{u}' for u in unknown)}; "
                          "known keys here: default, desks")
    base = dict(raw.get("default") or {})
    default = from_mapping(LimitSettings, base, f"{key}.default")
    desks = {}
    for desk, over in (raw.get("desks") or {}).items():
        if not isinstance(over, Mapping):
            raise ConfigError(f"config key '{key}.desks.{desk}' must be a mapping")
        desks[str(desk)] = from_mapping(LimitSettings, {**base, **over}, f"{key}.desks.{desk}")
    return GovernanceLimits(default=default, desks=tuple(sorted(desks.items())))


def _alerts(raw: Any, key: str) -> AlertSettings:
    return from_mapping(AlertSettings, _numbers(raw), key, notification=lambda v, k: (
        None if v is None else from_mapping(NotificationSettings, v, k)))


def _portfolio(raw: Any, key: str) -> PortfolioSettings:
    def budgets(v: Any, k: str) -> Any:
        if v is None:
            return None
        if not isinstance(v, Mapping):
            raise ConfigError(f"config key '{k}' must map underlying -> budget")
        return tuple(sorted((str(u), float(b)) for u, b in v.items()))

    return from_mapping(PortfolioSettings, _numbers(raw), key,
                        bounds=lambda v, k: from_mapping(Bounds, v, k), risk_budgets=budgets)


def parse_governance(data: Mapping[str, Any] | None) -> GovernanceSettings:
    """Parse and validate the ``governance`` config section."""
    return from_mapping(
        GovernanceSettings, data or {}, "governance",
        limits=_limits, alerts=_alerts, portfolio=_portfolio,
        performance=lambda v, k: from_mapping(PerformanceSettings, _numbers(v), k),
    )
