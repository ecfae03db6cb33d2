"""The worst-case stage's moments: exact where they exist, else over every scenario."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from risk_engine.pipeline import InputTables
from tests import helpers as h

LEVEL = 0.99
KAPPA = math.sqrt(LEVEL / (1 - LEVEL))  # Chebyshev-Cantelli, eps = 1 - alpha


def _cfg(**worst_case):
    return h.config(
        monte_carlo={"n_scenarios": 20_000, "block_size": 5_000, "horizon_days": 10},
        worst_case={"confidence_levels": [LEVEL], "optimize": False, **worst_case},
        governance={"enabled": False})


def _current_wcvar(tables, desk):
    wc = tables["worst_case_var"]
    row = wc[(wc["desk"] == desk) & (wc["model"] == "WCVaR") & (wc["portfolio"] == "current")]
    assert len(row) == 1
    return row.iloc[0]


def test_wcvar_of_a_stock_desk_uses_exact_gbm_moments():
    mu, sigma, spot, qty = 0.07, 0.35, 80.0, 1000.0
    inputs = InputTables(
        h.positions([("s1", "desk", "equity", "A", qty, None, None, 1.0)]),
        h.market([("A", spot, 0.3, 0.0, "x")]), h.flat_rates(),
        factor_model=h.factor_model([("A", mu, sigma)]), correlations=h.correlations())
    _, tables, _ = h.run(_cfg(), inputs)
    row = _current_wcvar(tables, "desk")
    t = 10 / 252  # trading_252 day count
    mean = math.exp(mu * t) - 1  # simple return of GBM with price drift mu
    sd = math.exp(mu * t) * math.sqrt(math.expm1(sigma ** 2 * t))
    exact = qty * spot * (-mean + KAPPA * sd)
    assert row["instrument_moments"] == "exact"
    assert row["value"] == pytest.approx(exact, rel=1e-12)


def _option_book():
    expiry = h.AS_OF + dt.timedelta(days=91)
    return InputTables(
        h.positions([
            ("s1", "opt", "equity", "A", 500.0, None, None, 1.0),
            ("c1", "opt", "call", "A", 20.0, 100.0, expiry, 100.0),
            ("p1", "opt", "put", "B", 15.0, 48.0, expiry, 100.0),
            ("c2", "opt", "call", "B", -10.0, 55.0, expiry, 100.0),
        ]),
        h.market([("A", 100.0, 0.3, 0.0, "x"), ("B", 50.0, 0.4, 0.01, "y")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.06, 0.3), ("B", 0.04, 0.45)]),
        correlations=h.correlations([("A", "B", 0.5)]))


def test_wcvar_of_an_option_desk_uses_the_moments_of_every_scenario():
    # WCVaR of the current book is -E[P&L] + kappa sd(P&L) under the instruments' moments:
    # over every scenario it equals the same expression on the desk's own P&L sample, which
    # the Monte Carlo kernel computes independently (desk P&L, not instrument returns).
    _, tables, pnl = h.run(_cfg(), _option_book())
    row = _current_wcvar(tables, "opt")
    desk = pnl[:, 0]
    expected = -desk.mean() + KAPPA * desk.std(ddof=1)
    assert row["instrument_moments"] == "sample of 20000 scenarios"
    assert row["value"] == pytest.approx(expected, rel=1e-9)
    # One block's moments (the former default) miss the full sample's value.
    _, first_block, _ = h.run(_cfg(moment_blocks=1), _option_book())
    one = _current_wcvar(first_block, "opt")
    assert one["instrument_moments"] == "sample of 5000 scenarios"
    block = desk[:5_000]
    assert one["value"] == pytest.approx(-block.mean() + KAPPA * block.std(ddof=1), rel=1e-9)
    assert abs(one["value"] - row["value"]) > 1e-6 * row["value"]
