"""The worst-case stage of the nightly run: every desk's WCVaR, WCPVaR and WCQVaR.

Each desk's positions are aggregated into instruments (a stock, or an option by type,
underlying, strike and expiry). Underlying moments are the exact GBM moments of simple
returns over the horizon (``moments: exact``) or sample moments; instrument moments (for
WCVaR and the return floor) are always sample moments, from the first ``moment_blocks``
scenario blocks regenerated from the run's seed, exactly the Monte Carlo stage's
scenarios. Options worth less than ``min_premium`` of their spot are left out of the
worst-case models (their simple returns are unbounded), with a warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.scenarios import ScenarioModel, ScenarioSource
from risk_engine.settings import FLATTEN, require
from risk_engine.types import CALL, EQUITY
from risk_engine.valuation import position_values
from risk_engine.worst_case.containers import DeskInstruments, ReturnMoments, WorstCaseSettings
from risk_engine.worst_case.desk import evaluate_desk, reports_to_frames
from risk_engine.worst_case.moments import MomentSums, gbm_simple_return_moments


@dataclass(frozen=True)
class WorstCaseStageSettings:
    """The ``worst_case`` config section: the stage switches plus the model settings.

    In YAML the model settings sit flat beside the switches (``worst_case.solver``, not
    ``worst_case.models.solver``); ``worst_case.models`` is the list of model names.

    Attributes
    ----------
    enabled : bool
        Run the stage.
    moment_blocks : int
        Scenario blocks behind the instruments' sample moments, >= 1.
    min_premium : float
        Options worth less than this fraction of their spot are left out, in [0, 1).
    models : WorstCaseSettings
        The model settings.
    """

    enabled: bool = True
    moment_blocks: int = 1
    min_premium: float = 1e-6
    models: WorstCaseSettings = dataclasses.field(default_factory=WorstCaseSettings,
                                                  metadata={FLATTEN: True})

    def __post_init__(self) -> None:
        require(isinstance(self.moment_blocks, int) and self.moment_blocks >= 1,
                "moment_blocks", self.moment_blocks, "an integer >= 1")
        require(0.0 <= self.min_premium < 1.0, "min_premium", self.min_premium,
                "a fraction of spot in [0, 1)")


def instrument_ids(book: ResolvedBook) -> np.ndarray:
    """Instrument of each position: the underlying for stocks, else ``U C|P K YYYY-MM-DD``."""
    names = np.asarray(book.underlyings, dtype=object)[book.underlying_index]
    out = names.copy()
    for p in np.flatnonzero(book.kind != EQUITY):
        flag = "C" if book.kind[p] == CALL else "P"
        out[p] = f"{names[p]} {flag} {book.strike[p]:g} {book.expiry_date[p]}"
    return out


def desk_instruments(book: ResolvedBook, desk: str, min_premium: float
                     ) -> tuple[DeskInstruments, np.ndarray, int]:
    """Aggregate ``desk``'s positions into instruments.

    Returns
    -------
    instruments, representative, n_dropped
        The desk's instruments, one position index per instrument (its terms), and how many
        positions were left out for a premium below ``min_premium`` x spot.
    """
    ids = instrument_ids(book)
    m = book.desk_mask(desk)
    spot = book.spot[book.underlying_index]
    worthless = (book.kind != EQUITY) & (book.unit_value < min_premium * spot)
    keep = np.flatnonzero(m & ~worthless)
    frame = pd.DataFrame({"id": ids[keep], "p": keep, "q": book.quantity[keep]})
    grouped = frame.groupby("id", sort=True).agg(p=("p", "first"), q=("q", "sum"))
    rep = grouped["p"].to_numpy(np.int64)
    und = sorted({int(u) for u in book.underlying_index[rep]})
    local = {u: i for i, u in enumerate(und)}
    inst = DeskInstruments(
        desk=desk,
        underlyings=tuple(book.underlyings[u] for u in und),
        spots=book.spot[und],
        instrument_ids=tuple(grouped.index),
        kind=book.kind[rep].astype(np.int8),
        underlying_index=np.array([local[int(u)] for u in book.underlying_index[rep]],
                                  dtype=np.int64),
        strike=book.strike[rep],
        unit_value=book.unit_value[rep],
        quantity=grouped["q"].to_numpy(float),
        tau_after_horizon=book.tau_h[rep],
        delta=book.delta[rep], gamma=book.gamma[rep], theta=book.theta[rep],
    )
    return inst, rep, int((m & worthless).sum())


def _sample_sums(book: ResolvedBook, source: ScenarioSource, rep: np.ndarray,
                 und: list[int], blocks: int) -> tuple[MomentSums, MomentSums]:
    """Sample moment sums of the underlyings' and the instruments' simple returns."""
    unit_book = dataclasses.replace(select_positions(book, rep), quantity=np.ones(rep.size))
    und_sums = inst_sums = None
    for b in range(min(blocks, source.n_blocks)):
        x = source.block(b)
        u = MomentSums.from_returns(np.expm1(x[:, und]))
        i = MomentSums.from_values(book.unit_value[rep], position_values(unit_book, x))
        und_sums = u if und_sums is None else und_sums.merge(u)
        inst_sums = i if inst_sums is None else inst_sums.merge(i)
    assert und_sums is not None and inst_sums is not None
    return und_sums, inst_sums


def worst_case_tables(
    book: ResolvedBook, model: ScenarioModel, source: ScenarioSource,
    risk_measures: pd.DataFrame, settings: WorstCaseStageSettings, *, horizon_days: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``worst_case_var`` and ``optimal_allocations`` rows of every desk, and warnings.

    ``worst_case_var`` is complete (but for ``run_id``): it also carries the run's
    ``horizon_days`` and ``mc_var``, the Monte Carlo VaR of the same desk and level from
    ``risk_measures``, so the figures can be compared row by row.
    """
    reports, warnings = [], []
    h = source.horizon_years
    for desk in book.desks:
        inst, rep, dropped = desk_instruments(book, desk, settings.min_premium)
        if dropped:
            warnings.append(f"worst_case: desk {desk}: {dropped} option position(s) worth less "
                            f"than {settings.min_premium:g} x spot left out")
        und = [book.underlyings.index(u) for u in inst.underlyings]
        und_sums, inst_sums = _sample_sums(book, source, rep, und, settings.moment_blocks)
        if settings.models.moments == "exact":
            sub = model.subset(inst.underlyings)
            mean, cov = gbm_simple_return_moments(sub.mu, sub.cov, h)
            und_m = ReturnMoments(mean, cov, labels=inst.underlyings)
        else:
            und_m = und_sums.to_moments(labels=inst.underlyings)
        inst_m = inst_sums.to_moments(labels=inst.instrument_ids)
        reports.append(evaluate_desk(inst, und_m, inst_m, h, settings.models))
    wc, alloc = reports_to_frames(reports)
    mc = risk_measures[(risk_measures["scope"] == "desk") & (risk_measures["measure"] == "VaR")]
    mc_var = mc.set_index(["desk", "confidence_level"])["value"]
    keys = list(zip(wc["desk"], wc["confidence_level"], strict=True))
    wc["mc_var"] = [float(mc_var.get(k, np.nan)) for k in keys]
    wc["horizon_days"] = np.int32(horizon_days)
    bad = wc[~wc["status"].isin(["optimal", "not_applicable"])]
    for row in bad.itertuples():
        warnings.append(f"worst_case: desk {row.desk} {row.model} {row.portfolio} "
                        f"{row.confidence_level:g}: {row.status} ({row.message})")
    return wc, alloc, warnings
