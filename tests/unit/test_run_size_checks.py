"""A run whose configured sizes cannot fit fails at validation, naming the key and size."""

import numpy as np
import pytest

from risk_engine import pipeline
from risk_engine.errors import ConfigError
from risk_engine.pipeline import (
    ATTRIBUTION_TILE_ARRAYS,
    WORST_CASE_MATRICES,
    InputTables,
    check_attribution_memory,
    check_worst_case_size,
    desk_instrument_counts,
    prepare,
)
from risk_engine.tools.demo_data import generate
from tests import helpers as h


@pytest.fixture(scope="module")
def demo():
    t = generate(h.AS_OF, n_positions=120, seed=5)
    return InputTables(t["positions"], t["market"], t["rates"], factor_model=t["factor_model"],
                       correlations=t["correlations"])


def test_attribution_chunk_that_fits_passes_and_one_that_does_not_is_refused():
    check_attribution_memory(10_000, 256)
    per_position = 8 * ATTRIBUTION_TILE_ARRAYS * 10_000
    check_attribution_memory(10_000, 99, max_bytes=per_position * 100)
    with pytest.raises(ConfigError) as err:
        check_attribution_memory(10_000, 100, max_bytes=per_position * 100)
    msg = str(err.value)
    assert "governance.attribution_chunk" in msg and "= 100" in msg
    assert "10000 scenarios" in msg and "use at most 99" in msg


def test_prepare_refuses_an_attribution_chunk_too_large(demo):
    cfg = h.config(monte_carlo={"n_scenarios": 2000, "block_size": 1000},
                   governance={"attribution_chunk": 100_000_000},
                   worst_case={"enabled": False})
    with pytest.raises(ConfigError, match=r"governance\.attribution_chunk.*GiB"):
        prepare(cfg, demo)
    off = h.config(monte_carlo={"n_scenarios": 2000, "block_size": 1000},
                   governance={"attribution_chunk": 100_000_000, "attribution": False},
                   worst_case={"enabled": False})
    assert prepare(off, demo).book.n_positions == 120


def test_instrument_counts_match_the_distinct_terms(demo):
    cfg = h.config(**h.MC_ONLY)
    book = prepare(cfg, demo).book
    counts = desk_instrument_counts(book)
    for d, desk in enumerate(book.desks):
        m = np.flatnonzero(book.desk_index == d)
        terms = {(int(book.underlying_index[p]), int(book.kind[p]))
                 if book.kind[p] == 0 else
                 (int(book.underlying_index[p]), int(book.kind[p]), float(book.strike[p]),
                  float(book.expiry_years[p])) for p in m}
        assert counts[desk] == len(terms)


def test_worst_case_problem_too_large_is_refused(demo):
    cfg = h.config(**h.MC_ONLY)
    book = prepare(cfg, demo).book
    counts = desk_instrument_counts(book)
    desk, largest = max(counts.items(), key=lambda kv: kv[1])
    check_worst_case_size(book, pipeline._ABSENT, max_bytes=1)  # no such key: not checked
    fits = 8 * WORST_CASE_MATRICES * (largest + 1) ** 2  # the largest desk's problem
    check_worst_case_size(book, None, max_bytes=fits)
    with pytest.raises(ConfigError) as err:
        check_worst_case_size(book, None, max_bytes=fits - 1)
    assert "worst_case.max_instruments" in str(err.value)
    assert f"desk {desk} has {largest} instruments" in str(err.value)
    with pytest.raises(ConfigError):
        check_worst_case_size(book, 10**9, max_bytes=fits - 1)
    check_worst_case_size(book, largest - 1, max_bytes=fits - 1)  # capped below the desk
