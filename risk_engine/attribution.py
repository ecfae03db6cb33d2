"""Position-level attribution of desk VaR and ES, recomputed from the seeded scenario blocks.

From the exact tail summary (:mod:`risk_engine.tails`), :func:`attribution_requests` states,
for each desk and level, which scenarios carry which weight in the Euler contributions.
ES: every scenario ranked above the desk's VaR scenario (loss, then scenario index, as a
stable sort ranks them) weighs ``1 / (N (1 - alpha))`` and the VaR scenario
``(k - alpha N) / (N (1 - alpha))``; the request holds only that threshold, not the tail's
indices. VaR: a window of ranks around the quantile, rescaled to the desk's VaR (explicit
indices; the window grows like the square root of N). Each scenario block then takes its
desk losses, regenerates its scenarios from ``(seed, block)``, revalues the desk's positions
on the requested scenarios only, and returns weighted sums (:func:`block_contributions`).
The sums are added in a fixed order that does not depend on where blocks ran: blocks in
order within groups of :data:`SUM_GROUP` consecutive blocks (on executors), then the groups
in order (on the driver, which receives one row per group). No scenario-by-position matrix
is kept beyond one tile (:class:`Tiling`): a desk's positions are revalued a chunk at a
time, on a slice of the block's requested rows at a time, each contract of a chunk priced
once, and every sum runs in an order that does not depend on the tile sizes.

Incremental VaR (desk VaR minus the desk's VaR without the position) and the correlation of
each position's P&L with its desk's are computed exactly on the scenarios of block 0 (the
first ``block_size`` scenarios), a fixed, seeded sample (:func:`sample_statistics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.measures import tail_rank
from risk_engine.scenarios import ScenarioSource
from risk_engine.tails import TailSummary
from risk_engine.types import FloatArray, IntArray
from risk_engine.valuation import (
    contract_ids,
    position_pnl,
    summed_position_values,
    summed_positions,
)

#: Consecutive blocks whose contributions are added up together before the groups are
#: added: at 10 million scenarios in blocks of 10,000 the driver receives 63 rows, not 1,000.
SUM_GROUP = 16


@dataclass(frozen=True)
class Tiling:
    """How many positions and scenarios are revalued at once (memory, never results).

    A tile holds ``scenarios x positions`` position values (at most ``positions + 1``
    columns, see :func:`position_chunks`); :func:`sample_statistics` holds the whole
    block-0 sample by ``positions`` columns, as its order statistics need every scenario.
    """

    positions: int = 256
    scenarios: int = 1024

    @property
    def values(self) -> int:
        """Position values of one tile, ``scenarios x positions``."""
        return self.scenarios * self.positions

    def __post_init__(self) -> None:
        if self.positions < 1 or self.scenarios < 1:
            raise ValueError(f"tile sizes must be >= 1, got {self.positions} positions x "
                             f"{self.scenarios} scenarios")


@dataclass(frozen=True)
class Request:
    """Contribution of the positions of ``desk`` to one measure: ``sum_i w_i L_p,i``.

    Either explicit ``scenarios`` (ascending global indices) with their ``weights``, or a
    ``threshold`` ``(loss, scenario)``: every scenario whose ``(loss, index)`` is above it
    weighs ``tail_weight``, the threshold scenario itself ``threshold_weight``.
    """

    desk_index: int
    measure: str
    confidence_level: float
    total: float  # the desk figure the contributions add up to
    scenarios: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    weights: FloatArray = field(default_factory=lambda: np.zeros(0))
    threshold: tuple[float, int] | None = None
    tail_weight: float = 0.0
    threshold_weight: float = 0.0

    def block_weights(self, desk_loss: FloatArray, first: int) -> tuple[IntArray, FloatArray]:
        """Global indices (ascending) and weights of this request within one block.

        ``desk_loss`` is the desk's loss in the block's scenarios ``first, first + 1, ...``.
        """
        n_b = desk_loss.size
        if self.threshold is None:
            sel = (self.scenarios >= first) & (self.scenarios < first + n_b)
            return self.scenarios[sel], self.weights[sel]
        v, at = self.threshold
        idx = first + np.arange(n_b, dtype=np.int64)
        above = (desk_loss > v) | ((desk_loss == v) & (idx > at))
        rows = np.flatnonzero(above | (idx == at))
        w = np.where(idx[rows] == at, self.threshold_weight, self.tail_weight)
        return idx[rows], w


def attribution_requests(summary: TailSummary) -> list[Request]:
    """Scenario weights per (desk, measure, level) from the exact tail summary."""
    n = summary.n_scenarios
    out: list[Request] = []
    for d in range(summary.n_desks):
        for j, alpha in enumerate(summary.levels):
            tail = summary.get(d, j)
            est = tail.estimate
            k = tail_rank(n, alpha)
            denom = n * (1.0 - alpha)
            out.append(Request(d, "ES", alpha, est.es, threshold=(est.var, tail.var_scenario),
                               tail_weight=1.0 / denom,
                               threshold_weight=max(k - alpha * n, 0.0) / denom))
            var, mean_loss = est.var, tail.window_mean
            if abs(mean_loss) > 1e-12 * max(1.0, abs(var)) and (
                np.sign(mean_loss) == np.sign(var)
            ):
                window = np.sort(tail.window)
                wv = np.full(window.size, var / mean_loss / window.size)
                out.append(Request(d, "VaR", alpha, var, window, wv))
            else:
                one = np.array([tail.var_scenario], dtype=np.int64)
                out.append(Request(d, "VaR", alpha, var, one, np.ones(1)))
    return out


def position_chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of ``0 .. n - 1`` of ``size`` positions each (the tiles' columns).

    The last slice takes a lone remaining position with it (it may hold ``size + 1``), so
    no slice has one position unless ``n == 1``: numpy sums a one-column array down its
    rows pairwise but a wider one row after row, and every column sum here must have the
    same bits whatever the chunk size.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    size = max(size, 2)
    cuts = list(range(0, n, size))
    if not cuts:
        return []
    if len(cuts) > 1 and n - cuts[-1] == 1:
        cuts.pop()
    return [slice(a, b) for a, b in zip(cuts, [*cuts[1:], n], strict=True)]


def _column_sums(tile: FloatArray, before: FloatArray | None) -> FloatArray:
    """Sums down the rows of ``tile`` (n, c), continuing the row-by-row sums ``before``.

    With ``c >= 2`` numpy adds the rows one after the other, so summing a column's rows in
    consecutive tiles this way gives the bits of one sum over all of them.
    """
    if before is None:
        return np.asarray(tile.sum(axis=0), dtype=np.float64)
    return np.asarray(np.concatenate([before[None, :], tile]).sum(axis=0), dtype=np.float64)


def scenario_terms(book: ResolvedBook, source: ScenarioSource, smile: str) -> dict[str, Any]:
    """How positions are revalued on ``source``'s blocks, as the Monte Carlo kernel does.

    The blocks' factor columns (``source.model.layout``: spot, vol and rate moves), the smile
    dynamics and the book's surfaces, as keyword arguments of
    :func:`risk_engine.valuation.position_pnl`.
    """
    return {"layout": source.model.layout, "smile": smile, "surfaces": book.surfaces}


def block_contributions(
    book: ResolvedBook, source: ScenarioSource, requests: Sequence[Request], block_id: int,
    pnl: FloatArray, tiling: Tiling | None = None, smile: str = "sticky_strike",
) -> FloatArray:
    """Weighted position losses on one block's requested scenarios, shape (R, P).

    ``pnl`` is the block's desk P&L (n_b, D), from which threshold requests find their
    scenarios. Row ``r`` is non-zero only on the positions of request ``r``'s desk.
    Positions are revalued desk by desk, on the requested rows only, in tiles of at most
    ``tiling.scenarios`` rows by ``tiling.positions`` positions (+1, see
    :func:`position_chunks`; a desk's positions are taken contract by contract, so that a
    tile revalues each contract once); each position's weighted losses are added in
    scenario order, so the result does not depend on the tiling.
    """
    tiling = tiling or Tiling()
    first = block_id * source.block_size
    out = np.zeros((len(requests), book.n_positions))
    wanted = [r.block_weights(-pnl[:, r.desk_index], first) for r in requests]
    if not any(w[0].size for w in wanted):
        return out
    x = source.block(block_id)
    contract = contract_ids(book)
    terms = scenario_terms(book, source, smile)
    for d in range(len(book.desks)):
        mine = [i for i, r in enumerate(requests) if r.desk_index == d and wanted[i][0].size]
        if not mine:
            continue
        rows = np.unique(np.concatenate([wanted[i][0] for i in mine]))
        local = {i: np.searchsorted(rows, wanted[i][0]) for i in mine}
        desk_cols = np.flatnonzero(book.desk_index == d)
        desk_cols = desk_cols[np.argsort(contract[desk_cols], kind="stable")]
        for part in position_chunks(desk_cols.size, tiling.positions):
            cols = desk_cols[part]
            sub = select_positions(book, cols)
            # One column alone is summed pairwise by numpy: never split its rows.
            step = rows.size if cols.size == 1 else tiling.scenarios
            sums: dict[int, FloatArray | None] = dict.fromkeys(mine)
            for cut in position_chunks(rows.size, step):
                r0, r1 = cut.start, cut.stop
                losses = -position_pnl(sub, x[rows[r0:r1] - first], contract[cols],
                                       max_values=tiling.values, **terms)
                for i in mine:
                    at = (local[i] >= r0) & (local[i] < r1)
                    if at.any():
                        w = wanted[i][1][at]
                        tile = np.ascontiguousarray(losses[local[i][at] - r0] * w[:, None])
                        sums[i] = _column_sums(tile, sums[i])
            for i in mine:
                s = sums[i]
                if s is not None:
                    out[i, cols] = s
    return out


#: :func:`sample_statistics` values a desk's positions once, holding the desk's whole block-0
#: P&L matrix (scenarios x positions), when the desk has at most ``ONE_PASS_CHUNKS`` chunks
#: of ``tiling.positions`` positions (1,024 at the default tiling: 82 MB at 10,000
#: scenarios, and at most as much again for the contracts' unit values while it is built,
#: 8 chunks' worth in all). That
#: stays within the memory the two-pass path already takes
#: (``risk_engine.pipeline.ATTRIBUTION_TILE_ARRAYS`` arrays of a chunk's size, checked by
#: ``check_attribution_memory``). A larger desk is valued twice in bounded memory: its P&L
#: in tiles, then its positions a chunk at a time. Both give the same bits.
ONE_PASS_CHUNKS = 4


def _desk_statistics(
    desk: FloatArray, chunks: Iterable[tuple[IntArray, FloatArray]], n_positions: int,
    ks: Sequence[int], width: int,
) -> tuple[FloatArray, FloatArray]:
    """Correlation with ``desk`` and incremental VaR at each rank of ``ks`` per position.

    ``chunks`` yields, for column groups of 2 to ``width`` positions (see
    :func:`position_chunks`), the desk-local indices ``at`` and their P&L, an (n, len(at))
    array whose rows are contiguous (C-contiguous, or a slice of the columns of one).
    Every statistic is per position and every sum over the scenarios runs row after row
    (numpy's sum along the rows of such an array): the result does not depend on how
    positions are grouped. Two scratch arrays of ``n x width`` values are reused from
    chunk to chunk.
    """
    n = desk.size
    dc = desk - desk.mean()
    dd = (dc * dc).sum()
    var_desk = [float(np.partition(-desk, k - 1)[k - 1]) for k in ks]
    kth = sorted({k - 1 for k in ks})
    corr = np.empty(n_positions)
    inc = np.empty((len(ks), n_positions))
    scratch = np.empty((2, n * width))
    minus_desk = (-desk)[:, None]
    for at, pos_pnl in chunks:
        c = at.size
        # Row-major, at least two positions: numpy adds each position's values over the
        # scenarios one after the other, whatever the chunk's width.
        pc = np.subtract(pos_pnl, pos_pnl.mean(axis=0), out=scratch[0, :n * c].reshape(n, c))
        prod = np.multiply(pc, pc, out=scratch[1, :n * c].reshape(n, c))
        denom = np.sqrt(prod.sum(axis=0) * dd)
        cov = np.multiply(pc, dc[:, None], out=prod).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr[at] = np.where(denom > 0, cov / denom, np.nan)
        # Desk loss without each position, a position per (contiguous) row: its order
        # statistics.
        without = scratch[0, :n * c].reshape(c, n)
        np.add(minus_desk, pos_pnl, out=without.T)
        without.partition(kth, axis=1)
        for j, k in enumerate(ks):
            inc[j, at] = var_desk[j] - without[:, k - 1]
    return corr, inc


def sample_statistics(
    book: ResolvedBook, source: ScenarioSource, levels: Sequence[float],
    tiling: Tiling | None = None, smile: str = "sticky_strike",
) -> pd.DataFrame:
    """Incremental VaR and P&L correlation with the desk, on the scenarios of block 0.

    A desk of at most :data:`ONE_PASS_CHUNKS` ``* tiling.positions`` positions is valued
    once (:func:`risk_engine.valuation.position_pnl`) and its P&L is the sum of that matrix
    in the order of :func:`risk_engine.valuation.summed_position_values`
    (:func:`risk_engine.valuation.summed_positions`); a larger desk's P&L is computed first
    (:func:`risk_engine.valuation.summed_position_values`, in tiles), then its positions
    ``tiling.positions`` at a time (:func:`position_chunks`, contract by contract) over the
    whole block. A position's values do not depend on the positions valued with it and
    every statistic is per position, so the result does not depend on the tiling.

    Returns
    -------
    DataFrame with position_id, confidence_level, incremental_var, correlation,
    sample_scenarios (one row per position and level; desk by desk, then level, then the
    desk's positions in book order).
    """
    tiling = tiling or Tiling()
    x = source.block(0)
    n = x.shape[0]
    frames = []
    ids = np.asarray(book.position_id, dtype=object)
    contract = contract_ids(book)
    terms = scenario_terms(book, source, smile)
    per_call = max(n, tiling.values)  # values the pricer sees at once
    for d in range(len(book.desks)):
        desk_cols = np.flatnonzero(book.desk_index == d)
        if desk_cols.size == 0:
            continue
        ks = [tail_rank(n, alpha) for alpha in levels]
        desk_book = select_positions(book, desk_cols)
        desk_contract = contract[desk_cols]
        cuts = position_chunks(desk_cols.size, tiling.positions)
        width = max(cut.stop - cut.start for cut in cuts)
        chunks: Iterable[tuple[IntArray, FloatArray]]
        if desk_cols.size <= ONE_PASS_CHUNKS * tiling.positions:
            values = position_pnl(desk_book, x, desk_contract, max_values=per_call, **terms)
            desk = summed_positions(values)
            # Consecutive positions, read in place (a view whose rows are contiguous).
            chunks = ((np.arange(cut.start, cut.stop), values[:, cut]) for cut in cuts)
        else:
            desk = summed_position_values(desk_book, x, desk_contract, minus_value=True,
                                          max_values=tiling.values, **terms)
            order = np.argsort(desk_contract, kind="stable")  # contracts side by side
            chunks = ((at, position_pnl(select_positions(desk_book, at), x, desk_contract[at],
                                        max_values=per_call, **terms))
                      for at in (order[cut] for cut in cuts))
        corr, inc = _desk_statistics(desk, chunks, desk_cols.size, ks, width)
        for j, alpha in enumerate(levels):
            frames.append(pd.DataFrame({
                "position_id": ids[desk_cols], "confidence_level": float(alpha),
                "incremental_var": inc[j], "correlation": corr,
                "sample_scenarios": np.int64(n)}))
    if not frames:
        return pd.DataFrame(columns=["position_id", "confidence_level", "incremental_var",
                                     "correlation", "sample_scenarios"])
    return pd.concat(frames, ignore_index=True)


def position_tables(
    book: ResolvedBook, requests: Sequence[Request], contributions: FloatArray,
    sample: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the position rows of ``contributions`` and the ``position_risk`` table.

    Parameters
    ----------
    book
        The resolved book.
    requests
        From :func:`attribution_requests`.
    contributions : ndarray, shape (R, P)
        Sum over blocks of :func:`block_contributions`.
    sample
        From :func:`sample_statistics`.
    """
    desks = np.asarray(book.desks, dtype=object)
    ids = np.asarray(book.position_id, dtype=object)
    columns = ["desk", "position_id", "measure", "confidence_level", "contribution", "share",
               "total"]
    frames = []
    per_pos = []
    for r_i, req in enumerate(requests):
        cols = np.flatnonzero(book.desk_index == req.desk_index)
        c = np.asarray(contributions[r_i, cols], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = c / req.total if req.total != 0 else np.full(cols.size, np.nan)
        frames.append(pd.DataFrame({
            "desk": desks[req.desk_index], "position_id": ids[cols], "measure": req.measure,
            "confidence_level": float(req.confidence_level), "contribution": c,
            "share": share, "total": float(req.total)}, columns=columns))
        per_pos.append(pd.DataFrame({"position_id": ids[cols],
                                     "confidence_level": float(req.confidence_level),
                                     "measure": req.measure, "contribution": c}))
    rows = (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=columns))
    value = dict(zip(book.position_id, book.value, strict=True))
    desk_of = dict(zip(book.position_id, desks[book.desk_index], strict=True))
    risk = sample.copy()
    risk["desk"] = risk["position_id"].map(desk_of)
    risk["market_value"] = risk["position_id"].map(value)
    keys = pd.MultiIndex.from_arrays([risk["position_id"], risk["confidence_level"]])
    for measure, column in (("VaR", "var_contribution"), ("ES", "es_contribution")):
        found = [f[f["measure"] == measure] for f in per_pos]
        got = (pd.concat(found, ignore_index=True) if found
               else pd.DataFrame(columns=["position_id", "confidence_level", "contribution"]))
        by_key = pd.Series(got["contribution"].to_numpy(np.float64), index=pd.MultiIndex
                           .from_arrays([got["position_id"], got["confidence_level"]]))
        risk[column] = by_key.reindex(keys).to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        risk["marginal_var"] = np.where(risk["market_value"] != 0,
                                        risk["var_contribution"] / risk["market_value"], np.nan)
    risk["sample_scenarios"] = risk["sample_scenarios"].astype(np.int64)
    return rows, risk


def attribute_in_process(
    book: ResolvedBook, source: ScenarioSource, requests: Sequence[Request],
    levels: Sequence[float], pnl: FloatArray, group: int = SUM_GROUP,
    tiling: Tiling | None = None, smile: str = "sticky_strike",
) -> tuple[FloatArray, pd.DataFrame]:
    """Contributions (R, P) and block-0 statistics in this process (reference for Spark).

    ``pnl`` is the whole (N, D) desk P&L matrix; blocks are added in order within groups of
    ``group`` consecutive blocks, then the groups in order. ``tiling`` bounds the memory of
    each block's revaluation (:class:`Tiling`); it does not change the result.
    """
    total = np.zeros((len(requests), book.n_positions))
    size = source.block_size
    for start in range(0, source.n_blocks, group):
        part = np.zeros_like(total)
        for b in range(start, min(start + group, source.n_blocks)):
            part += block_contributions(book, source, requests, b,
                                        pnl[b * size:(b + 1) * size], tiling, smile)
        total += part
    return total, sample_statistics(book, source, levels, tiling, smile)
