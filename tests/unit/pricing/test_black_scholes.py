"""Black-Scholes: identities, limits, finite differences, a textbook value."""

import itertools

import numpy as np
import pytest
from scipy.stats import norm

from risk_engine.pricing import black_scholes_greeks, black_scholes_price

GRID = dict(
    spots=np.array([50.0, 95.0, 100.0, 130.0]),
    strikes=np.array([60.0, 100.0, 140.0]),
    expiries=np.array([0.02, 0.5, 2.0]),
    vols=np.array([0.05, 0.2, 0.8]),
    rates=np.array([-0.01, 0.0, 0.05]),
    divs=np.array([0.0, 0.03]),
)


def _grid():
    combos = np.array(list(itertools.product(*GRID.values())))
    return {k: combos[:, i] for i, k in enumerate(GRID)}


def _price(g, call, **bump):
    args = dict(spots=g["spots"], strikes=g["strikes"], expiries=g["expiries"],
                volatilities=g["vols"], rates=g["rates"], dividend_yields=g["divs"],
                is_call=call)
    args.update(bump)
    return black_scholes_price(**args)


def test_textbook_value():
    # Hull, Options Futures and Other Derivatives: S=K=100, T=1, r=5%, sigma=20%.
    c = black_scholes_price(spots=100, strikes=100, expiries=1, volatilities=0.2, rates=0.05)
    p = black_scholes_price(spots=100, strikes=100, expiries=1, volatilities=0.2, rates=0.05,
                            is_call=False)
    assert c == pytest.approx(10.450583572185565, rel=1e-12)
    assert p == pytest.approx(5.573526022256971, rel=1e-12)


