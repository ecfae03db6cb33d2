"""Config loading: defaults, overlays, overrides, and one clear error per bad key or value."""

import datetime as dt
import re
from pathlib import Path

import pytest

from risk_engine.config import load_config, read_yaml
from risk_engine.errors import ConfigError
from tests import helpers as h

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_shipped_configs_load():
    local = load_config(CONF / "local.yaml")
    assert local.as_of_date == dt.date(2026, 11, 20)
    assert local.monte_carlo.n_scenarios == 100_000
    assert local.risk.confidence_levels == (0.95, 0.975, 0.99)
    cluster = load_config(CONF / "cluster.yaml")
    assert cluster.monte_carlo.n_scenarios == 1_000_000
    assert cluster.spark.conf["spark.sql.shuffle.partitions"] == "16"
    assert cluster.hash() != local.hash()


def test_overrides_and_overlays(tmp_path):
    over = tmp_path / "o.yaml"
    over.write_text(f"extends: {CONF / 'default.yaml'}\nmonte_carlo:\n  seed: 5\n")
    cfg = load_config(over, overrides={"monte_carlo.n_scenarios": "2000",
                                       "as_of_date": "2026-11-19"})
    assert cfg.monte_carlo.seed == 5 and cfg.monte_carlo.n_scenarios == 2000
    assert cfg.monte_carlo.horizon_days == 10  # from the base
    assert cfg.as_of_date == dt.date(2026, 11, 19)
    assert cfg.n_blocks == 1 and cfg.block_sizes() == [2000]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("risk.confidence_levels", "[99]", r"risk.confidence_levels\[0\].*\(0, 1\)"),
        ("monte_carlo.horizon_days", "-1", "monte_carlo.horizon_days"),
        ("monte_carlo.n_scenarios", "0", "monte_carlo.n_scenarios"),
        ("monte_carlo.n_scenario", "10", "unknown config key.*monte_carlo.n_scenario"),
        ("scenario_model.source", "garch", "scenario_model.source"),
        ("time.day_count", "30/360", "time.day_count"),
        ("monte_carlo.seed", "abc", "monte_carlo.seed.*integer"),
        ("as_of_date", "20-11-2026", "as_of_date.*YYYY-MM-DD"),
        ("monte_carlo.antithetic", "yes please", "monte_carlo.antithetic"),
    ],
)
def test_bad_values_are_clear_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONF / "local.yaml", overrides={key: value})


def test_block_counts_with_a_partial_last_block():
    cfg = load_config(CONF / "local.yaml", overrides={"monte_carlo.n_scenarios": "25001",
                                                      "monte_carlo.block_size": "10000"})
    assert cfg.block_sizes() == [10000, 10000, 5001]


