"""Worst-case VaR through the nightly job, on the paper's example written as Parquet.

Zymler, Kuhn & Rustem (2013): two stocks at 100 (drifts 12% and 8%, volatilities 30% and
20%, correlation 0.2), a call on the first and a put on the second struck at 100, equal
capital weights, 252-day year, rate 0. The job's figures are compared with an independent
simulation and an independent SOCP written here.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

from risk_engine.config import config_from_dict
from risk_engine.spark.job import main
from risk_engine.timeaxis import horizon_date
from tests.helpers import D2

MU = np.array([0.12, 0.08])
VOL = np.array([0.30, 0.20])
RHO = 0.2
CAPITAL = 1_000_000.0


def _bs(s, k, t, v, call):
    d1 = (np.log(s / k) + 0.5 * v * v * t) / (v * np.sqrt(t))
    d2 = d1 - v * np.sqrt(t)
    return s * norm.cdf(d1) - k * norm.cdf(d2) if call else k * norm.cdf(-d2) - s * norm.cdf(-d1)


def _write_inputs(root, expiry_days=21):
    expiry = horizon_date(D2, expiry_days)
    t = expiry_days / 252
    c, p = _bs(100.0, 100.0, t, 0.30, True), _bs(100.0, 100.0, t, 0.20, False)
    q = CAPITAL / 4
    positions = pd.DataFrame({
        "as_of_date": [D2] * 4, "position_id": ["A", "B", "CALL_A", "PUT_B"],
        "desk": ["paper"] * 4, "book": ["b"] * 4,
        "instrument_type": ["equity", "equity", "call", "put"],
        "underlying": ["SA", "SB", "SA", "SB"],
        "quantity": [q / 100, q / 100, q / c, q / p], "strike": [None, None, 100.0, 100.0],
        "expiry": [None, None, expiry, expiry], "multiplier": [1.0] * 4,
    })
    market = pd.DataFrame({"as_of_date": [D2] * 2, "underlying": ["SA", "SB"],
                           "spot": [100.0, 100.0], "volatility": VOL, "dividend_yield": 0.0,
                           "sector": ["x", "y"]})
    rates = pd.DataFrame({"as_of_date": [D2], "tenor_years": [1.0], "zero_rate": [0.0]})
    fm = pd.DataFrame({"underlying": ["SA", "SB"], "drift": MU, "volatility": VOL})
    corr = pd.DataFrame({"underlying_a": ["SA"], "underlying_b": ["SB"], "correlation": [RHO]})
    root.mkdir(parents=True, exist_ok=True)
    for name, frame in (("positions", positions), ("market", market), ("rates", rates),
                        ("factor_model", fm), ("correlations", corr)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       root / f"{name}.parquet")
    return c, p


def _run(spark, tmp_path, horizon, expiry_days=21):
    prem = _write_inputs(tmp_path / "in", expiry_days)
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(), "input": {"root": str(tmp_path / "in")},
        "output": {"root": str(tmp_path / "out")},
        "monte_carlo": {"n_scenarios": 200_000, "block_size": 50_000,
                        "horizon_days": horizon},
        "risk": {"confidence_levels": [0.95, 0.99]},
        "scenario_model": {"source": "factor_model"},
        "worst_case": {"moment_blocks": 4},
        "governance": {"enabled": False},
    })
    summary = main(spark, cfg)
    wc = summary.tables["worst_case_var"].set_index(["model", "portfolio",
                                                     "confidence_level"])
    return prem, wc, summary.tables["optimal_allocations"]


def _exact_moments(h):
    cov = np.array([[VOL[0] ** 2, RHO * VOL[0] * VOL[1]], [RHO * VOL[0] * VOL[1], VOL[1] ** 2]])
    m = np.exp(MU * h) - 1
    s = np.exp(np.add.outer(MU, MU) * h) * (np.exp(cov * h) - 1)
    return m, s, cov


@pytest.fixture(scope="module")
def at_expiry(spark, tmp_path_factory):
    return _run(spark, tmp_path_factory.mktemp("wc21"), horizon=21)


def test_wcvar_matches_an_independent_simulation_and_the_paper(at_expiry):
    (c, p), wc, _ = at_expiry
    h = 21 / 252
    _, _, cov = _exact_moments(h)
    rng = np.random.default_rng(2024)
    x = rng.multivariate_normal((MU - VOL**2 / 2) * h, cov * h, 1_000_000)
    s = 100 * np.exp(x)
    r = np.column_stack([s[:, 0] / 100 - 1, s[:, 1] / 100 - 1,
                         np.maximum(s[:, 0] - 100, 0) / c - 1,
                         np.maximum(100 - s[:, 1], 0) / p - 1])
    w = np.full(4, 0.25)
    for level in (0.95, 0.99):
        kappa = np.sqrt(level / (1 - level))
        indep = -r.mean(axis=0) @ w + kappa * np.sqrt(w @ np.cov(r, rowvar=False) @ w)
        row = wc.loc[("WCVaR", "current", level)]
        assert row["status"] == "optimal"
        assert row["value_pct"] == pytest.approx(indep, rel=0.02)
        assert row["value"] == pytest.approx(row["value_pct"] * CAPITAL, rel=1e-9)
    assert wc.loc[("WCVaR", "current", 0.99), "value_pct"] == pytest.approx(4.97, rel=0.03)


def test_wcpvar_matches_an_independent_socp_and_is_far_below_wcvar(at_expiry):
    (c, p), wc, _ = at_expiry
    m, s, _ = _exact_moments(21 / 252)
    ell = np.linalg.cholesky(s)
    w_xi, w_eta = np.array([0.25, 0.25]), np.array([0.25, 0.25])
    a = np.array([(100 - 100) / c, (100 - 100) / p])
    b = np.array([[100 / c, 0.0], [0.0, -100 / p]])  # rows: options; columns: assets
    for level in (0.95, 0.99):
        kappa = np.sqrt(level / (1 - level))
        g = cp.Variable(2)
        y = w_xi + b.T @ g
        prob = cp.Problem(cp.Minimize(-m @ y + kappa * cp.norm(ell.T @ y) - a @ g
                                      + w_eta.sum()), [g >= 0, g <= w_eta])
        prob.solve(solver=cp.CLARABEL)
        row = wc.loc[("WCPVaR", "current", level)]
        assert row["status"] == "optimal"
        assert row["value_pct"] == pytest.approx(prob.value, rel=1e-4)
        assert row["value"] >= row["mc_var"]
    ratio = wc.loc[("WCVaR", "current", 0.99), "value"] / wc.loc[("WCPVaR", "current", 0.99),
                                                                  "value"]
    assert 6.5 < ratio < 7.5
    wcp = wc.loc[("WCPVaR", "current", 0.99)]
    assert wcp["value"] / wcp["mc_var"] < 1.6  # much closer to the Monte Carlo VaR


def test_optimized_allocations_keep_capital_and_lower_the_worst_case(at_expiry):
    _, wc, alloc = at_expiry
    for model in ("WCVaR", "WCPVaR"):
        opt = wc.loc[(model, "optimized", 0.99)]
        assert opt["status"] == "optimal"
        assert opt["value"] <= wc.loc[(model, "current", 0.99), "value"] + 1e-6
        weights = alloc[(alloc["model"] == model) & (alloc["confidence_level"] == 0.99)]
        assert weights["optimal_weight"].sum() == pytest.approx(1.0, abs=1e-6)
        assert (weights["optimal_weight"] >= -1e-7).all()
        assert weights["current_weight"].to_numpy() == pytest.approx(0.25)


def test_two_day_horizon_wcqvar_about_a_third_of_wcvar(spark, tmp_path):
    _, wc, _ = _run(spark, tmp_path, horizon=2)
    assert wc.loc[("WCPVaR", "current", 0.99), "status"] == "not_applicable"
    q = wc.loc[("WCQVaR", "current", 0.99)]
    assert q["status"] == "optimal" and q["value"] >= q["mc_var"]
    ratio = wc.loc[("WCVaR", "current", 0.99), "value"] / q["value"]
    assert 2.6 < ratio < 3.4


def test_infeasible_minimization_is_a_row_and_the_run_completes_with_warnings(spark, tmp_path):
    _write_inputs(tmp_path / "in")
    cfg = config_from_dict({
        "as_of_date": D2.isoformat(), "input": {"root": str(tmp_path / "in")},
        "output": {"root": str(tmp_path / "out")},
        "monte_carlo": {"n_scenarios": 20_000, "block_size": 10_000, "horizon_days": 21},
        "scenario_model": {"source": "factor_model"},
        # four instruments capped at 10% each cannot hold 100% of the capital
        "worst_case": {"confidence_levels": [0.99], "weight_upper": 0.1},
        "governance": {"enabled": False},
    })
    summary = main(spark, cfg)
    assert summary.status == "completed_with_warnings"
    wc = summary.tables["worst_case_var"].set_index(["model", "portfolio"])
    for model in ("WCVaR", "WCPVaR"):
        assert wc.loc[(model, "optimized"), "status"] == "infeasible"
        assert wc.loc[(model, "current"), "status"] == "optimal"
    man = pd.read_parquet(tmp_path / "out" / "run_manifest").iloc[0]
    assert man["status"] == "completed_with_warnings" and "infeasible" in man["warnings"]


def test_a_desk_above_max_instruments_gives_the_in_process_bits_and_the_dense_wcvar(spark,
                                                                                    tmp_path):
    # 4 instruments > max_instruments = 2: desk P&L and bucket moments folded over the
    # executors' blocks; the figures are the in-process run's to the bit, and WCVaR of the
    # current book is the instrument-space (dense) figure to 1e-9.
    from risk_engine.pipeline import InputTables, run_in_process

    _write_inputs(tmp_path / "in")
    data = {
        "as_of_date": D2.isoformat(), "input": {"root": str(tmp_path / "in")},
        "output": {"root": str(tmp_path / "out")},
        "monte_carlo": {"n_scenarios": 40_000, "block_size": 10_000, "horizon_days": 21},
        "risk": {"confidence_levels": [0.95, 0.99]},
        "scenario_model": {"source": "factor_model"},
        "worst_case": {"max_instruments": 2},
        "governance": {"enabled": False},
    }
    summary = main(spark, config_from_dict(data))
    frames = {n: pd.read_parquet(tmp_path / "in" / f"{n}.parquet")
              for n in ("positions", "market", "rates", "factor_model", "correlations")}
    inputs = InputTables(frames["positions"], frames["market"], frames["rates"],
                         factor_model=frames["factor_model"],
                         correlations=frames["correlations"])
    local, _ = run_in_process(config_from_dict(data), inputs)
    dense, _ = run_in_process(config_from_dict(
        {**data, "worst_case": {"max_instruments": 500}}), inputs)
    keys = ["model", "portfolio", "confidence_level"]
    got = summary.tables["worst_case_var"].sort_values(keys).reset_index(drop=True)
    want = local.tables["worst_case_var"].sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=True)
    assert got["instrument_moments"].str.endswith("desk P&L and instrument buckets").all()
    ref = dense.tables["worst_case_var"].sort_values(keys).reset_index(drop=True)
    current = (got["portfolio"] == "current").to_numpy()
    np.testing.assert_allclose(got.loc[current, "value"], ref.loc[current, "value"],
                               rtol=1e-9)
