"""Every Parquet table the engine reads or writes, declared once.

Each column has a logical type (``string``, ``double``, ``long``, ``int``, ``boolean``,
``date``, ``timestamp``), a nullability flag, a unit and a meaning. The Spark layer turns
these into ``StructType`` for ``spark.read.schema(...)`` and ``mapInPandas(schema=...)``;
the pure core turns them into pyarrow schemas and checks pandas frames against them.
Input tables may carry extra columns; they are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from risk_engine.errors import SchemaError


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    name: str
    type: str
    nullable: bool = False
    unit: str = ""
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """A table: name, key columns and columns in order."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    doc: str = ""

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    def pandas_dtypes(self, *, drop: tuple[str, ...] = ("run_id", "as_of_date")
                      ) -> dict[str, str]:
        """Column -> pandas dtype of the frame a stage builds (metadata columns dropped).

        Strings and dates are ``object`` (dates as ``datetime.date``); the column order is
        the table's.
        """
        return {c.name: _PANDAS[c.type] for c in self.columns if c.name not in drop}

    def arrow_schema(self) -> pa.Schema:
        """The pyarrow schema of the table."""
        return pa.schema([pa.field(c.name, _ARROW[c.type], nullable=c.nullable)
                          for c in self.columns])


_ARROW: Mapping[str, pa.DataType] = {
    "string": pa.string(),
    "double": pa.float64(),
    "long": pa.int64(),
    "int": pa.int32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "array<double>": pa.list_(pa.float64()),
}


_PANDAS: Mapping[str, str] = {
    "string": "object",
    "double": "float64",
    "long": "int64",
    "int": "int32",
    "boolean": "bool",
    "date": "object",
    "timestamp": "datetime64[us, UTC]",
    "array<double>": "object",
}


def _c(name: str, typ: str, unit: str = "", doc: str = "", nullable: bool = False) -> Column:
    return Column(name=name, type=typ, nullable=nullable, unit=unit, doc=doc)


# ----------------------------------------------------------------------------- inputs

POSITIONS = Table(
    "positions",
    (
        _c("as_of_date", "date", doc="snapshot date"),
        _c("position_id", "string", doc="unique per as_of_date"),
        _c("desk", "string", doc="desk that owns the position"),
        _c("book", "string", nullable=True, doc="book inside the desk (optional)"),
        _c("instrument_type", "string", doc="equity, call or put"),
        _c("underlying", "string", doc="underlying identifier, as in market"),
        _c("quantity", "double", "units", "signed: long > 0, short < 0"),
        _c("strike", "double", "currency", "option strike; null for equity", nullable=True),
        _c("expiry", "date", doc="option expiry date; null for equity", nullable=True),
        _c("multiplier", "double", "units per contract", "contract multiplier (1 for stock)"),
    ),
    key=("as_of_date", "position_id"),
    doc="The book: one row per position.",
)

MARKET = Table(
    "market",
    (
        _c("as_of_date", "date"),
        _c("underlying", "string"),
        _c("spot", "double", "currency", "closing price"),
        _c("volatility", "double", "annual", "implied volatility used to price options"),
        _c("dividend_yield", "double", "annual, continuous", "dividend yield"),
        _c("sector", "string", doc="sector of the underlying"),
    ),
    key=("as_of_date", "underlying"),
    doc="Market snapshot per underlying.",
)

RATES = Table(
    "rates",
    (
        _c("as_of_date", "date"),
        _c("tenor_years", "double", "years"),
        _c("zero_rate", "double", "annual, continuous"),
    ),
    key=("as_of_date", "tenor_years"),
    doc="Zero curve in the reporting currency.",
)

HISTORY = Table(
    "history",
    (
        _c("date", "date"),
        _c("underlying", "string"),
        _c("close", "double", "currency", "daily closing price"),
    ),
    key=("date", "underlying"),
    doc="Daily closes used to estimate drift and covariance.",
)

FACTOR_MODEL = Table(
    "factor_model",
    (
        _c("underlying", "string"),
        _c("drift", "double", "annual", "price drift mu"),
        _c("volatility", "double", "annual", "volatility sigma of log returns"),
    ),
    key=("underlying",),
    doc="Given scenario model (replaces history estimation).",
)

CORRELATIONS = Table(
    "correlations",
    (
        _c("underlying_a", "string"),
        _c("underlying_b", "string"),
        _c("correlation", "double", "", "correlation of log returns; missing pairs are 0"),
    ),
    key=("underlying_a", "underlying_b"),
    doc="Correlations for the factor model.",
)