def test_antithetic_needs_even_blocks():
    with pytest.raises(ConfigError, match="even"):
        load_config(CONF / "local.yaml", overrides={"monte_carlo.antithetic": "true",
                                                    "monte_carlo.block_size": "1001"})


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("as_of_date: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_missing_file_and_cycles(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(a)


# ----------------------------------------------------------------- one builder, typed sections


def test_every_section_is_typed_and_round_trips():
    from risk_engine.backtest.settings import BacktestSettings
    from risk_engine.config import (
        Config,
        InputConfig,
        MonteCarloConfig,
        OutputConfig,
        ReportConfig,
        RiskConfig,
        ScenarioModelConfig,
        SparkConfig,
        TestingConfig,
        TimeConfig,
        ValidationConfig,
        config_from_dict,
    )
    from risk_engine.governance import (
        AlertSettings,
        GovernanceLimits,
        LimitSettings,
        PerformanceSettings,
    )
    from risk_engine.governance.settings import GovernanceSettings
    from risk_engine.hedging.settings import HedgingSettings
    from risk_engine.portfolio import Bounds, PortfolioSettings
    from risk_engine.scenarios.historical import HistoricalSettings
    from risk_engine.stress.settings import StressedVarSettings, StressSettings
    from risk_engine.worst_case import WorstCaseSettings
    from risk_engine.worst_case.stage import WorstCaseStageSettings

    cfg = load_config(CONF / "default.yaml")
    sections = {"input": InputConfig, "output": OutputConfig, "monte_carlo": MonteCarloConfig,
                "risk": RiskConfig, "scenario_model": ScenarioModelConfig, "time": TimeConfig,
                "spark": SparkConfig, "validation": ValidationConfig,
                "worst_case": WorstCaseStageSettings, "governance": GovernanceSettings,
                "testing": TestingConfig, "hedging": HedgingSettings,
                "backtest": BacktestSettings, "report": ReportConfig,
                "historical": HistoricalSettings, "stressed_var": StressedVarSettings,
                "stress": StressSettings}
    assert set(sections) == {f for f in Config.__dataclass_fields__ if f != "as_of_date"}
    for name, cls in sections.items():
        assert isinstance(getattr(cfg, name), cls), name
    wc, gov = cfg.worst_case, cfg.governance
    assert isinstance(wc.models, WorstCaseSettings)
    assert wc.models.confidence_levels == (0.99,) and wc.models.solvers == ("CLARABEL", "SCS")
    assert isinstance(gov.limits, GovernanceLimits) and isinstance(gov.alerts, AlertSettings)
    assert isinstance(gov.performance, PerformanceSettings)
    assert isinstance(gov.portfolio, PortfolioSettings)
    assert isinstance(gov.portfolio.bounds, Bounds)
    tech = gov.limits.for_desk("tech_mm")
    assert isinstance(tech, LimitSettings)
    # desk keys merged over the default's
    assert (tech.capital, tech.max_sector_share, tech.max_position_share) == (18e6, 0.75, 0.20)
    assert tech.var_limits == ((0.99, 800_000.0),)
    assert gov.alerts.notification is None and gov.performance.lookback_days == 252
    # the plain form is the YAML shape and builds the same config again
    plain = cfg.to_dict()
    assert plain["worst_case"]["solver"] == "CLARABEL" and "_solvers" not in plain["worst_case"]
    assert plain["governance"]["limits"]["desks"]["tech_mm"]["capital"] == 18e6
    again = config_from_dict(plain)
    assert again == cfg and again.hash() == cfg.hash()


def test_worst_case_levels_default_to_the_risk_levels(tmp_path):
    risk = {"risk.confidence_levels": "[0.9, 0.995]"}
    explicit = load_config(CONF / "default.yaml", overrides=risk)
    assert explicit.worst_case.models.confidence_levels == (0.99,)  # set in default.yaml
    null = load_config(CONF / "default.yaml",
                       overrides={**risk, "worst_case.confidence_levels": "null"})
    assert null.worst_case.models.confidence_levels == (0.9, 0.995)
    bare = tmp_path / "bare.yaml"
    bare.write_text("as_of_date: 2026-11-20\nrisk: {confidence_levels: [0.9, 0.995]}\n"
                    "worst_case: {solver: SCS}\n")
    assert load_config(bare).worst_case.models.confidence_levels == (0.9, 0.995)
    bare.write_text("as_of_date: 2026-11-20\nrisk: {confidence_levels: [0.9, 0.995]}\n")
    assert load_config(bare).worst_case.models.confidence_levels == (0.9, 0.995)


@pytest.mark.parametrize(
    "key",
    ["input.rooot", "output.roots", "monte_carlo.n_scenario", "risk.levels",
     "scenario_model.window", "time.calendar", "spark.mastr", "validation.max_rejected",
     "testing.fail", "worst_case.solvers", "governance.enable",
     "governance.limits.defaults", "governance.limits.default.max_positions",
     "governance.limits.desks.tech_mm.capitol", "governance.alerts.max_dd",
     "governance.performance.lookback", "governance.portfolio.bound",
     "governance.portfolio.bounds.low"],
)
def test_an_unknown_key_in_any_section_is_named(key):
    with pytest.raises(ConfigError, match=rf"unknown config key\(s\) {re.escape(key)}\b"):
        load_config(CONF / "default.yaml", overrides={key: "1"})


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("governance.limits.desks.tech_mm.max_position_share", "2", None),
        ("governance.limits.default.max_leverage", "-1", None),
        ("governance.limits.default.var_limits", "{99: 1e6}", "governance.limits.default."
                                                              "var_limits.99"),
        ("governance.limits.desks.tech_mm.var_limits", "{0.99: -5}",
         "governance.limits.desks.tech_mm.var_limits.0.99"),
        ("governance.limits.desks.tech_mm", "5", None),
        ("governance.alerts.warning_utilization", "90", None),
        ("governance.alerts.notification", "{kind: smtp, url: 'http://x'}",
         "governance.alerts.notification.kind"),
        ("governance.alerts.notification", "{kind: http, url: 'ftp://x'}",
         "governance.alerts.notification.url"),
        ("governance.alerts.notification", "{url: 'http://x'}",
         "governance.alerts.notification.kind"),
        ("governance.performance.lookback_days", "1000000", None),
        ("governance.portfolio.bounds.upper", "-1", None),
        ("governance.portfolio.bounds", "{lower: 0.5, upper: 0.2}",
         "governance.portfolio.bounds.upper"),
        ("governance.portfolio.risk_budgets", "{AAPL: -1}", "governance.portfolio.risk_budgets."
                                                            "AAPL"),
        ("governance.portfolio.n_frontier_points", "1", None),
        ("governance.enabled", "maybe", None),
        ("worst_case.weight_upper", "-1", None),
        ("worst_case.weight_lower", ".nan", None),
        ("worst_case.confidence_levels", "[0.99, 99]", r"worst_case.confidence_levels\[1\]"),
        ("worst_case.moments", "median", None),
        ("worst_case.models", "[VaR]", None),
        ("worst_case.solver", "ECOS", None),
        ("worst_case.fallback_solver", "ECOS", None),
        ("worst_case.min_premium", "1.5", None),
        ("worst_case.moment_blocks", "0", None),
        ("worst_case.max_sdp_size", "1", None),
        ("worst_case.models", "{solver: SCS}", None),
        ("validation.max_rejected_share", "5", None),
        ("testing.fail_attempts", "-1", None),
        ("input.root", "''", None),
    ],
)
def test_a_bad_value_in_any_section_names_the_dotted_key(key, value, named):
    with pytest.raises(ConfigError, match=rf"config key '{named or re.escape(key)}'"):
        load_config(CONF / "default.yaml", overrides={key: value})


