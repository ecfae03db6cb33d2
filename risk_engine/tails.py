"""Exact VaR, ES, standard errors and Euler contributions without gathering the scenarios.

The nightly job never brings every scenario's P&L to one place. Each loss series (every
desk, and the firm: the row sum of the desk losses) is aggregated from the scenario blocks
in passes that return little data:

1. **Histograms of order keys.** A loss's *order key* is its float64 bit pattern mapped to
   an int64 that sorts like the float (:func:`order_keys`). The first pass counts keys per
   bin of the sign, the 11 exponent bits and the first 8 mantissa bits (a bin spans 2**-8 of
   its value); each block bins only its upper tail and lumps the rest into one count.
   Counts are integers, so the merged histogram is the same however blocks are grouped
   into tasks.
2. **Bands.** For each (series, level) the driver needs the losses of ranks
   ``k - m .. k + m`` (``k = ceil(alpha N)``; VaR is rank ``k``, its standard error uses
   ``k +- m``, ``m = ceil(sqrt(N alpha (1 - alpha)))``). From the cumulative counts it picks the
   range of keys holding those ranks (a :class:`Band`). A band holding more than
   :data:`BAND_CAP` losses is narrowed by a histogram on 16 more bits inside it, until it
   fits or is a single key.
3. **Band pass.** Each block returns, per band, its losses inside the band with their
   scenario indices, and for the losses above it only their count and sums (and, for the
   firm, the sums of the desk losses, for the Euler contributions).

:func:`combine` then evaluates the estimators of :mod:`risk_engine.measures` exactly: the
ranked losses in the band give VaR, the VaR standard error and the tie-broken scenario at
rank ``k``; the sums above plus the band give ES. Partial sums of blocks are added with
``math.fsum`` (correctly rounded), so every figure is independent of block grouping and
order. Ties are broken by scenario index, as a stable sort of all losses would.

Memory does not grow with the scenario count beyond the bands (a few thousand losses per
series and level at 10 million scenarios).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.measures import TailEstimate, tail_rank
from risk_engine.types import FloatArray, IntArray

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: First-pass bins: key >> 44 keeps the sign, 11 exponent bits and 8 mantissa bits.
FIRST_SHIFT = 44
#: Bits a refinement histogram adds inside a band that is too wide.
REFINE_BITS = 16
#: Largest number of losses a band may hold before it is narrowed.
BAND_CAP = 1 << 16

PARTIAL_COLUMNS = ["block_id", "band", "n_above", "sum_above", "s1", "s2", "desk_above",
                   "index", "value", "desk_band"]


def order_keys(losses: FloatArray) -> IntArray:
    """Int64 keys that sort like the float64 ``losses`` (``-0.0`` and ``0.0`` share a key)."""
    bits = (np.asarray(losses, dtype=np.float64) + 0.0).view(np.int64)
    return np.where(bits < 0, bits ^ np.int64(INT64_MAX), bits)


def key_value(key: int) -> float:
    """The float64 whose order key is ``key``."""
    bits = key if key >= 0 else key ^ INT64_MAX
    return float(np.array([bits], dtype=np.int64).view(np.float64)[0])


def block_losses(pnl: FloatArray, first_scenario: int = 0) -> FloatArray:
    """Loss series of one block, shape (n_b, D + 1): the desks' losses, then the firm's.

    The firm's loss is the row sum of the desk losses (numpy's row reduction, the same for
    a block as for the whole matrix).

    Raises
    ------
    ValueError
        If a loss is not finite (it would silently change every rank).
    """
    loss = -np.asarray(pnl, dtype=np.float64)
    out = np.empty((loss.shape[0], loss.shape[1] + 1))
    out[:, :-1] = loss
    out[:, -1] = loss.sum(axis=1)
    if not np.isfinite(out).all():
        row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(out)))
        what = "firm" if col == loss.shape[1] else f"desk {col}"
        raise ValueError(f"loss of scenario {first_scenario + row} ({what}) is "
                         f"{out[row, col]}; losses must be finite")
    return out


# ---------------------------------------------------------------------------- histograms


@dataclass(frozen=True)
class BinSpec:
    """Count the keys of ``series`` in ``[lo_key, hi_key]`` per bin ``key >> shift``.

    With ``lump_below`` set, each block lumps its keys below its own rank
    ``floor(lump_below n_b)`` into one count (bin :data:`LUMP`) and reports the largest such
    key (bin :data:`LUMP_TOP`), so the histogram holds only the blocks' upper tails.
    """

    series: int
    lo_key: int
    hi_key: int
    shift: int
    lump_below: float | None = None


#: Sentinel bins: the lumped count, and the largest lumped key (merged by max, not sum).
LUMP = INT64_MIN
LUMP_TOP = INT64_MIN + 1
#: Blocks smaller than this are binned whole.
MIN_LUMPED_BLOCK = 1000


def first_specs(n_series: int, levels: Sequence[float] = ()) -> list[BinSpec]:
    """The first pass: every series in 2**-8 relative bins.

    With ``levels``, each block bins only its losses above its own local rank at
    ``min(levels) - 0.1``: a block's empirical quantile lies within a few tens of ranks of
    the global one, so the bands needed sit far above every lump (checked, not assumed).
    """
    lump = max(min(levels) - 0.1, 0.0) if levels else None
    return [BinSpec(s, INT64_MIN, INT64_MAX, FIRST_SHIFT, lump or None)
            for s in range(n_series)]


def block_histograms(losses: FloatArray, specs: Sequence[BinSpec]) -> pd.DataFrame:
    """Key counts of one block per spec and bin (columns spec, bin, count)."""
    keys = order_keys(losses)
    spec_ids: list[IntArray] = [np.empty(0, np.int32)]
    bins_of: list[IntArray] = [np.empty(0, np.int64)]
    counts_of: list[IntArray] = [np.empty(0, np.int64)]
    for i, spec in enumerate(specs):
        k = keys[:, spec.series]
        if spec.lo_key > INT64_MIN or spec.hi_key < INT64_MAX:
            k = k[(k >= spec.lo_key) & (k <= spec.hi_key)]
        extra: list[tuple[int, int]] = []
        if spec.lump_below is not None and k.size >= MIN_LUMPED_BLOCK:
            r = int(spec.lump_below * k.size)
            if r > 0:
                part = np.partition(k, r - 1)
                extra = [(LUMP, r), (LUMP_TOP, int(part[r - 1]))]
                k = part[r:]
        bins, counts = np.unique(k >> spec.shift, return_counts=True)
        if extra:
            bins = np.concatenate([[e[0] for e in extra], bins])
            counts = np.concatenate([[e[1] for e in extra], counts])
        spec_ids.append(np.full(bins.size, i, dtype=np.int32))
        bins_of.append(bins.astype(np.int64))
        counts_of.append(counts.astype(np.int64))
    # One frame at the end: a frame per spec cost more than the binning (2.3 -> 1.0 ms for
    # the 11 series of a 10,000-scenario block).
    return pd.DataFrame({"spec": np.concatenate(spec_ids), "bin": np.concatenate(bins_of),
                         "count": np.concatenate(counts_of)})


HISTOGRAM_DTYPE = np.dtype([("spec", "<i4"), ("bin", "<i8"), ("count", "<i8")])


def pack_histogram(hist: pd.DataFrame) -> bytes:
    """A histogram frame as bytes (one value per task instead of a row per bin)."""
    rec = np.empty(len(hist), dtype=HISTOGRAM_DTYPE)
    for name in HISTOGRAM_DTYPE.names or ():
        rec[name] = hist[name].to_numpy()
    return rec.tobytes()


def unpack_histogram(raw: bytes) -> pd.DataFrame:
    """Inverse of :func:`pack_histogram`."""
    rec = np.frombuffer(raw, dtype=HISTOGRAM_DTYPE)
    return pd.DataFrame({name: rec[name] for name in HISTOGRAM_DTYPE.names or ()})


def merge_histograms(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add histograms up per (spec, bin); integer sums, so grouping does not matter.

    The :data:`LUMP_TOP` entries are merged by maximum.
    """
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame({"spec": np.array([], np.int32), "bin": np.array([], np.int64),
                             "count": np.array([], np.int64)})
    both = pd.concat(frames, ignore_index=True)
    top = both["bin"] == LUMP_TOP
    summed = both[~top].groupby(["spec", "bin"], sort=False, as_index=False)["count"].sum()
    tops = both[top].groupby(["spec", "bin"], sort=False, as_index=False)["count"].max()
    out = pd.concat([summed, tops], ignore_index=True).sort_values(["spec", "bin"])
    return out.reset_index(drop=True).astype(
        {"spec": np.int32, "bin": np.int64, "count": np.int64})