STRESS_SCENARIOS = Table(
    "stress_scenarios",
    (
        _c("scenario_id", "string", doc="rows with one id combine into one scenario"),
        _c("description", "string", nullable=True),
        _c("scope", "string", doc="all, sector, underlying or historical"),
        _c("target", "string", nullable=True,
           doc="the sector or underlying (scope sector / underlying); else ignored"),
        _c("spot_shock", "double", "fraction", "relative spot move (-0.2 = -20%); null = 0",
           nullable=True),
        _c("vol_shock", "double", "vol points", "implied vol move (5 = +0.05); null = 0",
           nullable=True),
        _c("rate_shock", "double", "basis points", "parallel zero-rate move; null = 0",
           nullable=True),
        _c("start_date", "date", nullable=True,
           doc="scope historical: replay the spot moves from this date's closes"),
        _c("end_date", "date", nullable=True, doc="scope historical: to this date's closes"),
    ),
    key=("scenario_id", "scope", "target"),
    doc="Optional user stress scenarios (stress stage).",
)

PNL_HISTORY = Table(
    "pnl_history",
    (
        _c("date", "date"),
        _c("desk", "string"),
        _c("pnl", "double", "currency", "realized daily P&L of the desk"),
    ),
    key=("date", "desk"),
    doc="Optional realized daily P&L per desk, for performance monitoring.",
)

POSITION_HISTORY = Table(
    "position_history",
    (
        _c("date", "date"),
        _c("desk", "string"),
        _c("underlying", "string"),
        _c("shares", "double", "shares", "the desk's net delta-equivalent shares at the close"),
    ),
    key=("date", "desk", "underlying"),
    doc="Optional daily net positions per desk, for the hedging stage's hedge_history.",
)

VOL_SURFACE = Table(
    "vol_surface",
    (
        _c("as_of_date", "date"),
        _c("underlying", "string", doc="underlying identifier, as in market"),
        _c("expiry", "date", doc="quoted expiry date (after the as-of date)"),
        _c("strike", "double", "currency", "quoted strike"),
        _c("implied_vol", "double", "annual", "Black-Scholes implied volatility of the quote"),
    ),
    key=("as_of_date", "underlying", "expiry", "strike"),
    doc="Optional implied-vol quotes per underlying; options on a quoted underlying take "
        "their vol from its surface (risk_engine.vol_surface), the others market.volatility.",
)

VOL_HISTORY = Table(
    "vol_history",
    (
        _c("date", "date"),
        _c("underlying", "string"),
        _c("tenor_days", "long", "trading days", "ATM tenor; year fraction tenor_days / 252"),
        _c("atm_vol", "double", "annual", "at-the-money implied volatility"),
    ),
    key=("date", "underlying", "tenor_days"),
    doc="Optional daily ATM implied vols, for the vol factors of scenario_model.source: "
        "history.",
)

RATE_HISTORY = Table(
    "rate_history",
    (
        _c("date", "date"),
        _c("tenor_years", "double", "years"),
        _c("zero_rate", "double", "annual, continuous"),
    ),
    key=("date", "tenor_years"),
    doc="Optional daily zero curves, for the rate factor of scenario_model.source: history.",
)

FACTOR_VOLS = Table(
    "factor_vols",
    (
        _c("factor", "string", doc="'vol:<underlying>:<tenor_days>' or 'rate'"),
        _c("volatility", "double", "annual",
           "vol of the log ATM vol shock (vol of vol), or of the parallel rate shift "
           "(decimal)"),
    ),
    key=("factor",),
    doc="Optional vol and rate factor volatilities for scenario_model.source: factor_model; "
        "their correlations are rows of correlations naming the same factors.",
)

INPUT_TABLES: Mapping[str, Table] = {
    t.name: t
    for t in (POSITIONS, MARKET, RATES, HISTORY, FACTOR_MODEL, CORRELATIONS, PNL_HISTORY,
              POSITION_HISTORY, VOL_HISTORY, RATE_HISTORY, FACTOR_VOLS,
              STRESS_SCENARIOS, VOL_SURFACE)
}

# ----------------------------------------------------------------------------- outputs

_RUN = (_c("run_id", "string", doc="unique id of the run"),)
_DATE = _c("as_of_date", "date", doc="partition column")

