"""Frozen, typed run configuration loaded from YAML.

A config file may name a base file with ``extends: <path relative to this file>``; keys of
the later file are merged over the base (mappings recursively, everything else replaced).
Every section is a typed settings dataclass built by the one builder
(:func:`risk_engine.settings.build`): every unknown key and every bad value is a
:class:`ConfigError` that names the dotted key, the value and the accepted range. YAML is
read with a safe loader that also refuses aliases (``*name``: an alias bomb expands a few
hundred bytes into gigabytes). Relative paths in ``input.root`` and ``output.root`` are
taken from the working directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from risk_engine.backtest.settings import BacktestSettings
from risk_engine.errors import ConfigError
from risk_engine.hedging.settings import HedgingSettings
from risk_engine.scenarios.historical import HistoricalSettings
from risk_engine.settings import build, require, require_levels, to_plain
from risk_engine.stress.settings import StressedVarSettings, StressSettings

if TYPE_CHECKING:  # imported lazily: both packages import cvxpy, which takes seconds
    from risk_engine.governance.settings import GovernanceSettings
    from risk_engine.worst_case.stage import WorstCaseStageSettings

DAY_COUNTS = ("trading_252", "act_365")
SCENARIO_SOURCES = ("history", "factor_model", "historical")
REVALUATION_METHODS = ("full", "grid")
MAX_SEED = 2**63 - 1
"""Largest root seed: the run manifest stores it in a Spark/Arrow ``long`` (int64) column."""
MAX_BLOCK_SIZE = 10_000_000
"""Largest scenario block: a block is generated and held in memory by one task."""
MAX_BLOCKS = 1_000_000
"""Most scenario blocks in a run: each block is a seeded unit of work with its own task
bookkeeping, and the driver lists them all."""
MAX_HISTORY_WINDOW_DAYS = 10_000
"""Longest history window in trading days (about 40 years)."""
MAX_PARTITIONS = 1_000_000
"""Most Spark partitions of the block range."""
SPARK_MASTER = re.compile(
    r"local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?"
    r"|local-cluster\[[1-9]\d*,[1-9]\d*,[1-9]\d*\]"
    r"|spark://[A-Za-z0-9_.\-]+:\d{1,5}(,[A-Za-z0-9_.\-]+:\d{1,5})*"
    r"|yarn"
    r"|k8s://(https?://)?[A-Za-z0-9_.\-]+(:\d{1,5})?/?"
    r"|mesos://\S+"
)
"""Accepted ``spark.master`` forms."""


@dataclass(frozen=True)
class InputConfig:
    """Where the input snapshot lives: ``<root>/<table>.parquet`` or ``<root>/<table>/``."""

    root: str = "data/demo"

    def __post_init__(self) -> None:
        require(bool(self.root), "root", self.root, "must be a non-empty path")


@dataclass(frozen=True)
class OutputConfig:
    """Where results go: ``<root>/<table>/as_of_date=YYYY-MM-DD/``."""

    root: str = "output"
    write_scenario_pnl: bool = False

    def __post_init__(self) -> None:
        require(bool(self.root), "root", self.root, "must be a non-empty path")


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

    def __post_init__(self) -> None:
        require(1 <= self.n_scenarios <= 2_000_000_000, "n_scenarios", self.n_scenarios,
                "must be >= 1 and <= 2e9")
        require(1 <= self.horizon_days <= 2520, "horizon_days", self.horizon_days,
                "trading days, >= 1 and <= 2520")
        require(1 <= self.block_size <= MAX_BLOCK_SIZE, "block_size", self.block_size,
                f"must be >= 1 and <= {MAX_BLOCK_SIZE:_}: a block is held in memory by one task")
        n_blocks = -(-self.n_scenarios // self.block_size)
        require(n_blocks <= MAX_BLOCKS, "block_size", self.block_size,
                f"n_scenarios / block_size = {n_blocks:_} blocks, at most {MAX_BLOCKS:_}: "
                "each block is one seeded task; raise block_size")
        require(self.chunk_size >= 1, "chunk_size", self.chunk_size, "must be >= 1")
        require(0 <= self.seed <= MAX_SEED, "seed", self.seed,
                "a non-negative integer < 2**63 (stored as a 64-bit integer)")
        require(self.revaluation in REVALUATION_METHODS, "revaluation", self.revaluation,
                f"one of {REVALUATION_METHODS}")
        require(math.isfinite(self.grid_resolution) and self.grid_resolution >= 2,
                "grid_resolution", self.grid_resolution, "cells per sigma sqrt(tau), >= 2")
        require(math.isfinite(self.grid_range_sd) and self.grid_range_sd >= 4,
                "grid_range_sd", self.grid_range_sd,
                "standard deviations of the horizon return covered, >= 4")
        if self.antithetic:
            require(self.block_size % 2 == 0, "block_size", self.block_size,
                    "must be even with antithetic: true")
            require(self.n_scenarios % 2 == 0, "n_scenarios", self.n_scenarios,
                    "must be even with antithetic: true")


@dataclass(frozen=True)
class RiskConfig:
    """Confidence levels ``alpha`` in (0, 1) of every VaR and ES figure.

    ``factor_classes``: also compute ``risk_factor_var`` (VaR and ES with only spot, only
    vol or only rates moving); effective only when the scenarios carry vol or rate factors.
    """

    confidence_levels: tuple[float, ...] = (0.95, 0.975, 0.99)
    factor_classes: bool = True

    def __post_init__(self) -> None:
        require_levels("confidence_levels", self.confidence_levels)


SMILE_DYNAMICS = ("sticky_strike", "sticky_moneyness")
MAX_VOL_TENOR_DAYS = 2520
"""Longest vol factor tenor in trading days (10 years)."""


@dataclass(frozen=True)
class VolFactorsConfig:
    """Implied-vol risk factors: one relative ATM vol shock per underlying and tenor.

    ``tenors_days`` are trading days (year fraction ``days / 252``, so 252 is one year),
    strictly increasing; off by default (the scenario block is then spot only).
    """

    enabled: bool = False
    tenors_days: tuple[int, ...] = (21, 63, 252)

    def __post_init__(self) -> None:
        require(len(self.tenors_days) >= 1, "tenors_days", self.tenors_days,
                "a non-empty list of trading days")
        for i, d in enumerate(self.tenors_days):
            require(1 <= d <= MAX_VOL_TENOR_DAYS, f"tenors_days[{i}]", d,
                    f"trading days, >= 1 and <= {MAX_VOL_TENOR_DAYS}")
        require(all(a < b for a, b in zip(self.tenors_days[:-1], self.tenors_days[1:],
                                          strict=True)),
                "tenors_days", self.tenors_days, "strictly increasing")

    @property
    def tenors_years(self) -> tuple[float, ...]:
        """The tenors as year fractions ``days / 252``; empty when vol factors are off."""
        return tuple(d / 252.0 for d in self.tenors_days) if self.enabled else ()


@dataclass(frozen=True)
class RateFactorConfig:
    """The rate risk factor: one parallel shift of the zero curve; off by default."""

    enabled: bool = False


@dataclass(frozen=True)
class ScenarioModelConfig:
    """How drift and covariance of log returns (and of the vol and rate factors) are obtained.

    ``smile_dynamics`` says how a vol shock moves the smile when spot moves
    (``sticky_strike`` or ``sticky_moneyness``; the revaluation applies it).
    ``source: historical`` runs historical simulation (section ``historical``); its
    drift and covariance, used by the stages after the risk measures, come from the
    history as with ``source: history``.
    """

    source: str = "history"
    history_window_days: int = 500
    min_history_days: int = 60
    vol_factors: VolFactorsConfig = field(default_factory=VolFactorsConfig)
    rate_factor: RateFactorConfig = field(default_factory=RateFactorConfig)
    smile_dynamics: str = "sticky_strike"

    def __post_init__(self) -> None:
        require(self.smile_dynamics in SMILE_DYNAMICS, "smile_dynamics", self.smile_dynamics,
                f"one of {SMILE_DYNAMICS}")
        require(self.source in SCENARIO_SOURCES, "source", self.source,
                f"one of {SCENARIO_SOURCES}")
        require(2 <= self.history_window_days <= MAX_HISTORY_WINDOW_DAYS, "history_window_days",
                self.history_window_days,
                f"trading days, >= 2 and <= {MAX_HISTORY_WINDOW_DAYS:_} (about 40 years)")
        require(2 <= self.min_history_days <= self.history_window_days, "min_history_days",
                self.min_history_days, "must be >= 2 and <= history_window_days")


@dataclass(frozen=True)
class TimeConfig:
    """Day count: ``trading_252`` (trading days / 252) or ``act_365`` (calendar days / 365)."""

    day_count: str = "trading_252"

    def __post_init__(self) -> None:
        require(self.day_count in DAY_COUNTS, "day_count", self.day_count,
                f"one of {DAY_COUNTS}")


@dataclass(frozen=True)
class SparkConfig:
    """Spark session settings. ``partitions`` None means one partition per scenario block.

    ``master`` is one of ``local``, ``local[N]``, ``local[*]``, ``local[N,F]``,
    ``local-cluster[N,C,M]``, ``spark://host:port[,host:port...]``, ``yarn``,
    ``k8s://[https://]host[:port]`` or ``mesos://...``.
    """

    master: str = "local[*]"
    app_name: str = "risk-engine-nightly"
    partitions: int | None = None
    conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(SPARK_MASTER.fullmatch(self.master) is not None, "master", self.master,
                "local, local[N], local[*], local[N,F], spark://host:port[,host:port], "
                "yarn, k8s://host:port or mesos://...")
        if self.partitions is not None:
            require(1 <= self.partitions <= MAX_PARTITIONS, "partitions", self.partitions,
                    f">= 1 and <= {MAX_PARTITIONS:_}, or null")


@dataclass(frozen=True)
class ValidationConfig:
    """Ceilings on rejected positions; above either, the run fails and publishes nothing.

    ``max_rejected_share`` is the rejected positions' share of the book's gross notional
    (``|quantity x multiplier x spot|``; positions without a usable spot count in
    ``max_rejected_positions`` only). ``None`` disables a ceiling.
    """

    max_rejected_positions: int | None = None
    max_rejected_share: float | None = 0.05

    def __post_init__(self) -> None:
        if self.max_rejected_positions is not None:
            require(self.max_rejected_positions >= 0, "max_rejected_positions",
                    self.max_rejected_positions, "must be >= 0 or null")
        if self.max_rejected_share is not None:
            require(0.0 <= self.max_rejected_share <= 1.0, "max_rejected_share",
                    self.max_rejected_share, "a fraction in [0, 1] (0.05 for 5%) or null")


@dataclass(frozen=True)
class TestingConfig:
    """Test-only fault injection; off by default. Never set this in production.

    Tasks revaluing a block in ``fail_blocks`` raise on attempts below ``fail_attempts``;
    ``block_delay_seconds`` slows every block (to kill processes mid-stage in tests).
    """

    fail_blocks: tuple[int, ...] = ()
    fail_attempts: int = 0
    block_delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        require(self.fail_attempts >= 0, "fail_attempts", self.fail_attempts, ">= 0")
        require(self.block_delay_seconds >= 0, "block_delay_seconds", self.block_delay_seconds,
                ">= 0")


@dataclass(frozen=True)
class ReportConfig:
    """The morning report (``<output.root>/report/as_of_date=D/report.html``).

    Built after publication from the published tables; a failure is a run warning.
    ``top_positions``: positions listed per desk in the contributions tables.
    """

    enabled: bool = True
    top_positions: int = 10

    def __post_init__(self) -> None:
        require(self.top_positions >= 1, "top_positions", self.top_positions, ">= 1")


def _worst_case_default() -> WorstCaseStageSettings:
    from risk_engine.worst_case.stage import WorstCaseStageSettings

    return WorstCaseStageSettings()


def _governance_default() -> GovernanceSettings:
    from risk_engine.governance.settings import GovernanceSettings

    return GovernanceSettings()


def _section_types() -> dict[str, Any]:
    """The section types imported lazily (they import cvxpy), to resolve ``Config``'s hints."""
    from risk_engine.governance.settings import GovernanceSettings
    from risk_engine.worst_case.stage import WorstCaseStageSettings

    return {"GovernanceSettings": GovernanceSettings,
            "WorstCaseStageSettings": WorstCaseStageSettings}


