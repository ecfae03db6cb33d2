"""The nightly run's numerical steps, free of Spark.

:func:`nightly_run` is the whole run over an :class:`risk_engine.engine.Engine`: the Spark
layer reads the snapshot, calls it with its engine, then publishes and notifies;
:func:`run_in_process` calls it with the in-process engine, the bit-for-bit reference.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine import schemas
from risk_engine.attribution import Tiling, attribution_requests, position_tables
from risk_engine.backtest.hypothetical import RtplFactors
from risk_engine.backtest.stage import backtest_tables
from risk_engine.book import (
    MAX_NOTIONAL,
    MAX_PRICE,
    ResolvedBook,
    Snapshot,
    greeks_table,
    reject_positions_on,
    resolve_book,
    validate_snapshot,
    vega_buckets_table,
)
from risk_engine.config import Config
from risk_engine.engine import Engine, InProcessEngine, ScenarioBlocks
from risk_engine.errors import ConfigError, DataError, RejectionCeilingError
from risk_engine.factor_var import risk_factor_var
from risk_engine.governance.alerts import Alert, alerts_frame
from risk_engine.governance.stage import governance_tables
from risk_engine.hedging.stage import hedging_tables
from risk_engine.input_checks import (
    TableCheck,
    check_correlations,
    check_factor_model,
    check_history,
    check_rates,
    check_vol_surface,
    last_closes,
    snapshot_date,
    surface_arbitrage,
)
from risk_engine.measures import thin_tail_warnings
from risk_engine.revaluation_grid import build_plan
from risk_engine.scenarios import (
    ScenarioModel,
    ScenarioSource,
    estimate_from_history,
    from_factor_model,
)
from risk_engine.scenarios.factor_history import (
    check_factor_vols,
    check_rate_history,
    check_vol_history,
    estimate_factors_from_history,
    factor_underlying,
    factors_from_factor_model,
    manifest_entry,
)
from risk_engine.scenarios.historical import (
    HistoricalData,
    add_vol_rate_columns,
    historical_data,
    historical_source,
    non_positive_spots,
)
from risk_engine.simulation import SimulationSpec, factor_classes_of
from risk_engine.stress.stage import stress_tables, stressed_var_tables
from risk_engine.tails import TailSummary
from risk_engine.timeaxis import ZeroCurve
from risk_engine.types import EQUITY
from risk_engine.vol_surface import VolSurface, surfaces_from_quotes
from risk_engine.worst_case.stage import desk_sets, sample_moment_sums, worst_case_tables

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
    position_history: pd.DataFrame | None = None
    published_risk: pd.DataFrame | None = None
    """``risk_measures`` rows published for earlier dates by completed runs (backtest)."""
    backtest_snapshots: Mapping[str, pd.DataFrame | None] | None = None
    """``positions``, ``market``, ``rates`` of the backtest window's dates (hypothetical P&L)."""
    vol_history: pd.DataFrame | None = None
    """Daily ATM vols per tenor, for the vol factors (``scenario_model.source: history``)
    and the backtest's risk-theoretical P&L (the day's realized vol moves)."""
    rate_history: pd.DataFrame | None = None
    """Daily zero curves, for the rate factor (``scenario_model.source: history``) and the
    backtest's risk-theoretical P&L (the day's parallel shift)."""
    factor_vols: pd.DataFrame | None = None
    """Given vol and rate factor volatilities (``scenario_model.source: factor_model``)."""
    stress_scenarios: pd.DataFrame | None = None
    """Optional user stress scenarios (stress stage)."""
    vol_surface: pd.DataFrame | None = None
    """Implied-vol quotes of the date (optional; without them options use market.volatility)."""


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

    Bad rows of every table are set aside in ``rejected`` with their reasons, and so are
    the positions that depend on them (:mod:`risk_engine.book`,
    :mod:`risk_engine.input_checks`); nothing depends on the order of the rows.

    Raises
    ------
    DataError
        If no valid position remains, a table is empty or unusable (naming table, column,
        key and value), or the scenario model's inputs are missing.
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
    rates = check_rates(inputs.rates, as_of)
    if len(rates.frame) == 0:
        raise DataError(f"rates: no zero curve for as_of_date {as_of} under {cfg.input.root} "
                        f"({len(rates.rejected)} row(s) rejected)")
    curve = ZeroCurve.from_points(rates.frame["tenor_years"], rates.frame["zero_rate"])
    snap = validate_snapshot(inputs.positions, inputs.market, as_of)
    warnings.extend(snap.warnings)
    if len(snap.positions) == 0:
        raise DataError(f"positions: no valid position for as_of_date {as_of} "
                        f"({len(inputs.positions)} row(s) read, {len(snap.rejected)} rejected)")
    checks = [rates]
    underlyings = tuple(sorted(snap.positions["underlying"].unique()))
    sm = cfg.scenario_model
    factors_on = sm.vol_factors.enabled or sm.rate_factor.enabled  # off: spot-only blocks
    hs_data: HistoricalData | None = None
    if cfg.scenario_model.source in ("history", "historical"):
        if inputs.history is None:
            raise DataError("history: table not found but scenario_model.source is "
                            f"{cfg.scenario_model.source}")
        hist = check_history(inputs.history, as_of, underlyings)
        checks.append(hist)
        snap = reject_positions_on(snap, hist.bad_underlyings)
        underlyings = tuple(sorted(snap.positions["underlying"].unique()))
        model, missing = estimate_from_history(
            hist.frame, underlyings, as_of,
            window_days=cfg.scenario_model.history_window_days,
            min_days=cfg.scenario_model.min_history_days,
        )
        factor_frames: dict[str, pd.DataFrame | None] = {}
        if factors_on:
            model, missing, more, factor_frames = _history_factors(
                cfg, inputs, model, hist.frame, underlyings, missing)
            checks += more
        if cfg.scenario_model.source == "historical":
            hs_data, hs_missing = historical_window(cfg, hist.frame, snap, underlyings, model,
                                                    **factor_frames)
            missing = {**missing, **hs_missing}
    else:
        if inputs.factor_model is None:
            raise DataError("factor_model: table not found but scenario_model.source is "
                            "factor_model")
        corr = inputs.correlations
        if corr is None:
            corr = pd.DataFrame(columns=["underlying_a", "underlying_b", "correlation"])
        fm, cc = check_factor_model(inputs.factor_model), check_correlations(corr)
        checks += [fm, cc]
        bad_corr = cc.bad_underlyings
        if factors_on:  # a rejected row naming vol:<u>:<days> concerns u
            bad_corr = {factor_underlying(k) or k: v for k, v in bad_corr.items()}
        snap = reject_positions_on(snap, {**bad_corr, **fm.bad_underlyings})
        underlyings = tuple(sorted(snap.positions["underlying"].unique()))
        model, missing = from_factor_model(fm.frame, cc.frame, underlyings)
        if factors_on:
            if inputs.factor_vols is None:
                raise DataError("factor_vols: table not found but scenario_model vol or rate "
                                "factors are enabled with source factor_model")
            fv = check_factor_vols(inputs.factor_vols)
            model, more_missing = factors_from_factor_model(
                model, fv.frame, cc.frame,
                tenors_days=sm.vol_factors.tenors_days if sm.vol_factors.enabled else (),
                rate_factor=sm.rate_factor.enabled)
            missing = {**missing, **more_missing}
            checks.append(fv)
    snap = reject_positions_on(snap, missing)
    surfaces: dict[str, VolSurface] = {}
    if inputs.vol_surface is not None:
        vs = check_vol_surface(inputs.vol_surface, as_of, snap.market["underlying"],
                               day_count=cfg.time.day_count)
        checks.append(vs)
        quoted = surfaces_from_quotes(vs.frame, snap.market, curve, as_of=as_of,
                                      day_count=cfg.time.day_count)
        warnings.extend(surface_arbitrage(quoted))
        surfaces = {u: q.surface for u, q in quoted.items()}
    for check in checks:
        warnings.extend(check.warnings)
    snap = dataclasses.replace(
        snap, rejected=snap.rejected + tuple(r for c in checks for r in c.rejected))
    if model.repair:
        warnings.append(model.repair)
    book = resolve_book(snap, curve, as_of=as_of, horizon_days=cfg.monte_carlo.horizon_days,
                        day_count=cfg.time.day_count, surfaces=surfaces)
    model = model.subset(book.underlyings)
    mc = cfg.monte_carlo
    source: ScenarioSource
    if hs_data is None:
        source = ScenarioSource(model=model, horizon_years=book.horizon_years, seed=mc.seed,
                                antithetic=mc.antithetic, block_size=mc.block_size,
                                n_scenarios=mc.n_scenarios)
    else:
        source = historical_source(hs_data.subset(book.underlyings), cfg.historical,
                                   horizon_days=mc.horizon_days, model=model,
                                   horizon_years=book.horizon_years,
                                   layout=None if model.layout.spot_only else model.layout)
    check_block_memory(source.block_size, model.layout.width, len(book.desks))
    if cfg.governance.enabled and cfg.governance.attribution:
        check_attribution_memory(source.block_size, cfg.governance.attribution_chunk)
    if cfg.worst_case.enabled:
        check_worst_case_size(book, getattr(cfg.worst_case, "max_instruments", _ABSENT))
    plan = build_plan(book, mc.revaluation, model=model, resolution=mc.grid_resolution,
                      range_sd=mc.grid_range_sd, layout=model.layout,
                      smile=cfg.scenario_model.smile_dynamics, surfaces=book.surfaces)
    spec = SimulationSpec(plan=plan, source=source, chunk_size=mc.chunk_size)
    rejected = rejected_frame(snap)
    counts = _row_counts(inputs, rejected, factor_tables=factors_on)
    if len(rejected):
        warnings.append(f"{len(rejected)} input row(s) rejected; see rejected_rows")
    thin = thin_tail_warnings(cfg.risk.confidence_levels, source.n_scenarios)
    if hs_data is not None:  # the scenario count is the window's
        thin = [w.replace("raise monte_carlo.n_scenarios", "lengthen historical.window_days")
                for w in thin]
    warnings.extend(thin)
    return Prepared(book, model, spec, rejected, tuple(warnings), counts)