RISK_MEASURES = Table(
    "risk_measures",
    (
        *_RUN,
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("measure", "string", doc="VaR or ES"),
        _c("confidence_level", "double", doc="alpha in (0, 1)"),
        _c("horizon_days", "int", "trading days"),
        _c("value", "double", "currency", "positive loss"),
        _c("value_pct", "double", "fraction", "value / gross_value"),
        _c("std_error", "double", "currency", "Monte Carlo standard error of value"),
        _c("n_scenarios", "long"),
        _c("gross_value", "double", "currency", "sum of |position values|"),
        _DATE,
    ),
    key=("run_id", "scope", "desk", "measure", "confidence_level"),
    doc="VaR and ES per desk and for the firm.",
)

CONTRIBUTIONS = Table(
    "contributions",
    (
        *_RUN,
        _c("desk", "string"),
        _c("position_id", "string", nullable=True, doc="null for a desk's contribution to firm"),
        _c("measure", "string", doc="VaR or ES"),
        _c("confidence_level", "double"),
        _c("contribution", "double", "currency", "Euler contribution; rows add up to total"),
        _c("share", "double", "fraction", "contribution / total"),
        _c("total", "double", "currency", "the figure being decomposed"),
        _DATE,
    ),
    key=("run_id", "desk", "position_id", "measure", "confidence_level"),
    doc="Euler contributions to firm (desk rows) or desk (position rows) VaR and ES.",
)

GREEKS = Table(
    "greeks",
    (
        *_RUN,
        _c("desk", "string"),
        _c("underlying", "string"),
        _c("n_positions", "long"),
        _c("market_value", "double", "currency"),
        _c("delta", "double", "currency per unit of spot", "dV/dS"),
        _c("gamma", "double", "per unit of spot squared", "d2V/dS2"),
        _c("vega", "double", "currency per 1.00 vol", "dV/dsigma"),
        _c("theta", "double", "currency per year", "dV/dt"),
        _c("rho", "double", "currency per 1.00 rate", "dV/dr"),
        _c("vanna", "double", "currency per unit of spot per 1.00 vol", "d2V/dS dsigma"),
        _c("volga", "double", "currency per 1.00 vol squared", "d2V/dsigma2"),
        _DATE,
    ),
    key=("run_id", "desk", "underlying"),
    doc="Greeks per desk and underlying (raw derivatives x quantity x multiplier).",
)

VEGA_BUCKETS = Table(
    "vega_buckets",
    (
        *_RUN,
        _c("desk", "string"),
        _c("underlying", "string"),
        _c("expiry_bucket", "string",
           doc="1M (expiry <= 1/12 year), 3M (<= 0.25), 1Y (<= 1) or longer"),
        _c("n_positions", "long", doc="options in the bucket"),
        _c("vega", "double", "currency per 1.00 vol", "dV/dsigma summed over the bucket"),
        _DATE,
    ),
    key=("run_id", "desk", "underlying", "expiry_bucket"),
    doc="Vega per desk, underlying and expiry bucket of the options.",
)

RISK_FACTOR_VAR = Table(
    "risk_factor_var",
    (
        *_RUN,
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("measure", "string", doc="VaR or ES"),
        _c("confidence_level", "double", doc="alpha in (0, 1)"),
        _c("factor_class", "string",
           doc="spot, vol or rate: only that class moves (the others held at today's "
               "values), on the run's scenarios; all: every factor (= risk_measures)"),
        _c("horizon_days", "int", "trading days"),
        _c("value", "double", "currency", "positive loss"),
        _c("std_error", "double", "currency", "Monte Carlo standard error of value"),
        _c("n_scenarios", "long"),
        _DATE,
    ),
    key=("run_id", "scope", "desk", "measure", "confidence_level", "factor_class"),
    doc="VaR and ES per desk and for the firm when only one risk factor class moves.",
)

SCENARIO_PNL = Table(
    "scenario_pnl",
    (
        *_RUN,
        _c("block_id", "long"),
        _c("desk", "string"),
        _c("first_scenario", "long", doc="global index of the block's first scenario"),
        _c("pnl", "array<double>", "currency", "P&L of each scenario of the block"),
        _DATE,
    ),
    key=("run_id", "block_id", "desk"),
    doc="Audit: P&L per (scenario, desk), one row per scenario block and desk.",
)

REJECTED_ROWS = Table(
    "rejected_rows",
    (
        *_RUN,
        _c("table", "string"),
        _c("key", "string", doc="row key, e.g. the position_id"),
        _c("column", "string"),
        _c("value", "string", nullable=True),
        _c("reason", "string"),
        _DATE,
    ),
    key=("run_id", "table", "key", "column"),
    doc="Input rows set aside, with the reason; good rows are processed.",
)

