"""Tests of risk_engine.worst_case (WCVaR, WCPVaR, WCQVaR and their minimization).

Checks are against independent things: closed forms vs cvxpy formulations,
SOCP vs SDP, the paper's numbers, Monte Carlo VaR (a worst case over all
distributions with the sample moments of a simulation bounds that
simulation's empirical VaR exactly), and optimizer objectives re-evaluated
at their solutions by differently formulated code.

Paper example (Zymler, Kuhn & Rustem 2013, talk slides 17-18 and 24): two
stocks at 100, drifts 12% / 8%, vols 30% / 20%, correlation 0.2, a call on
stock A and a put on stock B struck at 100 maturing in 21 trading days,
25% of capital in each instrument, 252-day year. The talk gives no interest
rate; we take r = 0 (with r = 3% the figures move by < 0.2%).
"""

from __future__ import annotations

import math

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from risk_engine.errors import ConfigError
from risk_engine.tools.worst_case_bench import benchmark_worst_case, random_book
from risk_engine.worst_case import (
    CALL,
    EQUITY,
    OPTIMAL_ALLOCATION_COLUMNS,
    PUT,
    STATUSES,
    WORST_CASE_VAR_COLUMNS,
    AllocationProblem,
    DeskInstruments,
    MomentSums,
    ReturnMoments,
    WorstCaseSettings,
    delta_gamma_pnl,
    evaluate_desk,
    gbm_simple_return_moments,
    instrument_return_moments_from_samples,
    kappa,
    linear_structure,
    minimize_wcpvar,
    minimize_wcqvar,
    minimize_wcvar,
    polyhedral_structure,
    quadratic_structure,
    reports_to_frames,
    return_space_greeks,
    wcpvar,
    wcpvar_sdp,
    wcqvar,
    wcqvar_sdp,
    wcvar,
    wcvar_robust,
)

YEAR = 252.0
MU = np.array([0.12, 0.08])
VOL = np.array([0.30, 0.20])
CORR = np.array([[1.0, 0.2], [0.2, 1.0]])
COV = CORR * np.outer(VOL, VOL)
SPOT = np.array([100.0, 100.0])
STRIKE = 100.0
CAPITAL = 1_000_000.0
N_PATHS = 200_000


# ------------------------------------------------------------------ helpers


def bs(spot, strike, tau, vol, is_call):
    """Zero-rate Black-Scholes value, delta, gamma, theta (dV/dt per year); tau <= 0 intrinsic."""
    spot = np.asarray(spot, dtype=float)
    if tau <= 0:
        payoff = np.maximum(spot - strike, 0) if is_call else np.maximum(strike - spot, 0)
        return payoff, None, None, None
    root = vol * math.sqrt(tau)
    d1 = (np.log(spot / strike) + 0.5 * vol**2 * tau) / root
    d2 = d1 - root
    call = spot * norm.cdf(d1) - strike * norm.cdf(d2)
    value = call if is_call else call - spot + strike
    delta = norm.cdf(d1) if is_call else norm.cdf(d1) - 1.0
    gamma = norm.pdf(d1) / (spot * root)
    theta = -spot * norm.pdf(d1) * vol / (2 * math.sqrt(tau))
    return value, delta, gamma, theta


def paper_desk(
    horizon_days: int, option_days: int = 21, quantity_scale=(1, 1, 1, 1)
) -> DeskInstruments:
    """The paper's book: stocks A, B, call on A, put on B; 25% of capital each."""
    tau0 = option_days / YEAR
    c0, dc, gc, tc = bs(100.0, STRIKE, tau0, VOL[0], True)
    p0, dp, gp, tp = bs(100.0, STRIKE, tau0, VOL[1], False)
    unit = np.array([100.0, 100.0, float(c0), float(p0)])
    quantity = 0.25 * CAPITAL / unit * np.asarray(quantity_scale, dtype=float)
    tau_after = (option_days - horizon_days) / YEAR
    nan = np.nan
    return DeskInstruments(
        desk="paper",
        underlyings=("A", "B"),
        spots=SPOT,
        instrument_ids=("A", "B", "CALL_A", "PUT_B"),
        kind=np.array([EQUITY, EQUITY, CALL, PUT]),
        underlying_index=np.array([0, 1, 0, 1]),
        strike=np.array([nan, nan, STRIKE, STRIKE]),
        unit_value=unit,
        quantity=quantity,
        tau_after_horizon=np.array([nan, nan, tau_after, tau_after]),
        delta=np.array([nan, nan, float(dc), float(dp)]),
        gamma=np.array([nan, nan, float(gc), float(gp)]),
        theta=np.array([nan, nan, float(tc), float(tp)]),
    )


def simulate_spots(horizon_days: int, n: int = N_PATHS, seed: int = 7) -> np.ndarray:
    h = horizon_days / YEAR
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(COV * h)
    logs = (MU - 0.5 * VOL**2) * h + rng.standard_normal((n, 2)) @ chol.T
    return SPOT * np.exp(logs)


def horizon_values(desk: DeskInstruments, spots_h: np.ndarray, horizon_days: int) -> np.ndarray:
    """Full revaluation per unit of every instrument at the horizon, (n, m)."""
    out = np.empty((spots_h.shape[0], desk.n_instruments))
    for j in range(desk.n_instruments):
        s = spots_h[:, desk.underlying_index[j]]
        if desk.kind[j] == EQUITY:
            out[:, j] = s
        else:
            tau = desk.tau_after_horizon[j]
            vol = VOL[desk.underlying_index[j]]
            out[:, j] = bs(s, desk.strike[j], tau, vol, desk.kind[j] == CALL)[0]
    return out