def _history_factors(
    cfg: Config, inputs: InputTables, model: ScenarioModel, history: pd.DataFrame,
    underlyings: tuple[str, ...], missing: dict[str, str],
) -> tuple[ScenarioModel, dict[str, str], list[TableCheck], dict[str, pd.DataFrame | None]]:
    """Vol and rate factors from ``vol_history`` / ``rate_history`` (see factor_history).

    Returns the model with its factors, the underlyings without them, the table checks and
    the checked ``vol_history`` / ``rate_history`` frames (None where off).
    """
    sm, as_of = cfg.scenario_model, cfg.as_of_date
    checks: list[TableCheck] = []
    vh = rh = None
    if sm.vol_factors.enabled and inputs.vol_history is None:
        raise DataError("vol_history: table not found but scenario_model.vol_factors is "
                        "enabled with source history")
    if sm.vol_factors.enabled and inputs.vol_history is not None:
        vc = check_vol_history(inputs.vol_history, as_of, model.underlyings)
        checks.append(vc)
        vh = vc.frame
    if sm.rate_factor.enabled and inputs.rate_history is not None:
        rc = check_rate_history(inputs.rate_history, as_of)
        checks.append(rc)
        rh = rc.frame
    model, more = estimate_factors_from_history(
        model, history, underlyings, as_of, vol_history=vh, rate_history=rh,
        tenors_days=sm.vol_factors.tenors_days if sm.vol_factors.enabled else (),
        rate_factor=sm.rate_factor.enabled, window_days=sm.history_window_days,
        min_days=sm.min_history_days)
    return model, {**missing, **more}, checks, {"vol_history": vh, "rate_history": rh}


