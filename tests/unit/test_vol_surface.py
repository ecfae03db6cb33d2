"""Implied-vol surfaces in: the interpolation rule, the quote checks, arbitrage warnings,
options priced off their underlying's surface, and runs without surfaces unchanged."""

from __future__ import annotations

import bisect
import datetime as dt
import math

import numpy as np
import pandas as pd

from risk_engine.input_checks import check_vol_surface, surface_arbitrage
from risk_engine.pipeline import InputTables, prepare
from risk_engine.pricing import black_scholes_price
from risk_engine.timeaxis import ZeroCurve
from risk_engine.tools.demo_data import demo_vol_surface, generate
from risk_engine.vol_surface import VolSurface, surfaces_from_quotes
from tests import helpers as h

E1, E2, E3 = dt.date(2026, 12, 18), dt.date(2027, 3, 19), dt.date(2027, 11, 19)
RATES = pd.DataFrame({"as_of_date": h.AS_OF, "tenor_years": [0.1, 0.5, 2.0],
                      "zero_rate": [0.02, 0.03, 0.045]})
#: (expiry, [(strike, vol)]) of underlying A: a skew and an upward term structure.
QUOTES_A = [
    (E1, [(80.0, 0.42), (90.0, 0.34), (100.0, 0.29), (110.0, 0.27), (125.0, 0.28)]),
    (E2, [(70.0, 0.40), (95.0, 0.31), (100.0, 0.30), (120.0, 0.28)]),
    (E3, [(60.0, 0.38), (100.0, 0.31), (150.0, 0.29)]),
]


def _quotes(underlying: str, quotes) -> pd.DataFrame:
    return pd.DataFrame(
        [(h.AS_OF, underlying, e, k, v) for e, pts in quotes for k, v in pts],
        columns=["as_of_date", "underlying", "expiry", "strike", "implied_vol"])


def _market() -> pd.DataFrame:
    return h.market([("A", 100.0, 0.25, 0.015, "tech"), ("B", 50.0, 0.2, 0.0, "fin")])


def _year_fraction(day: dt.date) -> float:
    """Trading days after the as-of date up to and including ``day``, over 252."""
    n, d = 0, h.AS_OF
    while d < day:
        d += dt.timedelta(days=1)
        n += d.weekday() < 5
    return n / 252.0


def _zero_rate(t: float) -> float:
    tenors, rates = [0.1, 0.5, 2.0], [0.02, 0.03, 0.045]
    if t <= tenors[0]:
        return rates[0]
    if t >= tenors[-1]:
        return rates[-1]
    j = bisect.bisect_right(tenors, t) - 1
    return rates[j] + (rates[j + 1] - rates[j]) * (t - tenors[j]) / (tenors[j + 1] - tenors[j])


def _forward(spot: float, div: float, t: float) -> float:
    return spot * math.exp((_zero_rate(t) - div) * t)


def _reference_vol(quotes, spot: float, div: float, strike: float, t: float) -> float:
    """The README's rule, written again with scalar loops over the quotes."""
    smiles = []  # (T_i, [(k, w)]) sorted
    for expiry, pts in sorted(quotes):
        ti = _year_fraction(expiry)
        f = _forward(spot, div, ti)
        smiles.append((ti, sorted((math.log(k / f), v * v * ti) for k, v in pts)))

    def w_at(i: int, k: float) -> float:
        pts = smiles[i][1]
        if k <= pts[0][0]:
            return pts[0][1]
        if k >= pts[-1][0]:
            return pts[-1][1]
        for (k0, w0), (k1, w1) in zip(pts[:-1], pts[1:], strict=True):
            if k0 <= k <= k1:
                return w0 + (w1 - w0) * (k - k0) / (k1 - k0)
        raise AssertionError("unreachable")

    k = math.log(strike / _forward(spot, div, t))
    first, last = smiles[0][0], smiles[-1][0]
    if t <= first:
        return math.sqrt(w_at(0, k) / first)  # flat vol before the first expiry
    if t >= last:
        return math.sqrt(w_at(len(smiles) - 1, k) / last)
    for i in range(len(smiles) - 1):
        t0, t1 = smiles[i][0], smiles[i + 1][0]
        if t0 <= t <= t1:
            w = w_at(i, k) + (w_at(i + 1, k) - w_at(i, k)) * (t - t0) / (t1 - t0)
            return math.sqrt(w / t)
    raise AssertionError("unreachable")


def _inputs(positions, vol_surface, market=None) -> InputTables:
    return InputTables(positions, _market() if market is None else market, RATES,
                       factor_model=h.factor_model([("A", 0.05, 0.25), ("B", 0.05, 0.2)]),
                       correlations=h.correlations(), vol_surface=vol_surface)


