"""Scenario model estimation and seeded scenario generation."""

from risk_engine.scenarios.factors import FactorLayout
from risk_engine.scenarios.generator import ScenarioSource, block_rng, draw_log_returns
from risk_engine.scenarios.model import (
    ScenarioModel,
    estimate_from_history,
    from_factor_model,
    nearest_psd_correlation,
)

__all__ = [
    "FactorLayout",
    "ScenarioModel",
    "ScenarioSource",
    "block_rng",
    "draw_log_returns",
    "estimate_from_history",
    "from_factor_model",
    "nearest_psd_correlation",
]
