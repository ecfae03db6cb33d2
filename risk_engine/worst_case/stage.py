"""The worst-case stage of the nightly run: every desk's WCVaR, WCPVaR and WCQVaR.

Each desk's positions are aggregated into instruments (a stock, or an option by type,
underlying, strike and expiry). Underlying moments are the exact GBM moments of simple
returns over the horizon (``moments: exact``) or sample moments. Instrument moments (for
WCVaR and the return floor) are exact where they exist (a desk of stocks only, with
``moments: exact``: the underlyings' GBM moments) and otherwise sample moments over every
scenario of the run (or the first ``moment_blocks`` blocks, if set), accumulated block by
block by the engine (:meth:`risk_engine.engine.ScenarioBlocks.fold`) from the same
``(seed, block)`` scenarios as the Monte Carlo stage. Each row says which in
``instrument_moments``. Options worth less than ``min_premium`` of their spot are left out
of the worst-case models (their simple returns are unbounded), with a warning.

A desk with more instruments than ``max_instruments`` gets no instrument moments (their
covariance has instruments squared entries): the moment pass sums, tile by tile, its
desk P&L and its instrument buckets' returns instead, and
:mod:`risk_engine.worst_case.reduced` computes its figures from those (WCVaR of the
current book exactly from the desk P&L's mean and variance; the minimizations over the
buckets, said in each row's message).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from risk_engine.book import ResolvedBook
from risk_engine.sample_moments import DeskSums, MomentPass, ReducedDesk, merge_desk_sums
from risk_engine.scenarios import ScenarioModel, ScenarioSource
from risk_engine.settings import FLATTEN, require
from risk_engine.types import CALL, EQUITY
from risk_engine.worst_case.containers import DeskInstruments, ReturnMoments, WorstCaseSettings
from risk_engine.worst_case.desk import evaluate_desk, reports_to_frames
from risk_engine.worst_case.moments import gbm_simple_return_moments
from risk_engine.worst_case.reduced import (
    InstrumentBuckets,
    ReducedMoments,
    bucket_instruments,
    exact_reduced_moments,
)

#: Default of ``worst_case.max_instruments``: the largest desk (in instruments) whose
#: moments and minimizations stay in instrument space. Measured on the demo universe
#: (3 levels, all three models, a shared 2-core machine): 300 instruments 0.3 s, 600
#: instruments 4 s and 1.1 GB process peak, 1,000 instruments 35 s and 2.5 GB (the WCVaR
#: minimization's dense factor as a cvxpy parameter); the demo book's desks have at most
#: 313, and a large desk's buckets number at most 8 per underlying (350 on the demo's 50).
DEFAULT_MAX_INSTRUMENTS: int = 500


@dataclass(frozen=True)
class WorstCaseStageSettings:
    """The ``worst_case`` config section: the stage switches plus the model settings.

    In YAML the model settings sit flat beside the switches (``worst_case.solver``, not
    ``worst_case.models.solver``); ``worst_case.models`` is the list of model names.

    Attributes
    ----------
    enabled : bool
        Run the stage.
    moment_blocks : int or None
        Scenario blocks behind the sample moments, >= 1; None (the default): every block
        of the run.
    min_premium : float
        Options worth less than this fraction of their spot are left out, in [0, 1).
    max_instruments : int
        Largest desk, in instruments, whose moments and minimizations are computed over
        instruments, >= 1. A larger desk's figures come from its desk P&L and its
        instrument buckets (:mod:`risk_engine.worst_case.reduced`); the default
        (:data:`DEFAULT_MAX_INSTRUMENTS`) solves a desk in seconds.
    models : WorstCaseSettings
        The model settings.
    """

    enabled: bool = True
    moment_blocks: int | None = None
    min_premium: float = 1e-6
    max_instruments: int = DEFAULT_MAX_INSTRUMENTS
    models: WorstCaseSettings = dataclasses.field(default_factory=WorstCaseSettings,
                                                  metadata={FLATTEN: True})

    def __post_init__(self) -> None:
        require(self.moment_blocks is None
                or (isinstance(self.moment_blocks, int) and self.moment_blocks >= 1),
                "moment_blocks", self.moment_blocks, "an integer >= 1, or null for all blocks")
        require(0.0 <= self.min_premium < 1.0, "min_premium", self.min_premium,
                "a fraction of spot in [0, 1)")
        require(isinstance(self.max_instruments, int) and not isinstance(
            self.max_instruments, bool) and self.max_instruments >= 1, "max_instruments",
                self.max_instruments, "an integer >= 1")


def instrument_ids(book: ResolvedBook) -> np.ndarray:
    """Instrument of each position: the underlying for stocks, else ``U C|P K YYYY-MM-DD``."""
    names = np.asarray(book.underlyings, dtype=object)[book.underlying_index]
    out = names.copy()
    for p in np.flatnonzero(book.kind != EQUITY):
        flag = "C" if book.kind[p] == CALL else "P"
        out[p] = f"{names[p]} {flag} {book.strike[p]:g} {book.expiry_date[p]}"
    return out


def desk_instruments(book: ResolvedBook, desk: str, min_premium: float,
                     ids: np.ndarray | None = None
                     ) -> tuple[DeskInstruments, np.ndarray, int]:
    """Aggregate ``desk``'s positions into instruments.

    ``ids`` are :func:`instrument_ids` of the book, if already computed.

    Returns
    -------
    instruments, representative, n_dropped
        The desk's instruments, one position index per instrument (its terms), and how many
        positions were left out for a premium below ``min_premium`` x spot.
    """
    ids = instrument_ids(book) if ids is None else ids
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


@dataclass(frozen=True)
class DeskSet:
    """A desk's instruments, and which positions and underlyings stand for them."""

    instruments: DeskInstruments
    representative: np.ndarray  # one position index per instrument (its terms)
    underlying_index: np.ndarray  # the desk's underlyings, indices into book.underlyings
    dropped: int  # option positions left out for a premium below min_premium x spot

    @property
    def exact_instruments(self) -> bool:
        """Whether every instrument is a stock (its moments are its underlying's)."""
        return bool(np.all(self.instruments.kind == EQUITY))


