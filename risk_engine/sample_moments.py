"""Sample moments of simple returns accumulated scenario block by scenario block.

The executor side of the worst-case stage's moments: :class:`MomentPass` revalues, for one
block of scenarios regenerated from ``(seed, block)``, one unit of each desk's
instruments, and :class:`MomentSums` holds mergeable sufficient statistics, so the engine
can merge blocks computed apart in a fixed order. Imports no solver (executors have none).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from risk_engine.book import ResolvedBook, select_positions
from risk_engine.revaluation import RevaluationPlan, desk_pnl, plan_revaluation
from risk_engine.scenarios import ScenarioSource
from risk_engine.types import FloatArray, IntArray
from risk_engine.valuation import position_values

if TYPE_CHECKING:
    from risk_engine.worst_case.containers import ReturnMoments


@dataclass(frozen=True)
class MomentSums:
    """Mergeable sufficient statistics of simple returns (count, mean, co-moment).

    Lets scenario blocks computed apart (e.g. one per Spark task) be combined
    exactly into sample moments, with the pairwise update of Chan, Golub and
    LeVeque, which stays accurate where raw sums of squares would cancel.

    Attributes
    ----------
    count : int
        Number of scenarios.
    mean : ndarray, shape (d,)
        Mean simple return.
    comoment : ndarray, shape (d, d)
        Sum over scenarios of ``(R - mean)(R - mean)'``.
    """

    count: int
    mean: FloatArray
    comoment: FloatArray

    @classmethod
    def from_values(cls, value_today: npt.ArrayLike, value_horizon: npt.ArrayLike) -> MomentSums:
        """Statistics of ``value_horizon / value_today - 1`` for one block.

        Parameters
        ----------
        value_today : array_like, shape (d,)
            Value per unit today (spot or premium), > 0.
        value_horizon : array_like, shape (n, d)
            Value per unit at the horizon in each of ``n`` scenarios.
        """
        today = np.asarray(value_today, dtype=np.float64)
        later = np.asarray(value_horizon, dtype=np.float64)
        if today.ndim != 1 or later.ndim != 2 or later.shape[1] != today.size:
            raise ValueError(
                "value_today must be (d,) and value_horizon (n, d); "
                f"got {today.shape}, {later.shape}"
            )
        if not np.all(np.isfinite(today) & (today > 0)):
            raise ValueError(
                "value_today must be finite and > 0 (simple returns are undefined otherwise)"
            )
        if not np.all(np.isfinite(later)):
            raise ValueError("value_horizon contains non-finite values")
        return cls.from_returns(later / today - 1.0)

    @classmethod
    def from_returns(cls, returns: npt.ArrayLike) -> MomentSums:
        """Statistics of simple returns given directly, shape (n, d).

        Useful when the revaluation yields P&L per instrument: pass
        ``pnl_per_unit / unit_value_today``.
        """
        r = np.asarray(returns, dtype=np.float64)
        if r.ndim != 2:
            raise ValueError(f"returns must be (n, d), got shape {r.shape}")
        if not np.all(np.isfinite(r)):
            raise ValueError("returns contain non-finite values")
        mean = r.mean(axis=0) if r.shape[0] else np.zeros(r.shape[1])
        centred = r - mean
        return cls(int(r.shape[0]), mean, centred.T @ centred)

    def merge(self, other: MomentSums) -> MomentSums:
        """Statistics of the union of two disjoint scenario sets."""
        if self.mean.shape != other.mean.shape:
            raise ValueError("MomentSums.merge: dimensions differ")
        n = self.count + other.count
        if n == 0:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        comoment = (
            self.comoment + other.comoment + np.outer(delta, delta) * (self.count * other.count / n)
        )
        return MomentSums(n, mean, comoment)

    def to_moments(self, labels: tuple[str, ...] | None = None) -> ReturnMoments:
        """Sample mean and unbiased sample covariance (divisor ``n - 1``)."""
        if self.count < 2:
            raise ValueError(f"need at least 2 scenarios for a covariance, have {self.count}")
        from risk_engine.worst_case.containers import ReturnMoments  # driver side only

        return ReturnMoments(self.mean, self.comoment / (self.count - 1), labels, self.count)


#: Sample moment sums of one desk: (underlyings' simple returns, instruments' simple returns)
#: for a desk in instrument space; (underlyings' simple returns, buckets' simple returns,
#: desk P&L) for a desk above the instrument cap (:class:`ReducedDesk`).
DeskSums = tuple[MomentSums, ...]

@dataclass(frozen=True)
class ReducedDesk:
    """A desk above the instrument cap, as the moment pass sees it (shipped to executors).

    Its instruments are revalued by the Monte Carlo kernel
    (:func:`risk_engine.revaluation.desk_pnl`, exact Black-Scholes streamed in tiles) with
    each bucket in the role of a desk, so no (scenarios x instruments) block and no
    (instruments x instruments) co-moment is ever held; what one block adds is the moment
    sums of the buckets' simple returns (bucket P&L over bucket exposure) and of the desk's
    P&L (the sum of the buckets').

    Attributes
    ----------
    plan : RevaluationPlan
        The instruments' revaluation with the buckets as desks.
    exposure : ndarray, shape (B,)
        Each bucket's current exposure, currency, non-zero.
    underlyings : ndarray of int
        The desk's underlyings, indices into the book's.
    with_buckets : bool
        Accumulate the buckets' moments (False: only the desk P&L's, for a desk whose
        buckets also exceed the cap).
    """

    plan: RevaluationPlan
    exposure: FloatArray
    underlyings: IntArray
    with_buckets: bool = True

    @classmethod
    def of(cls, book: ResolvedBook, representative: IntArray, quantity: FloatArray,
           bucket_of: IntArray, exposure: FloatArray, underlyings: IntArray,
           with_buckets: bool = True) -> ReducedDesk:
        """The desk of instruments ``representative`` (one position each, its terms).

        ``quantity`` (units held) and ``bucket_of`` are per instrument in the same order;
        ``exposure`` per bucket.
        """
        buckets = np.asarray(bucket_of, dtype=np.int64)
        held = dataclasses.replace(
            select_positions(book, np.asarray(representative, dtype=np.int64)),
            quantity=np.asarray(quantity, dtype=np.float64), desk_index=buckets,
            desks=tuple(f"bucket {b}" for b in range(np.asarray(exposure).size)))
        return cls(plan_revaluation(held), np.asarray(exposure, dtype=np.float64),
                   np.asarray(underlyings), with_buckets)

    def sums(self, log_returns: FloatArray) -> DeskSums:
        """(underlyings', buckets', desk P&L's) moment sums over the scenarios given."""
        pnl = desk_pnl(self.plan, log_returns)
        buckets = pnl / self.exposure if self.with_buckets else pnl[:, :0]
        return (MomentSums.from_returns(np.expm1(log_returns[:, self.underlyings])),
                MomentSums.from_returns(buckets),
                MomentSums.from_returns(pnl.sum(axis=1, keepdims=True)))


#: Most instrument columns a moment pass revalues at once for desks below the cap: desks
#: are revalued in groups of consecutive desks up to this many instruments (a desk larger
#: than this alone), so a block's values are at most block_size x this.
DENSE_COLUMNS: int = 2_048


@dataclass(frozen=True)
class MomentPass:
    """What one scenario block adds to the desks' sample moments (shipped to executors).

    The desks' representative positions are revalued one unit each, in groups of
    consecutive desks of at most :data:`DENSE_COLUMNS` instruments (``groups``, column
    ranges; one group holds every desk of a small book); ``columns`` gives each desk's
    slice. Desks above the instrument cap (``reduced``) are revalued by the Monte Carlo
    kernel instead (:class:`ReducedDesk`); their sums follow the others'.
    """

    source: ScenarioSource
    unit_book: ResolvedBook
    columns: tuple[slice, ...]
    underlyings: tuple[IntArray, ...]
    reduced: tuple[ReducedDesk, ...] = ()
    groups: tuple[slice, ...] = ()
    group_of: tuple[int, ...] = ()

    @classmethod
    def of(cls, book: ResolvedBook, source: ScenarioSource,
           desks: list[tuple[IntArray, IntArray]],
           reduced: tuple[ReducedDesk, ...] = ()) -> MomentPass:
        """The pass over ``desks``: (representative positions, underlyings) of each.

        ``reduced`` are the desks above the instrument cap.
        """
        rep = np.concatenate([r for r, _ in desks]) if desks else np.zeros(0, np.int64)
        unit = dataclasses.replace(select_positions(book, rep), quantity=np.ones(rep.size))
        ends = np.cumsum([0] + [r.size for r, _ in desks])
        columns = tuple(slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:], strict=True))
        groups: list[slice] = []
        group_of: list[int] = []
        for cols in columns:
            if groups and cols.stop - groups[-1].start <= DENSE_COLUMNS:
                groups[-1] = slice(groups[-1].start, cols.stop)
            else:
                groups.append(slice(cols.start, cols.stop))
            group_of.append(len(groups) - 1)
        return cls(source, unit, columns, tuple(u for _, u in desks), tuple(reduced),
                   tuple(groups), tuple(group_of))

    def block(self, block_id: int) -> list[DeskSums]:
        """Every desk's moment sums over the scenarios of block ``block_id``.

        The desks of ``columns`` first, in order, then the ``reduced`` ones.
        """
        x = self.source.block(block_id)
        out: list[DeskSums] = []
        for g, group in enumerate(self.groups):
            if len(self.groups) == 1:
                part = self.unit_book
            else:
                part = select_positions(self.unit_book, np.arange(group.start, group.stop))
            values = position_values(part, x)
            today = part.unit_value
            for cols, und, of in zip(self.columns, self.underlyings, self.group_of,
                                     strict=True):
                if of == g:
                    local = slice(cols.start - group.start, cols.stop - group.start)
                    out.append((MomentSums.from_returns(np.expm1(x[:, und])),
                                MomentSums.from_values(today[local], values[:, local])))
        return out + [desk.sums(x) for desk in self.reduced]


def merge_desk_sums(a: list[DeskSums], b: list[DeskSums]) -> list[DeskSums]:
    """The sums of two disjoint scenario sets, desk by desk (``a`` first)."""
    return [tuple(x.merge(y) for x, y in zip(da, db, strict=True))
            for da, db in zip(a, b, strict=True)]
