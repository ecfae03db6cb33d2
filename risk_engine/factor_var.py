"""VaR and ES per risk factor class: the run's scenarios with only spot, vol or rates moving.

For each factor class present in the scenario blocks (``spot``, ``vol``, ``rate``; see
:mod:`risk_engine.scenarios.factors`), every block is revalued with the columns of the other
classes held at zero (today's spots, implied vols or rates), on the same ``(seed, block)``
draws as the run. The tails of every desk and the firm under each class come from the exact
passes of :mod:`risk_engine.tails` run through the engine's ``fold`` (each pass regenerates
its blocks), so only histograms, band losses and sums are gathered, and the in-process and
Spark engines give the same bits. The ``all`` rows are the run's own tails, i.e. equal to
``risk_measures``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.book import ResolvedBook
from risk_engine.simulation import SimulationSpec, factor_classes_of, simulate_block_by_class
from risk_engine.tails import (
    Band,
    BinSpec,
    TailSummary,
    block_histograms,
    block_losses,
    block_partials,
    combine,
    find_bands,
    merge_histograms,
)
from risk_engine.types import FloatArray

T = TypeVar("T")
#: ``blocks.fold`` of :class:`risk_engine.engine.ScenarioBlocks`.
Fold = Callable[[Callable[[int], Any], Callable[[Any, Any], Any], int], Any]


def class_losses(spec: SimulationSpec, block_id: int, classes: tuple[str, ...]) -> FloatArray:
    """Loss series of one block by class, shape (n_b, K (D + 1)).

    Class ``i`` holds columns ``i (D + 1) .. i (D + 1) + D``: its desks' losses, then its
    firm loss (as :func:`risk_engine.tails.block_losses`).
    """
    first = block_id * spec.source.block_size
    return np.hstack([block_losses(p, first)
                      for p in simulate_block_by_class(spec, block_id, classes)])


@dataclass(frozen=True)
class _Histograms:
    """Per-block first and refinement passes (picklable, shipped to executors)."""

    spec: SimulationSpec
    classes: tuple[str, ...]
    specs: tuple[BinSpec, ...]

    def __call__(self, block_id: int) -> pd.DataFrame:
        return block_histograms(class_losses(self.spec, block_id, self.classes), self.specs)


@dataclass(frozen=True)
class _Partials:
    """Per-block band pass (picklable)."""

    spec: SimulationSpec
    classes: tuple[str, ...]
    bands: tuple[Band, ...]
    n_series: int

    def __call__(self, block_id: int) -> pd.DataFrame:
        losses = class_losses(self.spec, block_id, self.classes)
        return block_partials(losses, block_id, block_id * self.spec.source.block_size,
                              self.bands, self.n_series)


def _merge_histograms(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return merge_histograms([a, b])


def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([a, b], ignore_index=True)


def class_tails(spec: SimulationSpec, fold: Fold, levels: Sequence[float],
                classes: tuple[str, ...]) -> TailSummary:
    """Exact VaR and ES of every desk and the firm with only each class moving.

    Series ``i (D + 1) + d`` is desk ``d`` under ``classes[i]``, ``i (D + 1) + D`` its firm
    (no Euler contributions). ``fold`` is the engine's
    :meth:`risk_engine.engine.ScenarioBlocks.fold`.
    """
    n_desks = int(spec.plan.n_desks)
    n_series = len(classes) * (n_desks + 1)
    n, n_blocks = spec.source.n_scenarios, spec.source.n_blocks

    def histograms(specs: Sequence[BinSpec]) -> pd.DataFrame:
        # Whole histograms, never lumped: a lump reaching a band would cost another pass,
        # i.e. revaluing every block again, far more than binning every loss.
        whole = tuple(dataclasses.replace(b, lump_below=None) for b in specs)
        out: pd.DataFrame = fold(_Histograms(spec, classes, whole), _merge_histograms,
                                 n_blocks)
        return merge_histograms([out])

    bands, passes = find_bands(n, n_series, levels, histograms)
    partials: pd.DataFrame = fold(_Partials(spec, classes, tuple(bands), n_series), _concat,
                                  n_blocks)
    tails = combine(n, n_series, levels, bands, partials)
    return TailSummary(n, n_series, tuple(levels), tuple(tails), passes,
                       sum(b.count for b in bands))


def risk_factor_var(spec: SimulationSpec, fold: Fold, tails: TailSummary, book: ResolvedBook,
                    horizon_days: int) -> pd.DataFrame | None:
    """The ``risk_factor_var`` table (without run_id and as_of_date), or None.

    None when the scenario blocks carry spot returns only (nothing to split).

    Parameters
    ----------
    spec
        The run's simulation spec (its plan revalues every factor class).
    fold
        The engine's ``blocks.fold``.
    tails
        The run's tail summary (the ``all`` rows).
    book
        The resolved book (desk names).
    horizon_days
        The VaR horizon, for the table.
    """
    classes = factor_classes_of(spec.plan)
    if len(classes) < 2:
        return None
    levels = tails.levels
    by_class = class_tails(spec, fold, levels, classes)
    n_d = len(book.desks)
    rows = []
    scopes = [("desk", desk, d) for d, desk in enumerate(book.desks)] + [("firm", None, n_d)]
    for cls_i, cls in enumerate((*classes, "all")):
        for scope, desk, d in scopes:
            for j in range(len(levels)):
                if cls == "all":
                    est = tails.get(d, j).estimate
                else:
                    est = by_class.get(cls_i * (n_d + 1) + d, j).estimate
                for measure, value, se in (("VaR", est.var, est.var_std_error),
                                           ("ES", est.es, est.es_std_error)):
                    rows.append({
                        "scope": scope, "desk": desk, "measure": measure,
                        "confidence_level": est.confidence_level, "factor_class": cls,
                        "horizon_days": horizon_days, "value": value, "std_error": se,
                        "n_scenarios": est.n_scenarios,
                    })
    dtypes = schemas.RISK_FACTOR_VAR.pandas_dtypes()
    return pd.DataFrame(rows, columns=list(dtypes)).astype(dtypes)