# --------------------------------------------------------------------------------- bands


@dataclass(frozen=True)
class Band:
    """Keys ``[lo_key, hi_key]`` of ``series`` hold ranks ``n_below + 1 .. n_below + count``."""

    series: int
    level: int
    lo_key: int
    hi_key: int
    shift: int
    n_below: int
    count: int


def rank_range(n: int, alpha: float) -> tuple[int, int]:
    """Ranks ``max(k - m, 1) .. min(k + m, N)`` a level needs (VaR and its standard error)."""
    k = tail_rank(n, alpha)
    m = math.ceil(math.sqrt(n * alpha * (1 - alpha)))
    return max(k - m, 1), min(k + m, n)


def locate(hist: pd.DataFrame, spec: BinSpec, level: int, n_before: int,
           ranks: tuple[int, int]) -> Band | None:
    """The band of bins of ``hist`` (one spec, bins ascending) holding ``ranks``.

    ``n_before`` counts the series' keys below ``spec.lo_key``. Returns None when lumped
    keys (see :class:`BinSpec`) might reach into the band: the series needs a histogram
    without lumps.
    """
    bins = hist["bin"].to_numpy()
    counts = hist["count"].to_numpy()
    lump_top = INT64_MIN
    if bins.size and bins[0] == LUMP:
        n_before += int(counts[0])
        if bins.size > 1 and bins[1] == LUMP_TOP:
            lump_top = int(counts[1])
            bins, counts = bins[2:], counts[2:]
        else:
            bins, counts = bins[1:], counts[1:]
    cum = n_before + np.cumsum(counts)
    if cum.size == 0 or cum[-1] < ranks[1]:
        held = int(cum[-1]) if cum.size else n_before
        raise RuntimeError(f"series {spec.series}: histogram holds {held} ranks, rank "
                           f"{ranks[1]} needed; scenario blocks missing?")
    if ranks[0] <= n_before:
        return None
    i_lo = int(np.searchsorted(cum, ranks[0]))
    i_hi = int(np.searchsorted(cum, ranks[1]))
    lo_key = max(int(bins[i_lo]) << spec.shift, spec.lo_key)
    if lo_key <= lump_top:
        return None
    n_below = int(cum[i_lo] - counts[i_lo])
    return Band(series=spec.series, level=level, lo_key=lo_key,
                hi_key=min(((int(bins[i_hi]) + 1) << spec.shift) - 1, spec.hi_key),
                shift=spec.shift, n_below=n_below, count=int(cum[i_hi]) - n_below)