def desk_sets(book: ResolvedBook, min_premium: float) -> list[DeskSet]:
    """Every desk's instruments, in ``book.desks`` order."""
    out = []
    ids = instrument_ids(book)
    for desk in book.desks:
        inst, rep, dropped = desk_instruments(book, desk, min_premium, ids)
        und = np.array([book.underlyings.index(u) for u in inst.underlyings], dtype=np.int64)
        out.append(DeskSet(inst, rep, und, dropped))
    return out


#: An engine's fold: (per block, merge, number of blocks) -> merged result.
Fold = Callable[[Callable[[int], list[DeskSums]],
                 Callable[[list[DeskSums], list[DeskSums]], list[DeskSums]], int],
                list[DeskSums]]


def is_large(ds: DeskSet, settings: WorstCaseStageSettings) -> bool:
    """Whether the desk has more instruments than ``worst_case.max_instruments``."""
    return ds.instruments.n_instruments > settings.max_instruments


def desk_buckets(ds: DeskSet, settings: WorstCaseStageSettings) -> InstrumentBuckets:
    """The instrument buckets of a large desk (:func:`bucket_instruments`)."""
    return bucket_instruments(ds.instruments, settings.max_instruments)


def sample_moment_sums(
    book: ResolvedBook, source: ScenarioSource, sets: list[DeskSet],
    settings: WorstCaseStageSettings, fold: Fold,
) -> list[DeskSums | None]:
    """Sample moment sums of the desks that need them (None for the others).

    A desk needs them unless its moments are all exact (stocks only, ``moments: exact``).
    ``fold`` is the engine's :meth:`risk_engine.engine.ScenarioBlocks.fold`: it runs
    :meth:`MomentPass.block` on every block used and merges the sums in block order.
    A desk above ``max_instruments`` gets (underlyings, buckets, desk P&L) sums
    (:class:`ReducedDesk`), the others (underlyings, instruments) sums.
    """
    exact = settings.models.moments == "exact"
    needed = [i for i, d in enumerate(sets) if not (exact and d.exact_instruments)]
    dense = [i for i in needed if not is_large(sets[i], settings)]
    large = [i for i in needed if is_large(sets[i], settings)]
    out: list[DeskSums | None] = [None] * len(sets)
    if needed:
        n_blocks = source.n_blocks if settings.moment_blocks is None else min(
            settings.moment_blocks, source.n_blocks)
        reduced = []
        for i in large:
            ds = sets[i]
            buckets = desk_buckets(ds, settings)
            held = buckets.bucket_of >= 0  # zero exposure: no P&L, in no bucket
            reduced.append(ReducedDesk.of(
                book, ds.representative[held], ds.instruments.quantity[held],
                buckets.bucket_of[held], buckets.exposure, ds.underlying_index,
                with_buckets=buckets.n_buckets <= settings.max_instruments))
        moment_pass = MomentPass.of(
            book, source, [(sets[i].representative, sets[i].underlying_index) for i in dense],
            tuple(reduced))
        for i, sums in zip(dense + large, fold(moment_pass.block, merge_desk_sums, n_blocks),
                           strict=True):
            out[i] = sums
    return out