def mc_var(losses: np.ndarray, level: float) -> float:
    """DESIGN convention: L(k) with k = ceil(alpha N)."""
    ordered = np.sort(losses)
    k = math.ceil(level * ordered.size)
    return float(ordered[k - 1])


class PaperCase:
    def __init__(self, horizon_days: int):
        self.horizon_days = horizon_days
        self.h = horizon_days / YEAR
        self.desk = paper_desk(horizon_days)
        self.spots_h = simulate_spots(horizon_days)
        self.values_h = horizon_values(self.desk, self.spots_h, horizon_days)
        self.inst = instrument_return_moments_from_samples(
            self.desk.unit_value, self.values_h, self.desk.instrument_ids
        )
        self.und = instrument_return_moments_from_samples(SPOT, self.spots_h, ("A", "B"))
        self.x = self.desk.exposures
        self.pnl = (self.values_h - self.desk.unit_value) @ self.desk.quantity
        self.xi = self.spots_h / SPOT - 1.0


@pytest.fixture(scope="module")
def paper21() -> PaperCase:
    return PaperCase(21)


@pytest.fixture(scope="module")
def paper2() -> PaperCase:
    return PaperCase(2)


# ------------------------------------------------------------------ moments and containers


def test_kappa_is_chebyshev_cantelli_and_validates_levels():
    assert kappa(0.99) == pytest.approx(math.sqrt(99.0))
    assert kappa(0.95) == pytest.approx(math.sqrt(19.0))
    for bad in (0.0, 1.0, 99.0, -0.5, float("nan")):
        with pytest.raises(ValueError):
            kappa(bad)


def test_gbm_simple_return_moments_match_simulation():
    h = 21 / YEAR
    mean, cov = gbm_simple_return_moments(MU, COV, h)
    assert mean == pytest.approx(np.expm1(MU * h), rel=1e-12)
    # univariate lognormal variance: exp(2 mu h) (exp(s^2 h) - 1)
    assert np.diag(cov) == pytest.approx(np.exp(2 * MU * h) * np.expm1(VOL**2 * h), rel=1e-12)
    returns = simulate_spots(21, n=400_000, seed=11) / SPOT - 1.0
    se_mean = returns.std(axis=0) / math.sqrt(returns.shape[0])
    assert np.all(np.abs(returns.mean(axis=0) - mean) < 4 * se_mean)
    sample = np.cov(returns.T)
    centred = returns - returns.mean(axis=0)
    products = centred[:, 0] * centred[:, 1]
    se_cov = products.std() / math.sqrt(returns.shape[0])
    assert abs(sample[0, 1] - cov[0, 1]) < 4 * se_cov


def test_moment_sums_merge_blocks_equals_one_pass():
    rng = np.random.default_rng(3)
    today = np.array([10.0, 20.0, 5.0])
    later = today * np.exp(rng.normal(0.0, 0.1, (1000, 3)))
    merged = MomentSums.from_returns(later[:130] / today - 1.0)
    for lo, hi in ((130, 500), (500, 501), (501, 1000)):
        merged = merged.merge(MomentSums.from_values(today, later[lo:hi]))
    one_pass = instrument_return_moments_from_samples(today, later)
    moments = merged.to_moments()
    assert moments.n_samples == 1000
    assert moments.mean == pytest.approx(one_pass.mean, rel=1e-12)
    assert moments.cov == pytest.approx(np.cov((later / today - 1).T), rel=1e-10)


def test_settings_validation_names_the_bad_value():
    with pytest.raises(ConfigError, match=r"confidence_levels\[1\]' = 99"):
        WorstCaseSettings(confidence_levels=(0.95, 99.0))
    with pytest.raises(ConfigError, match="weight_upper.*weight_lower"):
        WorstCaseSettings(weight_lower=0.5, weight_upper=0.1)
    with pytest.raises(ConfigError, match="'solver' = 'ECOS'"):
        WorstCaseSettings(solver="ECOS")
    with pytest.raises(ConfigError, match="'models'"):
        WorstCaseSettings(models=("VaR",))
    assert WorstCaseSettings(fallback_solver=None).solvers == ("CLARABEL",)


def test_desk_instruments_copies_inputs_and_rejects_bad_structure():
    quantity = np.array([1.0, 2.0, 3.0, 4.0])
    desk = paper_desk(21)
    args = {f: getattr(desk, f) for f in desk.__dataclass_fields__}
    args["quantity"] = quantity
    copy = DeskInstruments(**args)
    quantity[0] = 99.0
    assert copy.quantity[0] == 1.0
    with pytest.raises(ValueError):
        copy.quantity[0] = 5.0
    with pytest.raises(ValueError, match="kind"):
        DeskInstruments(**{**args, "kind": np.array([0, 0, 1, 7])})
    with pytest.raises(ValueError, match="underlying_index"):
        DeskInstruments(**{**args, "underlying_index": np.array([0, 1, 0, 2])})
    with pytest.raises(ValueError, match="duplicate"):
        DeskInstruments(**{**args, "instrument_ids": ("A", "A", "C", "D")})
    with pytest.raises(ValueError, match="shape"):
        DeskInstruments(**{**args, "strike": np.ones(3)})


def test_return_moments_rejects_non_psd_covariance():
    with pytest.raises(ValueError, match="positive semidefinite"):
        ReturnMoments(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]))


# ------------------------------------------------------------------ paper example