def test_option_vols_follow_the_stated_rule_on_a_grid_with_flat_wings() -> None:
    strikes = [40.0, 60.0, 75.0, 85.0, 92.5, 100.0, 104.0, 118.0, 140.0, 200.0]
    expiries = [dt.date(2026, 11, 23), dt.date(2026, 12, 4), E1, dt.date(2027, 1, 29), E2,
                dt.date(2027, 6, 18), E3, dt.date(2028, 6, 16), dt.date(2030, 1, 18)]
    rows = [(f"c{i}_{j}", "d", "call" if i % 2 else "put", "A", 1.0, k, e, 100.0)
            for i, k in enumerate(strikes) for j, e in enumerate(expiries)]
    rows.append(("b_call", "d", "call", "B", 1.0, 50.0, E2, 100.0))
    prepared = prepare(h.config(), _inputs(h.positions(rows), _quotes("A", QUOTES_A)))
    book = prepared.book
    assert set(book.surfaces) == {"A"}
    got = dict(zip(book.position_id, book.volatility, strict=True))
    for i, k in enumerate(strikes):
        for j, e in enumerate(expiries):
            ref = _reference_vol(QUOTES_A, 100.0, 0.015, k, _year_fraction(e))
            assert math.isclose(got[f"c{i}_{j}"], ref, rel_tol=1e-12), (k, e)
    # beyond the strikes the vol is flat: the wing strikes take the end quote's variance
    assert math.isclose(got["c0_0"], got["c1_0"], rel_tol=1e-12)
    # an underlying without a surface keeps market.volatility, exactly
    assert got["b_call"] == 0.2
    assert prepared.rejected.empty
    assert not [w for w in prepared.warnings if "vol_surface" in w]


def test_vol_surface_method_matches_the_reference_at_quoted_and_between_points() -> None:
    ts = np.array([0.1, 0.1, 0.1, 0.5, 0.5])
    ks = np.array([-0.2, 0.0, 0.1, -0.1, 0.2])
    vs = np.array([0.3, 0.25, 0.24, 0.27, 0.22])
    surf = VolSurface.from_quotes(ts, ks, vs)
    for k in np.linspace(-0.5, 0.5, 21):
        for t in (0.02, 0.1, 0.3, 0.5, 2.0):
            w1 = float(np.interp(k, [-0.2, 0.0, 0.1], np.array([0.3, 0.25, 0.24]) ** 2 * 0.1))
            w2 = float(np.interp(k, [-0.1, 0.2], np.array([0.27, 0.22]) ** 2 * 0.5))
            if t <= 0.1:
                w = w1 * t / 0.1
            elif t >= 0.5:
                w = w2 * t / 0.5
            else:
                w = w1 + (w2 - w1) * (t - 0.1) / 0.4
            assert math.isclose(float(surf.vol_at(k, t)), math.sqrt(w / t), rel_tol=1e-12)


def test_option_off_the_surface_is_black_scholes_at_the_surface_vol() -> None:
    pos = h.positions([("c", "d", "call", "A", 2.0, 97.0, dt.date(2027, 2, 5), 100.0),
                       ("p", "d", "put", "A", -1.0, 131.0, E3, 100.0)])
    book = prepare(h.config(), _inputs(pos, _quotes("A", QUOTES_A))).book
    for pid, strike, expiry, is_call in (("c", 97.0, dt.date(2027, 2, 5), True),
                                         ("p", 131.0, E3, False)):
        t = _year_fraction(expiry)
        vol = _reference_vol(QUOTES_A, 100.0, 0.015, strike, t)
        price = float(black_scholes_price(spots=100.0, strikes=strike, expiries=t,
                                          volatilities=vol, rates=_zero_rate(t),
                                          dividend_yields=0.015, is_call=is_call))
        i = list(book.position_id).index(pid)
        assert math.isclose(book.unit_value[i], price, rel_tol=1e-12)