def test_yaml_1_1_number_strings_are_numbers():
    # PyYAML reads 5e6 (no dot) as a string; float keys take it as the number
    cfg = load_config(CONF / "default.yaml", overrides={
        "governance.limits.desks.tech_mm.capital": "5e6", "worst_case.min_premium": "1e-7",
        "governance.limits.desks.tech_mm.var_limits": "{0.99: 1e6}"})
    tech = cfg.governance.limits.for_desk("tech_mm")
    assert tech.capital == 5e6 and tech.var_limits == ((0.99, 1e6),)
    assert cfg.worst_case.min_premium == 1e-7
    with pytest.raises(ConfigError, match="monte_carlo.n_scenarios.*integer"):
        load_config(CONF / "default.yaml", overrides={"monte_carlo.n_scenarios": "1e6"})


# ------------------------------------------------ hostile values: refused at load, not later


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        ({"monte_carlo.seed": str(2**63)}, "monte_carlo.seed", "2\\*\\*63"),
        ({"monte_carlo.seed": "-1"}, "monte_carlo.seed", "non-negative"),
        ({"monte_carlo.block_size": "10000001", "monte_carlo.n_scenarios": "20000002"},
         "monte_carlo.block_size", "held in memory by one task"),
        ({"monte_carlo.block_size": "1000", "monte_carlo.n_scenarios": "2000000000"},
         "monte_carlo.block_size", "2_000_000 blocks"),
        ({"scenario_model.history_window_days": "1000000"},
         "scenario_model.history_window_days", "10_000"),
        ({"governance.performance.lookback_days": "1000000"},
         "governance.performance.lookback_days", "10_000"),
        ({"monte_carlo.grid_range_sd": ".inf"}, "monte_carlo.grid_range_sd", ">= 4"),
        ({"spark.partitions": str(10**12)}, "spark.partitions", "1_000_000"),
        ({"spark.conf": "{spark.x: {nested: 1}}"}, "spark.conf.spark.x", "string or a number"),
    ],
)
def test_values_that_would_crash_later_are_refused_at_load(overrides, key, words):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}'.*{words}"):
        load_config(CONF / "default.yaml", overrides=overrides)