def test_paper_21_day_wcvar_wcpvar_and_mc(paper21: PaperCase):
    c = paper21
    lin = linear_structure(c.desk, c.inst)
    poly = polyhedral_structure(c.desk, c.und)
    figures = {}
    for level in (0.95, 0.975, 0.99):
        wc = wcvar(c.x, lin, level).value
        wp = wcpvar(c.x, poly, level)
        assert wp.status == "optimal"
        var = mc_var(-c.pnl, level)
        # worst case over all distributions with the sample moments bounds this sample's VaR
        assert wc >= var
        assert wp.value >= var
        assert wc > wp.value
        figures[level] = (wc, wp.value, var)
    wc, wp, var = figures[0.99]
    assert wc / CAPITAL == pytest.approx(4.97, abs=0.08)  # paper: 497%
    assert wc / wp == pytest.approx(7.0, abs=0.4)  # paper: 7 times
    assert wp - var < (wc - var) / 10  # WCPVaR much closer to the actual VaR
    values = [figures[lv][0] for lv in (0.95, 0.975, 0.99)]
    assert values == sorted(values)  # rises with confidence


def test_paper_2_day_wcvar_about_three_times_wcqvar(paper2: PaperCase):
    c = paper2
    lin = linear_structure(c.desk, c.inst)
    quad = quadratic_structure(c.desk, c.und, c.h)
    dg = delta_gamma_pnl(c.desk, c.xi, c.h)
    for level in (0.95, 0.99):
        wc = wcvar(c.x, lin, level).value
        wq = wcqvar(c.x, quad, level).value
        assert wq >= mc_var(-dg, level)  # bounds the delta-gamma model's own VaR
        assert wc >= mc_var(-c.pnl, level)
    ratio = wcvar(c.x, lin, 0.99).value / wcqvar(c.x, quad, 0.99).value
    assert ratio == pytest.approx(3.0, abs=0.3)  # paper: 3 times


# ------------------------------------------------------------------ formulations agree


def test_wcvar_closed_form_equals_robust_maximization(paper21: PaperCase):
    c = paper21
    lin = linear_structure(c.desk, c.inst)
    closed = wcvar(c.x, lin, 0.99).value
    robust = wcvar_robust(c.x, lin, 0.99)
    assert robust.status == "optimal" and robust.solver == "CLARABEL"
    assert robust.value == pytest.approx(closed, rel=1e-6)
    # independent formulation: max -x'r over (r - mu)' Sigma^-1 (r - mu) <= kappa^2
    r = cp.Variable(4)
    inverse = np.linalg.inv(c.inst.cov)
    inverse = 0.5 * (inverse + inverse.T)
    ellipsoid = cp.Problem(
        cp.Maximize(-(c.x / CAPITAL) @ r),
        [cp.quad_form(r - c.inst.mean, inverse) <= kappa(0.99) ** 2],
    )
    ellipsoid.solve(solver="CLARABEL")
    assert ellipsoid.value * CAPITAL == pytest.approx(closed, rel=1e-5)


def test_wcpvar_socp_equals_sdp_on_paper_and_random_books(paper21: PaperCase):
    c = paper21
    poly = polyhedral_structure(c.desk, c.und)
    for level in (0.95, 0.99):
        socp = wcpvar(c.x, poly, level)
        sdp = wcpvar_sdp(c.x, poly, level)
        assert sdp.status == socp.status == "optimal"
        assert sdp.value == pytest.approx(socp.value, rel=1e-5)
    desk, und, _, _ = random_book(6, 9, seed=5)
    poly = polyhedral_structure(desk, und)
    socp = wcpvar(desk.exposures, poly, 0.975)
    sdp = wcpvar_sdp(desk.exposures, poly, 0.975)
    assert sdp.value == pytest.approx(socp.value, rel=1e-5)


def test_wcpvar_without_options_is_linear_closed_form(paper21: PaperCase):
    c = paper21
    poly = polyhedral_structure(c.desk, c.und)
    x = c.x.copy()
    x[2:] = 0.0
    out = wcpvar(x, poly, 0.99)
    w = x[:2]
    expected = -c.und.mean @ w + kappa(0.99) * math.sqrt(w @ c.und.cov @ w)
    assert out.value == pytest.approx(expected, rel=1e-6)


def test_polyhedral_payoff_map_reproduces_option_payoffs():
    """a and B of the paper rebuild exact expiry P&L, calls and puts, in and out of the money."""
    desk, und, _, _ = random_book(4, 12, seed=8)
    poly = polyhedral_structure(desk, und)
    a, b = poly.paper_coefficients()
    rng = np.random.default_rng(5)
    xi = rng.normal(0.0, 0.08, (500, desk.n_underlyings))
    spots_h = desk.spots * (1.0 + xi)
    x = desk.exposures
    options = poly.option_columns
    model = xi @ (poly.equity_loading @ x) + (np.maximum(-1.0, a + xi @ b.T - 1.0) @ x[options])
    exact = np.zeros(xi.shape[0])
    for j in range(desk.n_instruments):
        s = spots_h[:, desk.underlying_index[j]]
        if desk.kind[j] == EQUITY:
            later = s
        elif desk.kind[j] == CALL:
            later = np.maximum(s - desk.strike[j], 0.0)
        else:
            later = np.maximum(desk.strike[j] - s, 0.0)
        exact += desk.quantity[j] * (later - desk.unit_value[j])
    assert model == pytest.approx(exact, rel=1e-10, abs=1e-6)
    strikes = desk.strike[options]
    assert np.any(strikes > desk.spots[desk.underlying_index[options]] * 1.02)
    assert np.any(strikes < desk.spots[desk.underlying_index[options]] * 0.98)


