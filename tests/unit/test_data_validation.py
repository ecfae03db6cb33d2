"""Hostile inputs: every bad row is rejected with its reason or stops the run with a
DataError naming table, column, key and value; numbers never depend on row order."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from risk_engine.book import CALL, resolve_book, validate_snapshot
from risk_engine.config import ValidationConfig
from risk_engine.errors import DataError, RejectionCeilingError, RiskEngineError
from risk_engine.governance.stage import hypothetical_values
from risk_engine.pipeline import (
    InputTables,
    check_rejection_ceiling,
    prepare,
    rejected_notional_share,
)
from risk_engine.pricing import black_scholes_price
from risk_engine.timeaxis import ZeroCurve
from risk_engine.tools.demo_data import generate
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


# ---- a small valid snapshot, then one hostile change at a time ---------------------------

def _tables() -> dict[str, pd.DataFrame]:
    return generate(h.AS_OF, n_underlyings=10, n_positions=60, history_days=120, seed=11)


def _cfg(source: str = "history", **sections):
    base = {"scenario_model": {"source": source, "history_window_days": 100,
                               "min_history_days": 30},
            "monte_carlo": {"n_scenarios": 2000, "block_size": 500},
            **h.MC_ONLY}
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return h.config(**base)


def _inputs(t: dict[str, pd.DataFrame], source: str = "history") -> InputTables:
    if source == "history":
        return InputTables(t["positions"], t["market"], t["rates"], history=t["history"])
    return InputTables(t["positions"], t["market"], t["rates"], factor_model=t["factor_model"],
                       correlations=t["correlations"])


def _reasons(prep, table: str) -> dict[str, list[str]]:
    rej = prep.rejected[prep.rejected["table"] == table]
    out: dict[str, list[str]] = {}
    for key, reason in zip(rej["key"], rej["reason"], strict=True):
        out.setdefault(key, []).append(reason)
    return out


def _firm(cfg, inputs: InputTables) -> pd.DataFrame:
    # Rejections are the point here: the ceiling is not.
    cfg = dataclasses.replace(cfg, validation=ValidationConfig(max_rejected_share=None))
    _, tables, _ = h.run(cfg, inputs)
    rm = tables["risk_measures"]
    return rm[rm["scope"] == "firm"].reset_index(drop=True)


def _shuffled(inputs: InputTables, seed: int) -> InputTables:
    rng = np.random.default_rng(seed)

    def mix(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)

    return InputTables(*(mix(getattr(inputs, f.name)) for f in dataclasses.fields(inputs)))


def _positions_on(t: dict[str, pd.DataFrame], underlying: str) -> set[str]:
    pos = t["positions"]
    return set(pos.loc[pos["underlying"] == underlying, "position_id"])


# ---- item 3: duplicates, and no dependence on row order ----------------------------------

def test_conflicting_history_duplicates_are_rejected_and_order_does_not_matter() -> None:
    t = _tables()
    hist = t["history"]
    row = hist[(hist["underlying"] == "FINA01")].iloc[[-5]]
    t["history"] = pd.concat([hist, row.assign(close=row["close"] * 1.3)], ignore_index=True)
    cfg = _cfg()
    inputs = _inputs(t)
    prep = prepare(cfg, inputs)
    key = f"FINA01/{row['date'].iloc[0]}"
    reasons = _reasons(prep, "history")[key]
    assert len(reasons) == 2
    assert all(str(row["close"].iloc[0]) in r and str(row["close"].iloc[0] * 1.3) in r
               for r in reasons)
    pos = _reasons(prep, "positions")
    assert set(pos) == _positions_on(t, "FINA01")
    assert all("conflicting closes" in r[0] for r in pos.values())
    assert "FINA01" not in prep.book.underlyings
    firm = _firm(cfg, inputs)
    for seed in (1, 2):
        pd.testing.assert_frame_equal(_firm(cfg, _shuffled(inputs, seed)), firm)


def test_identical_duplicates_collapse_with_a_warning_and_change_nothing() -> None:
    t = _tables()
    cfg = _cfg()
    firm = _firm(cfg, _inputs(t))
    t2 = dict(t)
    t2["history"] = pd.concat([t["history"], t["history"].iloc[100:110]], ignore_index=True)
    t2["market"] = pd.concat([t["market"], t["market"].iloc[[2]]], ignore_index=True)
    t2["positions"] = pd.concat([t["positions"], t["positions"].iloc[[3]]], ignore_index=True)
    prep = prepare(cfg, _inputs(t2))
    assert len(prep.rejected) == 0
    text = " ".join(prep.warnings)
    assert "history: 10 identical duplicate" in text
    assert "market: 1 identical duplicate" in text
    assert "positions: 1 identical duplicate" in text
    pd.testing.assert_frame_equal(_firm(cfg, _inputs(t2)), firm)


def test_conflicting_market_and_position_duplicates_name_both_values() -> None:
    t = _tables()
    mkt = t["market"]
    t["market"] = pd.concat([mkt, mkt.iloc[[0]].assign(spot=mkt["spot"].iloc[0] + 1)],
                            ignore_index=True)
    pos = t["positions"]
    t["positions"] = pd.concat([pos, pos.iloc[[1]].assign(quantity=7.0)], ignore_index=True)
    prep = prepare(_cfg(), _inputs(t))
    u = mkt["underlying"].iloc[0]
    spot = mkt["spot"].iloc[0]
    m = _reasons(prep, "market")[u]
    assert len(m) == 2 and all(f"spot: {spot} and {spot + 1}" in r or
                               f"spot: {spot + 1} and {spot}" in r for r in m)
    p = _reasons(prep, "positions")[pos["position_id"].iloc[1]]
    assert len(p) == 2 and all("quantity" in r and "7.0" in r for r in p)


def test_factor_model_and_correlation_duplicates_reject_and_order_does_not_matter() -> None:
    t = _tables()
    fm, corr = t["factor_model"], t["correlations"]
    t["factor_model"] = pd.concat([fm, fm.iloc[[1]].assign(volatility=0.9),
                                   fm.iloc[[2]]], ignore_index=True)
    pair = corr.iloc[[0]]
    a, b = pair["underlying_a"].iloc[0], pair["underlying_b"].iloc[0]
    swapped = pair.rename(columns={"underlying_a": "underlying_b",
                                   "underlying_b": "underlying_a"}).assign(correlation=-0.2)
    t["correlations"] = pd.concat([corr, swapped], ignore_index=True)
    cfg = _cfg("factor_model")
    inputs = _inputs(t, "factor_model")
    prep = prepare(cfg, inputs)
    bad_fm = fm["underlying"].iloc[1]
    assert all("volatility" in r and "0.9" in r
               for r in _reasons(prep, "factor_model")[bad_fm])
    corr_reasons = _reasons(prep, "correlations")[f"{min(a, b)}/{max(a, b)}"]
    assert len(corr_reasons) == 2 and all("-0.2" in r for r in corr_reasons)
    rejected_on = set(_reasons(prep, "positions"))
    expect = _positions_on(t, bad_fm) | _positions_on(t, a) | _positions_on(t, b)
    assert rejected_on == expect
    assert any("factor_model: 1 identical duplicate" in w for w in prep.warnings)
    firm = _firm(cfg, inputs)
    for seed in (3, 4):
        pd.testing.assert_frame_equal(_firm(cfg, _shuffled(inputs, seed)), firm)


def test_results_do_not_depend_on_row_order_on_valid_data() -> None:
    t = _tables()
    cfg = _cfg()
    base = prepare(cfg, _inputs(t))
    again = prepare(cfg, _shuffled(_inputs(t), 5))
    np.testing.assert_array_equal(base.model.cov, again.model.cov)
    np.testing.assert_array_equal(base.book.value, again.book.value)


# ---- item 4: rows without a date ----------------------------------------------------------

def test_position_without_as_of_date_is_rejected_not_valued() -> None:
    t = _tables()
    pos = t["positions"].copy()
    pos.loc[4, "as_of_date"] = None
    pos.loc[5, "as_of_date"] = dt.date(2026, 11, 19)
    t["positions"] = pos
    prep = prepare(_cfg(), _inputs(t))
    r = _reasons(prep, "positions")
    assert "missing" in r[pos.loc[4, "position_id"]][0]
    assert "not the run's as-of date" in r[pos.loc[5, "position_id"]][0]
    assert prep.book.n_positions == 58
    assert prep.row_counts["positions"] == {"in": 60, "rejected": 2}


# ---- item 5: holes and stale prices in history --------------------------------------------

def test_nan_closes_and_stale_history_are_reported() -> None:
    t = _tables()
    hist = t["history"].copy()
    days = sorted(hist["date"].unique())
    fina = hist["underlying"] == "FINA01"
    hist.loc[fina & hist["date"].isin(days[50:53]), "close"] = np.nan
    # TECH01 stops 7 trading days before the as-of date, COMM01 30 days before.
    hist = hist[~((hist["underlying"] == "TECH01") & hist["date"].isin(days[-7:]))]
    hist = hist[~((hist["underlying"] == "COMM01") & hist["date"].isin(days[-30:]))]
    t["history"] = hist
    prep = prepare(_cfg(), _inputs(t))
    text = " | ".join(prep.warnings)
    assert "3 missing (NaN) close(s) skipped: FINA01 (3)" in text
    assert "TECH01 (" in text and "7 trading days" in text
    pos = _reasons(prep, "positions")
    assert set(pos) == _positions_on(t, "COMM01")
    assert all("30 trading days" in r[0] for r in pos.values())


# ---- item 6: implausible values, degenerate histories, bad curves -------------------------

def test_implausible_sizes_and_prices_are_rejected_rows() -> None:
    t = _tables()
    pos = t["positions"].copy()
    eq = pos.index[pos["instrument_type"] == "equity"]
    opt = pos.index[pos["instrument_type"] != "equity"]
    pos.loc[eq[0], "multiplier"] = 1e30
    pos.loc[eq[1], ["quantity", "multiplier"]] = [1e200, 1e200]
    pos.loc[opt[0], "strike"] = 1e300
    mkt = t["market"].copy()
    mkt.loc[mkt["underlying"] == "UTIL01", "spot"] = 1e300
    t["positions"], t["market"] = pos, mkt
    prep = prepare(_cfg(), _inputs(t))
    r = _reasons(prep, "positions")
    assert "1e+30" in r[pos.loc[eq[0], "position_id"]][0]
    assert "plausibility" in r[pos.loc[eq[1], "position_id"]][0]
    assert "strike" in r[pos.loc[opt[0], "position_id"]][0]
    assert "spot" in _reasons(prep, "market")["UTIL01"][0]
    assert _positions_on(t, "UTIL01") <= set(r)
    assert np.all(np.isfinite(prep.book.value))
    firm = _firm(_cfg(), _inputs(t))
    assert np.all(np.isfinite(firm["value"])) and firm["value"].max() < 1e9


def test_implausible_factor_model_rows_are_rejected_rows() -> None:
    t = _tables()
    fm = t["factor_model"].copy()
    fm.loc[fm["underlying"] == "TECH01", "drift"] = 1e4
    fm.loc[fm["underlying"] == "FINA01", "volatility"] = 1e3
    fm.loc[fm["underlying"] == "ENER01", "volatility"] = np.nan
    t["factor_model"] = fm
    prep = prepare(_cfg("factor_model"), _inputs(t, "factor_model"))
    r = _reasons(prep, "factor_model")
    assert "drift" in r["TECH01"][0] and "1000" in prep.rejected.set_index("key").loc[
        "TECH01", "value"][:5]
    assert "volatility" in r["FINA01"][0] and "volatility" in r["ENER01"][0]
    on = _positions_on(t, "TECH01") | _positions_on(t, "FINA01") | _positions_on(t, "ENER01")
    assert set(_reasons(prep, "positions")) == on


def test_constant_or_disjoint_histories_reject_their_positions_only() -> None:
    t = _tables()
    hist = t["history"].copy()
    days = sorted(hist["date"].unique())
    hist.loc[hist["underlying"] == "HEAL01", "close"] = 42.0
    # UTIL01 and CONS01: closes on days that never give a return on the same date.
    hist = hist[~((hist["underlying"] == "UTIL01") & hist["date"].isin(days[60:-3]))]
    hist = hist[~((hist["underlying"] == "CONS01") & ~hist["date"].isin(days[60:-3]))]
    t["history"] = hist
    cfg = _cfg(scenario_model={"min_history_days": 40, "history_window_days": 200},
               validation={"max_rejected_share": None})
    prep = prepare(cfg, _inputs(t))
    r = _reasons(prep, "positions")
    assert all("constant" in r[p][0] for p in _positions_on(t, "HEAL01"))
    assert all("fewer than 2 return dates with CONS01" in r[p][0]
               for p in _positions_on(t, "UTIL01"))
    assert all("UTIL01" in r[p][0] for p in _positions_on(t, "CONS01"))
    assert len(prep.book.underlyings) == 7


@pytest.mark.parametrize("tenor, match", [
    (np.nan, "rates: column tenor_years, key tenor_years=nan: value nan"),
    (1.0, "rates: column tenor_years, key tenor_years=1.0: value 1.0 given twice"),
])
def test_bad_tenor_is_a_data_error_naming_table_column_and_value(tenor, match) -> None:
    t = _tables()
    rates = t["rates"]
    t["rates"] = pd.concat([rates, rates.iloc[[0]].assign(tenor_years=tenor)],
                           ignore_index=True)
    with pytest.raises(DataError, match=re.escape(match)):
        prepare(_cfg(), _inputs(t))
    assert issubclass(DataError, RiskEngineError)  # the CLI prints one line and exits 2


def test_empty_history_is_reported_as_such() -> None:
    t = _tables()
    t["history"] = t["history"].iloc[:0]
    with pytest.raises(DataError, match=f"history: no rows on or before {h.AS_OF}"):
        prepare(_cfg(), _inputs(t))
    t["history"] = _tables()["history"].assign(date=dt.date(2027, 1, 4))
    with pytest.raises(DataError, match=f"history: no rows on or before {h.AS_OF}"):
        prepare(_cfg(), _inputs(t))


# ---- item 7: dates beyond pandas' nanosecond range -----------------------------------------

def test_far_expiry_is_out_of_range_with_its_value() -> None:
    t = _tables()
    pos = t["positions"].copy()
    opt = pos.index[pos["instrument_type"] != "equity"]
    pos.loc[opt[0], "expiry"] = dt.date(2300, 1, 1)
    pos.loc[opt[1], "expiry"] = dt.date(2100, 1, 4)
    t["positions"] = pos
    t["history"] = pd.concat([t["history"], t["history"].iloc[[0]].assign(
        date=dt.date(2400, 1, 3))], ignore_index=True)
    prep = prepare(_cfg(), _inputs(t))
    rej = prep.rejected.set_index("key")
    row = rej.loc[pos.loc[opt[0], "position_id"]]
    assert "out of range" in row["reason"] and row["value"] == "2300-01-01"
    assert pos.loc[opt[1], "position_id"] in set(prep.book.position_id)


# ---- item 8: too few scenarios in the tail -------------------------------------------------

def test_thin_tail_is_a_warning() -> None:
    t = _tables()
    cfg = _cfg("factor_model", risk={"confidence_levels": [0.99, 0.9999]})
    prep = prepare(cfg, _inputs(t, "factor_model"))
    thin = [w for w in prep.warnings if "tail" in w]
    assert len(thin) == 1 and "0.9999" in thin[0] and "0.2 of 2000 scenarios" in thin[0]
    ok = _cfg("factor_model", risk={"confidence_levels": [0.99, 0.995]})
    assert not [w for w in prepare(ok, _inputs(t, "factor_model")).warnings if "tail" in w]


# ---- item 2: the rejection ceiling counts positions on unknown underlyings -----------------

def test_unknown_underlyings_count_toward_the_rejection_ceiling() -> None:
    t = _tables()
    t["market"] = t["market"][t["market"]["underlying"] == "FINA01"]
    inputs = _inputs(t, "factor_model")
    cfg = _cfg("factor_model")
    prep = prepare(cfg, inputs)
    assert prep.book.n_positions == 10
    share = rejected_notional_share(inputs, prep.rejected, h.AS_OF)
    assert share == pytest.approx(50 / 60)  # by count: no price for the 50 others
    with pytest.raises(RejectionCeilingError, match="83.33% of gross notional"):
        check_rejection_ceiling(cfg, inputs, prep)
    # With history the rejected positions are valued at their underlying's last close.
    hinputs = InputTables(t["positions"], t["market"], t["rates"], history=t["history"])
    hprep = prepare(_cfg(), hinputs)
    pos = t["positions"]
    last = t["history"].sort_values("date").groupby("underlying")["close"].last()
    notional = (pos["quantity"] * pos["multiplier"] * pos["underlying"].map(last)).abs()
    want = notional[pos["underlying"] != "FINA01"].sum() / notional.sum()
    assert rejected_notional_share(hinputs, hprep.rejected, h.AS_OF) == pytest.approx(
        want, rel=1e-12)
    with pytest.raises(RejectionCeilingError):
        check_rejection_ceiling(_cfg(), hinputs, hprep)


def test_hypothetical_values_skip_dates_with_conflicting_closes_whatever_the_order() -> None:
    mkt = h.market([("A", 10.0, 0.3, 0.0, "x")])
    pos = h.positions([("s", "d", "equity", "A", 100.0, None, None, 1.0)])
    book = resolve_book(validate_snapshot(pos, mkt, h.AS_OF),
                        ZeroCurve.from_points([1.0], [0.02]), as_of=h.AS_OF, horizon_days=10)
    dates = _dates(4)
    hist = pd.DataFrame({"date": dates + [dates[1], dates[2]], "underlying": "A",
                         "close": [9.0, 9.5, 10.5, 10.0, 9.9, 10.5]})
    got = hypothetical_values(book, "d", hist)
    assert list(got.index) == [dates[0], dates[2], dates[3]]
    np.testing.assert_allclose(got.to_numpy(), [900.0, 1050.0, 1000.0], rtol=1e-12)
    pd.testing.assert_series_equal(hypothetical_values(book, "d", hist.iloc[::-1]), got)


def test_more_implausible_values_in_market_rates_and_correlations() -> None:
    t = _tables()
    rates = t["rates"]
    t["rates"] = pd.concat([rates, rates.iloc[[0]].assign(as_of_date=None, tenor_years=3.0)],
                           ignore_index=True)
    mkt = t["market"].copy()
    mkt.loc[mkt["underlying"] == "MATE01", "dividend_yield"] = 1e300
    t["market"] = pd.concat([mkt, mkt.iloc[[0]].assign(underlying=None),
                             mkt.iloc[[1]].assign(as_of_date=None),
                             mkt.iloc[[2]].assign(as_of_date=h.D1)], ignore_index=True)
    corr = t["correlations"].copy()
    corr.loc[0, "correlation"] = np.nan
    t["correlations"] = corr
    cfg = _cfg("factor_model", validation={"max_rejected_share": None})
    prep = prepare(cfg, _inputs(t, "factor_model"))
    assert _reasons(prep, "rates") == {"tenor_years=3.0": ["as_of_date is missing"]}
    assert "dividend_yield" in _reasons(prep, "market")["MATE01"][0]
    assert _reasons(prep, "market")["<missing>"] == ["underlying is missing"]
    assert _reasons(prep, "market")[mkt["underlying"].iloc[1]] == [
        "as_of_date is missing: the row belongs to no snapshot"]
    assert "not the run's as-of date" in _reasons(prep, "market")[mkt["underlying"].iloc[2]][0]
    pos = t["positions"]
    opts_on = set(pos.loc[(pos["underlying"] == "MATE01")
                          & (pos["instrument_type"] != "equity"), "position_id"])
    a, b = corr.loc[0, "underlying_a"], corr.loc[0, "underlying_b"]
    r = _reasons(prep, "positions")
    assert set(r) == opts_on | _positions_on(t, a) | _positions_on(t, b)
    assert np.all(np.isfinite(_firm(cfg, _inputs(t, "factor_model"))["value"]))
    t["rates"] = rates.assign(zero_rate=np.where(rates["tenor_years"] == 1.0, 1e300, 0.03))
    with pytest.raises(DataError, match=re.escape(
            "rates: column zero_rate, key tenor_years=1.0: value 1e+300")):
        prepare(cfg, _inputs(t, "factor_model"))