def check_factor_revaluation(cfg: Config) -> None:
    """Refuse vol or rate factors with the worst-case stage, which does not price them.

    The Monte Carlo revaluation, the risk tables, ``risk_factor_var`` and the position
    attribution price every option under the scenario's spot, vol and rate
    (:mod:`risk_engine.revaluation`, :func:`risk_engine.attribution.scenario_terms`). The
    worst-case models are stated in the underlyings' returns and the instruments' spot
    revaluation, so a run with vol or rate factors and the stage on would silently ignore
    the factors there: refused.

    Raises
    ------
    ConfigError
        Naming ``scenario_model.vol_factors.enabled`` or ``scenario_model.rate_factor.enabled``
        and ``worst_case.enabled``.
    """
    sm = cfg.scenario_model
    for key, on in (("vol_factors", sm.vol_factors.enabled),
                    ("rate_factor", sm.rate_factor.enabled)):
        if on and cfg.worst_case.enabled:
            raise ConfigError(
                f"config key 'scenario_model.{key}.enabled' = True is out of range with "
                "worst_case.enabled on: the worst-case models revalue positions on spot "
                "moves only and would ignore the vol and rate factors; switch one of them "
                "off (false)")


def historical_window(cfg: Config, history: pd.DataFrame, snap: Snapshot,
                      underlyings: tuple[str, ...], model: ScenarioModel, *,
                      vol_history: pd.DataFrame | None = None,
                      rate_history: pd.DataFrame | None = None,
                      ) -> tuple[HistoricalData, dict[str, str]]:
    """The historical window's levels and the underlyings it cannot shock, with reasons.

    An underlying lacks a valid close on some window date, a valid ATM vol (vol factors
    on), or (absolute spot shifts) some historical change takes today's spot to zero or
    below (:mod:`risk_engine.scenarios.historical`). With vol or rate factors on (the
    model's layout), the window also holds their levels from the checked histories.
    """
    hs = cfg.historical
    spots = None
    if hs.spot_shift == "absolute":
        mkt = snap.market.drop_duplicates("underlying").set_index("underlying")
        spots = mkt.loc[list(underlyings), "spot"].to_numpy(float)
    data, missing = historical_data(history, underlyings, cfg.as_of_date,
                                    window_days=hs.window_days, spot_shift=hs.spot_shift,
                                    spots=spots)
    if not model.layout.spot_only:
        layout = dataclasses.replace(model.layout, n_underlyings=len(data.underlyings))
        data, more = add_vol_rate_columns(data, layout, vol_history=vol_history,
                                          rate_history=rate_history, vol_shift=hs.vol_shift,
                                          rate_shift=hs.rate_shift)
        missing.update(more)
    if hs.spot_shift == "absolute":
        probe = historical_source(data, hs, horizon_days=cfg.monte_carlo.horizon_days,
                                  model=model, horizon_years=0.0)
        missing.update(non_positive_spots(probe))
    return data, missing