def test_wcpvar_bounds_mc_var_of_a_random_book():
    desk, _, _, h = random_book(3, 8, seed=6)
    rng = np.random.default_rng(9)
    cov = np.array([[0.09, 0.02, 0.01], [0.02, 0.04, 0.0], [0.01, 0.0, 0.0625]]) * h
    spots_h = desk.spots * np.exp(rng.multivariate_normal(np.full(3, 0.05 * h), cov, 100_000))
    und = instrument_return_moments_from_samples(desk.spots, spots_h)
    poly = polyhedral_structure(desk, und)
    payoff = np.empty((spots_h.shape[0], desk.n_instruments))
    for j in range(desk.n_instruments):
        s = spots_h[:, desk.underlying_index[j]]
        k = desk.strike[j]
        payoff[:, j] = s if desk.kind[j] == EQUITY else bs(s, k, 0.0, 0.2, desk.kind[j] == CALL)[0]
    pnl = (payoff - desk.unit_value) @ desk.quantity
    for level in (0.95, 0.99):
        bound = wcpvar(desk.exposures, poly, level).value
        var = mc_var(-pnl, level)
        assert bound >= var
        assert bound < var + 0.6 * desk.gross_value  # and not absurdly far from it


def test_wcqvar_spectral_equals_paper_sdp(paper2: PaperCase):
    c = paper2
    quad = quadratic_structure(c.desk, c.und, c.h)
    for level in (0.95, 0.975, 0.99):
        spectral = wcqvar(c.x, quad, level)
        sdp = wcqvar_sdp(c.x, quad, level)
        assert spectral.solver == "spectral" and sdp.status == "optimal"
        assert spectral.value == pytest.approx(sdp.value, rel=1e-5)
    desk, und, _, h = random_book(7, 12, option_days_after_horizon=10, seed=2)
    quad = quadratic_structure(desk, und, h)
    x = desk.exposures * np.where(np.arange(desk.n_instruments) % 3 == 0, -1.0, 1.0)  # mixed gamma
    assert wcqvar(x, quad, 0.99).value == pytest.approx(wcqvar_sdp(x, quad, 0.99).value, rel=1e-5)


def test_wcqvar_long_gamma_equals_robust_ellipsoid_minimum(paper2: PaperCase):
    """Gamma >= 0: WCQVaR = worst delta-gamma loss over the ellipsoid (paper slide 22)."""
    c = paper2
    quad = quadratic_structure(c.desk, c.und, c.h)
    delta, gamma, theta = return_space_greeks(c.desk)
    assert np.all(gamma > 0)
    xi = cp.Variable(2)
    inverse = np.linalg.inv(c.und.cov)
    pnl = theta * c.h + delta @ xi + 0.5 * cp.sum(cp.multiply(gamma, cp.square(xi)))
    problem = cp.Problem(
        cp.Minimize(pnl / CAPITAL),
        [cp.quad_form(xi - c.und.mean, 0.5 * (inverse + inverse.T)) <= kappa(0.99) ** 2],
    )
    problem.solve(solver="CLARABEL")
    assert wcqvar(c.x, quad, 0.99).value == pytest.approx(-problem.value * CAPITAL, rel=1e-5)


def test_wcqvar_linear_case_equals_closed_form(paper2: PaperCase):
    c = paper2
    desk = c.desk
    args = {f: getattr(desk, f) for f in desk.__dataclass_fields__}
    flat = DeskInstruments(**{**args, "gamma": np.array([np.nan, np.nan, 0.0, 0.0])})
    quad = quadratic_structure(flat, c.und, c.h)
    delta, _, theta = return_space_greeks(flat)
    for level in (0.95, 0.99):
        expected = (
            -theta * c.h - delta @ c.und.mean + kappa(level) * math.sqrt(delta @ c.und.cov @ delta)
        )
        assert wcqvar(flat.exposures, quad, level).value == pytest.approx(expected, rel=1e-7)
        assert wcqvar_sdp(flat.exposures, quad, level).value == pytest.approx(expected, rel=1e-5)


def test_short_gamma_wcqvar_exceeds_wcvar():
    """A delta-hedged short call: the worst case puts mass in both tails of xi."""
    horizon_days = 2
    h = horizon_days / YEAR
    tau0 = 21 / YEAR
    c0, dc, gc, tc = bs(100.0, STRIKE, tau0, VOL[0], True)
    desk = DeskInstruments(
        desk="short_gamma",
        underlyings=("A", "B"),
        spots=SPOT,
        instrument_ids=("A", "CALL_A"),
        kind=np.array([EQUITY, CALL]),
        underlying_index=np.array([0, 0]),
        strike=np.array([np.nan, STRIKE]),
        unit_value=np.array([100.0, float(c0)]),
        quantity=np.array([1000.0 * float(dc), -1000.0]),
        tau_after_horizon=np.array([np.nan, tau0 - h]),
        delta=np.array([np.nan, float(dc)]),
        gamma=np.array([np.nan, float(gc)]),
        theta=np.array([np.nan, float(tc)]),
    )
    spots_h = simulate_spots(horizon_days)
    values_h = horizon_values(desk, spots_h, horizon_days)
    inst = instrument_return_moments_from_samples(desk.unit_value, values_h)
    und = instrument_return_moments_from_samples(SPOT, spots_h)
    x = desk.exposures
    wc = wcvar(x, linear_structure(desk, inst), 0.99).value
    quad = quadratic_structure(desk, und, h)
    wq = wcqvar(x, quad, 0.99).value
    assert wq > 2 * wc
    assert wq == pytest.approx(wcqvar_sdp(x, quad, 0.99).value, rel=1e-5)
    dg = delta_gamma_pnl(desk, spots_h / SPOT - 1.0, h)
    assert wq >= mc_var(-dg, 0.99)
    pnl = (values_h - desk.unit_value) @ desk.quantity
    assert wc >= mc_var(-pnl, 0.99)