def find_bands(
    n: int, n_series: int, levels: Sequence[float],
    histograms: Callable[[Sequence[BinSpec]], pd.DataFrame],
) -> tuple[list[Band], int]:
    """Bands of every (series, level), narrowed until each holds at most :data:`BAND_CAP`.

    Parameters
    ----------
    n
        Number of scenarios.
    n_series
        Desks plus one (the firm).
    levels
        Confidence levels.
    histograms
        Runs :func:`block_histograms` over every block and merges the results; called
        first with ``first_specs(n_series, levels)``.

    Returns
    -------
    (bands in (series, level) order, number of histogram passes)
    """
    specs = first_specs(n_series, levels)
    hist = histograms(specs)
    passes = 1
    found = _locate_all(hist, specs, n, levels)
    unlumped = sorted({s for (s, _), b in found.items() if b is None})
    if unlumped:  # a lump reached a band: those series again, binned whole
        specs = [BinSpec(s, INT64_MIN, INT64_MAX, FIRST_SHIFT) for s in unlumped]
        hist = histograms(specs)
        passes += 1
        found.update(_locate_all(hist, specs, n, levels))
    bands = [found[(s, j)] for s in range(n_series) for j in range(len(levels))]
    assert all(b is not None for b in bands)
    out: list[Band] = [b for b in bands if b is not None]
    while True:
        wide = [i for i, b in enumerate(out) if b.count > BAND_CAP and b.shift > 0]
        if not wide:
            return out, passes
        specs = [BinSpec(out[i].series, out[i].lo_key, out[i].hi_key,
                         max(out[i].shift - REFINE_BITS, 0)) for i in wide]
        hist = histograms(specs)
        passes += 1
        by_spec = dict(iter(hist.groupby("spec", sort=True)))
        for s_i, i in enumerate(wide):
            b = out[i]
            narrowed = locate(by_spec.get(s_i, hist.iloc[:0]), specs[s_i], b.level, b.n_below,
                              rank_range(n, levels[b.level]))
            assert narrowed is not None  # no lumps inside a band
            out[i] = narrowed


