"""The stress stages of the nightly run, one call each from :mod:`risk_engine.pipeline`."""

from __future__ import annotations

import pandas as pd

from risk_engine import schemas
from risk_engine.book import ResolvedBook
from risk_engine.config import Config
from risk_engine.scenarios.model import ScenarioModel
from risk_engine.stress.scenarios import build_scenarios, stress_grid, stress_results
from risk_engine.stress.stressed_var import Fold, stressed_var_table


def stressed_var_tables(cfg: Config, book: ResolvedBook, history: pd.DataFrame | None,
                        model: ScenarioModel, fold: Fold
                        ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The ``stressed_var`` table of today's book (see :mod:`risk_engine.stress.stressed_var`).

    Without a ``history`` table the table is empty and a warning says so.
    """
    if history is None:
        columns = schemas.STRESSED_VAR.pandas_dtypes()
        empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
        return ({schemas.STRESSED_VAR.name: empty},
                ["stressed_var: skipped: no history table"])
    frame, warnings = stressed_var_table(
        book, history, cfg.stressed_var, cfg.historical, cfg.risk.confidence_levels,
        as_of=cfg.as_of_date, horizon_days=cfg.monte_carlo.horizon_days, model=model,
        fold=fold)
    return {schemas.STRESSED_VAR.name: frame}, warnings


def stress_tables(cfg: Config, book: ResolvedBook, scenarios: pd.DataFrame | None,
                  history: pd.DataFrame | None
                  ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, list[str]]:
    """``stress_results`` (with a ``stress_scenarios`` input) and ``stress_grid``.

    See :mod:`risk_engine.stress.scenarios`.

    Returns
    -------
    tables, rejected, warnings
        The tables, the rejected ``stress_scenarios`` rows (``rejected_rows`` columns) and
        the warnings.
    """
    st = cfg.stress
    tables: dict[str, pd.DataFrame] = {}
    warnings: list[str] = []
    rejected = pd.DataFrame(columns=list(schemas.REJECTED_ROWS.pandas_dtypes()))
    if scenarios is not None:
        built, rej = build_scenarios(scenarios, book, history, cfg.as_of_date)
        tables[schemas.STRESS_RESULTS.name] = stress_results(book, built, st.worst_positions)
        if rej:
            rejected = pd.DataFrame([r.as_row() for r in rej], columns=list(rejected.columns))
            warnings.append(f"stress_scenarios: {len(rej)} row(s) rejected; see rejected_rows")
    if st.grid:
        tables[schemas.STRESS_GRID.name] = stress_grid(book, st)
    return tables, rejected, warnings
