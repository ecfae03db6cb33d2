"""The governance stage's speed-ups keep every bit.

* the closes pivoted once for every desk (:func:`history_closes`) give each desk the values
  of pivoting its own rows (the old path, still taken without ``closes``);
* a covariance validated before inside :func:`memoized_moments` (the stage's, per desk)
  gives the arrays, values and memory layout, of validating it afresh; the whole stage is
  the same with the memo off.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from risk_engine.governance import stage
from risk_engine.governance.stage import governance_tables, history_closes, hypothetical_values
from risk_engine.pipeline import InputTables, prepare
from risk_engine.portfolio import _moments
from risk_engine.portfolio._moments import memoized_moments, validate_moments
from risk_engine.tools.demo_data import generate_days
from tests import helpers as h


@pytest.fixture(scope="module")
def demo():
    data = generate_days(h.AS_OF, 1, n_positions=150, seed=4)
    cfg = h.config(scenario_model={"source": "history"})
    inputs = InputTables(data["positions"], data["market"], data["rates"],
                         history=data["history"], pnl_history=data["pnl_history"])
    return cfg, inputs, prepare(cfg, inputs)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.flags.c_contiguous == b.flags.c_contiguous
    assert a.flags.f_contiguous == b.flags.f_contiguous
    assert a.tobytes() == b.tobytes()


def _messy(history):
    """The history with a conflicting copy, an identical copy, a NaN and a stray name."""
    first = history.iloc[[0, 1, 5]].copy()
    first.iloc[0, first.columns.get_loc("close")] *= 1.01  # conflicting copy: date left out
    extra = pd.DataFrame({"date": [dt.date(2020, 1, 2)], "underlying": ["ZZZ_NOT_HELD"],
                          "close": [12.0]})
    out = pd.concat([history, first, extra], ignore_index=True)
    out.loc[7, "close"] = np.nan
    return out.sample(frac=1.0, random_state=2).reset_index(drop=True)


@pytest.mark.parametrize("messy", [False, True])
@pytest.mark.parametrize("lookback", [None, 40])
def test_closes_pivoted_once_give_each_desk_its_old_values(demo, messy, lookback):
    _, inputs, prep = demo
    history = _messy(inputs.history) if messy else inputs.history
    closes = history_closes(history)
    for desk in prep.book.desks:
        old = hypothetical_values(prep.book, desk, history, lookback)
        new = hypothetical_values(prep.book, desk, history, lookback, closes=closes)
        pd.testing.assert_series_equal(new, old, check_exact=True)
        _same(new.to_numpy(), old.to_numpy())


def test_a_covariance_validated_again_is_the_same_arrays(demo):
    _, _, prep = demo
    sub = prep.model.subset(tuple(prep.book.underlyings[:7]))
    fresh = validate_moments(None, sub.cov)  # no memo outside the block
    assert _moments._memo() is None
    with memoized_moments():
        first = validate_moments(sub.mu, sub.cov)
        again = validate_moments(None, sub.cov)  # hit: the mean vector is the caller's
        memo = _moments._memo()
        assert memo is not None and len(memo) == 1
        for name in ("sigma", "factor"):
            _same(getattr(again, name), getattr(fresh, name))
            _same(getattr(first, name), getattr(fresh, name))
        assert again.min_eigenvalue == fresh.min_eigenvalue
        _same(again.mu, np.zeros(7))
        again.factor[:] = 0.0  # a caller's copy: the memo is not touched
        _same(validate_moments(None, sub.cov).factor, fresh.factor)
    assert _moments._memo() is None


def test_the_stage_is_the_same_with_the_memo_off(demo, monkeypatch):
    cfg, inputs, prep = demo
    rm = pd.DataFrame({"scope": ["desk"], "desk": [prep.book.desks[0]], "measure": ["VaR"],
                       "confidence_level": [0.99], "horizon_days": [1], "value": [1e5]})
    args = (prep.book, prep.model, rm, cfg.governance, h.AS_OF)
    kw = {"history": inputs.history, "pnl_history": inputs.pnl_history}
    got = governance_tables(*args, **kw)
    monkeypatch.setattr(stage, "memoized_moments", contextlib.nullcontext)
    want = governance_tables(*args, **kw)
    assert set(got[0]) == set(want[0])
    for name, frame in want[0].items():
        pd.testing.assert_frame_equal(got[0][name], frame, check_exact=True)
    assert got[1] == want[1] and got[2] == want[2]