def _reduced_moments(ds: DeskSet, settings: WorstCaseStageSettings, und_m: ReturnMoments,
                     desk_sums: DeskSums | None) -> ReducedMoments:
    """The reduced moments of a large desk: exact (stocks only) or from its sums."""
    buckets = desk_buckets(ds, settings)
    if desk_sums is None:
        return exact_reduced_moments(ds.instruments, buckets, und_m, settings.max_instruments)
    _, bucket_sums, pnl_sums = desk_sums
    pnl = pnl_sums.to_moments()
    bucket_m = (bucket_sums.to_moments(labels=buckets.labels)
                if buckets.n_buckets <= settings.max_instruments else None)
    return ReducedMoments(buckets, bucket_m, float(pnl.mean[0]), float(pnl.cov[0, 0]),
                          f"sample of {pnl_sums.count} scenarios", settings.max_instruments)


def worst_case_tables(
    book: ResolvedBook, model: ScenarioModel, source: ScenarioSource,
    risk_measures: pd.DataFrame, settings: WorstCaseStageSettings, *, horizon_days: int,
    sets: list[DeskSet], sums: list[DeskSums | None],
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``worst_case_var`` and ``optimal_allocations`` rows of every desk, and warnings.

    ``sets`` are :func:`desk_sets` of the book; ``sums`` their sample moment sums
    (:func:`sample_moment_sums`).
    ``worst_case_var`` is complete (but for ``run_id``): it also carries the run's
    ``horizon_days``, ``mc_var``, the Monte Carlo VaR of the same desk and level from
    ``risk_measures`` (so the figures can be compared row by row), and
    ``instrument_moments``, the source of the instruments' moments.
    """
    reports, warnings, sources = [], [], {}
    h = source.horizon_years
    for ds, desk_sums in zip(sets, sums, strict=True):
        inst = ds.instruments
        if ds.dropped:
            warnings.append(f"worst_case: desk {inst.desk}: {ds.dropped} option position(s) "
                            f"worth less than {settings.min_premium:g} x spot left out")
        if settings.models.moments == "exact":
            sub = model.subset(inst.underlyings)
            mean, cov = gbm_simple_return_moments(sub.mu, sub.cov, h)
            und_m = ReturnMoments(mean, cov, labels=inst.underlyings)
        else:
            assert desk_sums is not None
            und_m = desk_sums[0].to_moments(labels=inst.underlyings)
        if is_large(ds, settings):
            red = _reduced_moments(ds, settings, und_m, desk_sums)
            sources[inst.desk] = f"{red.source}: desk P&L and instrument buckets"
            reports.append(evaluate_desk(inst, und_m, None, h, settings.models, reduced=red))
            continue
        if desk_sums is None:  # stocks only, exact moments
            ui = inst.underlying_index
            inst_m = ReturnMoments(und_m.mean[ui], und_m.cov[np.ix_(ui, ui)],
                                   labels=inst.instrument_ids)
            sources[inst.desk] = "exact"
        else:
            inst_m = desk_sums[1].to_moments(labels=inst.instrument_ids)
            sources[inst.desk] = f"sample of {desk_sums[1].count} scenarios"
        reports.append(evaluate_desk(inst, und_m, inst_m, h, settings.models))
    wc, alloc = reports_to_frames(reports)
    mc = risk_measures[(risk_measures["scope"] == "desk") & (risk_measures["measure"] == "VaR")]
    mc_var = mc.set_index(["desk", "confidence_level"])["value"]
    keys = list(zip(wc["desk"], wc["confidence_level"], strict=True))
    wc["mc_var"] = [float(mc_var.get(k, np.nan)) for k in keys]
    wc["horizon_days"] = np.int32(horizon_days)
    wc["instrument_moments"] = wc["desk"].map(sources)
    bad = wc[~wc["status"].isin(["optimal", "not_applicable"])]
    for row in bad.itertuples():
        warnings.append(f"worst_case: desk {row.desk} {row.model} {row.portfolio} "
                        f"{row.confidence_level:g}: {row.status} ({row.message})")
    return wc, alloc, warnings
