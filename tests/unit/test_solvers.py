"""The one solver layer: an answer depends on the problem's data, not on the process."""

from __future__ import annotations

import numpy as np

from risk_engine.portfolio.settings import PortfolioSettings
from risk_engine.portfolio.tables import desk_portfolio_tables
from risk_engine.solvers import clear_problem_cache
from risk_engine.tools.worst_case_bench import random_book
from risk_engine.worst_case import WorstCaseSettings, evaluate_desk


def _numbers(frame):
    return frame.select_dtypes("number").to_numpy()


def test_portfolio_answers_are_the_same_bits_on_a_fresh_and_a_reused_problem():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    cov, mu = a @ a.T / 6 + 0.05 * np.eye(6), rng.normal(0.05, 0.03, 6)
    names = [f"U{i}" for i in range(6)]

    def tables():
        return desk_portfolio_tables("d", names, mu, cov, current_weights=None,
                                     settings=PortfolioSettings())

    clear_problem_cache()
    fresh = tables()
    again = tables()  # the cached problem, solved before in this process
    for name in ("min_variance", "frontier", "risk_parity"):
        np.testing.assert_array_equal(_numbers(getattr(again, name)),
                                      _numbers(getattr(fresh, name)), err_msg=name)


def test_worst_case_answers_are_the_same_bits_on_a_fresh_and_a_reused_problem():
    desk, und, inst, h = random_book(n_underlyings=3, n_options=4, seed=7)
    settings = WorstCaseSettings(confidence_levels=(0.95, 0.99))
    clear_problem_cache()
    fresh = evaluate_desk(desk, und, inst, h, settings)
    again = evaluate_desk(desk, und, inst, h, settings)
    assert [r.value for r in again.rows] == [r.value for r in fresh.rows]
    assert [a.optimal_weight for a in again.allocations] == \
        [a.optimal_weight for a in fresh.allocations]