def _locate_all(hist: pd.DataFrame, specs: Sequence[BinSpec], n: int,
                levels: Sequence[float]) -> dict[tuple[int, int], Band | None]:
    by_spec = dict(iter(hist.groupby("spec", sort=True)))
    return {(spec.series, j): locate(by_spec.get(i, hist.iloc[:0]), spec, j, 0,
                                     rank_range(n, a))
            for i, spec in enumerate(specs) for j, a in enumerate(levels)}


# ------------------------------------------------------------------------ the band pass


def block_partials(losses: FloatArray, block_id: int, first_scenario: int,
                   bands: Sequence[Band], n_desks: int) -> pd.DataFrame:
    """One block's share of every band (columns :data:`PARTIAL_COLUMNS`).

    Losses inside a band come back with their scenario index (and, for the firm, the desk
    losses of those scenarios); losses above it only as a count, their sum, and the sums
    of ``x - c`` and ``(x - c)**2`` with ``c`` the band's lower edge (for the ES standard
    error).
    """
    keys = order_keys(losses)
    rows = []
    for i, band in enumerate(bands):
        x = losses[:, band.series] + 0.0
        k = keys[:, band.series]
        above = k > band.hi_key
        inside = (k >= band.lo_key) & ~above
        xa = x[above]
        dev = xa - key_value(band.lo_key)
        firm = band.series == n_desks
        rows.append({
            "block_id": block_id, "band": i, "n_above": int(above.sum()),
            "sum_above": float(xa.sum()), "s1": float(dev.sum()),
            "s2": float((dev * dev).sum()),
            "desk_above": losses[above, :n_desks].sum(axis=0).tobytes() if firm else b"",
            "index": (first_scenario + np.flatnonzero(inside)).astype(np.int64).tobytes(),
            "value": x[inside].tobytes(),
            "desk_band": np.ascontiguousarray(losses[inside, :n_desks]).tobytes()
            if firm else b"",
        })
    return pd.DataFrame(rows, columns=PARTIAL_COLUMNS)


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class LevelTail:
    """The exact tail figures of one loss series at one confidence level.

    ``window`` holds the scenarios of ranks ``k - m' .. k + m'`` (``m' = ceil(sqrt(N alpha
    (1 - alpha)) / 2)``, ascending rank) whose mean loss the VaR contributions use; for the
    firm, ``desk_var`` and ``desk_es`` are the desks' Euler contributions.
    """

    series: int
    estimate: TailEstimate
    var_scenario: int
    window: IntArray
    window_mean: float
    desk_var: FloatArray | None = None
    desk_es: FloatArray | None = None


@dataclass(frozen=True)
class TailSummary:
    """Tail figures of every desk and the firm at every level."""

    n_scenarios: int
    n_desks: int
    levels: tuple[float, ...]
    tails: tuple[LevelTail, ...]
    histogram_passes: int = 1
    band_losses: int = 0

    def get(self, series: int, level: int) -> LevelTail:
        """Series ``series`` (desk index, or ``n_desks`` for the firm) at ``levels[level]``."""
        return self.tails[series * len(self.levels) + level]

    def firm(self, level: int) -> LevelTail:
        """The firm's figures at ``levels[level]``."""
        return self.get(self.n_desks, level)


def _unpack(frame: pd.DataFrame, column: str, dtype: type) -> NDArray:
    return np.concatenate([np.frombuffer(b, dtype=dtype) for b in frame[column]]
                          ) if len(frame) else np.array([], dtype=dtype)


