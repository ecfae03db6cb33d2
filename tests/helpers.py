"""Small books and configs shared by tests (fixtures live in tests, never in the product)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from risk_engine.config import config_from_dict

D1 = dt.date(2026, 11, 19)
D2 = dt.date(2026, 11, 20)
AS_OF = D2


def config(**sections):
    data = {"as_of_date": AS_OF.isoformat(), "scenario_model": {"source": "factor_model"}}
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(data)


def market(rows):
    """rows: (underlying, spot, vol, div, sector)."""
    return pd.DataFrame(
        [(AS_OF, *r) for r in rows],
        columns=["as_of_date", "underlying", "spot", "volatility", "dividend_yield", "sector"],
    )


def positions(rows):
    """rows: (position_id, desk, type, underlying, qty, strike, expiry, multiplier)."""
    return pd.DataFrame(
        [(AS_OF, r[0], r[1], "b", *r[2:]) for r in rows],
        columns=["as_of_date", "position_id", "desk", "book", "instrument_type", "underlying",
                 "quantity", "strike", "expiry", "multiplier"],
    )


def flat_rates(rate=0.03):
    return pd.DataFrame({"as_of_date": AS_OF, "tenor_years": [0.25, 1.0, 5.0],
                         "zero_rate": [rate] * 3})


def factor_model(rows):
    """rows: (underlying, drift, vol)."""
    return pd.DataFrame(rows, columns=["underlying", "drift", "volatility"])


def correlations(rows=()):
    return pd.DataFrame(list(rows), columns=["underlying_a", "underlying_b", "correlation"])


def run(cfg, inputs):
    """The in-process nightly run: (prepared, tables, (N, D) desk P&L)."""
    from risk_engine.pipeline import run_in_process

    result, pnl = run_in_process(cfg, inputs)
    return result.prepared, result.tables, pnl


#: Sections switching off the stages after the Monte Carlo risk tables.
MC_ONLY = {"worst_case": {"enabled": False}, "governance": {"enabled": False}}