#: The most memory one scenario block may take in a task (its draws, log returns and desk
#: P&L, float64). A block is the unit of work of one task: it is held whole.
MAX_BLOCK_BYTES = 2 * 1024**3


def check_block_memory(block_size: int, n_underlyings: int, n_desks: int) -> None:
    """Refuse a block size whose block would not fit a task's memory.

    A block holds its normal draws and log returns (``block_size x U`` each) and its desk
    P&L (``block_size x D``), in float64; revaluation tiles are bounded separately.

    Raises
    ------
    ConfigError
        Naming ``monte_carlo.block_size``, the estimate and the largest size that fits.
    """
    per_scenario = 8 * (2 * n_underlyings + n_desks)
    if block_size * per_scenario > MAX_BLOCK_BYTES:
        fits = MAX_BLOCK_BYTES // per_scenario
        raise ConfigError(
            f"config key 'monte_carlo.block_size' = {block_size} is out of range: a block "
            f"of this book ({n_underlyings} underlyings, {n_desks} desks) needs "
            f"{block_size * per_scenario / 1024**3:.1f} GiB in one task, above "
            f"{MAX_BLOCK_BYTES / 1024**3:.0f} GiB; use at most {fits}")


#: Arrays of one attribution tile alive at once (position values, the Black-Scholes
#: temporaries, the desk-less losses and the centred P&L), each block_size x (chunk + 1).
ATTRIBUTION_TILE_ARRAYS = 12


