"""Timing of the worst-case models against desk size.

Random, well-conditioned books: U underlyings (one long equity position
each, correlated GBM from a 3-factor model plus idiosyncratic risk) and O
long European options on random underlyings, strikes within 10% of spot.
For WCVaR and WCPVaR the options expire at the horizon; for WCQVaR they
live one more month. Instrument moments come from a small simulation.

For single-core figures run with ``RAYON_NUM_THREADS=1`` (Clarabel's dense
linear algebra is multithreaded) and one pinned core, e.g.
``RAYON_NUM_THREADS=1 taskset -c 0 python -c "from risk_engine.worst_case.bench
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

from .containers import (
    DeskInstruments,
    OptimizationOutcome,
    ReturnMoments,
    SolveOutcome,
    WorstCaseSettings,
)
from .desk import Structure, _current, _minimize
from .moments import gbm_simple_return_moments, instrument_return_moments_from_samples
from .optimize import AllocationProblem
from .structures import linear_structure, polyhedral_structure, quadratic_structure

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
    u, o = n_underlyings, n_options
    h = horizon_days / TRADING_DAYS
    vol = rng.uniform(0.15, 0.45, u)
    loadings = rng.normal(0.0, 0.35, (u, 3))
    corr = loadings @ loadings.T
    corr += np.diag(1.0 - np.diag(corr).clip(max=0.8))
    scale = np.sqrt(np.diag(corr))
    corr /= np.outer(scale, scale)
    cov = corr * np.outer(vol, vol)
    drift = rng.uniform(0.02, 0.12, u)
    spots = rng.uniform(50.0, 150.0, u)
    und = rng.integers(0, u, o)
    is_call = rng.random(o) < 0.5
    strike = spots[und] * rng.uniform(0.9, 1.1, o)
    tau_after = option_days_after_horizon / TRADING_DAYS
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
    mean, covariance = gbm_simple_return_moments(drift, cov, h)
    underlying = ReturnMoments(mean, covariance, desk.underlyings)
    chol = np.linalg.cholesky(cov * h)
    logs = (drift - 0.5 * vol**2) * h + rng.standard_normal((n_scenarios, u)) @ chol.T
    later_spots = spots * np.exp(logs)
    later_options = _black_scholes(
        later_spots[:, und], strike, np.full(o, tau_after), vol[und], is_call
    )[0]
    instruments = instrument_return_moments_from_samples(
        unit_value, np.hstack([later_spots, later_options]), desk.instrument_ids
    )
    return desk, underlying, instruments, h


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
            desk, und_moments, inst_moments, h = living if model == "WCQVaR" else expiring
            structure: Structure
            if model == "WCVaR":
                structure = linear_structure(desk, inst_moments)
            elif model == "WCPVaR":
                structure = polyhedral_structure(desk, und_moments)
            else:
                structure = quadratic_structure(desk, und_moments, h)
            x = desk.exposures
            problem = AllocationProblem(desk.net_value, x / desk.net_value, inst_moments.mean)
            for portfolio in ("current", "optimized"):
                for phase, level in zip(("first", "resolve"), confidence_levels, strict=True):
                    start = time.perf_counter()
                    out: SolveOutcome | OptimizationOutcome
                    if portfolio == "current":
                        out = _current(model, structure, x, level, settings)
                    else:
                        out = _minimize(structure, problem, level, settings)
                    seconds = time.perf_counter() - start
                    gross = desk.gross_value
                    records.append(
                        {
                            "model": model,
                            "n_underlyings": u,
                            "n_options": o,
                            "portfolio": portfolio,
                            "phase": phase,
                            "confidence_level": level,
                            "seconds": seconds,
                            "status": out.status,
                            "solver": out.solver,
                            "value_pct": out.value / gross,
                        }
                    )
    return pd.DataFrame.from_records(records)