def test_bad_quotes_are_rejected_with_reasons_and_the_rest_used() -> None:
    good = _quotes("A", QUOTES_A)
    bad = pd.DataFrame([
        (h.AS_OF, "A", E1, 95.0, float("nan")),
        (h.AS_OF, "A", E1, 96.0, -0.1),
        (h.AS_OF, "A", E1, 97.0, 6.0),
        (h.AS_OF, "A", h.AS_OF, 100.0, 0.3),
        (h.AS_OF, "A", dt.date(2026, 11, 2), 100.0, 0.3),
        (h.AS_OF, "A", E2, 105.0, 0.3),
        (h.AS_OF, "A", E2, 105.0, 0.31),
        (h.AS_OF, "A", E2, 100.0, 0.30),  # identical copy of a good quote
        (h.AS_OF, "ZZZ", E2, 100.0, 0.3),
        (h.AS_OF, "A", E2, float("inf"), 0.3),
        (dt.date(2026, 11, 19), "A", E2, 101.0, 0.3),
    ], columns=good.columns)
    quotes = pd.concat([bad.iloc[:5], good, bad.iloc[5:]], ignore_index=True)
    pos = h.positions([("c", "d", "call", "A", 1.0, 103.0, dt.date(2027, 1, 15), 100.0)])
    prepared = prepare(h.config(), _inputs(pos, quotes))
    rej = prepared.rejected[prepared.rejected["table"] == "vol_surface"]
    reasons = {(r.key, r.column): r.reason for r in rej.itertuples()}
    assert "finite and > 0" in reasons[("A/2026-12-18/95.0", "implied_vol")]
    assert "finite and > 0" in reasons[("A/2026-12-18/96.0", "implied_vol")]
    assert "plausibility bound 5" in reasons[("A/2026-12-18/97.0", "implied_vol")]
    assert "on or before the as-of date" in reasons[("A/2026-11-20/100.0", "expiry")]
    assert "on or before the as-of date" in reasons[("A/2026-11-02/100.0", "expiry")]
    dup = rej[rej["key"] == "A/2027-03-19/105.0"]
    assert len(dup) == 2 and all("different implied_vol: 0.3 and 0.31" in r
                                 for r in dup["reason"])
    assert "identical duplicate" in reasons[("A/2027-03-19/100.0", "implied_vol")]
    assert "no valid market row" in reasons[("ZZZ/2027-03-19/100.0", "underlying")]
    assert "strike" in reasons[("A/2027-03-19/inf", "strike")]
    assert "not the run's as-of date" in reasons[("A/2027-03-19/101.0", "as_of_date")]
    assert len(rej) == 11
    assert prepared.row_counts["vol_surface"] == {"in": len(quotes), "rejected": 10}
    # the rest of the surface is used: the option's vol is the good quotes' rule value
    vol = float(prepared.book.volatility[0])
    assert math.isclose(vol, _reference_vol(QUOTES_A, 100.0, 0.015, 103.0,
                                            _year_fraction(dt.date(2027, 1, 15))),
                        rel_tol=1e-12)
    # no quote rejection rejects a position
    assert not (prepared.rejected["table"] == "positions").any()


def test_rejections_do_not_depend_on_row_order() -> None:
    quotes = pd.concat([_quotes("A", QUOTES_A), _quotes("A", [(E2, [(105.0, 0.3)])]),
                        _quotes("A", [(E2, [(105.0, 0.32)])])], ignore_index=True)
    a = check_vol_surface(quotes, h.AS_OF, ["A"])
    b = check_vol_surface(quotes.iloc[::-1], h.AS_OF, ["A"])
    assert sorted(map(str, a.rejected)) == sorted(map(str, b.rejected))
    key = ["underlying", "expiry", "strike"]
    pd.testing.assert_frame_equal(a.frame.sort_values(key).reset_index(drop=True),
                                  b.frame.sort_values(key).reset_index(drop=True))


def test_expiries_of_one_year_fraction_at_one_strike_are_rejected() -> None:
    # 2026-12-19 is a Saturday: under trading_252 it is the same year fraction as Friday
    quotes = _quotes("A", [(E1, [(100.0, 0.3)]), (dt.date(2026, 12, 19), [(100.0, 0.3)]),
                           (dt.date(2026, 11, 21), [(100.0, 0.3)])])
    check = check_vol_surface(quotes, h.AS_OF, ["A"])
    reasons = {r.key: r.reason for r in check.rejected}
    assert "same year fraction" in reasons["A/2026-12-18/100.0"]
    assert "same year fraction" in reasons["A/2026-12-19/100.0"]
    assert "year fraction 0" in reasons["A/2026-11-21/100.0"]
    assert len(check.frame) == 0


def _surfaces(quotes: pd.DataFrame):
    check = check_vol_surface(quotes, h.AS_OF, ["A", "B"])
    assert not check.rejected
    curve = ZeroCurve.from_points(RATES["tenor_years"], RATES["zero_rate"])
    return surfaces_from_quotes(check.frame, _market(), curve, as_of=h.AS_OF)