@dataclass(frozen=True)
class Config:
    """The whole run configuration; every section typed.

    ``worst_case.models.confidence_levels`` defaults to ``risk.confidence_levels`` when the
    YAML leaves ``worst_case.confidence_levels`` out or null (see :func:`config_from_dict`).
    """

    as_of_date: dt.date
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    monte_carlo: MonteCarloConfig = field(default_factory=MonteCarloConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    scenario_model: ScenarioModelConfig = field(default_factory=ScenarioModelConfig)
    historical: HistoricalSettings = field(default_factory=HistoricalSettings)
    stressed_var: StressedVarSettings = field(default_factory=StressedVarSettings)
    stress: StressSettings = field(default_factory=StressSettings)
    time: TimeConfig = field(default_factory=TimeConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    worst_case: WorstCaseStageSettings = field(default_factory=_worst_case_default)
    governance: GovernanceSettings = field(default_factory=_governance_default)
    hedging: HedgingSettings = field(default_factory=HedgingSettings)
    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    report: ReportConfig = field(default_factory=ReportConfig)
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
        """Plain YAML-shaped mapping, the form that is hashed and logged.

        Dates are ISO strings; ``config_from_dict(cfg.to_dict()) == cfg``.
        """
        return json.loads(json.dumps(to_plain(self), default=str))

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


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases.

    No config needs them, and nested aliases (an alias bomb) turn a few hundred bytes into
    an exponentially large document.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"found alias *{event.anchor}: YAML aliases (*name, <<: *name) "
                "are not allowed in config files", event.start_mark)
        return super().compose_node(parent, index)


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely: plain types only, no aliases.

    Raises
    ------
    yaml.YAMLError
        For invalid YAML, a non-plain tag (``!!python/...``) or an alias.
    """
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config file safely (no tags, no aliases), resolving ``extends`` chains."""
    p = Path(path).resolve()
    if p in _seen:
        raise ConfigError(f"config 'extends' cycle: {' -> '.join(map(str, (*_seen, p)))}")
    if not p.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = read_yaml(p.parent / str(parent), (*_seen, p))
    return _merge(base, data)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from a plain mapping: the one way to make one.

    Every section is built by :func:`risk_engine.settings.build` and checked by its
    settings class; ``worst_case.confidence_levels`` absent or null takes
    ``risk.confidence_levels``.

    Raises
    ------
    ConfigError
        Naming the dotted key of the first unknown key or bad value.
    """
    if "as_of_date" not in data:
        raise ConfigError("config key 'as_of_date' is required (or pass --as-of YYYY-MM-DD)")
    cfg: Config = build(Config, data, localns=_section_types())
    return cfg


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
                value = parse_yaml(value)
            except yaml.YAMLError as exc:
                raise ConfigError(f"override {key}={value!r} is not a YAML scalar") from exc
        data = set_dotted(data, key, value)
    return config_from_dict(data)