RUN_MANIFEST = Table(
    "run_manifest",
    (
        *_RUN,
        _c("status", "string", doc="running, completed, completed_with_warnings, failed"),
        _c("started_at", "timestamp"),
        _c("finished_at", "timestamp", nullable=True),
        _c("config_hash", "string"),
        _c("seed", "long"),
        _c("n_scenarios", "long"),
        _c("horizon_days", "int"),
        _c("block_size", "long"),
        _c("code_version", "string"),
        _c("spark_version", "string"),
        _c("spark_master", "string"),
        _c("positions_in", "long"),
        _c("positions_rejected", "long"),
        _c("row_counts", "string", doc="JSON: rows read and rejected per input table"),
        _c("stage_timings", "string", doc="JSON: seconds per stage"),
        _c("warnings", "string", doc="JSON list of warnings"),
        _c("message", "string", nullable=True, doc="error message of a failed run"),
        _c("config", "string", doc="JSON of the resolved config"),
        _c("scenario_model", "string", nullable=True,
           doc="JSON: the scenario model's factor layout and vol/rate factor parameters"),
        _DATE,
    ),
    key=("run_id",),
    doc="One row per run: what ran, on what, and how it ended.",
)

POSITION_RISK = Table(
    "position_risk",
    (
        *_RUN,
        _c("desk", "string"),
        _c("position_id", "string"),
        _c("confidence_level", "double"),
        _c("market_value", "double", "currency"),
        _c("var_contribution", "double", "currency", "Euler contribution to desk VaR"),
        _c("es_contribution", "double", "currency", "Euler contribution to desk ES"),
        _c("marginal_var", "double", "per unit of market value",
           "dVaR/d(position value) = var_contribution / market_value"),
        _c("incremental_var", "double", "currency",
           "desk VaR minus desk VaR without the position (on the block-0 sample)"),
        _c("correlation", "double", "", "correlation of the position's P&L with its desk's "
                                        "(block-0 sample)"),
        _c("sample_scenarios", "long", doc="scenarios behind incremental_var and correlation"),
        _DATE,
    ),
    key=("run_id", "desk", "position_id", "confidence_level"),
    doc="Per-position risk: contributions, marginal and incremental VaR, correlation.",
)

