"""The nightly run's numerical steps, free of Spark.

The Spark layer reads the tables, calls :func:`prepare` on the driver, fans
:func:`simulate_block` out over scenario blocks, aggregates the blocks' losses into exact
tail figures (:mod:`risk_engine.tails`) and hands them to :func:`risk_tables`.
:func:`run_in_process` chains the same steps in one process; it is the reference the Spark
job must reproduce bit for bit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.book import (
    ResolvedBook,
    Snapshot,
    greeks_table,
    reject_positions_on,
    resolve_book,
    validate_snapshot,
)
from risk_engine.config import Config
from risk_engine.errors import DataError, RejectionCeilingError
from risk_engine.revaluation import RevaluationPlan, desk_pnl
from risk_engine.revaluation_grid import GridPlan, build_plan
from risk_engine.scenarios import (
    ScenarioModel,
    ScenarioSource,
    estimate_from_history,
    from_factor_model,
)
from risk_engine.tails import TailSummary, summarize_matrix
from risk_engine.timeaxis import ZeroCurve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputTables:
    """The input snapshot of one date as pandas frames (see :mod:`risk_engine.schemas`)."""

    positions: pd.DataFrame
    market: pd.DataFrame
    rates: pd.DataFrame
    history: pd.DataFrame | None = None
    factor_model: pd.DataFrame | None = None
    correlations: pd.DataFrame | None = None
    pnl_history: pd.DataFrame | None = None


@dataclass(frozen=True)
class SimulationSpec:
    """Everything a scenario block needs; small and picklable, shipped to executors once."""

    plan: RevaluationPlan | GridPlan
    source: ScenarioSource
    chunk_size: int


@dataclass(frozen=True)
class Prepared:
    """The resolved book, scenario model and simulation spec of one run."""

    book: ResolvedBook
    model: ScenarioModel
    spec: SimulationSpec
    rejected: pd.DataFrame
    warnings: tuple[str, ...] = ()
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def prepare(cfg: Config, inputs: InputTables) -> Prepared:
    """Validate rows, resolve the book and build the scenario model, on the driver.

    Raises
    ------
    DataError
        If no valid position remains, or the scenario model's inputs are missing.
    """
    as_of = cfg.as_of_date
    warnings: list[str] = []
    if len(inputs.positions) == 0:
        raise DataError(f"positions: no rows for as_of_date {as_of} under {cfg.input.root} "
                        "(no snapshot for that date?)")
    if len(inputs.market) == 0:
        raise DataError(f"market: no rows for as_of_date {as_of} under {cfg.input.root}")
    if len(inputs.rates) == 0:
        raise DataError(f"rates: no zero curve for as_of_date {as_of} under {cfg.input.root}")
    snap = validate_snapshot(inputs.positions, inputs.market, as_of)
    if len(snap.positions) == 0:
        raise DataError(f"positions: no valid position for as_of_date {as_of} "
                        f"({len(inputs.positions)} row(s) read, {len(snap.rejected)} rejected)")
    underlyings = tuple(sorted(snap.positions["underlying"].unique()))
    if cfg.scenario_model.source == "history":
        if inputs.history is None:
            raise DataError("history: table not found but scenario_model.source is history")
        model, missing = estimate_from_history(
            inputs.history, underlyings, as_of,
            window_days=cfg.scenario_model.history_window_days,
            min_days=cfg.scenario_model.min_history_days,
        )
    else:
        if inputs.factor_model is None:
            raise DataError("factor_model: table not found but scenario_model.source is "
                            "factor_model")
        corr = inputs.correlations
        if corr is None:
            corr = pd.DataFrame(columns=["underlying_a", "underlying_b", "correlation"])
        model, missing = from_factor_model(inputs.factor_model, corr, underlyings)
    snap = reject_positions_on(snap, missing)
    if model.repair:
        warnings.append(model.repair)
    curve = ZeroCurve.from_points(inputs.rates["tenor_years"], inputs.rates["zero_rate"])
    book = resolve_book(snap, curve, as_of=as_of, horizon_days=cfg.monte_carlo.horizon_days,
                        day_count=cfg.time.day_count)
    model = model.subset(book.underlyings)
    mc = cfg.monte_carlo
    source = ScenarioSource(model=model, horizon_years=book.horizon_years, seed=mc.seed,
                            antithetic=mc.antithetic, block_size=mc.block_size,
                            n_scenarios=mc.n_scenarios)
    plan = build_plan(book, mc.revaluation, model=model, resolution=mc.grid_resolution,
                      range_sd=mc.grid_range_sd)
    spec = SimulationSpec(plan=plan, source=source, chunk_size=mc.chunk_size)
    rejected = rejected_frame(snap)
    counts = _row_counts(inputs, rejected)
    if len(rejected):
        warnings.append(f"{len(rejected)} input row(s) rejected; see rejected_rows")
    return Prepared(book, model, spec, rejected, tuple(warnings), counts)


def rejected_notional_share(inputs: InputTables, rejected: pd.DataFrame) -> float:
    """Rejected positions' share of the book's gross notional ``|qty x multiplier x spot|``.

    Positions without a usable spot, quantity or multiplier are left out of both sums.
    """
    pos = inputs.positions
    spot = inputs.market.drop_duplicates("underlying").set_index("underlying")["spot"]
    notional = (pd.to_numeric(pos["quantity"], errors="coerce")
                * pd.to_numeric(pos["multiplier"], errors="coerce")
                * pos["underlying"].map(spot).astype(float)).abs()
    notional = notional.where(np.isfinite(notional) & (notional > 0), 0.0)
    total = float(notional.sum())
    if total <= 0:
        return 0.0
    bad_ids = set(rejected.loc[rejected["table"] == "positions", "key"])
    bad = pos["position_id"].astype(str).isin(bad_ids)
    return float(notional[bad].sum()) / total


def check_rejection_ceiling(cfg: Config, inputs: InputTables, prepared: Prepared) -> None:
    """Fail the run if rejected positions exceed ``validation`` ceilings.

    Raises
    ------
    RejectionCeilingError
        Naming the count or share, the ceiling and where the rejected rows are described.
    """
    v = cfg.validation
    rej = prepared.rejected
    count = int(rej.loc[rej["table"] == "positions", "key"].nunique())
    if v.max_rejected_positions is not None and count > v.max_rejected_positions:
        raise RejectionCeilingError(
            f"positions: {count} rejected position(s) exceed validation.max_rejected_positions "
            f"= {v.max_rejected_positions}; nothing published for {cfg.as_of_date}")
    if v.max_rejected_share is not None:
        share = rejected_notional_share(inputs, rej)
        if share > v.max_rejected_share:
            raise RejectionCeilingError(
                f"positions: rejected positions are {share:.2%} of gross notional, above "
                f"validation.max_rejected_share = {v.max_rejected_share:.2%}; nothing "
                f"published for {cfg.as_of_date}")


def rejected_frame(snap: Snapshot) -> pd.DataFrame:
    """Rejected rows as a frame with columns table, key, column, value, reason."""
    rows = [r.as_row() for r in snap.rejected]
    return pd.DataFrame(rows, columns=["table", "key", "column", "value", "reason"])


def _row_counts(inputs: InputTables, rejected: pd.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in ("positions", "market", "rates", "history", "factor_model", "correlations",
                 "pnl_history"):
        frame = getattr(inputs, name)
        if frame is None:
            continue
        n_rej = int(rejected.loc[rejected["table"] == name, "key"].nunique())
        out[name] = {"in": int(len(frame)), "rejected": n_rej}
    return out


def simulate_block(spec: SimulationSpec, block_id: int) -> NDArray[np.float64]:
    """Draw block ``block_id``'s scenarios from ``(seed, block_id)`` and revalue the book.

    Returns
    -------
    ndarray, shape (n_b, D)
        P&L per (scenario, desk) of the block's scenarios, in scenario order.
    """
    return desk_pnl(spec.plan, spec.source.block(block_id), spec.chunk_size)


def risk_tables(summary: TailSummary, book: ResolvedBook, cfg: Config) -> dict[str, pd.DataFrame]:
    """Risk measures, desk contributions and Greeks from the exact tail summary.

    Parameters
    ----------
    summary
        VaR, ES, standard errors and the firm's Euler contributions per desk
        (:mod:`risk_engine.tails`), desks in ``book.desks`` order.
    book
        The resolved book (for gross values and Greeks).
    cfg
        The run config (horizon).

    Returns
    -------
    dict with frames ``risk_measures``, ``contributions``, ``greeks`` (without ``run_id`` and
    ``as_of_date``, which the caller adds).
    """
    gross = book.gross_value()
    horizon = cfg.monte_carlo.horizon_days
    rows = []
    scopes: list[tuple[str, str | None, int, float]] = [
        ("desk", desk, d, float(gross[d])) for d, desk in enumerate(book.desks)]
    scopes.append(("firm", None, summary.n_desks, float(gross.sum())))
    for scope, desk, series, gv in scopes:
        for j in range(len(summary.levels)):
            est = summary.get(series, j).estimate
            for measure, value, se in (("VaR", est.var, est.var_std_error),
                                       ("ES", est.es, est.es_std_error)):
                rows.append({
                    "scope": scope, "desk": desk, "measure": measure,
                    "confidence_level": est.confidence_level, "horizon_days": horizon,
                    # An all-zero desk has gross value 0 and VaR 0: stated as 0, not NaN.
                    "value": value, "value_pct": value / gv if gv > 0 else 0.0,
                    "std_error": se, "n_scenarios": summary.n_scenarios, "gross_value": gv,
                })
    measures = pd.DataFrame(rows)
    measures["horizon_days"] = measures["horizon_days"].astype(np.int32)
    measures["n_scenarios"] = measures["n_scenarios"].astype(np.int64)

    contrib_rows = []
    for j, alpha in enumerate(summary.levels):
        firm = summary.firm(j)
        for measure, contrib, total in (("VaR", firm.desk_var, firm.estimate.var),
                                        ("ES", firm.desk_es, firm.estimate.es)):
            assert contrib is not None
            for d, desk in enumerate(book.desks):
                contrib_rows.append({
                    "desk": desk, "position_id": None, "measure": measure,
                    "confidence_level": alpha, "contribution": float(contrib[d]),
                    "share": float(contrib[d]) / total if total != 0 else np.nan,
                    "total": total,
                })
    return {
        "risk_measures": measures,
        "contributions": pd.DataFrame(contrib_rows),
        "greeks": greeks_table(book),
    }


def run_in_process(cfg: Config, inputs: InputTables) -> tuple[Prepared, dict[str, pd.DataFrame],
                                                              NDArray[np.float64]]:
    """Run the whole Monte Carlo stage in this process (the reference for the Spark job).

    Returns the prepared run, the risk tables and the (N, D) P&L matrix.
    """
    prepared = prepare(cfg, inputs)
    pnl = np.concatenate([simulate_block(prepared.spec, b) for b in range(cfg.n_blocks)])
    summary = summarize_matrix(pnl, cfg.monte_carlo.block_size, cfg.risk.confidence_levels)
    return prepared, risk_tables(summary, prepared.book, cfg), pnl


def filter_date(frame: pd.DataFrame, as_of: dt.date, column: str = "as_of_date") -> pd.DataFrame:
    """Rows of ``frame`` whose ``column`` equals ``as_of`` (dates or timestamps accepted)."""
    values = pd.to_datetime(frame[column]).dt.date
    return frame[values == as_of].reset_index(drop=True)
