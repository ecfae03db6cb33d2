"""Hostile inputs: every bad row is rejected with its reason or stops the run with a
DataError naming table, column, key and value; numbers never depend on row order."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from risk_engine.book import CALL, resolve_book, validate_snapshot
from risk_engine.governance.stage import hypothetical_values
from risk_engine.pricing import black_scholes_price
from risk_engine.timeaxis import ZeroCurve

from tests import helpers as h

EXP = dt.date(2027, 3, 19)


def _dates(n: int) -> list[dt.date]:
    return list(pd.bdate_range(end=pd.Timestamp(h.AS_OF), periods=n).date)


def test_hypothetical_values_of_a_stock_that_closed_at_one() -> None:
    """A close of exactly 1.00 is a price like any other (it used to mean 'not mine')."""
    mkt = h.market([("PENNY", 1.02, 0.6, 0.0, "x"), ("B", 50.0, 0.2, 0.0, "y")])
    pos = h.positions([("s", "d", "equity", "PENNY", 1000.0, None, None, 1.0),
                       ("c", "d", "call", "PENNY", 2.0, 1.0, EXP, 100.0),
                       ("o", "other", "equity", "B", 10.0, None, None, 1.0)])
    book = resolve_book(validate_snapshot(pos, mkt, h.AS_OF),
                        ZeroCurve.from_points([0.25, 1.0], [0.02, 0.03]), as_of=h.AS_OF,
                        horizon_days=10)
    dates = _dates(4)
    closes = [0.97, 1.00, 1.05, 1.00]
    hist = pd.DataFrame({"date": dates * 2, "underlying": ["PENNY"] * 4 + ["B"] * 4,
                         "close": closes + [1.0, 49.0, 51.0, 50.5]})
    got = hypothetical_values(book, "d", hist)
    c = book.position_id == "c"
    t, r = book.expiry_years[c][0], book.rate[c][0]
    want = [1000.0 * s + 200.0 * float(black_scholes_price(
        spots=s, strikes=1.0, expiries=t, volatilities=0.6, rates=r, dividend_yields=0.0,
        is_call=True)) for s in closes]
    assert book.kind[c][0] == CALL
    np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-12)
