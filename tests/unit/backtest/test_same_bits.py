"""The backtest stage's tables keep their bits: a multi-date sequence against the old code.

Each date of a demo fortnight is backtested as the nightly runs do it: the VaR and the
hypothetical rows that the earlier dates published are its inputs (the cached rows in a
shuffled order, as a Spark read returns them). The package's tables must equal, bit for
bit, those of the stage as it was before its speed-ups (:mod:`tests.unit.backtest._reference`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from risk_engine.backtest.hypothetical import RtplFactors, hypothetical_series
from risk_engine.backtest.series import previous_business_day, window_dates
from risk_engine.backtest.settings import BacktestSettings
from risk_engine.backtest.stage import backtest_tables
from risk_engine.tools.demo_data import generate_days
from tests import helpers as h
from tests.unit.backtest import _reference as ref

DAYS = 14
WINDOW = 9


@pytest.fixture(scope="module")
def demo():
    return generate_days(h.AS_OF, DAYS, n_positions=80, seed=5)


def _var(dates, desks, rng):
    """Published 1-day VaR of each date (a few desks and dates missing, one 10-day date)."""
    rows = []
    for i, d in enumerate(dates):
        horizon = 10 if i == 3 else 1
        for k, desk in enumerate(desks):
            if (i + k) % 7 == 5:
                continue
            for a in (0.95, 0.99):
                v = float(rng.uniform(2e3, 4e4))
                rows.append((f"r{d}", d, "desk", desk, "VaR", a, horizon, v))
        rows.append((f"r{d}", d, "firm", None, "VaR", 0.99, horizon, 6e4))
        rows.append((f"r{d}", d, "firm", None, "ES", 0.99, horizon, 7e4))
    return pd.DataFrame(rows, columns=["run_id", "as_of_date", "scope", "desk", "measure",
                                       "confidence_level", "horizon_days", "value"])


def _assert_same(got, want):
    assert list(got.columns) == list(want.columns)
    assert list(got.dtypes) == list(want.dtypes)
    assert len(got) == len(want)
    for c in got.columns:
        a, b = got[c], want[c]
        if a.dtype.kind == "f":
            x, y = a.to_numpy(float), b.to_numpy(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), c
            assert np.array_equal(x.view(np.int64)[~np.isnan(x)],
                                  y.view(np.int64)[~np.isnan(y)]), c
        else:
            assert [None if pd.isna(v) else v for v in a] == \
                [None if pd.isna(v) else v for v in b], c


def _published_hypothetical(series, factors_label):
    """The desk rows of a published ``backtest_series`` as the Spark read gives them."""
    s = series[(series["series"] == "hypothetical") & series["desk"].notna()
               & series["pnl"].notna()]
    s = s.drop_duplicates(["date", "desk"])[["date", "desk", "pnl", "rtpl"]]
    return s.assign(rtpl_factors=factors_label)


@pytest.mark.parametrize("factors", [None, RtplFactors(rate=True)])
def test_a_sequence_of_dates_publishes_the_old_bits(demo, factors):
    rng = np.random.default_rng(11)
    dates = sorted(demo["market"]["as_of_date"].unique())
    desks = sorted(set(demo["positions"]["desk"]))
    published = _var(dates, desks, rng)
    pnl = demo["pnl_history"]
    if factors is not None:
        factors = dataclasses.replace(factors, rate_history=demo.get("rate_history"))
    settings = BacktestSettings(enabled=True, window=WINDOW, confidence_levels=(0.95, 0.99))
    cached = None
    for day in dates[2:]:
        start = previous_business_day(window_dates(day, WINDOW)[0])
        snaps = {k: demo[k][(demo[k]["as_of_date"] >= start) & (demo[k]["as_of_date"] <= day)]
                 .reset_index(drop=True) for k in ("positions", "market", "rates")}
        if cached is not None:  # a read returns the rows in no particular order
            snaps["hypothetical"] = cached.sample(frac=1.0, random_state=len(cached))
        earlier = published[published["as_of_date"] < day]
        got = backtest_tables(earlier, pnl, settings, day, snapshots=snaps, factors=factors)
        want = ref.backtest_tables(earlier, pnl, settings, day, snapshots=snaps,
                                   factors=factors)
        for name in ("backtest", "backtest_series"):
            _assert_same(got[0][name], want[0][name])
        assert got[1] == want[1] and got[2] == want[2]
        label = "spot" if factors is None else factors.label
        rows = _published_hypothetical(got[0]["backtest_series"], label)
        cached = rows if cached is None else pd.concat([cached, rows]).drop_duplicates(
            ["date", "desk"], keep="last")


def test_cached_days_of_other_factors_and_odd_dates_are_handled_as_before(demo):
    dates = sorted(demo["market"]["as_of_date"].unique())
    pairs = [(previous_business_day(t), t) for t in dates[1:]]
    snaps = {k: demo[k] for k in ("positions", "market", "rates")}
    hpl, rtpl, _ = hypothetical_series(snaps["positions"], snaps["market"], snaps["rates"],
                                       pairs)
    cached = hpl.assign(rtpl=rtpl["pnl"], rtpl_factors="spot")
    one = cached.index[cached["date"] == dates[4]][:1]
    cached.loc[one, "rtpl_factors"] = "spot+vol"  # one row of a day: the day is revalued
    cached.loc[cached["date"] == dates[5], "rtpl_factors"] = None  # null: spot
    cached = cached[cached["date"] != dates[7]]  # a day never published
    cached["date"] = [d.isoformat() if i % 3 else d for i, d in enumerate(cached["date"])]
    cached = cached.sample(frac=1.0, random_state=3)
    # positions given as text dates, some rows dated outside the pairs
    positions = snaps["positions"].assign(
        as_of_date=snaps["positions"]["as_of_date"].map(lambda d: d.isoformat()))
    for pos in (snaps["positions"], positions):
        got = hypothetical_series(pos, snaps["market"], snaps["rates"], pairs[2:],
                                  cached=cached)
        want = ref.hypothetical_series(pos, snaps["market"], snaps["rates"], pairs[2:],
                                       cached=cached)
        for a, b in zip(got[:2], want[:2], strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert got[2] == want[2]


def _frames_equal(got, want):
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for c in got.columns:  # the same Python objects: True is True, dates are dates
        if got[c].dtype == object:
            assert [type(v) for v in got[c]] == [type(v) for v in want[c]], c


def test_aligned_series_edge_cases_as_before():
    from risk_engine.backtest.series import aligned_series, firm_pnl, published_var

    as_of = h.AS_OF
    days = window_dates(as_of, 4)
    var_days = [previous_business_day(t) for t in days]
    rows = []
    for i, vd in enumerate(var_days):
        for desk, value in (("d1", 10.0), ("d2", np.nan if i == 1 else 20.0)):
            rows.append(("r", vd, "desk", desk, "VaR", 0.99, 1, value))
        rows.append(("r", vd, "desk", "d3", "VaR", 0.99, 10 if i == 2 else 1, 5.0))
        rows.append(("r", vd, "firm", None, "VaR", 0.99, 1, 25.0))
    var = pd.DataFrame(rows, columns=["run_id", "as_of_date", "scope", "desk", "measure",
                                      "confidence_level", "horizon_days", "value"])
    pnl = pd.DataFrame({"date": [t for t in days for _ in range(3)],
                        "desk": ["d1", "d2", "d3"] * len(days),
                        "pnl": [-11.0, 1.0, 0.1, 3.0, np.nan, -6.0, 1.0, 2.0, 3.0, -1.0,
                                -30.0, 0.5]})
    only_d1 = var[(var["desk"] == "d1") | (var["scope"] == "firm")]
    d1 = pnl[pnl["desk"] == "d1"]
    for published, series in ((var, {"actual": pnl}), (only_d1, {"actual": d1}),
                              (var, {"actual": None}), (None, {"actual": pnl}),
                              (var, {"actual": pnl, "hypothetical": pnl.iloc[::-1]})):
        got = aligned_series(published, series, as_of, 4, (0.95, 0.99))
        want = ref.aligned_series(published, series, as_of, 4, (0.95, 0.99))
        _frames_equal(got, want)
    # every day ok: a column of booleans, as the frame of rows had
    ok = aligned_series(only_d1, {"actual": d1}, as_of, 4, (0.99,))
    assert ok["exception"].dtype == bool
    _frames_equal(ok, ref.aligned_series(only_d1, {"actual": d1}, as_of, 4, (0.99,)))
    v = published_var(var, (0.99,))
    _frames_equal(firm_pnl(pnl.dropna(), v, days), ref.firm_pnl(pnl.dropna(), v, days))


@pytest.mark.parametrize("kind", ["date", "datetime64", "datetime64[s]", "utc", "text",
                                  "string", "mixed_and_none", "timestamp"])
def test_snapshots_split_by_day_as_before_whatever_the_date_type(kind):
    from risk_engine.backtest.hypothetical import _by_date

    days = [h.AS_OF - dt.timedelta(days=k) for k in (2, 1, 0)]
    dates = [days[i % 3] for i in range(9)]
    ts = pd.to_datetime(pd.Series(dates))
    column = {
        "date": dates, "datetime64": ts, "datetime64[s]": ts.astype("datetime64[s]"),
        "utc": ts.dt.tz_localize("UTC"), "text": [d.isoformat() for d in dates],
        "string": pd.Series([d.isoformat() for d in dates], dtype="string"),
        "mixed_and_none": [None if i == 4 else (d.isoformat() if i % 2 else d)
                           for i, d in enumerate(dates)],
        "timestamp": [pd.Timestamp(d) for d in dates],
    }[kind]
    frame = pd.DataFrame({"as_of_date": column, "x": np.arange(9.0)})
    frame.index = np.arange(9)[::-1] * 7  # labels kept as they are
    want = ref._by_date(frame)
    got = _by_date(frame)
    assert list(got) == list(want)
    for d in want:
        pd.testing.assert_frame_equal(got[d], want[d], check_exact=True)
    only = _by_date(frame, {days[1]})
    assert list(only) == [days[1]]
    pd.testing.assert_frame_equal(only[days[1]], want[days[1]], check_exact=True)
