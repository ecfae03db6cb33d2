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
is kept beyond one block's requested rows.

Incremental VaR (desk VaR minus the desk's VaR without the position) and the correlation of
each position's P&L with its desk's are computed exactly on the scenarios of block 0 (the
first ``block_size`` scenarios), a fixed, seeded sample (:func:`sample_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.measures import tail_rank
from risk_engine.scenarios import ScenarioSource
from risk_engine.tails import TailSummary
from risk_engine.types import FloatArray, IntArray
from risk_engine.valuation import position_values

#: Consecutive blocks whose contributions are added up together before the groups are
#: added: at 10 million scenarios in blocks of 10,000 the driver receives 63 rows, not 1,000.
SUM_GROUP = 16


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


def block_contributions(
    book: ResolvedBook, source: ScenarioSource, requests: Sequence[Request], block_id: int,
    pnl: FloatArray,
) -> FloatArray:
    """Weighted position losses on one block's requested scenarios, shape (R, P).

    ``pnl`` is the block's desk P&L (n_b, D), from which threshold requests find their
    scenarios. Row ``r`` is non-zero only on the positions of request ``r``'s desk.
    Positions are revalued desk by desk, on the requested rows only.
    """
    first = block_id * source.block_size
    out = np.zeros((len(requests), book.n_positions))
    wanted = [r.block_weights(-pnl[:, r.desk_index], first) for r in requests]
    if not any(w[0].size for w in wanted):
        return out
    x = source.block(block_id)
    for d in range(len(book.desks)):
        mine = [i for i, r in enumerate(requests) if r.desk_index == d and wanted[i][0].size]
        if not mine:
            continue
        rows = np.unique(np.concatenate([wanted[i][0] for i in mine]))
        cols = np.flatnonzero(book.desk_index == d)
        sub = select_positions(book, cols)
        losses = -(position_values(sub, x[rows - first]) - sub.value)  # (rows, Pd)
        for i in mine:
            sel, w = wanted[i]
            local = np.searchsorted(rows, sel)
            out[i, cols] = (losses[local] * w[:, None]).sum(axis=0)
    return out


def sample_statistics(
    book: ResolvedBook, source: ScenarioSource, levels: Sequence[float]
) -> pd.DataFrame:
    """Incremental VaR and P&L correlation with the desk, on the scenarios of block 0.

    Returns
    -------
    DataFrame with position_id, confidence_level, incremental_var, correlation,
    sample_scenarios (one row per position and level).
    """
    x = source.block(0)
    n = x.shape[0]
    rows = []
    for d in range(len(book.desks)):
        cols = np.flatnonzero(book.desk_index == d)
        sub = select_positions(book, cols)
        pos_pnl = position_values(sub, x) - sub.value  # (n, Pd)
        desk = pos_pnl.sum(axis=1)
        without = (-desk)[:, None] + pos_pnl  # desk loss without each position
        pc = pos_pnl - pos_pnl.mean(axis=0)
        dc = desk - desk.mean()
        denom = np.sqrt((pc * pc).sum(axis=0) * (dc * dc).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(denom > 0, (pc * dc[:, None]).sum(axis=0) / denom, np.nan)
        for alpha in levels:
            k = tail_rank(n, alpha)
            var_desk = float(np.partition(-desk, k - 1)[k - 1])
            inc = var_desk - np.partition(without, k - 1, axis=0)[k - 1]
            for j, p in enumerate(cols):
                rows.append({"position_id": book.position_id[p], "confidence_level": alpha,
                             "incremental_var": float(inc[j]), "correlation": float(corr[j]),
                             "sample_scenarios": n})
    return pd.DataFrame(rows)


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
    contrib_rows = []
    per_pos: dict[tuple[str, float], dict[str, float]] = {}
    for r_i, req in enumerate(requests):
        cols = np.flatnonzero(book.desk_index == req.desk_index)
        for p in cols:
            c = float(contributions[r_i, p])
            contrib_rows.append({
                "desk": desks[req.desk_index], "position_id": book.position_id[p],
                "measure": req.measure, "confidence_level": req.confidence_level,
                "contribution": c, "share": c / req.total if req.total != 0 else np.nan,
                "total": req.total,
            })
            key = (book.position_id[p], req.confidence_level)
            per_pos.setdefault(key, {})[req.measure] = c
    value = dict(zip(book.position_id, book.value, strict=True))
    desk_of = dict(zip(book.position_id, desks[book.desk_index], strict=True))
    risk = sample.copy()
    risk["desk"] = risk["position_id"].map(desk_of)
    risk["market_value"] = risk["position_id"].map(value)
    keys = list(zip(risk["position_id"], risk["confidence_level"], strict=True))
    risk["var_contribution"] = [per_pos.get(k, {}).get("VaR", np.nan) for k in keys]
    risk["es_contribution"] = [per_pos.get(k, {}).get("ES", np.nan) for k in keys]
    with np.errstate(invalid="ignore", divide="ignore"):
        risk["marginal_var"] = np.where(risk["market_value"] != 0,
                                        risk["var_contribution"] / risk["market_value"], np.nan)
    risk["sample_scenarios"] = risk["sample_scenarios"].astype(np.int64)
    return pd.DataFrame(contrib_rows), risk


def attribute_in_process(
    book: ResolvedBook, source: ScenarioSource, requests: Sequence[Request],
    levels: Sequence[float], pnl: FloatArray, group: int = SUM_GROUP,
) -> tuple[FloatArray, pd.DataFrame]:
    """Contributions (R, P) and block-0 statistics in this process (reference for Spark).

    ``pnl`` is the whole (N, D) desk P&L matrix; blocks are added in order within groups of
    ``group`` consecutive blocks, then the groups in order.
    """
    total = np.zeros((len(requests), book.n_positions))
    size = source.block_size
    for start in range(0, source.n_blocks, group):
        part = np.zeros_like(total)
        for b in range(start, min(start + group, source.n_blocks)):
            part += block_contributions(book, source, requests, b, pnl[b * size:(b + 1) * size])
        total += part
    return total, sample_statistics(book, source, levels)
