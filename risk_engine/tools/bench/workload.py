"""The benchmark's workload: a generated option book, its run config and simulation specs."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pandas as pd

from risk_engine.book import EQUITY, ResolvedBook
from risk_engine.pipeline import InputTables, Prepared, prepare
from risk_engine.revaluation_grid import build_plan
from risk_engine.simulation import SimulationSpec
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.demo_data import generate

AS_OF = dt.date(2026, 11, 20)
LEVELS = (0.95, 0.975, 0.99)


def bench_tables(positions: int = 2000, underlyings: int = 50, desks: int = 10,
                 seed: int = 7) -> dict[str, pd.DataFrame]:
    """Demo tables whose book is ``positions`` options spread round-robin over ``desks``.

    The options (calls and puts, long and short, weekly to one-year expiries, some expiring
    inside a 10-day horizon) come from :func:`risk_engine.tools.demo_data.generate`; its
    stock lines are dropped so that every revaluation counted is an option pricing.
    """
    n_gen = max(2 * positions, 100)
    while True:
        tables = generate(AS_OF, n_underlyings=underlyings, n_positions=n_gen, seed=seed)
        pos = tables["positions"]
        opts = pos[pos["instrument_type"] != "equity"]
        if len(opts) >= positions:
            break
        n_gen *= 2
    opts = opts.head(positions).reset_index(drop=True)
    names = [f"desk_{i:02d}" for i in range(desks)]
    opts["desk"] = [names[i % desks] for i in range(len(opts))]
    opts["book"] = opts["desk"]
    opts["position_id"] = [f"B{i + 1:07d}" for i in range(len(opts))]
    return {**tables, "positions": opts}


def bench_config(n_scenarios: int, horizon_days: int, block_size: int, seed: int = 20_261_120
                 ) -> Any:
    """Build the run config of a benchmark point (factor-model scenarios, default levels)."""
    from risk_engine.config import config_from_dict

    return config_from_dict({
        "as_of_date": AS_OF.isoformat(),
        "scenario_model": {"source": "factor_model"},
        "monte_carlo": {"n_scenarios": int(n_scenarios), "horizon_days": int(horizon_days),
                        "block_size": int(min(block_size, n_scenarios)), "seed": seed},
        "risk": {"confidence_levels": list(LEVELS)},
    })


def bench_prepare(n_scenarios: int, *, positions: int, underlyings: int, desks: int,
                  horizon_days: int, block_size: int) -> Prepared:
    """Resolve the benchmark book and scenario model for ``n_scenarios`` scenarios."""
    t = bench_tables(positions, underlyings, desks)
    cfg = bench_config(n_scenarios, horizon_days, block_size)
    return prepare(cfg, InputTables(t["positions"], t["market"], t["rates"],
                                    factor_model=t["factor_model"],
                                    correlations=t["correlations"]))


def spec_for(prep: Prepared, method: str) -> SimulationSpec:
    """Return the simulation spec of ``prep`` with the revaluation plan of ``method``."""
    plan = build_plan(prep.book, method, model=prep.model)
    return dataclasses.replace(prep.spec, plan=plan)


def n_blocks(spec: SimulationSpec) -> int:
    """Scenario blocks of ``spec`` (the last one may be short)."""
    return -(-spec.source.n_scenarios // spec.source.block_size)


def book_rows(rows: Rows, book: ResolvedBook, cores: int, master: str) -> None:
    """Add the ``book`` section's rows: positions, live and expired options, sizes, cores."""
    live = (book.kind != EQUITY) & (book.tau_h > 0)
    rows.add("book", None, None, "positions", book.n_positions)
    rows.add("book", None, None, "options_live_at_horizon", int(live.sum()))
    rows.add("book", None, None, "options_expired_by_horizon",
             int(((book.kind != EQUITY) & ~live).sum()))
    rows.add("book", None, None, "underlyings", len(book.underlyings))
    rows.add("book", None, None, "desks", len(book.desks))
    rows.add("book", None, None, "cores", cores, note=master)