LIMIT_CHECKS = Table(
    "limit_checks",
    (
        *_RUN,
        _c("desk", "string"),
        _c("check", "string", doc="position_concentration, sector_concentration, leverage, "
                                  "var_<level>, es_<level>, evaluation"),
        _c("subject", "string", nullable=True, doc="position_id or sector checked"),
        _c("value", "double"),
        _c("limit", "double"),
        _c("utilization", "double", "fraction", "value / limit"),
        _c("breached", "boolean", doc="value > limit"),
        _c("rank", "long", doc="1 for the worst offender of the check"),
        _c("message", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "check", "subject"),
    doc="Every limit check of every desk.",
)

ALERTS = Table(
    "alerts",
    (
        *_RUN,
        _c("severity", "string", doc="critical, warning, info"),
        _c("source", "string", doc="limits, performance, notification, run"),
        _c("desk", "string", nullable=True),
        _c("check", "string", nullable=True),
        _c("subject", "string", nullable=True),
        _c("message", "string"),
        _DATE,
    ),
    doc="Alerts raised by the run (also logged and optionally notified).",
)

MIN_VARIANCE = Table(
    "min_variance",
    (
        *_RUN,
        _c("desk", "string"), _c("underlying", "string", nullable=True),
        _c("weight", "double", nullable=True), _c("target_return", "double", nullable=True),
        _c("target_mode", "string", nullable=True),
        _c("expected_return", "double", nullable=True, unit="annual"),
        _c("volatility", "double", nullable=True, unit="annual"),
        _c("status", "string"), _c("message", "string", nullable=True),
        _c("solver", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "underlying"),
    doc="Minimum-variance weights per desk over its underlyings.",
)

FRONTIER = Table(
    "frontier",
    (
        *_RUN,
        _c("desk", "string"), _c("point", "long"), _c("underlying", "string", nullable=True),
        _c("weight", "double", nullable=True), _c("target_return", "double", nullable=True),
        _c("expected_return", "double", nullable=True, unit="annual"),
        _c("volatility", "double", nullable=True, unit="annual"),
        _c("sharpe", "double", nullable=True), _c("status", "string"),
        _c("frontier_status", "string", nullable=True), _c("message", "string", nullable=True),
        # The current book on the frontier's basis (same mu, Sigma, weights definition and
        # units as the points), repeated on every row of the desk.
        _c("current_weight", "double", "fraction", nullable=True,
           doc="current book's weight of this row's underlying: net delta-equivalent "
               "exposure over the desk's net sum, any sign"),
        _c("current_expected_return", "double", "annual", nullable=True,
           doc="mu' w of the current book, with the frontier's mu"),
        _c("current_volatility", "double", "annual", nullable=True,
           doc="sqrt(w' Sigma w) of the current book, with the frontier's Sigma"),
        _c("current_status", "string", nullable=True,
           doc="evaluated (feasible: on or inside the frontier), outside_bounds (may lie "
               "above it), no_weights (net short desk), not_applicable"),
        _DATE,
    ),
    key=("run_id", "desk", "point", "underlying"),
    doc="Efficient frontier per desk: one row per point and underlying; the current book's "
        "point in the current_* columns.",
)

RISK_PARITY = Table(
    "risk_parity",
    (
        *_RUN,
        _c("desk", "string"), _c("portfolio", "string", doc="risk_parity or current"),
        _c("underlying", "string", nullable=True), _c("weight", "double", nullable=True),
        _c("risk_budget", "double", nullable=True),
        _c("risk_contribution", "double", nullable=True),
        _c("risk_share", "double", nullable=True), _c("adjustment", "double", nullable=True),
        _c("note", "string", nullable=True), _c("volatility", "double", nullable=True),
        _c("status", "string"), _c("message", "string", nullable=True),
        _c("solver", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "portfolio", "underlying"),
    doc="Risk-parity weights and the current book's risk contributions per desk.",
)

PERFORMANCE = Table(
    "performance",
    (
        *_RUN,
        _c("desk", "string"), _c("source", "string", doc="hypothetical or realized"),
        _c("kind", "string"), _c("start_date", "date", nullable=True),
        _c("end_date", "date", nullable=True), _c("n_days", "long"),
        _c("capital", "double", nullable=True), _c("total_pnl", "double", nullable=True),
        _c("total_return", "double", nullable=True),
        _c("annualized_return", "double", nullable=True),
        _c("annualized_volatility", "double", nullable=True),
        _c("pnl_volatility", "double", nullable=True), _c("sharpe", "double", nullable=True),
        _c("max_drawdown", "double", nullable=True), _c("peak_date", "date", nullable=True),
        _c("trough_date", "date", nullable=True), _c("recovery_date", "date", nullable=True),
        _c("current_drawdown", "double", nullable=True),
        _c("hit_ratio", "double", nullable=True), _c("status", "string"),
        _c("message", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "source"),
    doc="Performance of each desk: hypothetical (current book over history) and realized.",
)

WORST_CASE_VAR = Table(
    "worst_case_var",
    (
        *_RUN,
        _c("desk", "string"),
        _c("model", "string", doc="WCVaR, WCPVaR or WCQVaR"),
        _c("portfolio", "string", doc="current or optimized"),
        _c("confidence_level", "double"),
        _c("horizon_days", "int", "trading days"),
        _c("moments", "string", doc="exact or sample (underlyings' moments)"),
        _c("instrument_moments", "string",
           doc="source of the instruments' moments (WCVaR, return floor): exact (stocks "
               "only, exact GBM) or 'sample of N scenarios'"),
        _c("value", "double", "currency", "worst-case VaR, positive loss", nullable=True),
        _c("value_pct", "double", "fraction", "value / the portfolio's gross value",
           nullable=True),
        _c("mc_var", "double", "currency", "Monte Carlo VaR of the desk at the level"),
        _c("status", "string", doc="optimal, inaccurate, not_applicable, infeasible, "
                                   "unbounded, solver_error"),
        _c("solver", "string", nullable=True),
        _c("message", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "model", "portfolio", "confidence_level"),
    doc="Worst-case VaR of each desk (Zymler, Kuhn & Rustem), current and optimized.",
)

OPTIMAL_ALLOCATIONS = Table(
    "optimal_allocations",
    (
        *_RUN,
        _c("desk", "string"),
        _c("model", "string"),
        _c("confidence_level", "double"),
        _c("instrument", "string", doc="underlying, or 'U C|P strike expiry'"),
        _c("current_weight", "double", "fraction of net capital"),
        _c("optimal_weight", "double", "fraction of net capital"),
        _DATE,
    ),
    key=("run_id", "desk", "model", "confidence_level", "instrument"),
    doc="Allocation over each desk's instruments minimizing its worst-case VaR.",
)

HEDGE_BASKETS = Table(
    "hedge_baskets",
    (
        *_RUN,
        _c("desk", "string", doc="desk, or 'firm' with hedging.scope firm"),
        _c("basket_id", "string", doc="<sector>-<n>, unique per desk"),
        _c("method", "string", doc="johansen or pca"),
        _c("test", "string", doc="johansen_trace or adf: the test of statistic"),
        _c("underlying", "string"),
        _c("weight", "long", "shares", "shares of the underlying in one lot of the basket"),
        _c("lots", "long", "lots", "lots of the basket in the desk's decomposition (0 when "
                                   "dropped)"),
        _c("statistic", "double", doc="Johansen trace (significant above) or ADF "
                                      "(significant below)", nullable=True),
        _c("critical_value", "double", doc="of statistic at hedging.significance",
           nullable=True),
        _c("adf_statistic", "double", doc="ADF of the spread (constant, one lag)",
           nullable=True),
        _c("adf_critical_value", "double", nullable=True),
        _c("mean_reversion_speed", "double", "per trading day",
           "-ln b of the spread's AR(1); null when not reverting", nullable=True),
        _c("half_life_days", "double", "trading days", "ln 2 / speed; null when not "
                                                       "reverting", nullable=True),
        _c("spread_volatility", "double", "currency", "std of the spread of one lot"),
        _c("kept", "boolean", doc="significant and half-life <= max_half_life_days"),
        _c("reason", "string", doc="why the basket was dropped", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk", "basket_id", "underlying"),
    doc="Mean-reverting baskets tested per desk: one row per basket and underlying.",
)

HEDGE_RECOMMENDATIONS = Table(
    "hedge_recommendations",
    (
        *_RUN,
        _c("desk", "string"), _c("underlying", "string"),
        _c("exposure_shares", "double", "shares", "delta-equivalent shares of the desk"),
        _c("basket_shares", "double", "shares", "shares held through basket lots"),
        _c("residual_shares", "double", "shares", "exposure - basket shares"),
        _c("lot_size", "long", "shares"),
        _c("lots", "long", "lots", "recommended trade, signed"),
        _c("shares", "long", "shares", "lots x lot_size"),
        _c("notional", "double", "currency", "shares x spot, signed"),
        _c("cost", "double", "currency", "transaction cost of the trade"),
        _DATE,
    ),
    key=("run_id", "desk", "underlying"),
    doc="Residual after the baskets and the whole-lot hedge trade, per desk and underlying.",
)

HEDGE_SUMMARY = Table(
    "hedge_summary",
    (
        *_RUN,
        _c("desk", "string"), _c("scope", "string", doc="desk or firm"),
        _c("n_underlyings", "long"), _c("n_baskets", "long", doc="baskets tested"),
        _c("n_kept", "long"), _c("n_dropped_not_significant", "long"),
        _c("n_dropped_half_life", "long"),
        _c("exposure_risk", "double", "currency", "std of the delta-equivalent P&L over the "
                                                  "horizon", nullable=True),
        _c("risk_after_baskets", "double", "currency", "std of the residual", nullable=True),
        _c("basket_risk_share", "double", "fraction", "1 - risk_after_baskets / "
                                                      "exposure_risk", nullable=True),
        _c("risk_after_hedge", "double", "currency", nullable=True),
        _c("continuous_bound", "double", "currency",
           "continuous lower bound of risk + cost", nullable=True),
        _c("gap", "double", "fraction", "(risk + cost - bound) / (risk + cost)",
           nullable=True),
        _c("cost", "double", "currency", "cost of the hedge trades", nullable=True),
        _c("decomposition_method", "string", doc="miqp, exact_box, rounding+local_search, "
                                                 "none"),
        _c("decomposition_status", "string"),
        _c("method", "string", doc="hedge: miqp, exact_box, rounding+local_search, none"),
        _c("status", "string", doc="optimal, inaccurate, not_applicable, solver_error, ..."),
        _c("solver", "string", nullable=True), _c("message", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "desk"),
    doc="Per desk: risk carried by mean-reverting baskets, the hedge's risk, cost and gap.",
)

HEDGE_HISTORY = Table(
    "hedge_history",
    (
        *_RUN,
        _c("desk", "string", doc="desk, or 'firm' with hedging.scope firm"),
        _c("date", "date", doc="date of the net positions"),
        _c("n_underlyings", "long", doc="underlyings with a non-zero position"),
        _c("gross_shares", "double", "shares", "sum of |shares|"),
        _c("exposure_risk", "double", "currency", "std of the day's positions' P&L over the "
                                                  "horizon, today's covariance"),
        _c("risk_after_baskets", "double", "currency"),
        _c("basket_risk_share", "double", "fraction", "1 - risk_after_baskets / "
                                                      "exposure_risk", nullable=True),
        _c("n_baskets_used", "long", doc="baskets with non-zero lots"),
        _c("gross_lots", "long", "lots", "sum of |lots| of the baskets"),
        _c("residual_gross_shares", "double", "shares", "sum of |residual shares|"),
        _c("method", "string", doc="enumeration, exact_box, rounding+local_search, none"),
        _c("status", "string"),
        _DATE,
    ),
    key=("run_id", "desk", "date"),
    doc="Day by day: how much of each day's net positions the kept baskets offset.",
)

BACKTEST = Table(
    "backtest",
    (
        *_RUN,
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("confidence_level", "double", doc="alpha of the VaR backtested"),
        _c("series", "string", doc="P&L series: actual (pnl_history) or hypothetical"),
        _c("window_days", "int", "business days", "days in the window"),
        _c("start_date", "date", doc="first P&L day of the window"),
        _c("end_date", "date", doc="last P&L day of the window (the as-of date)"),
        _c("observations", "long", doc="days with both a 1-day VaR of the day before and a P&L"),
        _c("missing", "long", doc="days of the window without VaR or P&L (never a pass)"),
        _c("exceptions", "long", doc="days with P&L < -VaR of the day before"),
        _c("expected_exceptions", "double", nullable=True,
           doc="observations x (1 - confidence_level)"),
        _c("exception_rate", "double", "fraction", "exceptions / observations", nullable=True),
        _c("kupiec_lr", "double", doc="Kupiec POF likelihood ratio, chi2(1)", nullable=True),
        _c("kupiec_p", "double", doc="p-value of kupiec_lr", nullable=True),
        _c("independence_lr", "double", nullable=True,
           doc="Christoffersen independence likelihood ratio, chi2(1)"),
        _c("independence_p", "double", doc="p-value of independence_lr", nullable=True),
        _c("cc_lr", "double", nullable=True,
           doc="conditional coverage = kupiec_lr + independence_lr, chi2(2)"),
        _c("cc_p", "double", doc="p-value of cc_lr", nullable=True),
        _c("zone", "string", nullable=True,
           doc="Basel traffic light green, yellow, red (exact binomial); null without data"),
        _c("multiplier_addon", "double", nullable=True, doc="Basel plus factor of the zone"),
        _c("pla_spearman", "double", nullable=True,
           doc="FRTB P&L attribution: Spearman correlation of HPL and RTPL"),
        _c("pla_ks", "double", nullable=True, doc="FRTB P&L attribution: KS statistic"),
        _c("pla_zone", "string", nullable=True, doc="green, amber or red"),
        _c("rtpl_factors", "string", nullable=True,
           doc="risk factors the RTPL moved: spot, spot+vol, spot+rate or spot+vol+rate "
               "(hypothetical rows; null otherwise)"),
        _c("status", "string", doc="ok, missing (no observation), not_applicable (no 1-day VaR)"),
        _c("message", "string", nullable=True),
        _DATE,
    ),
    key=("run_id", "scope", "desk", "confidence_level", "series"),
    doc="VaR backtest per desk and firm, level and P&L series over the window.",
)

BACKTEST_SERIES = Table(
    "backtest_series",
    (
        *_RUN,
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("confidence_level", "double"),
        _c("series", "string", doc="actual or hypothetical"),
        _c("date", "date", doc="P&L day t"),
        _c("var_date", "date", doc="the business day before t, whose published VaR is used"),
        _c("var", "double", "currency", "1-day VaR published for var_date (NaN if none)",
           nullable=True),
        _c("pnl", "double", "currency", "P&L of day t (NaN if none)", nullable=True),
        _c("rtpl", "double", "currency", nullable=True,
           doc="risk-theoretical P&L of day t (hypothetical rows; NaN otherwise)"),
        _c("rtpl_factors", "string", nullable=True,
           doc="risk factors rtpl moved: spot, spot+vol, spot+rate or spot+vol+rate "
               "(hypothetical rows; null otherwise)"),
        _c("exception", "boolean", nullable=True, doc="pnl < -var; null unless status ok"),
        _c("status", "string",
           doc="ok, missing_var, missing_pnl, missing, not_applicable (VaR of another horizon)"),
        _DATE,
    ),
    key=("run_id", "scope", "desk", "confidence_level", "series", "date"),
    doc="The aligned backtest series: VaR of day t-1 against P&L of day t.",
)

STRESSED_VAR = Table(
    "stressed_var",
    (
        *_RUN,
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("measure", "string", doc="VaR or ES: the window maximizing this measure"),
        _c("confidence_level", "double"),
        _c("horizon_days", "int", "trading days"),
        _c("window_days", "int", "trading days", "daily changes in each rolling window"),
        _c("window_start", "date", doc="first date of the worst window"),
        _c("window_end", "date", doc="last date of the worst window"),
        _c("value", "double", "currency", "the measure over the worst window (positive = loss)"),
        _c("window_scenarios", "long", doc="historical scenarios in each window"),
        _c("n_windows", "long", doc="rolling windows searched"),
        _c("history_start", "date", doc="first date of the history searched"),
        _c("history_end", "date", doc="last date of the history searched"),
        _DATE,
    ),
    key=("run_id", "scope", "desk", "measure", "confidence_level"),
    doc="Stressed VaR and ES: today's book over its worst rolling historical window.",
)

STRESS_RESULTS = Table(
    "stress_results",
    (
        *_RUN,
        _c("scenario_id", "string"),
        _c("description", "string", nullable=True),
        _c("scope", "string", doc="desk or firm"),
        _c("desk", "string", nullable=True, doc="desk; null for scope firm"),
        _c("base_value", "double", "currency", "value today"),
        _c("stressed_value", "double", "currency", "value with the scenario's shocks, now"),
        _c("pnl", "double", "currency", "stressed_value - base_value"),
        _c("worst_positions", "string",
           doc="position ids of the (up to) five largest losses, worst first, comma-separated"),
        _c("worst_pnl", "array<double>", "currency", "their P&L, in the same order"),
        _DATE,
    ),
    key=("run_id", "scenario_id", "scope", "desk"),
    doc="User stress scenarios (stress_scenarios input), full revaluation per desk and firm.",
)

STRESS_GRID = Table(
    "stress_grid",
    (
        *_RUN,
        _c("desk", "string"),
        _c("underlying", "string", nullable=True,
           doc="underlying moved; null: every underlying of the desk moved together"),
        _c("spot_shock", "double", "fraction", "relative spot move (-0.1 = -10%)"),
        _c("vol_shock", "double", "vol points", "implied vol move (5 = sigma + 0.05)"),
        _c("base_value", "double", "currency", "value today of the positions moved"),
        _c("pnl", "double", "currency", "full revaluation P&L of those positions, now"),
        _DATE,
    ),
    key=("run_id", "desk", "underlying", "spot_shock", "vol_shock"),
    doc="The spot-vol risk matrix per desk and underlying (full Black-Scholes revaluation).",
)

OUTPUT_TABLES: Mapping[str, Table] = {
    t.name: t
    for t in (RISK_MEASURES, CONTRIBUTIONS, GREEKS, SCENARIO_PNL, REJECTED_ROWS, RUN_MANIFEST,
              POSITION_RISK, LIMIT_CHECKS, ALERTS, MIN_VARIANCE, FRONTIER, RISK_PARITY,
              PERFORMANCE, WORST_CASE_VAR, OPTIMAL_ALLOCATIONS, HEDGE_BASKETS,
              HEDGE_RECOMMENDATIONS, HEDGE_SUMMARY, HEDGE_HISTORY, BACKTEST, BACKTEST_SERIES,
              STRESSED_VAR, STRESS_RESULTS, STRESS_GRID, VEGA_BUCKETS, RISK_FACTOR_VAR)
}


def check_columns(table: Table, columns: Mapping[str, str]) -> None:
    """Check that a table read from disk has every declared column with the declared type.

    Parameters
    ----------
    table
        The declared table.
    columns
        Actual column name -> logical type (as in :class:`Column`).

    Raises
    ------
    SchemaError
        Naming the table, the missing columns, and every column of the wrong type with its
        expected and actual type, plus the full list of actual columns.
    """
    missing = [c.name for c in table.columns if c.name not in columns]
    wrong = [
        f"{c.name} (expected {c.type}, got {columns[c.name]})"
        for c in table.columns
        if c.name in columns and columns[c.name] != c.type
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing column(s): {', '.join(missing)}")
        if wrong:
            parts.append(f"wrong type: {'; '.join(wrong)}")
        actual = ", ".join(f"{k}:{v}" for k, v in columns.items())
        raise SchemaError(f"table {table.name}: {'; '.join(parts)}. Actual columns: {actual}")
