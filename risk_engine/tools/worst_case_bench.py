"""Timing of the worst-case models against desk size.

Random, well-conditioned books: U underlyings (one long equity position
each, correlated GBM from a 3-factor model plus idiosyncratic risk) and O
long European options on random underlyings, strikes within 10% of spot.
For WCVaR and WCPVaR the options expire at the horizon; for WCQVaR they
live one more month. Instrument moments come from a small simulation.

For single-core figures run with ``RAYON_NUM_THREADS=1`` (Clarabel's dense
linear algebra is multithreaded) and one pinned core, e.g.
``RAYON_NUM_THREADS=1 taskset -c 0 python -c "from risk_engine.tools.worst_case_bench
import benchmark_worst_case as b; print(b())"``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from risk_engine.pricing import black_scholes_greeks
from risk_engine.solvers import clear_problem_cache
from risk_engine.types import CALL, EQUITY, PUT
from risk_engine.worst_case.containers import (
    DeskInstruments,
    OptimizationOutcome,
    ReturnMoments,
    SolveOutcome,
    WorstCaseSettings,
)
from risk_engine.worst_case.desk import Structure, _current, _minimize
from risk_engine.worst_case.moments import (
    gbm_simple_return_moments,
    instrument_return_moments_from_samples,
)
from risk_engine.worst_case.optimize import AllocationProblem
from risk_engine.worst_case.structures import (
    linear_structure,
    polyhedral_structure,
    quadratic_structure,
)

TRADING_DAYS = 252.0


def _black_scholes(
    spot: np.ndarray, strike: np.ndarray, tau: np.ndarray, vol: np.ndarray, is_call: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Zero-rate value, delta, gamma and theta per year from the engine's pricer."""
    g = black_scholes_greeks(spots=spot, strikes=strike, expiries=np.maximum(tau, 0.0),
                             volatilities=vol, rates=0.0, is_call=is_call)
    return g.price, g.delta, g.gamma, g.theta


def random_book(
    n_underlyings: int,
    n_options: int,
    *,
    horizon_days: int = 21,
    option_days_after_horizon: int = 0,
    n_scenarios: int = 20_000,
    seed: int = 0,
) -> tuple[DeskInstruments, ReturnMoments, ReturnMoments, float]:
    """Build a random desk with exact underlying and sampled instrument moments.

    Parameters
    ----------
    n_underlyings, n_options : int
        Book size: U equity positions and O options.
    horizon_days : int
        Horizon in trading days.
    option_days_after_horizon : int
        Option life left at the horizon, trading days (0: expire at horizon).
    n_scenarios : int
        Scenarios for the instruments' sample moments.
    seed : int
        Random seed.

    Returns
    -------
    desk, underlying_moments, instrument_moments, horizon_years
    """
    rng = np.random.default_rng(seed)
    h = horizon_days / TRADING_DAYS
    tau_after = option_days_after_horizon / TRADING_DAYS
    # One generator, drawn from in a fixed order: market, book, then the scenarios.
    vol, cov, drift, spots = _random_market(rng, n_underlyings)
    desk, options = _random_desk(rng, spots, vol, n_options, h, tau_after)
    mean, covariance = gbm_simple_return_moments(drift, cov, h)
    underlying = ReturnMoments(mean, covariance, desk.underlyings)
    chol = np.linalg.cholesky(cov * h)
    logs = (drift - 0.5 * vol**2) * h + rng.standard_normal((n_scenarios, n_underlyings)) @ chol.T
    later_spots = spots * np.exp(logs)
    und, strike, is_call = options
    later_options = _black_scholes(
        later_spots[:, und], strike, np.full(n_options, tau_after), vol[und], is_call
    )[0]
    instruments = instrument_return_moments_from_samples(
        desk.unit_value, np.hstack([later_spots, later_options]), desk.instrument_ids
    )
    return desk, underlying, instruments, h