def attribution_tiling(cfg: Config) -> Tiling | None:
    """The tiling of the run's ``attribution`` stage; None when the run has none.

    ``governance.attribution_chunk`` positions by ``monte_carlo.chunk_size`` scenarios.
    """
    gov = cfg.governance
    if not (gov.enabled and gov.attribution):
        return None
    return Tiling(positions=gov.attribution_chunk, scenarios=cfg.monte_carlo.chunk_size)


def check_attribution_memory(block_size: int, chunk: int,
                             max_bytes: int = MAX_BLOCK_BYTES) -> None:
    """Refuse an attribution chunk whose tile would not fit a task's memory.

    The block-0 sample statistics hold ``block_size`` scenarios by ``chunk + 1`` positions
    (see :func:`risk_engine.attribution.position_chunks`), in about
    :data:`ATTRIBUTION_TILE_ARRAYS` float64 arrays at once.

    Raises
    ------
    ConfigError
        Naming ``governance.attribution_chunk``, the estimate and the largest chunk that fits.
    """
    per_position = 8 * ATTRIBUTION_TILE_ARRAYS * block_size
    need = per_position * (chunk + 1)
    if need > max_bytes:
        fits = max(1, max_bytes // per_position - 1)
        raise ConfigError(
            f"config key 'governance.attribution_chunk' = {chunk} is out of range: an "
            f"attribution tile of {block_size} scenarios (monte_carlo.block_size) x "
            f"{chunk + 1} positions needs {need / 1024**3:.1f} GiB in one task, above "
            f"{max_bytes / 1024**3:.1f} GiB; use at most {fits}")


#: The most memory the worst-case problem of one desk may take on the driver.
MAX_WORST_CASE_BYTES = 2 * 1024**3
#: Dense instruments x instruments float64 matrices of one worst-case problem alive at once
#: (covariance, second-moment matrix, the SDP's matrix variable and the solver's copies).
WORST_CASE_MATRICES = 16
_ABSENT = object()


def desk_instrument_counts(book: ResolvedBook) -> dict[str, int]:
    """Distinct instruments per desk (desks without positions left out).

    Stocks by underlying, options by (underlying, type, strike, expiry): an upper bound of
    the worst-case stage's count, which also leaves out worthless options.
    """
    frame = pd.DataFrame({"desk": book.desk_index, "u": book.underlying_index,
                          "kind": book.kind,
                          "strike": np.where(book.kind == EQUITY, 0.0, book.strike),
                          "expiry": np.where(book.kind == EQUITY, 0.0, book.expiry_years)})
    counts = frame.drop_duplicates().groupby("desk").size()
    return {book.desks[int(d)]: int(n) for d, n in counts.items()}


def check_worst_case_size(book: ResolvedBook, max_instruments: object,
                          max_bytes: int = MAX_WORST_CASE_BYTES) -> None:
    """Refuse a worst-case problem whose dense matrices would not fit the driver's memory.

    A desk's problem has ``min(instruments, worst_case.max_instruments)`` instruments (larger
    desks are reduced or not applicable); ``max_instruments`` None means no cap. Skipped when
    the config has no ``worst_case.max_instruments`` key (``_ABSENT``).

    Raises
    ------
    ConfigError
        Naming ``worst_case.max_instruments``, the largest desk, the estimate and the
        largest cap that fits.
    """
    if max_instruments is _ABSENT:
        return
    counts = desk_instrument_counts(book)
    if not counts:
        return
    desk, largest = max(counts.items(), key=lambda kv: kv[1])
    cap = min(largest, max_instruments) if isinstance(max_instruments, int) else largest
    need = 8 * WORST_CASE_MATRICES * (cap + 1) ** 2
    if need > max_bytes:
        fits = max(1, int((max_bytes / (8 * WORST_CASE_MATRICES)) ** 0.5) - 1)
        raise ConfigError(
            f"config key 'worst_case.max_instruments' = {max_instruments} is out of range: "
            f"desk {desk} has {largest} instruments; a worst-case problem of {cap} "
            f"instruments needs {need / 1024**3:.1f} GiB on the driver, above "
            f"{max_bytes / 1024**3:.1f} GiB; use at most {fits}")


def rejected_notional_share(inputs: InputTables, rejected: pd.DataFrame,
                            as_of: dt.date | None = None) -> float:
    """Rejected positions' share of the book, weighing positions by gross notional.

    A position's notional is ``|quantity x multiplier x price|``, the price being the
    underlying's spot in ``market`` when usable (finite, > 0, at most ``MAX_PRICE``, one
    value for the underlying), else its last close in ``history`` on or before ``as_of``.
    Positions that cannot be valued so (no price, quantity or multiplier not finite, or a
    notional not finite or above ``MAX_NOTIONAL``) are weighed by count: with ``c`` their
    share of the rows, the share is ``c + (1 - c) x`` (rejected notional / notional of the
    valued positions). Such positions are always rejected, so an unknown underlying counts.
    """
    pos = inputs.positions
    if len(pos) == 0:
        return 0.0
    mkt = inputs.market
    m_spot = pd.to_numeric(mkt["spot"], errors="coerce").astype(float)
    g = m_spot.groupby(mkt["underlying"].astype(str).to_numpy(object))
    one = (g.min() == g.max()) & (g.count() == g.size())
    spot = g.min()[one]
    spot = spot[np.isfinite(spot) & (spot > 0) & (spot <= MAX_PRICE)]
    und = pos["underlying"].astype("string")
    price = und.map(spot).astype(float)
    unpriced = sorted(set(und[price.isna()].dropna().astype(str)))
    if unpriced:
        as_of = as_of or snapshot_date(pos)
        if as_of is not None:
            price = price.fillna(und.map(last_closes(inputs.history, unpriced, as_of))
                                 .astype(float))
    with np.errstate(over="ignore", invalid="ignore"):
        notional = (pd.to_numeric(pos["quantity"], errors="coerce").astype(float)
                    * pd.to_numeric(pos["multiplier"], errors="coerce").astype(float)
                    * price).abs()
    valued = (np.isfinite(notional) & (notional <= MAX_NOTIONAL)).to_numpy(bool)
    pid = pos["position_id"].astype("string")
    bad_ids = set(rejected.loc[rejected["table"] == "positions", "key"])
    bad = (pid.isin(list(bad_ids)).fillna(False).astype(bool) | pid.isna()).to_numpy(bool)
    c = float((~valued).sum()) / len(pos)
    n = notional.to_numpy(float)
    total = float(n[valued].sum())
    share = float(n[valued & bad].sum()) / total if total > 0 else 0.0
    return share if c == 0 else c + (1.0 - c) * share


def check_rejection_ceiling(cfg: Config, inputs: InputTables, prepared: Prepared) -> None:
    """Fail the run if rejected positions exceed ``validation`` ceilings.

    The share is :func:`rejected_notional_share` (positions on an unknown underlying are
    valued at its last close, or counted by number).

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
        share = rejected_notional_share(inputs, rej, cfg.as_of_date)
        if share > v.max_rejected_share:
            raise RejectionCeilingError(
                f"positions: rejected positions are {share:.2%} of gross notional, above "
                f"validation.max_rejected_share = {v.max_rejected_share:.2%}; nothing "
                f"published for {cfg.as_of_date}")


def rejected_frame(snap: Snapshot) -> pd.DataFrame:
    """Rejected rows as a frame with columns table, key, column, value, reason."""
    rows = [r.as_row() for r in snap.rejected]
    return pd.DataFrame(rows, columns=list(schemas.REJECTED_ROWS.pandas_dtypes()))


def _row_counts(inputs: InputTables, rejected: pd.DataFrame, *,
                factor_tables: bool = False) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    names = ["positions", "market", "rates", "history", "factor_model", "correlations",
             "pnl_history", "position_history", "vol_surface"]
    if factor_tables:  # read only with vol or rate factors on
        names += ["vol_history", "rate_history", "factor_vols"]
    for name in names:
        frame = getattr(inputs, name)
        if frame is None:
            continue
        n_rej = int(rejected.loc[rejected["table"] == name, "key"].nunique())
        out[name] = {"in": int(len(frame)), "rejected": n_rej}
    return out


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
    dict with frames ``risk_measures``, ``contributions``, ``greeks``, ``vega_buckets``
    (without ``run_id`` and
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
        schemas.VEGA_BUCKETS.name: vega_buckets_table(book),
    }


@dataclass
class RunLog:
    """What a run has done so far: stage timings, warnings, input row counts.

    ``on_stage``, if set, is called as each stage starts (the Spark job writes the running
    manifest there, so a killed run shows where it stopped).
    """

    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    current: str = "start"
    on_stage: Callable[[RunLog], None] | None = None
    scenario_model: dict[str, object] | None = None
    """The scenario model's factor parameters, for the manifest (set after prepare)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (rounded to the millisecond)."""
        self.current = name
        if self.on_stage is not None:
            self.on_stage(self)
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)
        log.info("stage %s: %.2fs", name, self.timings[name])


