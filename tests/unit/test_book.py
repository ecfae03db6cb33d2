"""Row validation: bad rows are set aside with table, key, column, value and reason."""

import datetime as dt

import numpy as np
import pytest

from risk_engine.book import greeks_table, resolve_book, validate_snapshot
from risk_engine.errors import DataError
from risk_engine.pipeline import InputTables, prepare
from risk_engine.pricing import black_scholes_greeks
from risk_engine.timeaxis import ZeroCurve
from tests import helpers as h

EXP = dt.date(2027, 3, 19)


def _market():
    return h.market([("A", 100.0, 0.3, 0.01, "tech"), ("B", 50.0, 0.2, 0.0, "fin"),
                     ("BADSPOT", -1.0, 0.2, 0.0, "fin"), ("BADVOL", 20.0, 9.0, 0.0, "fin")])


def test_bad_rows_are_rejected_with_reasons_and_good_rows_kept():
    pos = h.positions([
        ("ok1", "d1", "equity", "A", 100.0, None, None, 1.0),
        ("ok2", "d1", "call", "A", -3.0, 100.0, EXP, 100.0),
        ("dup", "d1", "equity", "A", 1.0, None, None, 1.0),
        ("dup", "d2", "equity", "B", 1.0, None, None, 1.0),
        ("nounder", "d1", "equity", "ZZZ", 1.0, None, None, 1.0),
        ("nostrike", "d1", "put", "A", 1.0, None, EXP, 100.0),
        ("noexpiry", "d1", "put", "A", 1.0, 90.0, None, 100.0),
        ("expired", "d1", "call", "A", 1.0, 90.0, dt.date(2026, 11, 1), 100.0),
        ("nanqty", "d1", "equity", "A", float("nan"), None, None, 1.0),
        ("future", "d1", "future", "A", 1.0, None, None, 1.0),
        ("badspot", "d2", "equity", "BADSPOT", 1.0, None, None, 1.0),
        ("badvol_stock", "d2", "equity", "BADVOL", 10.0, None, None, 1.0),
        ("badvol_opt", "d2", "call", "BADVOL", 1.0, 20.0, EXP, 100.0),
        ("nomult", "d2", "equity", "B", 1.0, None, None, 0.0),
    ])
    snap = validate_snapshot(pos, _market(), h.AS_OF)
    assert sorted(snap.positions["position_id"]) == ["badvol_stock", "ok1", "ok2"]
    reasons = {(r.table, r.key, r.column): r.reason for r in snap.rejected}
    assert "duplicate" in reasons[("positions", "dup", "position_id")]
    assert "not in market" in reasons[("positions", "nounder", "underlying")]
    assert "strike" in reasons[("positions", "nostrike", "strike")]
    assert "expiry" in reasons[("positions", "noexpiry", "expiry")]
    assert "before the as-of" in reasons[("positions", "expired", "expiry")]
    assert "finite" in reasons[("positions", "nanqty", "quantity")]
    assert "instrument_type" in reasons[("positions", "future", "instrument_type")]
    assert "rejected in market" in reasons[("positions", "badspot", "underlying")]
    assert "volatility" in reasons[("positions", "badvol_opt", "underlying")]
    assert "multiplier" in reasons[("positions", "nomult", "multiplier")]
    assert "spot" in reasons[("market", "BADSPOT", "spot")]
    assert "volatility" in reasons[("market", "BADVOL", "volatility")]
    bad = [r for r in snap.rejected if r.key == "BADSPOT"][0]
    assert bad.as_row()["value"] == "-1.0"


def test_each_position_is_rejected_once_with_its_first_reason():
    pos = h.positions([("x", "d", "call", "ZZZ", float("nan"), None, None, 1.0)])
    snap = validate_snapshot(pos, _market(), h.AS_OF)
    assert len([r for r in snap.rejected if r.key == "x"]) == 1


def test_empty_book_is_a_clear_error():
    inputs = InputTables(h.positions([("x", "d", "equity", "ZZZ", 1.0, None, None, 1.0)]),
                         _market(), h.flat_rates(), factor_model=h.factor_model(
                             [("A", 0.0, 0.2)]), correlations=h.correlations())
    with pytest.raises(DataError, match="no valid position.*1 row"):
        prepare(h.config(), inputs)


def test_resolved_values_and_greeks_table():
    pos = h.positions([("s", "d1", "equity", "A", 100.0, None, None, 1.0),
                       ("c", "d1", "call", "A", -3.0, 100.0, EXP, 100.0),
                       ("p", "d2", "put", "B", 2.0, 45.0, EXP, 100.0)])
    curve = ZeroCurve.from_points([0.25, 1.0], [0.02, 0.04])
    book = resolve_book(validate_snapshot(pos, _market(), h.AS_OF), curve, as_of=h.AS_OF,
                        horizon_days=10)
    t = np.busday_count("2026-11-21", "2027-03-20") / 252
    assert book.expiry_years[book.position_id == "c"][0] == pytest.approx(t)
    r = np.interp(t, [0.25, 1.0], [0.02, 0.04])
    g = black_scholes_greeks(spots=100.0, strikes=100.0, expiries=t, volatilities=0.3,
                             rates=r, dividend_yields=0.01)
    c = book.position_id == "c"
    assert book.value[c][0] == pytest.approx(-300 * g.price)
    table = greeks_table(book).set_index(["desk", "underlying"])
    assert table.loc[("d1", "A"), "delta"] == pytest.approx(100 - 300 * g.delta)
    assert table.loc[("d1", "A"), "gamma"] == pytest.approx(-300 * g.gamma)
    assert table.loc[("d1", "A"), "n_positions"] == 2
    assert book.gross_value()[0] == pytest.approx(100 * 100 + 300 * g.price)