def _random_market(
    rng: np.random.Generator, u: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Volatilities, 3-factor covariance, drifts and spots of ``u`` underlyings."""
    vol = rng.uniform(0.15, 0.45, u)
    loadings = rng.normal(0.0, 0.35, (u, 3))
    corr = loadings @ loadings.T
    corr += np.diag(1.0 - np.diag(corr).clip(max=0.8))
    scale = np.sqrt(np.diag(corr))
    corr /= np.outer(scale, scale)
    cov = corr * np.outer(vol, vol)
    drift = rng.uniform(0.02, 0.12, u)
    spots = rng.uniform(50.0, 150.0, u)
    return vol, cov, drift, spots


def _random_desk(
    rng: np.random.Generator, spots: np.ndarray, vol: np.ndarray, o: int, h: float,
    tau_after: float,
) -> tuple[DeskInstruments, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One long equity line per underlying and ``o`` options; $1m of capital in all.

    Returns the desk and the options' (underlying index, strike, is_call).
    """
    u = len(spots)
    und = rng.integers(0, u, o)
    is_call = rng.random(o) < 0.5
    strike = spots[und] * rng.uniform(0.9, 1.1, o)
    premium, delta, gamma, theta = _black_scholes(
        spots[und], strike, np.full(o, h + tau_after), vol[und], is_call
    )
    kind = np.concatenate([np.full(u, EQUITY), np.where(is_call, CALL, PUT)]).astype(np.int8)
    unit_value = np.concatenate([spots, premium])
    capital = rng.uniform(0.5, 1.5, u + o)
    capital[u:] *= 0.2
    capital *= 1e6 / capital.sum()
    nan = np.full(u, np.nan)
    desk = DeskInstruments(
        desk="bench",
        underlyings=tuple(f"U{i}" for i in range(u)),
        spots=spots,
        instrument_ids=tuple(f"EQ{i}" for i in range(u)) + tuple(f"OPT{j}" for j in range(o)),
        kind=kind,
        underlying_index=np.concatenate([np.arange(u), und]),
        strike=np.concatenate([nan, strike]),
        unit_value=unit_value,
        quantity=capital / unit_value,
        tau_after_horizon=np.concatenate([nan, np.full(o, tau_after)]),
        delta=np.concatenate([nan, delta]),
        gamma=np.concatenate([nan, gamma]),
        theta=np.concatenate([nan, theta]),
    )
    return desk, (und, strike, is_call)


def benchmark_worst_case(
    sizes: Sequence[tuple[int, int]] = ((10, 20), (50, 100), (100, 200)),
    *,
    confidence_levels: tuple[float, float] = (0.99, 0.95),
    horizon_days: int = 21,
    settings: WorstCaseSettings | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Time each model's current evaluation and minimization against desk size.

    Each problem is timed twice: ``first`` (build, compile and solve, at the
    first level) and ``resolve`` (new parameter values for the second level on
    the cached problem), which is what a nightly run pays per further level or
    same-shaped desk.

    Parameters
    ----------
    sizes : sequence of (int, int)
        (underlyings, options) per book.
    confidence_levels : (float, float)
        Levels of the first solve and the re-solve.
    horizon_days : int
        Horizon in trading days.
    settings : WorstCaseSettings, optional
        Solver settings (defaults). WCQVaR minimization is an SDP whose
        interior-point cost grows like U**6; above ``settings.max_sdp_size``
        it reports ``not_applicable`` without solving.
    seed : int
        Seed of the random books.

    Returns
    -------
    pandas.DataFrame
        Columns: model, n_underlyings, n_options, portfolio, phase, seconds,
        status, solver, value_pct.
    """
    settings = settings or WorstCaseSettings()
    records: list[dict[str, object]] = []
    for u, o in sizes:
        expiring = random_book(u, o, horizon_days=horizon_days, seed=seed)
        living = random_book(
            u, o, horizon_days=horizon_days, option_days_after_horizon=21, seed=seed
        )
        clear_problem_cache()
        for model in ("WCVaR", "WCPVaR", "WCQVaR"):
            book = living if model == "WCQVaR" else expiring
            records.extend(_timed_solves(model, book, confidence_levels, settings))
    return pd.DataFrame.from_records(records)


def _structure(
    model: str, desk: DeskInstruments, und_moments: ReturnMoments,
    inst_moments: ReturnMoments, h: float,
) -> Structure:
    """The loss structure of ``model`` for ``desk``."""
    if model == "WCVaR":
        return linear_structure(desk, inst_moments)
    if model == "WCPVaR":
        return polyhedral_structure(desk, und_moments)
    return quadratic_structure(desk, und_moments, h)


def _timed_solves(
    model: str,
    book: tuple[DeskInstruments, ReturnMoments, ReturnMoments, float],
    confidence_levels: tuple[float, float],
    settings: WorstCaseSettings,
) -> list[dict[str, object]]:
    """Time the first solve and the re-solve of one model, current and optimized."""
    desk, und_moments, inst_moments, h = book
    structure = _structure(model, desk, und_moments, inst_moments, h)
    x = desk.exposures
    problem = AllocationProblem(desk.net_value, x / desk.net_value, inst_moments.mean)
    records: list[dict[str, object]] = []
    for portfolio in ("current", "optimized"):
        for phase, level in zip(("first", "resolve"), confidence_levels, strict=True):
            start = time.perf_counter()
            out: SolveOutcome | OptimizationOutcome
            if portfolio == "current":
                out = _current(model, structure, x, level, settings)
            else:
                out = _minimize(structure, problem, level, settings)
            seconds = time.perf_counter() - start
            records.append({
                "model": model, "n_underlyings": len(desk.underlyings),
                "n_options": len(desk.instrument_ids) - len(desk.underlyings),
                "portfolio": portfolio, "phase": phase, "confidence_level": level,
                "seconds": seconds, "status": out.status, "solver": out.solver,
                "value_pct": out.value / desk.gross_value,
            })
    return records