@dataclass(frozen=True)
class RunResult:
    """The tables of one run, before publication, and the alerts to send after it.

    ``tables`` hold no ``run_id`` or ``as_of_date`` (the publisher adds them);
    ``engine_tables`` names tables the engine wrote itself (the Spark engine's audit table).
    """

    prepared: Prepared
    tables: dict[str, pd.DataFrame]
    alerts: list[Alert]
    engine_tables: tuple[str, ...] = ()


def nightly_run(cfg: Config, inputs: InputTables, engine: Engine,
                run_log: RunLog | None = None, *, prepared: Prepared | None = None
                ) -> RunResult:
    """The nightly run, in order: every output table of one date from its input snapshot.

    prepare (validate rows, resolve the book, build the scenario model) -> Monte Carlo
    (fan-out and exact tails) -> risk tables -> worst case -> attribution -> governance
    -> hedging.
    The engine only decides where scenario blocks are computed and kept; every table is
    computed here or in the stage functions this calls, so the in-process engine and the
    Spark engine give the same bits.

    ``prepared``, if given, is :func:`prepare` of ``cfg`` and ``inputs`` done ahead (a
    backfill prepares its dates before their scenario blocks fan out together); it is used
    as is, and the rest of the run is the same.

    Raises
    ------
    DataError, RejectionCeilingError
        Before any scenario is drawn, if the snapshot cannot be valued.
    """
    rl = run_log if run_log is not None else RunLog()
    check_factor_revaluation(cfg)
    with rl.stage("prepare"):
        if prepared is None:
            prepared = prepare(cfg, inputs)
    rl.scenario_model = manifest_entry(prepared.model)
    rl.row_counts = prepared.row_counts
    rl.warnings.extend(prepared.warnings)
    check_rejection_ceiling(cfg, inputs, prepared)
    blocks: ScenarioBlocks | None = None
    try:
        with rl.stage("monte_carlo"):
            blocks = engine.simulate(prepared.spec, cfg.risk.confidence_levels)
            tails = blocks.tail_summary(cfg.risk.confidence_levels)
        return _from_tails(cfg, inputs, prepared, blocks, tails, rl)
    finally:
        if blocks is not None:
            blocks.release()


