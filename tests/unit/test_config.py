"""Config loading: defaults, overlays, overrides, and one clear error per bad key or value."""

import datetime as dt
from pathlib import Path

import pytest

from risk_engine.config import load_config
from risk_engine.errors import ConfigError

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
