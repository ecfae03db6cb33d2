"""Frozen, typed run configuration loaded from YAML.

A config file may name a base file with ``extends: <path relative to this file>``; keys of
the later file are merged over the base (mappings recursively, everything else replaced).
Every unknown key and every out-of-range value is a :class:`ConfigError` that names the
dotted key, the value and the accepted range. YAML is read with ``yaml.safe_load`` only.
Relative paths in ``input.root`` and ``output.root`` are taken from the working directory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from risk_engine.errors import ConfigError

DAY_COUNTS = ("trading_252", "act_365")
SCENARIO_SOURCES = ("history", "factor_model")
REVALUATION_METHODS = ("full", "grid")


@dataclass(frozen=True)
class InputConfig:
    """Where the input snapshot lives: ``<root>/<table>.parquet`` or ``<root>/<table>/``."""

    root: str = "data/demo"


@dataclass(frozen=True)
class OutputConfig:
    """Where results go: ``<root>/<table>/as_of_date=YYYY-MM-DD/``."""

    root: str = "output"
    write_scenario_pnl: bool = False


@dataclass(frozen=True)
class MonteCarloConfig:
    """Monte Carlo settings. Results depend on ``seed`` and ``block_size``, never on partitions."""

    n_scenarios: int = 100_000
    seed: int = 20_261_120
    horizon_days: int = 10
    block_size: int = 10_000
    antithetic: bool = False
    chunk_size: int = 1_024
    revaluation: str = "full"
    grid_resolution: float = 12.0
    grid_range_sd: float = 9.0


@dataclass(frozen=True)
class RiskConfig:
    """Confidence levels ``alpha`` in (0, 1) of every VaR and ES figure."""

    confidence_levels: tuple[float, ...] = (0.95, 0.975, 0.99)


@dataclass(frozen=True)
class ScenarioModelConfig:
    """How drift and covariance of log returns are obtained."""

    source: str = "history"
    history_window_days: int = 500
    min_history_days: int = 60


@dataclass(frozen=True)
class TimeConfig:
    """Day count: ``trading_252`` (trading days / 252) or ``act_365`` (calendar days / 365)."""

    day_count: str = "trading_252"


@dataclass(frozen=True)
class SparkConfig:
    """Spark session settings. ``partitions`` None means one partition per scenario block."""

    master: str = "local[*]"
    app_name: str = "risk-engine-nightly"
    partitions: int | None = None
    conf: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationConfig:
    """Ceilings on rejected positions; above either, the run fails and publishes nothing.

    ``max_rejected_share`` is the rejected positions' share of the book's gross notional
    (``|quantity x multiplier x spot|``; positions without a usable spot count in
    ``max_rejected_positions`` only). ``None`` disables a ceiling.
    """

    max_rejected_positions: int | None = None
    max_rejected_share: float | None = 0.05


@dataclass(frozen=True)
class TestingConfig:
    """Test-only fault injection; off by default. Never set this in production.

    Tasks revaluing a block in ``fail_blocks`` raise on attempts below ``fail_attempts``;
    ``block_delay_seconds`` slows every block (to kill processes mid-stage in tests).
    """

    fail_blocks: tuple[int, ...] = ()
    fail_attempts: int = 0
    block_delay_seconds: float = 0.0


@dataclass(frozen=True)
class Config:
    """The whole run configuration."""

    as_of_date: dt.date
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    monte_carlo: MonteCarloConfig = field(default_factory=MonteCarloConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    scenario_model: ScenarioModelConfig = field(default_factory=ScenarioModelConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    worst_case: Mapping[str, Any] = field(default_factory=dict)
    governance: Mapping[str, Any] = field(default_factory=dict)
    testing: TestingConfig = field(default_factory=TestingConfig)

    @property
    def n_blocks(self) -> int:
        """Number of scenario blocks (the last one may be smaller)."""
        mc = self.monte_carlo
        return -(-mc.n_scenarios // mc.block_size)

    def block_sizes(self) -> list[int]:
        """Scenario count of every block, in block order."""
        mc = self.monte_carlo
        sizes = [mc.block_size] * (self.n_blocks - 1)
        sizes.append(mc.n_scenarios - mc.block_size * (self.n_blocks - 1))
        return sizes

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (dates as ISO strings), the form that is hashed and logged."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def hash(self) -> str:
        """SHA-256 of the canonical JSON of the config (first 16 hex digits)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- loading


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config file safely, resolving ``extends`` chains."""
    p = Path(path).resolve()
    if p in _seen:
        raise ConfigError(f"config 'extends' cycle: {' -> '.join(map(str, (*_seen, p)))}")
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = read_yaml(p.parent / str(parent), (*_seen, p))
    return _merge(base, data)


def _coerce(key: str, value: Any, typ: Any) -> Any:
    origin = get_origin(typ)
    args = get_args(typ)
    if typ is Any:
        return value
    if origin is not None and type(None) in args:  # Optional[T]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(key, value, inner)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return _build(typ, value, key + ".")
    if origin is tuple:
        if not isinstance(value, list | tuple) or (len(value) == 0 and key.startswith("risk.")):
            raise ConfigError(f"config key '{key}' must be a non-empty list, got {value!r}")
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if origin is Mapping or typ is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        if args and args[1] is str:
            return {str(k): str(v) for k, v in value.items()}
        return dict(value)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if typ is dt.date:
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError as exc:
            raise ConfigError(
                f"config key '{key}' must be a date YYYY-MM-DD, got {value!r}") from exc
    raise ConfigError(f"config key '{key}': unsupported type {typ}")  # pragma: no cover


def _build(cls: Any, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
            f"known keys here: {', '.join(names)}"
        )
    kwargs = {name: _coerce(prefix + name, data[name], hints[name])
              for name in names if name in data}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'top level'}': {exc}") from exc


def _require(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is out of range: {rule}")


def validate(cfg: Config) -> Config:
    """Check every value's range; returns ``cfg`` unchanged or raises :class:`ConfigError`."""
    mc = cfg.monte_carlo
    _require(mc.n_scenarios >= 1, "monte_carlo.n_scenarios", mc.n_scenarios, "must be >= 1")
    _require(mc.n_scenarios <= 2_000_000_000, "monte_carlo.n_scenarios", mc.n_scenarios, "<= 2e9")
    _require(mc.horizon_days >= 1, "monte_carlo.horizon_days", mc.horizon_days, "must be >= 1")
    _require(mc.horizon_days <= 2520, "monte_carlo.horizon_days", mc.horizon_days, "<= 2520")
    _require(mc.block_size >= 1, "monte_carlo.block_size", mc.block_size, "must be >= 1")
    _require(mc.chunk_size >= 1, "monte_carlo.chunk_size", mc.chunk_size, "must be >= 1")
    _require(mc.seed >= 0, "monte_carlo.seed", mc.seed, "must be a non-negative integer")
    _require(mc.revaluation in REVALUATION_METHODS, "monte_carlo.revaluation", mc.revaluation,
             f"one of {REVALUATION_METHODS}")
    _require(mc.grid_resolution >= 2, "monte_carlo.grid_resolution", mc.grid_resolution,
             "cells per sigma sqrt(tau), >= 2")
    _require(mc.grid_range_sd >= 4, "monte_carlo.grid_range_sd", mc.grid_range_sd,
             "standard deviations of the horizon return covered, >= 4")
    if mc.antithetic:
        _require(mc.block_size % 2 == 0, "monte_carlo.block_size", mc.block_size,
                 "must be even with antithetic: true")
        _require(mc.n_scenarios % 2 == 0, "monte_carlo.n_scenarios", mc.n_scenarios,
                 "must be even with antithetic: true")
    levels = cfg.risk.confidence_levels
    for i, a in enumerate(levels):
        _require(0.0 < a < 1.0, f"risk.confidence_levels[{i}]", a,
                 "a confidence level is a fraction in (0, 1), e.g. 0.99 (not 99)")
    _require(len(set(levels)) == len(levels), "risk.confidence_levels", levels, "no duplicates")
    sm = cfg.scenario_model
    _require(sm.source in SCENARIO_SOURCES, "scenario_model.source", sm.source,
             f"one of {SCENARIO_SOURCES}")
    _require(sm.history_window_days >= 2, "scenario_model.history_window_days",
             sm.history_window_days, "must be >= 2")
    _require(2 <= sm.min_history_days <= sm.history_window_days, "scenario_model.min_history_days",
             sm.min_history_days, "must be >= 2 and <= history_window_days")
    _require(cfg.time.day_count in DAY_COUNTS, "time.day_count", cfg.time.day_count,
             f"one of {DAY_COUNTS}")
    if cfg.spark.partitions is not None:
        _require(cfg.spark.partitions >= 1, "spark.partitions", cfg.spark.partitions, ">= 1")
    v = cfg.validation
    if v.max_rejected_positions is not None:
        _require(v.max_rejected_positions >= 0, "validation.max_rejected_positions",
                 v.max_rejected_positions, "must be >= 0 or null")
    if v.max_rejected_share is not None:
        _require(0.0 <= v.max_rejected_share <= 1.0, "validation.max_rejected_share",
                 v.max_rejected_share, "a fraction in [0, 1] (0.05 for 5%) or null")
    _require(cfg.testing.fail_attempts >= 0, "testing.fail_attempts", cfg.testing.fail_attempts,
             ">= 0")
    _require(cfg.testing.block_delay_seconds >= 0, "testing.block_delay_seconds",
             cfg.testing.block_delay_seconds, ">= 0")
    from risk_engine.governance.settings import parse_governance
    from risk_engine.worst_case.stage import parse_worst_case

    parse_governance(cfg.governance)  # raises ConfigError naming the bad key
    parse_worst_case(cfg.worst_case, cfg.risk.confidence_levels)
    _require(bool(cfg.input.root), "input.root", cfg.input.root, "must be a non-empty path")
    _require(bool(cfg.output.root), "output.root", cfg.output.root, "must be a non-empty path")
    return cfg


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a plain mapping."""
    if "as_of_date" not in data:
        raise ConfigError("config key 'as_of_date' is required (or pass --as-of YYYY-MM-DD)")
    return validate(_build(Config, data))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Return a copy of ``data`` with ``a.b.c = value`` set (sections created as needed)."""
    head, _, rest = dotted.partition(".")
    out = dict(data)
    if rest:
        sub = out.get(head)
        out[head] = set_dotted(dict(sub) if isinstance(sub, Mapping) else {}, rest, value)
    else:
        out[head] = value
    return out


def load_config(
    *paths: str | Path, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Load YAML files in order (later ones win), apply dotted ``overrides``, validate.

    Parameters
    ----------
    *paths
        YAML files; each may ``extends`` a base file.
    overrides
        ``{"monte_carlo.n_scenarios": 1000, "as_of_date": "2026-11-20"}`` style values, as
        typed YAML would give them (strings are parsed as YAML scalars).
    """
    data: dict[str, Any] = {}
    for p in paths:
        data = _merge(data, read_yaml(p))
    for key, value in (overrides or {}).items():
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise ConfigError(f"override {key}={value!r} is not a YAML scalar") from exc
        data = set_dotted(data, key, value)
    return config_from_dict(data)