def _from_tails(cfg: Config, inputs: InputTables, prepared: Prepared, blocks: ScenarioBlocks,
                tails: TailSummary, rl: RunLog) -> RunResult:
    book, levels = prepared.book, cfg.risk.confidence_levels
    tables: dict[str, pd.DataFrame] = {}
    engine_tables: list[str] = []
    if cfg.output.write_scenario_pnl:
        with rl.stage("scenario_pnl"):
            audit = blocks.scenario_pnl(book.desks)
        if audit is None:
            engine_tables.append(schemas.SCENARIO_PNL.name)
        else:
            tables[schemas.SCENARIO_PNL.name] = audit
    with rl.stage("risk_measures"):
        tables.update(risk_tables(tails, book, cfg))
    if cfg.risk.factor_classes and len(factor_classes_of(prepared.spec.plan)) > 1:
        with rl.stage("risk_factor_var"):
            by_class = risk_factor_var(prepared.spec, blocks.fold, tails, book,
                                       cfg.monte_carlo.horizon_days)
        if by_class is not None:
            tables[schemas.RISK_FACTOR_VAR.name] = by_class
    tables["rejected_rows"] = prepared.rejected
    wc = cfg.worst_case
    if wc.enabled:
        with rl.stage("worst_case"):
            source = prepared.spec.source
            sets = desk_sets(book, wc.min_premium)
            sums = sample_moment_sums(book, source, sets, wc, blocks.fold)
            frame, alloc, warnings = worst_case_tables(
                book, prepared.model, source, tables["risk_measures"], wc,
                horizon_days=cfg.monte_carlo.horizon_days, sets=sets, sums=sums)
        tables["worst_case_var"], tables["optimal_allocations"] = frame, alloc
        rl.warnings.extend(warnings)
    gov = cfg.governance
    alerts: list[Alert] = []
    tiling = attribution_tiling(cfg)
    if tiling is not None:
        with rl.stage("attribution"):
            requests = attribution_requests(tails)
            contrib, sample = blocks.attribution(book, requests, levels, tiling)
            rows, tables["position_risk"] = position_tables(book, requests, contrib, sample)
        tables["contributions"] = pd.concat([tables["contributions"], rows], ignore_index=True)
    if gov.enabled:
        with rl.stage("governance"):
            out, alerts, warnings = governance_tables(
                book, prepared.model, tables["risk_measures"], gov, cfg.as_of_date,
                history=inputs.history, pnl_history=inputs.pnl_history)
        tables.update(out)
        rl.warnings.extend(warnings)
    if cfg.hedging.enabled:
        with rl.stage("hedging"):
            hedge, warnings = hedging_tables(book, prepared.model, inputs.history, cfg.hedging,
                                             position_history=inputs.position_history,
                                             source=prepared.spec.source)
        tables.update(hedge)
        rl.warnings.extend(warnings)
    if cfg.backtest.enabled:
        with rl.stage("backtest"):
            sm = cfg.scenario_model
            rtpl_factors = RtplFactors(
                sm.vol_factors.tenors_days if sm.vol_factors.enabled else (),
                sm.rate_factor.enabled, inputs.vol_history, inputs.rate_history)
            out, bt_alerts, warnings = backtest_tables(
                inputs.published_risk, inputs.pnl_history, cfg.backtest, cfg.as_of_date,
                snapshots=inputs.backtest_snapshots, day_count=cfg.time.day_count,
                factors=None if rtpl_factors.spot_only else rtpl_factors)
        tables.update(out)
        rl.warnings.extend(warnings)
        alerts = alerts + bt_alerts
    if cfg.stressed_var.enabled:
        with rl.stage("stressed_var"):
            out, warnings = stressed_var_tables(cfg, book, inputs.history, prepared.model,
                                                blocks.fold)
        tables.update(out)
        rl.warnings.extend(warnings)
    if cfg.stress.enabled:
        with rl.stage("stress"):
            out, rejected, warnings = stress_tables(cfg, book, inputs.stress_scenarios,
                                                    inputs.history)
        tables.update(out)
        if len(rejected):
            tables["rejected_rows"] = pd.concat([tables["rejected_rows"], rejected],
                                                ignore_index=True)
        rl.warnings.extend(warnings)
    if gov.enabled or alerts:
        tables["alerts"] = alerts_frame(alerts).drop(columns=["as_of_date"])
    return RunResult(prepared, tables, alerts, tuple(engine_tables))


def run_in_process(cfg: Config, inputs: InputTables) -> tuple[RunResult, NDArray[np.float64]]:
    """The whole nightly run in this process: its result and the (N, D) desk P&L matrix.

    The reference the Spark job must reproduce bit for bit, table by table.
    """
    engine = InProcessEngine()
    result = nightly_run(cfg, inputs, engine)
    assert engine.pnl is not None
    return result, engine.pnl