def test_planted_calendar_violation_is_reported_with_expiries_and_strikes() -> None:
    # E2's vol at 100 falls so far that its total variance is below E1's
    planted = [QUOTES_A[0], (E2, [(70.0, 0.40), (95.0, 0.31), (100.0, 0.12), (120.0, 0.28)]),
               QUOTES_A[2]]
    found = surface_arbitrage(_surfaces(_quotes("A", planted)))
    calendar = [w for w in found if "calendar" in w]
    assert len(calendar) == 1
    msg = calendar[0]
    assert "on A between expiries 2026-12-18 and 2027-03-19" in msg
    assert "strike 100 at 2026-12-18" in msg or "100 at 2027-03-19" in msg
    # the same quotes through a run: the warning reaches Prepared.warnings
    pos = h.positions([("c", "d", "call", "A", 1.0, 100.0, E2, 100.0)])
    prepared = prepare(h.config(), _inputs(pos, _quotes("A", planted)))
    assert msg in prepared.warnings


def test_planted_butterfly_violation_is_reported_with_expiry_and_strikes() -> None:
    # a vol spike at 100 makes the 100 call dearer than the 90/110 average
    planted = [(E1, [(80.0, 0.30), (90.0, 0.30), (100.0, 0.60), (110.0, 0.30),
                     (125.0, 0.30)])]
    found = surface_arbitrage(_surfaces(_quotes("A", planted)))
    assert found == [
        "vol_surface: butterfly arbitrage on A at expiry 2026-12-18: undiscounted call "
        "prices not convex in strike at strike(s) 100 (between 90 and 110)"]


def test_clean_surfaces_report_no_arbitrage() -> None:
    assert surface_arbitrage(_surfaces(_quotes("A", QUOTES_A))) == []
    tables = generate(n_underlyings=10, n_positions=50, history_days=30, vol_surface=True)
    quotes = tables["vol_surface"]
    assert quotes["underlying"].nunique() == 5
    check = check_vol_surface(quotes, h.AS_OF, tables["market"]["underlying"])
    assert not check.rejected
    curve = ZeroCurve.from_points(tables["rates"]["tenor_years"], tables["rates"]["zero_rate"])
    surfaces = surfaces_from_quotes(check.frame, tables["market"], curve, as_of=h.AS_OF)
    assert len(surfaces) == 5 and surface_arbitrage(surfaces) == []


def test_demo_surface_leaves_the_other_demo_tables_unchanged() -> None:
    plain = generate(n_underlyings=10, n_positions=50, history_days=30)
    with_surface = generate(n_underlyings=10, n_positions=50, history_days=30,
                            vol_surface=True)
    assert set(with_surface) - set(plain) == {"vol_surface"}
    for name, frame in plain.items():
        pd.testing.assert_frame_equal(frame, with_surface[name])
    again = demo_vol_surface(plain["market"], plain["rates"], h.AS_OF)
    pd.testing.assert_frame_equal(again, with_surface["vol_surface"])


def test_a_run_without_surfaces_is_unchanged() -> None:
    pos = h.positions([("s", "d1", "equity", "A", 100.0, None, None, 1.0),
                       ("c", "d1", "call", "A", -3.0, 100.0, E2, 100.0),
                       ("p", "d2", "put", "B", 2.0, 45.0, E1, 100.0)])
    cfg = h.config(monte_carlo={"n_scenarios": 2000, "block_size": 1000}, **h.MC_ONLY)
    _, without, pnl0 = h.run(cfg, _inputs(pos, None))
    # quotes of an underlying the book does not hold change nothing either
    other = h.market([("A", 100.0, 0.25, 0.015, "tech"), ("B", 50.0, 0.2, 0.0, "fin"),
                      ("C", 10.0, 0.3, 0.0, "fin")])
    _, unrelated, pnl1 = h.run(cfg, _inputs(pos, _quotes("C", [(E1, [(10.0, 0.3)])]),
                                            market=other))
    _, empty, pnl2 = h.run(cfg, _inputs(pos, _quotes("A", [])))
    np.testing.assert_array_equal(pnl0, pnl1)
    np.testing.assert_array_equal(pnl0, pnl2)
    for name in ("risk_measures", "contributions", "greeks"):
        pd.testing.assert_frame_equal(without[name], unrelated[name])
        pd.testing.assert_frame_equal(without[name], empty[name])
    # with A's surface the A option moves, B's does not
    prepared, _, _ = h.run(cfg, _inputs(pos, _quotes("A", QUOTES_A)))
    plain, _, _ = h.run(cfg, _inputs(pos, None))
    vols = dict(zip(prepared.book.position_id, prepared.book.volatility, strict=True))
    assert vols["p"] == 0.2 and vols["c"] != 0.25
    assert list(plain.book.position_id) == ["c", "p", "s"]
    assert prepared.book.unit_value[1] == plain.book.unit_value[1]
    assert prepared.book.unit_value[0] != plain.book.unit_value[0]