def test_the_largest_accepted_values_load():
    cfg = load_config(CONF / "default.yaml", overrides={
        "monte_carlo.seed": str(2**63 - 1), "monte_carlo.block_size": "10000000",
        "monte_carlo.n_scenarios": "2000000000", "scenario_model.history_window_days": "10000"})
    assert cfg.monte_carlo.seed == 2**63 - 1 and cfg.n_blocks == 200
    # the history read window stays a valid date
    assert cfg.as_of_date - dt.timedelta(days=int(10_000 * 1.6) + 14) > dt.date(1900, 1, 1)


@pytest.mark.parametrize("master", [
    "local", "local[4]", "local[*]", "local[4,2]", "local[*,3]", "local-cluster[2,1,1024]",
    "spark://127.0.0.1:7077", "spark://a.example:7077,b.example:7077", "yarn",
    "k8s://https://10.0.0.1:6443", "k8s://kube.example:443", "mesos://zk://h:2181/mesos",
])
def test_known_spark_masters_load(master):
    cfg = load_config(CONF / "default.yaml", overrides={"spark.master": master})
    assert cfg.spark.master == master


@pytest.mark.parametrize("master", [
    "", "locale", "local[0]", "local[*", "local[-1]", "spark://host", "spark://h:7077,",
    "yarn-cluster", "k8s://", "http://127.0.0.1:7077", "local[2] ", "127.0.0.1:7077",
])
def test_unknown_spark_masters_are_refused(master):
    with pytest.raises(ConfigError, match="config key 'spark.master'"):
        load_config(CONF / "default.yaml", overrides={"spark.master": f"'{master}'"})


ALIAS_BOMB = """\
as_of_date: 2026-11-20
spark:
  conf:
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_a_yaml_alias_bomb_is_refused_at_read_time(tmp_path):
    # 405 bytes; 9**8 = 43 million strings once expanded (the old loader produced a 226 MB
    # spark.conf value after 27 s; one more line and it runs out of memory)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert bomb.stat().st_size < 500
    with pytest.raises(ConfigError, match="bomb.yaml is not valid YAML.*alias"):
        read_yaml(bomb)
    with pytest.raises(ConfigError, match="alias"):
        load_config(bomb)
    with pytest.raises(ConfigError, match="override spark.conf"):
        load_config(CONF / "default.yaml", overrides={"spark.conf": "[&a [x, x], *a]"})
    anchor_only = tmp_path / "anchor.yaml"
    anchor_only.write_text("as_of_date: 2026-11-20\nspark: &s {app_name: x}\n")
    assert load_config(anchor_only).spark.app_name == "x"


def test_a_block_too_large_for_a_task_is_refused_before_any_draw():
    from risk_engine.pipeline import InputTables, prepare

    cfg = h.config(monte_carlo={"n_scenarios": 10_000_000, "block_size": 10_000_000})
    inputs = InputTables(
        h.positions([(f"s{i}", "d", "equity", f"U{i}", 1.0, None, None, 1.0)
                     for i in range(30)]),
        h.market([(f"U{i}", 100.0, 0.3, 0.0, "x") for i in range(30)]), h.flat_rates(),
        factor_model=h.factor_model([(f"U{i}", 0.05, 0.3) for i in range(30)]),
        correlations=h.correlations())
    with pytest.raises(ConfigError, match=r"monte_carlo.block_size' = 10000000.*4.5 GiB.*"
                                          r"use at most 4400581"):  # 2 GiB / (8 x (2 x 30 + 1))
        prepare(cfg, inputs)