def test_figures_scale_with_positions(paper21: PaperCase):
    c = paper21
    lin = linear_structure(c.desk, c.inst)
    poly = polyhedral_structure(c.desk, c.und)
    quad = quadratic_structure(c.desk, c.und, c.h)
    for f, structure in ((wcvar, lin), (wcpvar, poly), (wcqvar, quad)):
        base = f(c.x, structure, 0.975).value
        assert f(3.5 * c.x, structure, 0.975).value == pytest.approx(3.5 * base, rel=1e-6)


# ------------------------------------------------------------------ delta-gamma model


def test_delta_gamma_pnl_tracks_full_revaluation_for_small_moves(paper2: PaperCase):
    c = paper2
    moves = np.array([[0.01, -0.005], [-0.01, 0.01], [0.005, 0.005], [-0.015, -0.01]])
    spots_h = SPOT * (1.0 + moves)
    exact = (horizon_values(c.desk, spots_h, 2) - c.desk.unit_value) @ c.desk.quantity
    approx = delta_gamma_pnl(c.desk, moves, c.h)
    scale = np.abs(moves @ return_space_greeks(c.desk)[0]).max()
    assert np.abs(approx - exact).max() < 0.02 * scale


def test_delta_gamma_error_is_third_order_in_the_move():
    desk = paper_desk(0, option_days=21)
    h = 1e-9
    errors = []
    for size in (0.02, 0.01, 0.005):
        move = size * np.array([[1.0, -0.5]])
        values = horizon_values(desk, SPOT * (1 + move), 0)
        exact = (values - desk.unit_value) @ desk.quantity
        errors.append(abs(float(delta_gamma_pnl(desk, move, h)[0] - exact[0])))
    # halving the move divides the error by about 8 (third order); a missing or wrong
    # gamma term would leave a second-order error (ratio 1/4) or worse
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert 0.05 < fine / coarse < 0.16


# ------------------------------------------------------------------ minimization


def _check_allocation(weights, problem: AllocationProblem, settings: WorstCaseSettings, tol=1e-6):
    assert weights.sum() == pytest.approx(1.0, abs=tol)
    assert weights.min() >= settings.weight_lower - tol
    assert weights.max() <= settings.weight_upper + tol
    mu = problem.expected_returns
    assert mu @ weights >= mu @ problem.current_weights - tol


def _omega(moments: ReturnMoments) -> np.ndarray:
    mu = moments.mean
    return np.block([[moments.cov + np.outer(mu, mu), mu[:, None]], [mu[None, :], np.ones((1, 1))]])


def _paper_constraints(w, problem: AllocationProblem, settings: WorstCaseSettings):
    mu = problem.expected_returns
    return [
        cp.sum(w) == 1,
        w >= settings.weight_lower,
        w <= settings.weight_upper,
        mu @ w >= mu @ problem.current_weights,
    ]


def joint_wcpvar_sdp_minimum(desk, und, problem, level, settings) -> float:
    """Independent min-WCPVaR: the paper's SDP with the weights as variables, per unit capital."""
    n = desk.n_underlyings
    w = cp.Variable(desk.n_instruments)
    options = np.flatnonzero(desk.is_option)
    a, b = polyhedral_structure(desk, und).paper_coefficients()
    equity = np.zeros((n, desk.n_instruments))
    for j in np.flatnonzero(~desk.is_option):
        equity[desk.underlying_index[j], j] = 1.0
    y = cp.Variable(options.size)
    m_var = cp.Variable((n + 1, n + 1), PSD=True)
    tau = cp.Variable(nonneg=True)
    gamma = cp.Variable()
    v = cp.reshape(equity @ w + b.T @ y, (n, 1), order="F")
    corner = cp.reshape(tau - 2 * (gamma + a @ y - cp.sum(w[options])), (1, 1), order="F")
    lmi = cp.bmat([[np.zeros((n, n)), v], [v.T, -corner]])  # the paper's (unhalved) matrix
    constraints = _paper_constraints(w, problem, settings) + [
        cp.trace(_omega(und) @ m_var) <= (1 - level) * tau,
        m_var + lmi >> 0,
        y >= 0,
        y <= w[options],
    ]
    sdp = cp.Problem(cp.Minimize(gamma), constraints)
    sdp.solve(solver="CLARABEL")
    assert sdp.status == "optimal"
    return float(sdp.value)


def joint_wcqvar_sdp_minimum(desk, und, problem, level, settings, h) -> float:
    """Independent min-WCQVaR: the paper's SDP (raw Omega) with the weights as variables."""
    n = desk.n_underlyings
    w = cp.Variable(desk.n_instruments)
    d_unit = np.zeros((n, desk.n_instruments))
    g_unit = np.zeros((n, desk.n_instruments))
    t_unit = np.zeros(desk.n_instruments)
    for j in range(desk.n_instruments):
        i, s, v = desk.underlying_index[j], desk.spots[desk.underlying_index[j]], desk.unit_value[j]
        if desk.kind[j] == EQUITY:
            d_unit[i, j] = 1.0
        else:
            d_unit[i, j] = desk.delta[j] * s / v
            g_unit[i, j] = desk.gamma[j] * s * s / v
            t_unit[j] = desk.theta[j] * h / v
    m_var = cp.Variable((n + 1, n + 1), PSD=True)
    tau = cp.Variable(nonneg=True)
    gamma = cp.Variable()
    delta = cp.reshape(d_unit @ w, (n, 1), order="F")
    corner = cp.reshape(-tau + 2 * (gamma + t_unit @ w), (1, 1), order="F")
    lmi = cp.bmat([[cp.diag(g_unit @ w), delta], [delta.T, corner]])
    constraints = _paper_constraints(w, problem, settings) + [
        cp.trace(_omega(und) @ m_var) <= (1 - level) * tau,
        m_var + lmi >> 0,
    ]
    sdp = cp.Problem(cp.Minimize(gamma), constraints)
    sdp.solve(solver="CLARABEL")
    assert sdp.status == "optimal"
    return float(sdp.value)


