"""Vanna and volga in the greeks table; vega per expiry bucket."""

import datetime as dt

import numpy as np
import pytest

from risk_engine import schemas
from risk_engine.book import (
    expiry_bucket,
    greeks_table,
    resolve_book,
    validate_snapshot,
    vega_buckets_table,
)
from risk_engine.pricing import black_scholes_greeks
from risk_engine.timeaxis import ZeroCurve
from tests import helpers as h


def _book():
    rows = [("s", "d1", "equity", "A", 100.0, None, None, 1.0)]
    expiries = [dt.date(2026, 12, 11), dt.date(2027, 1, 15), dt.date(2027, 2, 5),
                dt.date(2027, 9, 17), dt.date(2028, 12, 15), dt.date(2026, 12, 18)]
    for i, e in enumerate(expiries):
        rows.append((f"c{i}", "d1", "call", "A", 2.0 - i, 90.0 + 5 * i, e, 100.0))
        rows.append((f"p{i}", "d2", "put", "B", 1.0 + i, 45.0, e, 10.0))
    market = h.market([("A", 100.0, 0.3, 0.01, "x"), ("B", 50.0, 0.25, 0.0, "y")])
    snap = validate_snapshot(h.positions(rows), market, h.AS_OF)
    return resolve_book(snap, ZeroCurve.from_points([0.25, 1.0], [0.02, 0.04]), as_of=h.AS_OF,
                        horizon_days=10)


def test_greeks_table_has_vanna_and_volga_of_each_position():
    book = _book()
    table = greeks_table(book).set_index(["desk", "underlying"])
    opt = (book.kind != 0) & (book.desk_index == 0)
    g = black_scholes_greeks(spots=100.0, strikes=book.strike[opt],
                             expiries=book.expiry_years[opt], volatilities=0.3,
                             rates=book.rate[opt], dividend_yields=0.01)
    q = book.quantity[opt]
    assert table.loc[("d1", "A"), "vanna"] == pytest.approx(float((g.vanna * q).sum()),
                                                            rel=1e-12)
    assert table.loc[("d1", "A"), "volga"] == pytest.approx(float((g.volga * q).sum()),
                                                            rel=1e-12)
    assert list(table.reset_index().columns) == [
        c for c in schemas.GREEKS.names if c not in ("run_id", "as_of_date")]


def test_vega_buckets_add_up_to_the_greeks_vega_and_follow_expiry():
    book = _book()
    buckets = vega_buckets_table(book)
    assert list(buckets.columns) == [c for c in schemas.VEGA_BUCKETS.names
                                     if c not in ("run_id", "as_of_date")]
    greeks = greeks_table(book).set_index(["desk", "underlying"])["vega"]
    total = buckets.groupby(["desk", "underlying"])["vega"].sum()
    for key, v in total.items():
        assert v == pytest.approx(greeks[key], rel=1e-12)
    # one row per bucket actually held, shortest first
    d1 = buckets[buckets["desk"] == "d1"]
    assert list(d1["expiry_bucket"]) == ["1M", "3M", "1Y", "longer"]
    assert list(d1["n_positions"]) == [2, 2, 1, 1]
    opt = (book.kind != 0) & (book.desk_index == 0)
    labels = expiry_bucket(book.expiry_years[opt])
    v = book.vega[opt] * book.quantity[opt]
    assert d1.set_index("expiry_bucket").loc["3M", "vega"] == pytest.approx(
        float(v[labels == "3M"].sum()), rel=1e-12)


def test_expiry_bucket_bounds_are_inclusive():
    t = np.array([0.0, 1 / 12, 1 / 12 + 1e-12, 0.25, 0.26, 1.0, 1.0001, 30.0])
    assert list(expiry_bucket(t)) == ["1M", "1M", "3M", "3M", "1Y", "1Y", "longer", "longer"]
