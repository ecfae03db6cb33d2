"""Worst-case VaR of desks above ``worst_case.max_instruments``: no instrument covariance.

The reduced path (desk P&L moments, instrument buckets) is checked against the dense
instrument-space computation on small desks (a second formulation of the same figures),
and a 200,000-position desk runs through the stage with bounded memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tracemalloc
from functools import reduce

import numpy as np
import pandas as pd
import pytest

from risk_engine.config import config_from_dict
from risk_engine.errors import ConfigError
from risk_engine.pipeline import InputTables, prepare
from risk_engine.worst_case.containers import ReturnMoments
from risk_engine.worst_case.moments import kappa
from risk_engine.worst_case.reduced import bucket_instruments, reduced_quadratic_structure
from risk_engine.worst_case.stage import (
    desk_buckets,
    desk_sets,
    sample_moment_sums,
    worst_case_tables,
)
from risk_engine.worst_case.structures import quadratic_structure
from tests import helpers as h

LEVELS = [0.95, 0.99]
#: An empty risk_measures table (the Monte Carlo VaR column is not under test here).
NO_MC = pd.DataFrame({"scope": [], "measure": [], "desk": [], "confidence_level": [],
                      "value": []})
EXPIRY = h.AS_OF + dt.timedelta(days=91)


def _fold(per_block, merge, n_blocks):
    return reduce(merge, (per_block(b) for b in range(n_blocks)))


def _option_book():
    near = h.AS_OF + dt.timedelta(days=30)
    return InputTables(
        h.positions([
            ("s1", "opt", "equity", "A", 500.0, None, None, 1.0),
            ("s2", "opt", "equity", "B", -300.0, None, None, 1.0),
            ("c1", "opt", "call", "A", 20.0, 100.0, EXPIRY, 100.0),
            ("c3", "opt", "call", "A", 10.0, 110.0, near, 100.0),
            ("p2", "opt", "put", "A", 12.0, 95.0, near, 100.0),
            ("p1", "opt", "put", "B", 15.0, 48.0, EXPIRY, 100.0),
            ("c2", "opt", "call", "B", -10.0, 55.0, EXPIRY, 100.0),
            ("c4", "opt", "call", "B", 5.0, 50.0, EXPIRY, 100.0),
            ("c5", "opt", "call", "B", -5.0, 50.0, EXPIRY, 100.0),  # nets c4 to zero
        ]),
        h.market([("A", 100.0, 0.3, 0.0, "x"), ("B", 50.0, 0.4, 0.01, "y")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.06, 0.3), ("B", 0.04, 0.45)]),
        correlations=h.correlations([("A", "B", 0.5)]))


def _cfg(**worst_case):
    return h.config(
        monte_carlo={"n_scenarios": 6_000, "block_size": 2_000, "horizon_days": 10},
        worst_case={"confidence_levels": LEVELS, "weight_lower": -1.0, **worst_case},
        governance={"enabled": False})


def _stage(cfg, inputs):
    prepared = prepare(cfg, inputs)
    book, source, wc = prepared.book, prepared.spec.source, cfg.worst_case
    sets = desk_sets(book, wc.min_premium)
    sums = sample_moment_sums(book, source, sets, wc, _fold)
    wc_frame, alloc, _ = worst_case_tables(book, prepared.model, source, NO_MC, wc,
                                          horizon_days=10, sets=sets, sums=sums)
    return sets, sums, wc_frame, alloc


def _rows(frame, model, portfolio):
    rows = frame[(frame["model"] == model) & (frame["portfolio"] == portfolio)]
    return rows.sort_values("confidence_level").reset_index(drop=True)


def test_low_dimensional_moments_equal_the_dense_instrument_space():
    inputs = _option_book()
    sets, dense_sums, dense, _ = _stage(_cfg(), inputs)
    _, reduced_sums, reduced, alloc = _stage(_cfg(max_instruments=3), inputs)
    (ds,), (dense_desk,), (reduced_desk,) = sets, dense_sums, reduced_sums
    inst = ds.instruments
    assert inst.n_instruments == 8 and len(dense_desk) == 2 and len(reduced_desk) == 3
    x = inst.exposures
    # Dense instrument space: mean (m,), covariance (m, m) of instrument returns.
    inst_m = dense_desk[1].to_moments()
    pnl_m = reduced_desk[2].to_moments()
    assert pnl_m.mean[0] == pytest.approx(inst_m.mean @ x, rel=1e-9)
    assert pnl_m.cov[0, 0] == pytest.approx(x @ inst_m.cov @ x, rel=1e-9)
    # Bucket returns are fixed mixes of instrument returns: R_b = sum_j share_j R_j.
    buckets = desk_buckets(ds, _cfg(max_instruments=3).worst_case)
    mix = np.zeros((inst.n_instruments, buckets.n_buckets))
    held = buckets.bucket_of >= 0
    mix[np.flatnonzero(held), buckets.bucket_of[held]] = buckets.share[held]
    bucket_m = reduced_desk[1].to_moments()
    np.testing.assert_allclose(bucket_m.mean, mix.T @ inst_m.mean, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(bucket_m.cov, mix.T @ inst_m.cov @ mix, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(mix @ buckets.exposure, x, rtol=1e-12, atol=1e-9)
    # The current book's figures: WCVaR from the P&L's moments, the others unchanged.
    for model in ("WCVaR", "WCPVaR", "WCQVaR"):
        a, b = _rows(dense, model, "current"), _rows(reduced, model, "current")
        np.testing.assert_allclose(b["value"], a["value"], rtol=1e-9)
        assert list(a["status"]) == list(b["status"])
    wcvar = _rows(reduced, "WCVaR", "current")
    assert wcvar["message"].str.contains("mean and variance of the desk's P&L").all()
    assert wcvar["message"].str.contains("max_instruments=3").all()
    expected = [-inst_m.mean @ x + kappa(a) * math.sqrt(x @ inst_m.cov @ x) for a in LEVELS]
    np.testing.assert_allclose(wcvar["value"], expected, rtol=1e-9)
    # Minimizations over the buckets: said in the message, weights per instrument.
    for model in ("WCVaR", "WCQVaR"):
        rows = _rows(reduced, model, "optimized")
        assert rows["status"].isin(["optimal", "inaccurate"]).all()
        assert rows["message"].str.contains(f"solved over {buckets.n_buckets} buckets").all()
        weights = alloc[(alloc["model"] == model)]
        assert len(weights) == len(LEVELS) * inst.n_instruments
        for _, level in weights.groupby("confidence_level"):
            assert level["optimal_weight"].sum() == pytest.approx(1.0, abs=1e-6)


def test_bucket_greeks_equal_the_instruments():
    inputs = _option_book()
    cfg = _cfg(max_instruments=3)
    prepared = prepare(cfg, inputs)
    (ds,) = desk_sets(prepared.book, cfg.worst_case.min_premium)
    inst = ds.instruments
    und = ReturnMoments(np.array([0.002, 0.001]), np.array([[0.004, 0.002], [0.002, 0.008]]),
                        labels=inst.underlyings)
    full = quadratic_structure(inst, und, 10 / 252)
    buckets = bucket_instruments(inst, 3)
    small = reduced_quadratic_structure(full, buckets)
    assert small.delta.shape == (2, buckets.n_buckets)
    for got, want in zip(small.greeks(buckets.exposure), full.greeks(inst.exposures),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


def _expiring_long_book():
    horizon = h.AS_OF + dt.timedelta(days=14)  # 10 trading days later
    return InputTables(
        h.positions([
            ("s1", "d", "equity", "A", 400.0, None, None, 1.0),
            ("c1", "d", "call", "A", 20.0, 100.0, horizon, 100.0),
            ("c2", "d", "call", "A", 10.0, 105.0, horizon, 100.0),
            ("p1", "d", "put", "B", 15.0, 48.0, horizon, 100.0),
        ]),
        h.market([("A", 100.0, 0.3, 0.0, "x"), ("B", 50.0, 0.4, 0.01, "y")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.06, 0.3), ("B", 0.04, 0.45)]),
        correlations=h.correlations([("A", "B", 0.5)]))


def test_above_the_cap_rows_say_why_instead_of_crashing():
    inputs = _expiring_long_book()
    _, _, dense, _ = _stage(_cfg(weight_lower=0.0), inputs)
    _, _, capped, alloc = _stage(_cfg(weight_lower=0.0, max_instruments=1), inputs)
    # WCPVaR of the current book is in the underlyings' space: the same figure.
    a, b = _rows(dense, "WCPVaR", "current"), _rows(capped, "WCPVaR", "current")
    assert (a["status"] == "optimal").all()
    np.testing.assert_allclose(b["value"], a["value"], rtol=1e-9)
    opt = _rows(capped, "WCPVaR", "optimized")
    assert (opt["status"] == "not_applicable").all()
    assert opt["message"].str.contains("no reduced form").all()
    # 3 buckets (A stock, A options, B options) exceed the cap of 1 too.
    for model in ("WCVaR", "WCQVaR"):
        rows = _rows(capped, model, "optimized")
        assert (rows["status"] == "not_applicable").all()
        assert rows["message"].str.contains("max_instruments=1").all()
        assert rows["message"].str.contains("buckets").all()
        assert (_rows(capped, model, "current")["status"] == "optimal").all()
    assert alloc.empty


def test_a_large_stock_desk_keeps_its_exact_moments():
    inputs = InputTables(
        h.positions([("s1", "d", "equity", "A", 400.0, None, None, 1.0),
                     ("s2", "d", "equity", "B", -250.0, None, None, 1.0),
                     ("s3", "d", "equity", "C", 100.0, None, None, 1.0)]),
        h.market([("A", 100.0, 0.3, 0.0, "x"), ("B", 50.0, 0.4, 0.0, "y"),
                  ("C", 20.0, 0.2, 0.0, "y")]), h.flat_rates(),
        factor_model=h.factor_model([("A", 0.06, 0.3), ("B", 0.04, 0.45), ("C", 0.05, 0.2)]),
        correlations=h.correlations([("A", "B", 0.5), ("B", "C", -0.2)]))
    _, sums, dense, _ = _stage(_cfg(), inputs)
    _, capped_sums, capped, _ = _stage(_cfg(max_instruments=2), inputs)
    assert sums == [None] and capped_sums == [None]  # no scenario pass: exact moments
    for model in ("WCVaR", "WCQVaR"):
        a, b = _rows(dense, model, "current"), _rows(capped, model, "current")
        np.testing.assert_allclose(b["value"], a["value"], rtol=1e-12)
    assert (capped["instrument_moments"] == "exact: desk P&L and instrument buckets").all()
    wcvar = _rows(capped, "WCVaR", "optimized")
    assert (wcvar["status"] == "not_applicable").all()  # 3 buckets > 2 as well
    assert wcvar["message"].str.contains("3 buckets").all()


def test_max_instruments_must_be_a_positive_integer():
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ConfigError, match=r"worst_case\.max_instruments"):
            config_from_dict({"as_of_date": h.AS_OF.isoformat(),
                              "worst_case": {"max_instruments": bad}})


@pytest.mark.heavy
def test_a_200k_position_desk_completes_without_an_instrument_covariance():
    from risk_engine.tools import demo_data

    tables = demo_data.generate(n_positions=200_000)
    positions = tables["positions"].assign(desk="desk")
    inputs = InputTables(positions, tables["market"], tables["rates"],
                         factor_model=tables["factor_model"],
                         correlations=tables["correlations"])
    cfg = h.config(as_of_date=demo_data.DEFAULT_AS_OF.isoformat(),
                   monte_carlo={"n_scenarios": 2_000, "block_size": 1_000},
                   worst_case={"confidence_levels": [0.99]})
    prepared = prepare(cfg, inputs)
    wc = cfg.worst_case
    tracemalloc.start()
    try:
        sets = desk_sets(prepared.book, wc.min_premium)
        (ds,) = sets
        m = ds.instruments.n_instruments
        assert m > 10 * wc.max_instruments
        sums = sample_moment_sums(prepared.book, prepared.spec.source, sets, wc, _fold)
        frame, alloc, _ = worst_case_tables(
            prepared.book, prepared.model, prepared.spec.source, NO_MC, wc,
            horizon_days=10, sets=sets, sums=sums)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (desk_sums,) = sums
    assert len(desk_sums) == 3  # underlyings, buckets, desk P&L: no instrument co-moment
    assert all(s.comoment.shape[0] <= wc.max_instruments for s in desk_sums)
    # A dense m x m covariance alone would be m**2 * 8 bytes (2.4 GB here); measured peak
    # 0.7 GB, nearly all of it the WCVaR minimization over the 350 buckets (cvxpy).
    assert peak < 0.5 * m * m * 8
    rows = frame.set_index(["model", "portfolio"])
    assert rows.loc[("WCVaR", "current"), "status"] == "optimal"
    assert rows.loc[("WCQVaR", "current"), "status"] == "optimal"
    assert rows.loc[("WCVaR", "optimized"), "status"] in ("optimal", "inaccurate")
    assert "buckets" in rows.loc[("WCVaR", "optimized"), "message"]
    assert len(alloc) % m == 0


def test_aggregated_wcpvar_equals_the_per_option_socp():
    from risk_engine.worst_case.containers import DeskInstruments
    from risk_engine.worst_case.models import wcpvar
    from risk_engine.worst_case.reduced import wcpvar_aggregated
    from risk_engine.worst_case.structures import polyhedral_structure

    rng = np.random.default_rng(3)
    n_u, p = 4, 60
    spots = np.array([100.0, 50.0, 20.0, 250.0])
    und = np.concatenate([np.arange(n_u), rng.integers(0, n_u, p)])
    kind = np.concatenate([np.zeros(n_u, np.int8), rng.integers(1, 3, p).astype(np.int8)])
    strike = np.concatenate([np.full(n_u, np.nan),
                             spots[und[n_u:]] * rng.uniform(0.85, 1.15, p)])
    premium = np.concatenate([spots, spots[und[n_u:]] * rng.uniform(0.01, 0.08, p)])
    desk = DeskInstruments(
        desk="d", underlyings=("A", "B", "C", "D"), spots=spots,
        instrument_ids=tuple(f"i{j}" for j in range(n_u + p)), kind=kind,
        underlying_index=und, strike=strike, unit_value=premium,
        quantity=np.concatenate([rng.uniform(-50, 100, n_u), rng.uniform(1, 30, p)]),
        tau_after_horizon=np.concatenate([np.full(n_u, np.nan), np.zeros(p)]),
        delta=np.zeros(n_u + p), gamma=np.zeros(n_u + p), theta=np.zeros(n_u + p))
    corr = 0.3 + 0.7 * np.eye(n_u)
    sd = np.array([0.05, 0.07, 0.04, 0.06])
    moments = ReturnMoments(np.array([0.004, 0.002, 0.001, 0.003]),
                            corr * np.outer(sd, sd), labels=desk.underlyings)
    structure = polyhedral_structure(desk, moments)
    for level in (0.95, 0.99):
        per_option = wcpvar(desk.exposures, structure, level)
        aggregated = wcpvar_aggregated(desk.exposures, structure, level)
        assert per_option.status == aggregated.status == "optimal"
        assert aggregated.value == pytest.approx(per_option.value, rel=1e-6)


def test_desks_below_the_cap_are_revalued_in_bounded_groups(monkeypatch):
    from risk_engine import sample_moments

    base = _option_book()
    frames = [base.positions.assign(desk=d, position_id=base.positions["position_id"] + d)
              for d in ("a", "b", "c")]
    inputs = dataclasses.replace(base, positions=pd.concat(frames, ignore_index=True))
    cfg = _cfg()
    prepared = prepare(cfg, inputs)
    sets = desk_sets(prepared.book, cfg.worst_case.min_premium)
    one = sample_moment_sums(prepared.book, prepared.spec.source, sets, cfg.worst_case, _fold)
    monkeypatch.setattr(sample_moments, "DENSE_COLUMNS", 10)  # 8 instruments a desk
    moment_pass = sample_moments.MomentPass.of(
        prepared.book, prepared.spec.source,
        [(ds.representative, ds.underlying_index) for ds in sets])
    assert len(moment_pass.groups) == 3
    split = _fold(moment_pass.block, sample_moments.merge_desk_sums,
                  prepared.spec.source.n_blocks)
    for got, want in zip(split, one, strict=True):
        for a, b in zip(got, want, strict=True):
            assert a.count == b.count
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(a.comoment, b.comoment, rtol=1e-12, atol=1e-15)