def test_minimize_wcvar_objective_is_its_closed_form(paper21: PaperCase):
    c = paper21
    settings = WorstCaseSettings()
    lin = linear_structure(c.desk, c.inst)
    problem = AllocationProblem(CAPITAL, c.x / CAPITAL, c.inst.mean)
    out = minimize_wcvar(lin, problem, 0.99, settings)
    assert out.status == "optimal"
    w = out.weights
    _check_allocation(w, problem, settings)
    independent = -c.inst.mean @ w + kappa(0.99) * math.sqrt(w @ c.inst.cov @ w)
    assert out.value == pytest.approx(CAPITAL * independent, rel=1e-7)
    assert out.solver_objective == pytest.approx(out.value, rel=1e-6)
    assert out.value <= wcvar(c.x, lin, 0.99).value
    # an independent optimizer (SLSQP on the closed form) finds no better allocation
    from scipy.optimize import minimize

    mu, cov = c.inst.mean, c.inst.cov
    slsqp = minimize(
        lambda v: -mu @ v + kappa(0.99) * math.sqrt(v @ cov @ v),
        np.full(4, 0.25),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * 4,
        constraints=[
            {"type": "eq", "fun": lambda v: v.sum() - 1.0},
            {"type": "ineq", "fun": lambda v: mu @ v - mu @ problem.current_weights},
        ],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert slsqp.success
    assert out.value <= CAPITAL * slsqp.fun * (1 + 1e-6)
    assert out.value == pytest.approx(CAPITAL * slsqp.fun, rel=1e-4)


def test_minimize_wcpvar_objective_matches_sdp_at_its_weights(paper21: PaperCase):
    c = paper21
    poly = polyhedral_structure(c.desk, c.und)
    problem = AllocationProblem(CAPITAL, c.x / CAPITAL, c.inst.mean)
    current = wcpvar(c.x, poly, 0.99).value
    rng = np.random.default_rng(0)
    for upper in (1.0, 0.4):
        settings = WorstCaseSettings(weight_upper=upper)
        out = minimize_wcpvar(poly, problem, 0.99, settings)
        assert out.status == "optimal", out.message
        _check_allocation(out.weights, problem, settings)
        assert out.weights[2:].min() >= -1e-7
        independent = wcpvar_sdp(CAPITAL * out.weights, poly, 0.99)
        assert out.value == pytest.approx(independent.value, rel=1e-5)
        assert out.solver_objective == pytest.approx(independent.value, rel=1e-5)
        assert out.value <= current
        optimum = joint_wcpvar_sdp_minimum(c.desk, c.und, problem, 0.99, settings)
        assert out.value == pytest.approx(CAPITAL * optimum, rel=1e-4)
        # no random feasible allocation beats it
        for w in rng.dirichlet(np.ones(4), 30):
            if w.max() <= upper and c.inst.mean @ w >= c.inst.mean @ problem.current_weights:
                assert wcpvar(CAPITAL * w, poly, 0.99).value >= out.value * (1 - 1e-6)


def test_minimize_wcqvar_objective_matches_paper_sdp_at_its_weights(paper2: PaperCase):
    c = paper2
    settings = WorstCaseSettings()
    quad = quadratic_structure(c.desk, c.und, c.h)
    problem = AllocationProblem(CAPITAL, c.x / CAPITAL, c.inst.mean)
    out = minimize_wcqvar(quad, problem, 0.99, settings)
    assert out.status == "optimal", out.message
    _check_allocation(out.weights, problem, settings)
    independent = wcqvar_sdp(CAPITAL * out.weights, quad, 0.99)
    assert out.value == pytest.approx(independent.value, rel=1e-5)
    assert out.solver_objective == pytest.approx(independent.value, rel=1e-5)
    assert out.value <= wcqvar(c.x, quad, 0.99).value
    optimum = joint_wcqvar_sdp_minimum(c.desk, c.und, problem, 0.99, settings, c.h)
    assert out.value == pytest.approx(CAPITAL * optimum, rel=1e-4)


def test_wcqvar_reduction_is_exact_at_fixed_weights():
    """The reduced SDP of the minimization, at fixed weights, equals the spectral WCQVaR."""
    from risk_engine.worst_case.optimize import _reduce

    desk, und, _, h = random_book(8, 5, option_days_after_horizon=15, seed=4)
    quad = quadratic_structure(desk, und, h)
    red = _reduce(quad)
    g, q = red.curvature.shape[0], red.perpendicular.shape[0]
    assert 0 < g < desk.n_underlyings and q > 0
    rng = np.random.default_rng(2)
    for _ in range(3):
        w = rng.normal(0.0, 1.0, desk.n_instruments)
        size = g + 2
        base = np.zeros((size, size))
        base[:g, :g] = np.diag(red.curvature @ w) / 2
        base[:g, -1] = base[-1, :g] = red.linear @ w / 2
        base[g, -1] = base[-1, g] = np.linalg.norm(red.perpendicular @ w) / 2
        corner = np.zeros((size, size))
        corner[-1, -1] = 1.0
        m_var = cp.Variable((size, size), PSD=True)
        shift = cp.Variable()
        problem = cp.Problem(
            cp.Minimize(cp.trace(red.omega @ m_var) / 0.025 - shift),
            [m_var + base + (red.constant @ w - shift) * corner >> 0],
        )
        problem.solve(solver="CLARABEL")
        assert problem.value == pytest.approx(wcqvar(w, quad, 0.975).value, rel=1e-5)


def test_minimize_wcqvar_reduced_sdp_on_book_with_gamma_free_underlyings():
    """Options on 5 of 8 underlyings: exercises the reduction to |B| + 2 (shorts allowed)."""
    desk, und, inst, h = random_book(8, 5, option_days_after_horizon=15, seed=4)
    assert np.unique(desk.underlying_index[desk.is_option]).size < desk.n_underlyings
    settings = WorstCaseSettings(weight_lower=-0.05, weight_upper=0.1)
    quad = quadratic_structure(desk, und, h)
    v = desk.net_value
    problem = AllocationProblem(v, desk.exposures / v, inst.mean)
    out = minimize_wcqvar(quad, problem, 0.975, settings)
    assert out.status == "optimal", out.message
    _check_allocation(out.weights, problem, settings)
    gamma_free = np.flatnonzero(~np.isin(np.arange(8), desk.underlying_index[desk.is_option]))
    assert np.abs(out.weights[gamma_free]).max() > 0.01  # holds stocks outside the SDP block
    independent = wcqvar_sdp(v * out.weights, quad, 0.975)
    assert out.solver_objective == pytest.approx(independent.value, rel=1e-5)
    optimum = joint_wcqvar_sdp_minimum(desk, und, problem, 0.975, settings, h)
    assert out.value == pytest.approx(v * optimum, rel=1e-4)
    rng = np.random.default_rng(1)
    for _ in range(20):
        w = out.weights + rng.normal(0, 0.02, out.weights.size)
        w += (1 - w.sum()) / w.size
        if (
            w.min() >= -0.05
            and w.max() <= 0.1
            and inst.mean @ w >= inst.mean @ problem.current_weights
        ):
            assert wcqvar(v * w, quad, 0.975).value >= out.value * (1 - 1e-6)


# ------------------------------------------------------------------ per-desk entry point


def test_evaluate_desk_rows_frames_and_allocations(paper2: PaperCase):
    c = paper2
    settings = WorstCaseSettings(moments="sample")
    report = evaluate_desk(c.desk, c.und, c.inst, c.h, settings)
    frame = report.worst_case_var_frame()
    alloc = report.optimal_allocations_frame()
    assert tuple(frame.columns) == WORST_CASE_VAR_COLUMNS
    assert tuple(alloc.columns) == OPTIMAL_ALLOCATION_COLUMNS
    assert len(frame) == 3 * 3 * 2
    assert set(frame["status"]) <= set(STATUSES)
    assert (frame["moments"] == "sample").all()
    wcp = frame[frame.model == "WCPVaR"]
    assert (wcp.status == "not_applicable").all()  # options outlive the 2-day horizon
    assert wcp.message.str.contains("expire after the horizon").all()
    usable = frame[frame.model != "WCPVaR"]
    assert (usable.status == "optimal").all(), usable[["model", "portfolio", "message"]]
    current = usable[usable.portfolio == "current"]
    assert current["value_pct"].to_numpy() == pytest.approx(
        current["value"].to_numpy() / c.desk.gross_value
    )
    for (model, level), group in usable.groupby(["model", "confidence_level"]):
        values = group.set_index("portfolio")["value"]
        assert values["optimized"] <= values["current"] * (1 + 1e-7), (model, level)
    assert len(alloc) == 2 * 3 * 4
    sums = alloc.groupby(["model", "confidence_level"])["optimal_weight"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert alloc["current_weight"].to_numpy()[:4] == pytest.approx([0.25] * 4)
    both = reports_to_frames([report, report])
    assert len(both[0]) == 2 * len(frame) and len(both[1]) == 2 * len(alloc)
    assert isinstance(both[0], pd.DataFrame)


def test_evaluate_desk_solver_path_matches_fast_path(paper2: PaperCase):
    c = paper2
    fast = WorstCaseSettings(confidence_levels=(0.99,), optimize=False)
    slow = WorstCaseSettings(confidence_levels=(0.99,), optimize=False, current_method="solver")
    a = evaluate_desk(c.desk, c.und, c.inst, c.h, fast).worst_case_var_frame()
    b = evaluate_desk(c.desk, c.und, c.inst, c.h, slow).worst_case_var_frame()
    assert len(a) == len(b) == 3
    assert set(a.solver) == {"closed_form", "spectral", ""}
    assert set(b.solver) == {"CLARABEL", ""}
    usable = a.status == "optimal"
    assert b.value[usable].to_numpy() == pytest.approx(a.value[usable].to_numpy(), rel=1e-5)


@pytest.mark.heavy
def test_minimize_wcqvar_matches_joint_paper_sdp_on_a_40_underlying_book():
    desk, und, inst, h = random_book(40, 80, option_days_after_horizon=21, seed=12)
    settings = WorstCaseSettings()
    quad = quadratic_structure(desk, und, h)
    v = desk.net_value
    problem = AllocationProblem(v, desk.exposures / v, inst.mean)
    out = minimize_wcqvar(quad, problem, 0.99, settings)
    assert out.status == "optimal", out.message
    optimum = joint_wcqvar_sdp_minimum(desk, und, problem, 0.99, settings, h)
    assert out.value == pytest.approx(v * optimum, rel=1e-4)


def test_evaluate_desk_not_applicable_paths(paper21: PaperCase):
    c = paper21
    desk = c.desk
    args = {f: getattr(desk, f) for f in desk.__dataclass_fields__}
    settings = WorstCaseSettings(confidence_levels=(0.99,))
    short = DeskInstruments(**{**args, "quantity": desk.quantity * np.array([1, 1, -1, 1])})
    frame = evaluate_desk(short, c.und, c.inst, c.h, settings).worst_case_var_frame()
    wcp = frame[frame.model == "WCPVaR"]
    assert (wcp.status == "not_applicable").all()
    assert wcp.message.str.contains("short option").all()
    assert (frame[frame.model == "WCQVaR"].status == "optimal").all()

    no_moments = evaluate_desk(desk, c.und, None, c.h, settings).worst_case_var_frame()
    wcv = no_moments[no_moments.model == "WCVaR"]
    assert (wcv.status == "not_applicable").all()
    assert wcv.message.str.contains("instrument return moments").all()
    optimized = no_moments[(no_moments.model != "WCVaR") & (no_moments.portfolio == "optimized")]
    assert optimized.message.str.contains("return floor skipped").all()

    net_short = DeskInstruments(**{**args, "quantity": desk.quantity * np.array([-3, 1, 1, 1])})
    report = evaluate_desk(net_short, c.und, c.inst, c.h, settings)
    frame = report.worst_case_var_frame()
    opt = frame[frame.portfolio == "optimized"]
    assert (opt.status == "not_applicable").all()
    assert opt.message.str.contains("net capital").all()
    assert report.allocations == ()
    cur = frame[(frame.portfolio == "current") & (frame.model == "WCVaR")]
    assert (cur.status == "optimal").all()  # current figures exist for any book

    worthless = DeskInstruments(**{**args, "unit_value": np.array([100.0, 100.0, 0.0, 2.0])})
    frame = evaluate_desk(worthless, c.und, c.inst, c.h, settings).worst_case_var_frame()
    assert (frame.status == "not_applicable").all()
    assert frame.message.str.contains("unit_value").all()


def test_infeasible_minimization_is_a_row_not_an_exception(paper21: PaperCase):
    c = paper21
    settings = WorstCaseSettings(confidence_levels=(0.99,), weight_upper=0.2)  # 4 x 0.2 < 1
    report = evaluate_desk(c.desk, c.und, c.inst, c.h, settings)
    frame = report.worst_case_var_frame()
    opt = frame[frame.portfolio == "optimized"]
    assert set(opt.model) == {"WCVaR", "WCPVaR", "WCQVaR"}
    assert (opt.status == "infeasible").all(), opt[["model", "status", "message"]]
    assert opt.value.isna().all()
    assert report.allocations == ()
    assert (frame[frame.portfolio == "current"].status == "optimal").all()


def test_solver_exception_becomes_solver_error_row(paper21: PaperCase, monkeypatch):
    c = paper21

    def broken(self, *args, **kwargs):
        raise cp.error.SolverError("boom")

    monkeypatch.setattr(cp.Problem, "solve", broken)
    settings = WorstCaseSettings(confidence_levels=(0.99,))
    frame = evaluate_desk(c.desk, c.und, c.inst, c.h, settings).worst_case_var_frame()
    wcp = frame[frame.model == "WCPVaR"]
    assert (wcp.status == "solver_error").all()
    assert wcp.message.str.contains("boom").all()
    assert wcp.message.str.contains("CLARABEL").all() and wcp.message.str.contains("SCS").all()
    # closed-form and spectral current figures need no solver
    cur = frame[(frame.portfolio == "current") & (frame.model != "WCPVaR")]
    assert (cur.status == "optimal").all()


def test_inaccurate_solutions_are_flagged_not_hidden(paper21: PaperCase, monkeypatch):
    c = paper21
    original = cp.Problem.solve

    def inaccurate(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        self._status = cp.OPTIMAL_INACCURATE
        return result

    monkeypatch.setattr(cp.Problem, "solve", inaccurate)
    settings = WorstCaseSettings(confidence_levels=(0.99,), models=("WCPVaR",))
    report = evaluate_desk(c.desk, c.und, c.inst, c.h, settings)
    frame = report.worst_case_var_frame()
    assert (frame.status == "inaccurate").all()
    assert frame.value.notna().all()
    assert frame.message.str.contains("optimal_inaccurate").all()
    assert len(report.allocations) == 4  # weights reported, with the row flagged


def test_fallback_solver_takes_over_when_the_first_fails(paper21: PaperCase, monkeypatch):
    c = paper21
    original = cp.Problem.solve

    def clarabel_broken(self, *args, **kwargs):
        if kwargs.get("solver") == "CLARABEL":
            raise cp.error.SolverError("clarabel down")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", clarabel_broken)
    poly = polyhedral_structure(c.desk, c.und)
    out = wcpvar(c.x, poly, 0.99)
    monkeypatch.setattr(cp.Problem, "solve", original)
    reference = wcpvar(c.x, poly, 0.99)
    assert out.status == "optimal" and out.solver == "SCS"
    assert "clarabel down" in out.message
    assert out.value == pytest.approx(reference.value, rel=1e-4)


def test_benchmark_smoke():
    frame = benchmark_worst_case(sizes=[(3, 4)])
    assert set(frame.model) == {"WCVaR", "WCPVaR", "WCQVaR"}
    assert len(frame) == 3 * 2 * 2
    assert (frame.status == "optimal").all()
    assert (frame.seconds >= 0).all()
