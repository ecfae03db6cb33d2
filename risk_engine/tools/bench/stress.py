"""Historical simulation, stressed VaR and the stress sheets: wall times on the demo book.

Timed in process on the demo book (:func:`risk_engine.tools.demo_data.generate`, 6 desks,
50 underlyings) with a ``years``-long history: historical simulation over the default
500-day window (``prepare`` plus the revaluation of every window and the exact tails),
stressed VaR over ``years x 252`` dates (one revaluation per date, then every rolling
250-day window), and the spot-vol grid of every desk. The in-process engine stands for the
driver's share; on Spark the revaluations are spread over the executors.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from risk_engine.config import config_from_dict
from risk_engine.engine import InProcessEngine
from risk_engine.pipeline import InputTables, prepare
from risk_engine.stress.scenarios import stress_grid
from risk_engine.stress.stage import stressed_var_tables
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.demo_data import DEFAULT_AS_OF, generate


def stress_rows(rows: Rows, *, positions: int = 2000, years: int = 10, cores: int = 2,
                say: Callable[[str], None] | None = None) -> None:
    """Add the ``stress`` section: seconds of historical VaR, stressed VaR and the grid.

    Parameters
    ----------
    rows : Rows
        The benchmark's rows.
    positions : int
        Positions of the demo book (2,000 is the demo's).
    years : int
        Years of demo history (252 dates each) searched by stressed VaR.
    cores : int
        Cores of the run, for the note.
    say : callable, optional
        Progress messages.
    """
    log = say or (lambda msg: None)
    tables = generate(DEFAULT_AS_OF, n_positions=positions, years=years)
    inputs = InputTables(tables["positions"], tables["market"], tables["rates"],
                         history=tables["history"])
    cfg = config_from_dict({
        "as_of_date": DEFAULT_AS_OF.isoformat(),
        "scenario_model": {"source": "historical"},
        "stressed_var": {"enabled": True, "history_days": years * 252},
        "stress": {"enabled": True},
    })
    note = f"demo book, {positions} positions, in process ({cores} cores on the machine)"
    log("stress: historical simulation")
    start = time.perf_counter()
    prep = prepare(cfg, inputs)
    blocks = InProcessEngine().simulate(prep.spec, cfg.risk.confidence_levels)
    blocks.tail_summary(cfg.risk.confidence_levels)
    hs = time.perf_counter() - start
    n_hs = prep.spec.source.n_scenarios
    rows.add("stress", "historical", n_hs, "wall_s", hs, "s",
             note=note + "; prepare + revaluation + exact tails")
    log("stress: stressed VaR")
    start = time.perf_counter()
    out, _ = stressed_var_tables(cfg, prep.book, inputs.history, prep.model, blocks.fold)
    sv = time.perf_counter() - start
    n_windows = int(out["stressed_var"]["n_windows"].iloc[0]) if len(out["stressed_var"]) else 0
    rows.add("stress", "stressed_var", years * 252, "wall_s", sv, "s",
             note=f"{n_windows} rolling windows searched; " + note)
    log("stress: spot-vol grid")
    start = time.perf_counter()
    grid = stress_grid(prep.book, cfg.stress)
    gs = time.perf_counter() - start
    rows.add("stress", "stress_grid", None, "wall_s", gs, "s",
             note=f"{len(grid)} rows, {len(prep.book.desks)} desks; " + note)