def combine(n: int, n_desks: int, levels: Sequence[float], bands: Sequence[Band],
            partials: pd.DataFrame) -> list[LevelTail]:
    """Evaluate the exact estimators of every band from the blocks' partials.

    Raises
    ------
    RuntimeError
        If the partials do not account for every scenario of a band (a block is missing).
    """
    out = []
    groups = dict(iter(partials.sort_values(["band", "block_id"]).groupby("band", sort=True)))
    for i, band in enumerate(bands):
        part = groups.get(i, partials.iloc[:0])
        alpha = levels[band.level]
        n_above = int(part["n_above"].sum())
        index = _unpack(part, "index", np.int64)
        value = _unpack(part, "value", np.float64)
        if value.size != band.count or n_above != n - band.n_below - band.count:
            raise RuntimeError(
                f"tail band of series {band.series}: {value.size} losses inside and {n_above} "
                f"above, expected {band.count} and {n - band.n_below - band.count}; "
                "scenario blocks missing or repeated")
        order = np.lexsort((index, value))
        v, ix = value[order], index[order]
        nb = band.n_below
        k = tail_rank(n, alpha)
        m = math.ceil(math.sqrt(n * alpha * (1 - alpha)))
        pos = k - nb - 1  # position of rank k in the band
        var = float(v[pos])
        denom = n * (1.0 - alpha)
        frac = max(k - alpha * n, 0.0)
        es = (math.fsum([*part["sum_above"], *v[pos + 1:]]) + frac * var) / denom
        var_se = 0.5 * float(v[min(k + m, n) - nb - 1] - v[max(k - m, 1) - nb - 1])
        c = key_value(band.lo_key)
        n_t = n - k + 1
        dev = v[pos:] - c
        s1 = math.fsum([*part["s1"], *dev])
        s2 = math.fsum([*part["s2"], *(dev * dev)])
        tail_var = (s2 - s1 * s1 / n_t) / (n_t - 1) if n_t > 1 else 0.0
        es_se = math.sqrt(max(tail_var + alpha * (es - var) ** 2, 0.0) / denom)
        mw = math.ceil(0.5 * math.sqrt(n * alpha * (1 - alpha)))
        w_lo, w_hi = max(k - mw, 1) - nb - 1, min(k + mw, n) - nb
        window = ix[w_lo:w_hi].copy()
        window_mean = math.fsum(v[w_lo:w_hi]) / (w_hi - w_lo)
        desk_var = desk_es = None
        if band.series == n_desks:
            desks = _unpack(part, "desk_band", np.float64).reshape(-1, n_desks)[order]
            above = (_unpack(part, "desk_above", np.float64).reshape(-1, n_desks)
                     if len(part) else np.zeros((0, n_desks)))
            desk_es = np.array([
                (math.fsum([*above[:, d], *desks[pos + 1:, d]]) + frac * desks[pos, d]) / denom
                for d in range(n_desks)])
            mean_c = np.array([math.fsum(desks[w_lo:w_hi, d]) / (w_hi - w_lo)
                               for d in range(n_desks)])
            mean_total = float(mean_c.sum())
            if abs(mean_total) > 1e-12 * max(1.0, abs(var)) and np.sign(mean_total) == np.sign(
                    var):
                desk_var = mean_c * (var / mean_total)
            else:
                desk_var = desks[pos].copy()
        out.append(LevelTail(band.series, TailEstimate(alpha, var, es, var_se, es_se, n),
                             int(ix[pos]), window, window_mean, desk_var, desk_es))
    return out


def summarize(
    n: int, n_desks: int, levels: Sequence[float],
    histograms: Callable[[Sequence[BinSpec]], pd.DataFrame],
    partials: Callable[[Sequence[Band]], pd.DataFrame],
) -> TailSummary:
    """Run the passes through the two callables and evaluate every tail.

    ``histograms(specs)`` must return :func:`block_histograms` of every block, merged;
    ``partials(bands)`` the concatenated :func:`block_partials` of every block. The
    in-process reference (:func:`summarize_matrix`) and the Spark job supply the same
    functions run in different places.
    """
    bands, passes = find_bands(n, n_desks + 1, levels, histograms)
    tails = combine(n, n_desks, levels, bands, partials(bands))
    return TailSummary(n, n_desks, tuple(levels), tuple(tails), passes,
                       sum(b.count for b in bands))


def summarize_matrix(pnl: FloatArray, block_size: int, levels: Sequence[float]
                     ) -> TailSummary:
    """The tail summary of a whole (N, D) P&L matrix, cut into blocks of ``block_size``."""
    n, n_desks = pnl.shape
    blocks = [(b, b * block_size, block_losses(pnl[b * block_size:(b + 1) * block_size],
                                              b * block_size))
              for b in range(-(-n // block_size))]
    return summarize(
        n, n_desks, levels,
        lambda specs: merge_histograms(block_histograms(x, specs) for _, _, x in blocks),
        lambda bands: pd.concat([block_partials(x, b, f, bands, n_desks)
                                 for b, f, x in blocks], ignore_index=True),
    )