def test_against_independent_formula_with_scipy_norm():
    g = _grid()
    s, k, t, v, r, q = (g[x] for x in ("spots", "strikes", "expiries", "vols", "rates", "divs"))
    d1 = (np.log(s / k) + (r - q + 0.5 * v * v) * t) / (v * np.sqrt(t))
    d2 = d1 - v * np.sqrt(t)
    call = s * np.exp(-q * t) * norm.cdf(d1) - k * np.exp(-r * t) * norm.cdf(d2)
    put = k * np.exp(-r * t) * norm.cdf(-d2) - s * np.exp(-q * t) * norm.cdf(-d1)
    np.testing.assert_allclose(_price(g, True), call, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(_price(g, False), put, rtol=1e-12, atol=1e-13)


def test_put_call_parity_on_grid():
    g = _grid()
    lhs = _price(g, True) - _price(g, False)
    rhs = g["spots"] * np.exp(-g["divs"] * g["expiries"]) - g["strikes"] * np.exp(
        -g["rates"] * g["expiries"])
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("call", [True, False])
def test_greeks_match_central_differences(call):
    g = _grid()
    gr = black_scholes_greeks(spots=g["spots"], strikes=g["strikes"], expiries=g["expiries"],
                              volatilities=g["vols"], rates=g["rates"],
                              dividend_yields=g["divs"], is_call=call)
    hs = 1e-4 * g["spots"]
    up, dn = _price(g, call, spots=g["spots"] + hs), _price(g, call, spots=g["spots"] - hs)
    mid = _price(g, call)
    np.testing.assert_allclose(gr.delta, (up - dn) / (2 * hs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gr.gamma, (up - 2 * mid + dn) / hs**2, atol=2e-4, rtol=1e-3)
    hv = 1e-5
    vega = (_price(g, call, volatilities=g["vols"] + hv)
            - _price(g, call, volatilities=g["vols"] - hv)) / (2 * hv)
    np.testing.assert_allclose(gr.vega, vega, rtol=1e-5, atol=1e-6)
    hr = 1e-6
    rho = (_price(g, call, rates=g["rates"] + hr) - _price(g, call, rates=g["rates"] - hr)) / (
        2 * hr)
    np.testing.assert_allclose(gr.rho, rho, rtol=1e-5, atol=1e-5)
    ht = 1e-6
    theta = -(_price(g, call, expiries=g["expiries"] + ht)
              - _price(g, call, expiries=g["expiries"] - ht)) / (2 * ht)
    np.testing.assert_allclose(gr.theta, theta, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("call", [True, False])
def test_zero_expiry_is_intrinsic(call):
    s = np.array([80.0, 100.0, 120.0])
    gr = black_scholes_greeks(spots=s, strikes=100.0, expiries=0.0, volatilities=0.3,
                              rates=0.05, dividend_yields=0.02, is_call=call)
    intrinsic = np.maximum(s - 100, 0) if call else np.maximum(100 - s, 0)
    np.testing.assert_array_equal(gr.price, intrinsic)
    np.testing.assert_array_equal(gr.gamma, 0.0)
    np.testing.assert_array_equal(gr.vega, 0.0)


@pytest.mark.parametrize("call", [True, False])
def test_zero_vol_is_discounted_forward_intrinsic_and_the_limit(call):
    s, k, t, r, q = np.array([80.0, 100.0, 120.0]), 100.0, 0.5, 0.05, 0.02
    p0 = black_scholes_price(spots=s, strikes=k, expiries=t, volatilities=0.0, rates=r,
                             dividend_yields=q, is_call=call)
    fwd = s * np.exp(-q * t) - k * np.exp(-r * t)
    expected = np.maximum(fwd, 0) if call else np.maximum(-fwd, 0)
    np.testing.assert_allclose(p0, expected, rtol=1e-14)
    tiny = black_scholes_price(spots=s, strikes=k, expiries=t, volatilities=1e-7, rates=r,
                               dividend_yields=q, is_call=call)
    np.testing.assert_allclose(tiny, p0, atol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [(dict(spots=-1.0), "spots"), (dict(strikes=np.nan), "strikes"),
     (dict(expiries=-0.1), "expiries"), (dict(volatilities=-0.2), "volatilities"),
     (dict(rates=np.inf), "rates")],
)
def test_bad_inputs_are_named(bad, message):
    args = dict(spots=100.0, strikes=100.0, expiries=1.0, volatilities=0.2, rates=0.01)
    args.update(bad)
    with pytest.raises(ValueError, match=message):
        black_scholes_price(**args)


@pytest.mark.parametrize("call", [True, False])
def test_vanna_and_volga_match_finite_differences(call):
    g = _grid()
    gr = black_scholes_greeks(spots=g["spots"], strikes=g["strikes"], expiries=g["expiries"],
                              volatilities=g["vols"], rates=g["rates"],
                              dividend_yields=g["divs"], is_call=call)

    def vega(**bump):
        args = dict(spots=g["spots"], strikes=g["strikes"], expiries=g["expiries"],
                    volatilities=g["vols"], rates=g["rates"], dividend_yields=g["divs"],
                    is_call=call)
        args.update(bump)
        return black_scholes_greeks(**args).vega

    hs = 1e-5 * g["spots"]
    vanna = (vega(spots=g["spots"] + hs) - vega(spots=g["spots"] - hs)) / (2 * hs)
    np.testing.assert_allclose(gr.vanna, vanna, rtol=1e-5, atol=1e-6)
    hv = 1e-6
    volga = (vega(volatilities=g["vols"] + hv) - vega(volatilities=g["vols"] - hv)) / (2 * hv)
    np.testing.assert_allclose(gr.volga, volga, rtol=1e-5, atol=1e-5)
    # and from prices alone: second differences in vol, mixed differences in spot and vol
    hv, hs = 1e-4, 1e-4 * g["spots"]
    mid = _price(g, call)
    up, dn = (_price(g, call, volatilities=g["vols"] + hv),
              _price(g, call, volatilities=g["vols"] - hv))
    np.testing.assert_allclose(gr.volga, (up - 2 * mid + dn) / hv**2, rtol=1e-3, atol=1e-2)
    mixed = sum(a * b * _price(g, call, spots=g["spots"] + a * hs,
                                volatilities=g["vols"] + b * hv)
                for a in (1, -1) for b in (1, -1)) / (4 * hs * hv)
    np.testing.assert_allclose(gr.vanna, mixed, rtol=1e-3, atol=1e-3)
