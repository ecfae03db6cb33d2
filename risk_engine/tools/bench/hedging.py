"""Hedging: time of the hedging stage on the demo book, per decomposition objective.

The stage runs on the driver, in process, after the Monte Carlo tails: its wall-clock time
is what it adds to the nightly run. It is timed on the demo book
(:func:`risk_engine.tools.demo_data.generate`: 6 desks, 50 underlyings, price history) with
the default ``hedging`` settings and each ``objective``; ``cvar`` regenerates the first
``cvar_blocks`` Monte Carlo blocks of the run (included in its time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from risk_engine.config import config_from_dict
from risk_engine.hedging.stage import hedging_tables
from risk_engine.pipeline import InputTables, prepare
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.demo_data import DEFAULT_AS_OF, generate


def hedging_rows(rows: Rows, objectives: Sequence[str] = ("variance", "cvar"), *,
                 positions: int = 2000, block_size: int = 10_000, cores: int = 2,
                 say: Callable[[str], None] | None = None) -> None:
    """Add the ``hedging`` section: the stage's seconds per objective, against the target.

    Parameters
    ----------
    rows : Rows
        The benchmark's rows.
    objectives : sequence of str
        ``hedging.objective`` values timed (``variance``, ``cvar``).
    positions : int
        Positions of the demo book (2,000 is the demo's).
    block_size : int
        Monte Carlo block size (``cvar`` uses the first block: its scenarios).
    cores : int
        Cores of the run, for the note.
    say : callable, optional
        Progress messages.
    """
    log = say or (lambda msg: None)
    tables = generate(DEFAULT_AS_OF, n_positions=positions)
    inputs = InputTables(**tables)
    cfg = config_from_dict({
        "as_of_date": DEFAULT_AS_OF.isoformat(),
        "scenario_model": {"source": "history"},
        "monte_carlo": {"n_scenarios": 10 * block_size, "block_size": block_size},
        "hedging": {"enabled": True},
    })
    prep = prepare(cfg, inputs)
    n_desks = len(prep.book.desks)
    for objective in objectives:
        log(f"hedging {objective}")
        settings = config_from_dict({"as_of_date": DEFAULT_AS_OF.isoformat(),
                                     "hedging": {"enabled": True, "objective": objective},
                                     }).hedging
        start = time.perf_counter()
        out, _ = hedging_tables(prep.book, prep.model, inputs.history, settings,
                                position_history=inputs.position_history,
                                source=prep.spec.source)
        seconds = time.perf_counter() - start
        summary = out["hedge_summary"]
        n = block_size * settings.cvar_blocks if objective == "cvar" else None
        note = (f"demo book: {n_desks} desks, {prep.book.n_positions} positions, "
                f"driver in process, {cores} cores")
        rows.add("hedging", objective, n, "stage_s", seconds, "s", target="hedging_stage_s",
                 note=note)
        rows.add("hedging", objective, n, "desks_with_baskets",
                 float((summary["n_kept"] > 0).sum()), "desks")
        rows.add("hedging", objective, n, "decompositions_optimal",
                 float((summary["decomposition_status"] == "optimal").sum()), "desks",
                 note="of the desks; the others: not_applicable (no basket) or fallback")
