"""Portfolio analytics per desk: min-variance, efficient frontier, risk parity, risk contributions.

Inputs are the annualized moments of a desk's underlyings: ``mu`` (U,) and ``Sigma`` (U,U).
Weights are fractions of the desk's invested value. Solver outcomes are typed results
(:mod:`risk_engine.portfolio.results`); the per-desk table functions
(:mod:`risk_engine.portfolio.tables`) turn a failed desk into a row.
"""

from risk_engine.portfolio.frontier import current_book, efficient_frontier
from risk_engine.portfolio.min_variance import (
    MeanVarianceProblem,
    max_return,
    min_variance,
    min_variance_closed_form,
    two_fund_closed_form,
)
from risk_engine.portfolio.results import (
    CurrentBook,
    FrontierResult,
    PortfolioResult,
    RiskAdjustments,
    RiskContributions,
    RiskParityResult,
    Status,
)
from risk_engine.portfolio.risk_contributions import equal_risk_adjustments, risk_contributions
from risk_engine.portfolio.risk_parity import risk_parity
from risk_engine.portfolio.settings import Bounds, PortfolioSettings
from risk_engine.portfolio.tables import (
    FRONTIER_COLUMNS,
    MIN_VARIANCE_COLUMNS,
    RISK_PARITY_COLUMNS,
    PortfolioTables,
    desk_portfolio_tables,
    frontier_table,
    min_variance_table,
    risk_parity_table,
)

__all__ = [
    "FRONTIER_COLUMNS",
    "MIN_VARIANCE_COLUMNS",
    "RISK_PARITY_COLUMNS",
    "Bounds",
    "CurrentBook",
    "FrontierResult",
    "MeanVarianceProblem",
    "PortfolioResult",
    "PortfolioSettings",
    "PortfolioTables",
    "RiskAdjustments",
    "RiskContributions",
    "RiskParityResult",
    "Status",
    "current_book",
    "desk_portfolio_tables",
    "efficient_frontier",
    "equal_risk_adjustments",
    "frontier_table",
    "max_return",
    "min_variance",
    "min_variance_closed_form",
    "min_variance_table",
    "risk_contributions",
    "risk_parity",
    "risk_parity_table",
    "two_fund_closed_form",
]
