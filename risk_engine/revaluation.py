"""Full Black-Scholes revaluation of a book on a block of scenarios, streamed in tiles.

:func:`plan_revaluation` resolves everything that depends only on the position once: it
nets the book into distinct contracts and lines, and precomputes log strikes, discount
factors and ``sigma sqrt(tau)``. :func:`desk_pnl` then revalues the block tile by tile
(a tile is 64 to 256 scenarios, sized to a working set of a few MiB) and accumulates P&L per
desk as it goes, so no scenario-by-position matrix larger than one tile ever exists.

Valuation at the horizon follows DESIGN.md section 3: stocks at the horizon spot; options
with life left ``tau = T - h > 0`` by Black-Scholes with the same implied volatility,
dividend yield and zero curve; options expiring at or before the horizon at intrinsic value
on the horizon spot.

How the work per scenario is kept small (all exact, see :class:`RevaluationPlan`):

* live options are netted into distinct contracts ``(underlying, strike, tau, sigma, r, q)``
  priced once per scenario in call form; puts follow by put-call parity
  ``P = C - S e^{-q tau} + K e^{-r tau}``, whose linear terms join the stock holdings;
* ``ln S`` and ``S`` are computed once per (scenario, underlying), not per position;
* the sums per (desk, underlying) and per desk are fixed-order additions of contiguous rows
  (no BLAS), so results are bit-identical whatever the BLAS threading of the process and
  whatever the chunk or tile size.

Vol and rate moves (a :class:`risk_engine.scenarios.factors.FactorLayout` with vol tenors or
a rate column, or sticky-moneyness smiles) take a second tile function,
:func:`_factor_tile_values`: per scenario each contract's ``sigma sqrt(tau)`` and ``d1``,
``d2`` are recomputed from its shocked vol and rate (Black-Scholes in full, see
:class:`FactorTerms`); the vol shock is computed once per distinct (underlying, tau) and
the rate discount once per distinct tau. Netting, parity (its ``K e^{-r tau}`` terms
discounted at the scenario's rate) and the fixed-order sums are as above. With the layout
spot only (the default) and sticky strike, the kernel and its bits are the ones above.
:meth:`RevaluationPlan.moving` holds some factor classes still (their columns read as zero).

Cost is dominated by the two normal CDFs per contract (``scipy.special.ndtr``, ~7-9 ns
each here); everything else is a few cheap passes. Parity and netting change rounding only
at the level of ``1e-16`` of the contracts' notional, far inside the ``1e-9`` relative
tolerance against an independent pricer (tests/test_revaluation.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

from risk_engine.book import ResolvedBook
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.types import CALL, EQUITY, FloatArray, IntArray
from risk_engine.vol_surface import VolSurface

#: Bytes of the per-tile working set aimed at. Measured on a 2-core AMD EPYC (1 MiB L2 per
#: core): tiles of 64-128 scenarios were best for a 2,000-option book, flat within ~10%.
TILE_BYTES = 4 * 1024 * 1024
#: Smallest and largest tile (scenarios revalued at once) chosen automatically.
MIN_TILE, MAX_TILE = 64, 256
#: The risk factor classes of a scenario block (see :mod:`risk_engine.scenarios.factors`).
FACTOR_CLASSES = ("spot", "vol", "rate")
#: How an option's implied vol follows a spot move (``scenario_model.smile_dynamics``).
SMILE_DYNAMICS = ("sticky_strike", "sticky_moneyness")
#: Flat wings of a smile slice beyond its outer knots, and the spacing of slices laid end to
#: end (see :class:`SmileSlices`).
SMILE_WING, SMILE_GAP = 8.0, 17.0


@dataclass(frozen=True)
class RaggedSum:
    """Fixed-order segment sums over the rows of a matrix laid out "step-major".

    The rows of the input belong to ``n_segments`` segments. Segments are sorted by
    decreasing length; step ``k`` holds the ``k``-th row of every segment longer than ``k``,
    and those rows are contiguous: rows ``offset[k] : offset[k] + count[k]`` are element
    ``k`` of segments ``0 .. count[k] - 1``. So the sums are ``count.size`` vectorized
    additions of contiguous blocks, always in the same order (element 0, then 1, ...).
    """

    n_segments: int
    offset: IntArray
    count: IntArray

    @staticmethod
    def layout(segment_of_item: IntArray) -> tuple[RaggedSum, IntArray, IntArray]:
        """Plan the step-major layout of items labelled by segment ``0..G-1``.

        Returns
        -------
        ragged, item_order, segment_order
            ``item_order[r]`` is the item stored in row ``r``; ``segment_order[j]`` is the
            segment whose sum comes out in row ``j`` of :meth:`sum`.
        """
        seg = np.asarray(segment_of_item, dtype=np.int64)
        if seg.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return RaggedSum(0, empty, empty), empty, empty
        labels, inverse, length = np.unique(seg, return_inverse=True, return_counts=True)
        # Segments by decreasing length (ties by label), items in input order inside each.
        seg_rank = np.empty(labels.size, dtype=np.int64)
        by_len = np.lexsort((labels, -length))
        seg_rank[by_len] = np.arange(labels.size)
        rank = seg_rank[inverse]
        order_in_seg = np.argsort(rank, kind="stable")
        step = np.empty(seg.size, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(length[by_len])[:-1]])
        step[order_in_seg] = np.arange(seg.size) - np.repeat(starts, length[by_len])
        # Row order: by step, then by segment rank.
        item_order = np.lexsort((rank, step))
        count = np.bincount(step)
        offset = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        return RaggedSum(int(labels.size), offset, count.astype(np.int64)), item_order, \
            labels[by_len].astype(np.int64)

    def sum(self, rows: FloatArray, out: FloatArray) -> FloatArray:
        """Segment sums of ``rows[:, r]`` (rows laid out as planned) into ``out[:, :G]``."""
        g = self.n_segments
        out[:, :g] = rows[:, :g]
        for off, cnt in zip(self.offset[1:].tolist(), self.count[1:].tolist(), strict=True):
            out[:, :cnt] += rows[:, off:off + cnt]
        return out[:, :g]


@dataclass(frozen=True)
class SmileSlices:
    """The smiles of the contracts revalued sticky-moneyness, one per (underlying, expiry).

    ``w(k)`` of :class:`risk_engine.vol_surface.VolSurface` at a fixed expiry ``T`` is
    linear in ``k`` between the union of the quoted moneyness points of all expiries and
    flat beyond them, so interpolating linearly between those knots reproduces the
    surface's rule at any ``k`` (see :func:`smile_slice`). The slices' knots are laid end to
    end on one axis, slice ``j`` shifted by ``offset_j``, so one ``np.interp`` serves every
    contract. Each slice carries flat wings to :data:`SMILE_WING` beyond its outer knots
    and the next slice starts :data:`SMILE_GAP` later; a scenario moving a spot's log by
    :data:`SMILE_WING` or more (a factor of ~3,000) has its ``k`` clipped to the outer
    knots instead. The shift rounds ``k`` to the precision of the offset (below ``1e-11``
    for a thousand slices), far inside the ``1e-9`` the kernel is held to. Per-contract
    arrays are in contract order.
    """

    contracts: IntArray  # (m,) contracts revalued sticky-moneyness
    underlying: IntArray  # (m,)
    log_moneyness: FloatArray  # (m,) k0 = ln(K / F(T)) today, F(T) = S e^{(r - q) T}
    k_lo: FloatArray  # (m,) first and last knot of the contract's slice
    k_hi: FloatArray
    offset: FloatArray  # (m,)
    tau_over_t: FloatArray  # (m,) tau / T: sd = sqrt(w tau / T)
    knots: FloatArray  # every slice's knots with its wings, shifted by its offset
    total_variance: FloatArray
    all_contracts: bool  # contracts == 0 .. C - 1


@dataclass(frozen=True)
class FactorTerms:
    """Per-contract constants of the revaluation under vol and rate moves.

    Per scenario, contract ``c`` on underlying ``u`` with remaining life ``tau`` is valued
    by Black-Scholes at spot ``S_u e^{x_u}``, rate ``r + x_rate`` and vol
    ``sigma_c exp(w_lo x[vol_lo] + w_hi x[vol_hi])``, where ``vol_lo``, ``vol_hi`` are the
    vol columns of the tenors around ``tau`` (linear in ``tau``, flat outside the tenors)
    and ``sigma_c`` is the contract's implied vol (sticky strike), or for the contracts in
    :attr:`smile` the surface's vol at the scenario's moneyness ``k0 - x_u`` and the
    option's expiry (sticky moneyness).
    """

    layout: FactorLayout
    smile: str
    drift: FloatArray  # (C,) -ln K + (r - q) tau
    sd: FloatArray  # (C,) sigma sqrt(tau); 1 for the contracts of ``smile``
    # vol shocks per node, a distinct (underlying, tau) of the contracts: columns of the
    # tenors around tau and their weights
    node_lo: IntArray  # (M,)
    node_hi: IntArray
    node_w_lo: FloatArray
    node_w_hi: FloatArray
    contract_node: IntArray  # (C,)
    # distinct remaining lives tau of the contracts and puts (rate moves)
    taus: FloatArray  # (T,)
    contract_tau: IntArray  # (C,) index into taus
    smile_slices: SmileSlices | None
    # put-call parity terms ``q K e^{-r tau}`` of live puts netted per (desk, tau), sorted by
    # desk: discounted per scenario when the rate moves
    put_tau: IntArray  # index into taus
    put_amount: FloatArray
    put_desk_bounds: IntArray  # (D + 1,)


@dataclass(frozen=True)
class RevaluationPlan:
    """Per-position constants of the revaluation kernel.

    The desk value at the horizon is, per scenario,

    ``sum_g S_u(g) (lin_g + sum_{l in g} qa_l N(z1_c(l))) - sum_{l in g} qb_l N(z1_c(l) - c_c(l))``
    ``+ sum_{expired e} q_e max(sign_e (S - K_e), 0) + const_d``

    over the (desk, underlying) groups ``g`` of the desk, where ``z1_c = a_c ln S + b_c``
    for contract ``c`` with ``a = 1 / (sigma sqrt tau)``,
    ``b = (-ln K + (r - q) tau) / (sigma sqrt tau) + sigma sqrt(tau) / 2`` and
    ``c = sigma sqrt tau`` (so ``N(z1) = N(d1)``, ``N(z1 - c) = N(d2)``). A line ``l`` is a
    contract held by a desk, its calls and puts netted: ``qa = q e^{-q tau}``,
    ``qb = q K e^{-r tau}``; by put-call parity a put adds ``-q e^{-q tau}`` to its group's
    ``lin`` and ``q K e^{-r tau}`` to its desk's ``const``. ``lin`` also holds the netted
    stock quantity. This is Black-Scholes exactly.
    """

    #: Time per scenario relative to full revaluation (this method): sizes Spark tasks only.
    relative_cost: ClassVar[float] = 1.0

    n_desks: int
    n_book_positions: int  # positions of the book (the unit of "revaluations")
    ln_spot: FloatArray  # (U,)
    value_today: FloatArray  # (D,) desk value today
    # distinct live contracts, in call form
    contract_underlying: IntArray  # (C,)
    contract_a: FloatArray
    contract_b: FloatArray
    contract_c: FloatArray
    # lines (desk x contract), rows in the step-major layout of ``line_sum``
    line_contract: IntArray | None  # (L,) contract of each line; None when L == C in order
    line_weight: FloatArray  # (2, L): q e^{-q tau}, q K e^{-r tau}
    line_sum: RaggedSum  # lines -> (desk, underlying) option groups
    # (desk, underlying) groups sorted by desk: ``group_source`` is the row of the option
    # group sums feeding each group (``line_sum.n_segments`` for a group without options,
    # which reads a row of zeros)
    group_source: IntArray  # (G,)
    group_underlying: IntArray  # (G,)
    group_linear: FloatArray  # (G,) coefficient of S_u
    group_desk_bounds: IntArray  # (D + 1,) groups of desk d: bounds[d]:bounds[d + 1]
    desk_constant: FloatArray  # (D,)
    # options expired by the horizon, sorted by desk
    expired_underlying: IntArray  # (E,)
    expired_sign: FloatArray
    expired_strike: FloatArray
    expired_quantity: FloatArray
    expired_desk_bounds: IntArray  # (D + 1,)
    # vol and rate moves (None: spot only, the kernel above)
    factors: FactorTerms | None = None
    # the factor classes that move; the columns of the others are read as zero
    factor_classes: tuple[str, ...] = FACTOR_CLASSES

    @property
    def layout(self) -> FactorLayout:
        """Column layout of the scenario blocks this plan revalues."""
        if self.factors is not None:
            return self.factors.layout
        return FactorLayout(int(self.ln_spot.size))

    def moving(self, classes: tuple[str, ...]) -> RevaluationPlan:
        """The plan revaluing with only the factor ``classes`` moving (others zeroed).

        Raises
        ------
        ValueError
            For a class not in :data:`FACTOR_CLASSES`.
        """
        bad = [c for c in classes if c not in FACTOR_CLASSES]
        if bad:
            raise ValueError(f"unknown factor class(es) {bad}; expected {FACTOR_CLASSES}")
        return dataclasses.replace(self, factor_classes=tuple(classes))

    @property
    def n_live(self) -> int:
        """Number of distinct live contracts priced per scenario."""
        return int(self.contract_a.size)

    @property
    def n_lines(self) -> int:
        """Number of netted live option lines (desk x contract)."""
        return int(self.line_weight.shape[1])

    @property
    def n_positions(self) -> int:
        """Number of book positions revalued per scenario."""
        return self.n_book_positions

    def tile_size(self, chunk_size: int) -> int:
        """Scenarios revalued at once.

        The tile whose working set is about :data:`TILE_BYTES`, capped by ``chunk_size``
        and kept within [:data:`MIN_TILE`, :data:`MAX_TILE`] (a tile is never narrower than
        ``MIN_TILE``: short tiles are padded, see :func:`_tile_values`).
        """
        shared = 0 if self.line_contract is None else 2 * self.n_lines
        rows = 3 * self.n_live + shared + 2 * self.line_sum.n_segments \
            + 4 * self.group_underlying.size + self.expired_strike.size \
            + 2 * self.ln_spot.size + self.n_desks
        if self.factors is not None:  # the block's columns, and sd, drift, work, discount
            f = self.factors
            rows += 2 * f.layout.width + 3 * self.n_live + f.node_lo.size \
                + 2 * f.taus.size + f.put_tau.size
        tile = TILE_BYTES // (8 * rows)
        return int(max(MIN_TILE, min(chunk_size, MAX_TILE, tile)))


def _index_rows(keys: list[NDArray]) -> tuple[IntArray, IntArray]:
    """Distinct rows of the stacked ``keys``: (index of first occurrence, inverse)."""
    table = np.column_stack([np.asarray(k, dtype=np.float64) for k in keys])
    _, first, inverse = np.unique(table, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def plan_revaluation(book: ResolvedBook, layout: FactorLayout | None = None, *,
                     smile: str = "sticky_strike",
                     surfaces: Mapping[str, VolSurface] | None = None) -> RevaluationPlan:
    """Resolve the per-position constants of the full revaluation kernel for ``book``.

    Parameters
    ----------
    book
        The resolved book.
    layout
        Columns of the scenario blocks (:class:`risk_engine.scenarios.factors.FactorLayout`);
        default spot log returns only (``(n, U)``, the kernel of the class docstring,
        bit for bit).
    smile
        ``"sticky_strike"`` (default): an option's horizon vol is its own implied vol
        times the vol shock. ``"sticky_moneyness"``: the vol of the underlying's surface
        at the scenario's log-forward-moneyness ``k = ln(K / F_h)``, ``F_h = S_h
        e^{(r - q) T}`` (today's forward to the expiry ``T``, from the scenario's spot
        ``S_h``: ``k = k_0 - x_u``) and at ``T``, times the shock. Without a surface both
        are the same.
    surfaces
        Implied-vol surfaces by underlying name (only read for ``sticky_moneyness``).

    Raises
    ------
    ValueError
        For an unknown ``smile``, a layout of another number of underlyings, or vol
        tenors that are not positive and strictly increasing.
    """
    if smile not in SMILE_DYNAMICS:
        raise ValueError(f"unknown smile dynamics {smile!r}; expected one of {SMILE_DYNAMICS}")
    if layout is not None and layout.n_underlyings != len(book.underlyings):
        raise ValueError(f"factor layout has {layout.n_underlyings} underlyings, the book "
                         f"{len(book.underlyings)}")
    n_u, n_d = len(book.underlyings), len(book.desks)
    desk, und, q = book.desk_index, book.underlying_index, book.quantity
    is_opt = book.kind != EQUITY
    live = np.flatnonzero(is_opt & (book.tau_h > 0))
    expired = np.flatnonzero(is_opt & ~(book.tau_h > 0))

    # Distinct contracts (call form) and lines (desk x contract), quantities netted.
    l_und, l_desk, l_q = und[live], desk[live], q[live]
    tau, vol = book.tau_h[live], book.volatility[live]
    r, div, k = book.rate_h[live], book.dividend_yield[live], book.strike[live]
    fwd = np.exp(-div * tau)  # e^{-q tau}
    pvk = k * np.exp(-r * tau)  # K e^{-r tau}
    rep, contract_of = _index_rows([l_und, k, tau, vol, r, div])
    line_first, line_of = _index_rows([l_desk, contract_of])
    line_q = np.bincount(line_of, l_q, minlength=line_first.size)
    keep = line_q != 0.0  # calls and puts netted away entirely (a pure forward) drop out
    line_desk = l_desk[line_first][keep]
    line_rep = rep[contract_of[line_first]][keep]  # representative live index per line
    line_q = line_q[keep]

    # Linear terms per (desk, underlying): stocks, and the -q e^{-q tau} S of each put.
    lin = np.zeros((n_d, n_u))
    eq = ~is_opt
    np.add.at(lin, (desk[eq], und[eq]), q[eq])
    puts = book.kind[live] != CALL
    np.add.at(lin, (l_desk[puts], l_und[puts]), -l_q[puts] * fwd[puts])
    has_lin = np.zeros((n_d, n_u), dtype=bool)
    has_lin[desk[eq], und[eq]] = True
    has_lin[l_desk[puts], l_und[puts]] = True
    const = np.bincount(l_desk[puts], l_q[puts] * pvk[puts], minlength=n_d).astype(np.float64)

    # Lines -> option groups (desk, underlying), step-major rows.
    line_sum, line_rows, opt_groups = RaggedSum.layout(line_desk * n_u + l_und[line_rep])
    line_desk, line_rep, line_q = line_desk[line_rows], line_rep[line_rows], line_q[line_rows]
    # Contracts numbered in order of first use by a line row, so that when no contract is
    # shared between desks the line gather is the identity and is skipped.
    used, first_use, line_contract = np.unique(line_rep, return_index=True,
                                               return_inverse=True)
    c_order = np.argsort(first_use, kind="stable")
    renum = np.empty(used.size, dtype=np.int64)
    renum[c_order] = np.arange(used.size)
    line_contract = renum[line_contract.reshape(-1)]
    c_rep = used[c_order]
    identity = line_contract.size == c_rep.size and bool(
        np.all(line_contract == np.arange(line_contract.size)))
    sd = vol[c_rep] * np.sqrt(tau[c_rep])  # > 0: validated volatility > 0 and tau > 0
    inv = 1.0 / sd

    # All (desk, underlying) groups with options or linear terms, sorted by desk.
    n_opt = line_sum.n_segments
    source = np.full(n_d * n_u, n_opt, dtype=np.int64)
    source[opt_groups] = np.arange(n_opt)
    has = has_lin.ravel().copy()
    has[opt_groups] = True
    groups = np.flatnonzero(has)  # row-major: sorted by desk, then underlying
    g_desk = groups // n_u

    e = expired[np.argsort(desk[expired], kind="stable")]
    factors = _factor_terms(
        book, layout or FactorLayout(n_u), smile, surfaces or {}, live[c_rep], puts=live[puts],
        n_desks=n_d)
    if factors is not None:
        const = np.zeros(n_d)  # the put terms are discounted per scenario instead
    return RevaluationPlan(
        n_desks=n_d,
        n_book_positions=book.n_positions,
        ln_spot=np.log(book.spot),
        value_today=np.bincount(desk, book.value, minlength=n_d).astype(np.float64),
        contract_underlying=l_und[c_rep].astype(np.int64),
        contract_a=inv,
        contract_b=(-np.log(k[c_rep]) + (r[c_rep] - div[c_rep]) * tau[c_rep]) * inv + 0.5 * sd,
        contract_c=sd,
        line_contract=None if identity else line_contract.astype(np.int64),
        line_weight=np.stack([line_q * fwd[line_rep], line_q * pvk[line_rep]]),
        line_sum=line_sum,
        group_source=source[groups],
        group_underlying=(groups % n_u).astype(np.int64),
        group_linear=lin.ravel()[groups],
        group_desk_bounds=np.searchsorted(g_desk, np.arange(n_d + 1)).astype(np.int64),
        desk_constant=const,
        expired_underlying=und[e].astype(np.int64),
        expired_sign=np.where(book.kind[e] == CALL, 1.0, -1.0),
        expired_strike=book.strike[e],
        expired_quantity=q[e],
        expired_desk_bounds=np.searchsorted(desk[e], np.arange(n_d + 1)).astype(np.int64),
        factors=factors,
    )


def tenor_weights(tau: FloatArray, tenors: tuple[float, ...]
                  ) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Linear interpolation of ``tau`` among ``tenors``, flat outside them.

    Returns
    -------
    lo, hi, w_lo, w_hi
        Tenor indices and weights: the value at ``tau`` is ``w_lo v[lo] + w_hi v[hi]``.
    """
    t = np.asarray(tenors, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    hi = np.clip(np.searchsorted(t, tau, side="right"), 1, t.size - 1) if t.size > 1 \
        else np.zeros(tau.shape, dtype=np.int64)
    lo = np.maximum(hi - 1, 0)
    if t.size > 1:
        frac = np.clip((tau - t[lo]) / (t[hi] - t[lo]), 0.0, 1.0)
    else:
        frac = np.zeros(tau.shape)
    return lo.astype(np.int64), hi.astype(np.int64), 1.0 - frac, frac


def smile_slice(surface: VolSurface, expiry_years: float) -> tuple[FloatArray, FloatArray]:
    """Knots and total variances of ``surface``'s smile at expiry ``T``.

    ``np.interp(k, knots, w)`` equals ``surface.total_variance_at(k, T)`` for every ``k``
    (see :class:`SmileSlices`).
    """
    knots = np.unique(np.concatenate(surface.log_moneyness))
    return knots, surface.total_variance_at(knots, np.full(knots.size, expiry_years))


def _factor_terms(book: ResolvedBook, layout: FactorLayout, smile: str,
                  surfaces: Mapping[str, VolSurface], rep: IntArray, *, puts: IntArray,
                  n_desks: int) -> FactorTerms | None:
    """The vol and rate terms of the contracts (book positions ``rep``), or None.

    None when the layout is spot only and no contract is revalued sticky-moneyness: the
    spot-only kernel applies.
    """
    und = book.underlying_index[rep]
    sticky_m = smile == "sticky_moneyness" and bool(surfaces)
    on_surface = np.array([book.underlyings[u] in surfaces for u in und.tolist()],
                          dtype=bool) if sticky_m else np.zeros(rep.size, dtype=bool)
    if layout.spot_only and not on_surface.any():
        return None
    tenors = layout.vol_tenors_years
    if tenors and not (np.all(np.isfinite(tenors)) and tenors[0] > 0
                       and np.all(np.diff(tenors) > 0)):
        raise ValueError(f"vol tenors {tenors} must be positive and strictly increasing")
    tau = book.tau_h[rep]
    vol, r, div = book.volatility[rep], book.rate_h[rep], book.dividend_yield[rep]
    k = book.strike[rep]
    sqrt_tau = np.sqrt(tau)
    node_first, contract_node = _index_rows([und, tau])
    n_tau, n_und = tau[node_first], und[node_first]
    if tenors:
        lo, hi, w_lo, w_hi = tenor_weights(n_tau, tenors)
        base = layout.n_underlyings + n_und * layout.n_vol_buckets
        node_lo, node_hi = base + lo, base + hi
    else:
        node_lo = node_hi = np.zeros(n_tau.size, dtype=np.int64)
        w_lo = w_hi = np.zeros(n_tau.size)
    smile_slices = None
    if on_surface.any():
        t_exp = book.expiry_years[rep]
        k0 = np.log(k / book.spot[und]) - (book.rate[rep] - div) * t_exp
        keys = np.flatnonzero(on_surface)
        pairs = sorted({(int(und[i]), float(t_exp[i])) for i in keys.tolist()})
        parts: list[tuple[IntArray, float, FloatArray, FloatArray]] = []
        offset = 0.0
        for u, t in pairs:
            idx = keys[(und[keys] == u) & (t_exp[keys] == t)]
            knots, w = smile_slice(surfaces[book.underlyings[u]], t)
            if parts:  # SMILE_GAP after the previous slice's last knot
                offset = parts[-1][1] + float(parts[-1][2][-1]) + SMILE_GAP - float(knots[0])
            parts.append((idx, offset, knots, w))
        sizes = [p[0].size for p in parts]
        idx_all = np.concatenate([p[0] for p in parts]).astype(np.int64)
        order = np.argsort(idx_all, kind="stable")
        idx_all = idx_all[order]

        def per_contract(values: list[float]) -> FloatArray:
            return np.repeat(np.asarray(values, dtype=np.float64), sizes)[order]

        smile_slices = SmileSlices(
            contracts=idx_all, underlying=und[idx_all].astype(np.int64),
            log_moneyness=k0[idx_all],
            k_lo=per_contract([float(p[2][0]) for p in parts]),
            k_hi=per_contract([float(p[2][-1]) for p in parts]),
            offset=per_contract([p[1] for p in parts]),
            tau_over_t=tau[idx_all] / t_exp[idx_all],
            knots=np.concatenate([np.concatenate([[p[2][0] - SMILE_WING], p[2],
                                                  [p[2][-1] + SMILE_WING]]) + p[1]
                                  for p in parts]),
            total_variance=np.concatenate([np.concatenate([p[3][:1], p[3], p[3][-1:]])
                                           for p in parts]),
            all_contracts=bool(idx_all.size == rep.size),
        )
    # Put parity terms q K e^{-r tau} netted per (desk, tau), desk-sorted.
    p_desk, p_tau = book.desk_index[puts], book.tau_h[puts]
    p_amt = book.quantity[puts] * book.strike[puts] * np.exp(-book.rate_h[puts] * p_tau)
    if puts.size:
        first, inv = _index_rows([p_desk, p_tau])
        amount: FloatArray = np.bincount(inv, p_amt, minlength=first.size).astype(np.float64)
        order = np.argsort(p_desk[first], kind="stable")  # first is sorted by (desk, tau)
        put_desk, put_tau, amount = p_desk[first][order], p_tau[first][order], amount[order]
    else:
        put_desk, put_tau = np.zeros(0, dtype=np.int64), np.zeros(0)
        amount = np.zeros(0)
    taus, tau_of = np.unique(np.concatenate([tau, put_tau]), return_inverse=True)
    tau_of = tau_of.reshape(-1).astype(np.int64)
    return FactorTerms(
        layout=layout, smile=smile,
        drift=-np.log(k) + (r - div) * tau,
        sd=np.where(on_surface, 1.0, vol * sqrt_tau),
        node_lo=node_lo.astype(np.int64), node_hi=node_hi.astype(np.int64),
        node_w_lo=np.asarray(w_lo, dtype=np.float64),
        node_w_hi=np.asarray(w_hi, dtype=np.float64),
        contract_node=contract_node,
        taus=taus, contract_tau=tau_of[:tau.size], smile_slices=smile_slices,
        put_tau=tau_of[tau.size:], put_amount=amount,
        put_desk_bounds=np.searchsorted(put_desk, np.arange(n_desks + 1)).astype(np.int64),
    )


class _Workspace:
    """Tile buffers, allocated once per call: rows x ``width`` scenarios, C order."""

    def __init__(self, plan: RevaluationPlan, width: int) -> None:
        n_c, n_l, n_e = plan.n_live, plan.n_lines, plan.expired_strike.size
        n_g, n_u = plan.group_underlying.size, plan.ln_spot.size
        self.x = np.zeros((width, n_u))
        self.ln_s = np.empty((n_u, width))
        self.s = np.empty((n_u, width))
        self.z = np.empty((2, n_c, width))
        self.w = np.empty((2, n_l, width)) if plan.line_contract is not None else None
        self.r = np.zeros((2, plan.line_sum.n_segments + 1, width))  # last row stays 0
        self.g = np.empty((2, n_g, width))
        self.gs = np.empty((n_g, width))
        self.ex = np.empty((n_e, width))
        self.out = np.empty((plan.n_desks, width))
        self.acc = np.empty(width)
        f = plan.factors
        if f is not None:
            cols = f.layout.width
            self.x = np.zeros((width, cols))
            self.xt = np.empty((cols, width))
            self.sd = np.empty((n_c, width))
            self.drift = np.empty((n_c, width))
            self.tmp = np.empty((n_c, width))
            self.node = np.empty((f.node_lo.size, width))
            self.node_hi = np.empty((f.node_lo.size, width))
            self.tdr = np.empty((f.taus.size, width))
            self.disc = np.empty((f.taus.size, width))
            self.put = np.empty((f.put_tau.size, width))


def _tile_values(plan: RevaluationPlan, x: FloatArray, ws: _Workspace) -> FloatArray:
    """Desk values at the horizon of one tile of ``width`` scenarios, shape (D, width).

    Every array has the full tile width (a short last tile is padded), so each reduction
    runs on the same shapes in every tile: the result of a scenario does not depend on
    where it falls in a block.
    """
    ln_s = np.add(x.T, plan.ln_spot[:, None], out=ws.ln_s)
    s = np.exp(ln_s, out=ws.s)
    out = ws.out
    out[:] = plan.desk_constant[:, None]
    if plan.n_live:
        z = ws.z
        z1 = np.take(ln_s, plan.contract_underlying, axis=0, out=z[0], mode="clip")
        z1 *= plan.contract_a[:, None]
        z1 += plan.contract_b[:, None]
        np.subtract(z1, plan.contract_c[:, None], out=z[1])
        ndtr(z, out=z)  # N(d1), N(d2)
        _line_sums(plan, z, ws)
    _add_group_values(plan, s, out, ws)
    add_expired(plan, s, out, ws.ex, ws.acc)
    return out


def _line_sums(plan: RevaluationPlan, z: FloatArray, ws: _Workspace) -> None:
    """Weight the contracts' ``N(d1), N(d2)`` (in ``z``) by line and sum them per group."""
    w = z if plan.line_contract is None else np.take(z, plan.line_contract, axis=1,
                                                     out=ws.w, mode="clip")
    w *= plan.line_weight[:, :, None]
    plan.line_sum.sum(w, ws.r)


def _add_group_values(plan: RevaluationPlan, s: FloatArray, out: FloatArray,
                      ws: _Workspace) -> None:
    """Add each group's value, from the line sums in ``ws.r``, to its desk in ``out``."""
    if plan.group_underlying.size:
        g = np.take(ws.r, plan.group_source, axis=1, out=ws.g, mode="clip")
        gs = np.take(s, plan.group_underlying, axis=0, out=ws.gs, mode="clip")
        g1 = g[0]
        g1 += plan.group_linear[:, None]
        g1 *= gs
        g1 -= g[1]  # group value: S (lin + sum q e^{-q tau} N(d1)) - sum q K e^{-r tau} N(d2)
        _add_desk_sums(out, g1, plan.group_desk_bounds, ws.acc)


def _factor_tile_values(plan: RevaluationPlan, f: FactorTerms, x: FloatArray,
                        ws: _Workspace) -> FloatArray:
    """Desk values at the horizon of one tile under spot, vol and rate moves, (D, width).

    Black-Scholes in full on each contract's shocked inputs (see :class:`FactorTerms`);
    calls and puts are netted by put-call parity, whose ``K e^{-r tau}`` terms are
    discounted at the scenario's rate.
    """
    lay = f.layout
    n_u = lay.n_underlyings
    xt = ws.xt
    np.copyto(xt, x.T)
    ln_s = np.add(xt[:n_u], plan.ln_spot[:, None], out=ws.ln_s)
    s = np.exp(ln_s, out=ws.s)
    rate_col = lay.rate_column
    dr = xt[rate_col] if rate_col is not None else None
    out = ws.out
    out[:] = 0.0
    if dr is not None:  # tau dr and e^{-tau dr} per distinct tau
        np.multiply(f.taus[:, None], dr[None, :], out=ws.tdr)
        np.negative(ws.tdr, out=ws.disc)
        np.exp(ws.disc, out=ws.disc)
    if plan.n_live:
        sd, tmp = ws.sd, ws.tmp
        if lay.n_vol_buckets:  # sd = exp(interpolated log vol shock) sigma sqrt(tau)
            node = np.take(xt, f.node_lo, axis=0, out=ws.node, mode="clip")
            node *= f.node_w_lo[:, None]
            hi = np.take(xt, f.node_hi, axis=0, out=ws.node_hi, mode="clip")
            hi *= f.node_w_hi[:, None]
            node += hi
            np.exp(node, out=node)
            np.take(node, f.contract_node, axis=0, out=sd, mode="clip")
            sd *= f.sd[:, None]
        else:
            sd[:] = f.sd[:, None]
        sm = f.smile_slices
        if sm is not None:  # sticky moneyness: the surface's vol at k0 - x_u and T
            k = np.take(xt, sm.underlying, axis=0)
            np.subtract(sm.log_moneyness[:, None], k, out=k)
            if np.abs(xt[:n_u]).max() >= SMILE_WING:  # beyond the wings: clip to the knots
                np.clip(k, sm.k_lo[:, None], sm.k_hi[:, None], out=k)
            k += sm.offset[:, None]
            w = np.interp(k, sm.knots, sm.total_variance)
            w *= sm.tau_over_t[:, None]
            np.sqrt(w, out=w)
            if sm.all_contracts:
                sd *= w
            else:
                sd[sm.contracts] *= w
        drift = np.take(ln_s, plan.contract_underlying, axis=0, out=ws.drift, mode="clip")
        drift += f.drift[:, None]
        if dr is not None:
            drift += np.take(ws.tdr, f.contract_tau, axis=0, out=tmp, mode="clip")
        half = np.multiply(sd, 0.5, out=tmp)
        z = ws.z
        np.divide(drift, sd, out=z[0])
        np.subtract(z[0], half, out=z[1])  # d2 = (ln(S/K) + (r - q) tau) / sd - sd / 2
        z[0] += half  # d1
        ndtr(z, out=z)  # N(d1), N(d2)
        if dr is not None:  # K e^{-r tau} at the scenario's rate
            z[1] *= np.take(ws.disc, f.contract_tau, axis=0, out=tmp, mode="clip")
        _line_sums(plan, z, ws)
    _add_group_values(plan, s, out, ws)
    if f.put_tau.size:  # sum q K e^{-r tau} of the puts (parity), per desk
        put = ws.put
        if dr is not None:
            np.take(ws.disc, f.put_tau, axis=0, out=put, mode="clip")
            put *= f.put_amount[:, None]
        else:
            put[:] = f.put_amount[:, None]
        _add_desk_sums(out, put, f.put_desk_bounds, ws.acc)
    add_expired(plan, s, out, ws.ex, ws.acc)
    return out


def add_expired(plan: RevaluationPlan, s: FloatArray, out: FloatArray, ex: FloatArray,
                acc: FloatArray) -> None:
    """Add the intrinsic value at the horizon of the options expired by then to ``out``.

    ``s`` is the spot per (underlying, scenario); ``ex`` (E, width) and ``acc`` (width,)
    are work buffers. Shared by the full kernel and the grid method.
    """
    if plan.expired_strike.size:
        np.take(s, plan.expired_underlying, axis=0, out=ex, mode="clip")
        ex -= plan.expired_strike[:, None]
        ex *= plan.expired_sign[:, None]
        np.maximum(ex, 0.0, out=ex)
        ex *= plan.expired_quantity[:, None]
        _add_desk_sums(out, ex, plan.expired_desk_bounds, acc)


def _add_desk_sums(out: FloatArray, rows: FloatArray, bounds: IntArray, acc: FloatArray) -> None:
    """``out[d] += rows[bounds[d]:bounds[d + 1]].sum(axis=0)``, rows added in order.

    Reducing over the first axis of a (k, width >= 2) C-ordered block adds whole rows one
    after the other (numpy's pairwise summation applies only along the contiguous axis).
    """
    b = bounds.tolist()
    for d in range(len(b) - 1):
        if b[d + 1] > b[d]:
            out[d] += np.add.reduce(rows[b[d]:b[d + 1]], axis=0, out=acc)


def desk_values(plan: RevaluationPlan | OtherMethod, log_returns: FloatArray, chunk_size: int = 1024
                ) -> FloatArray:
    """Value of every desk at the horizon for each scenario, shape (n, D).

    Parameters
    ----------
    plan
        From :func:`plan_revaluation`.
    log_returns : ndarray, shape (n, U)
        Log returns of the underlyings over the horizon.
    chunk_size
        As in :func:`desk_pnl`.
    """
    if not isinstance(plan, RevaluationPlan):
        return plan.desk_values(log_returns, chunk_size)
    return _revalue(plan, log_returns, chunk_size, pnl=False)


class OtherMethod(Protocol):
    """A revaluation plan of another method (e.g. the grid), dispatched to by desk_pnl."""

    @property
    def n_desks(self) -> int:
        """Number of desks D."""

    def desk_pnl(self, log_returns: FloatArray, chunk_size: int) -> FloatArray:
        """P&L per (scenario, desk), shape (n, D)."""

    def desk_values(self, log_returns: FloatArray, chunk_size: int) -> FloatArray:
        """Desk values at the horizon, shape (n, D)."""


def desk_pnl(plan: RevaluationPlan | OtherMethod, log_returns: FloatArray,
             chunk_size: int = 1024) -> FloatArray:
    """P&L per (scenario, desk) = value at horizon - value today, revalued tile by tile.

    Parameters
    ----------
    plan
        From :func:`plan_revaluation` (or another method's plan, e.g.
        :func:`risk_engine.revaluation_grid.plan_grid`, which is dispatched to).
    log_returns : ndarray, shape (n, U)
        Log returns of the underlyings over the horizon.
    chunk_size
        Upper bound on the scenarios revalued at once (tiles are sized from the working
        set, see :meth:`RevaluationPlan.tile_size`, and never narrower than ``MIN_TILE``).
        Memory beyond the output is about ``tile x (3 C + 2 L)`` doubles for ``C``
        contracts and ``L`` lines; results are bit-identical whatever its value.

    Returns
    -------
    ndarray, shape (n, D)
    """
    if not isinstance(plan, RevaluationPlan):  # another method's plan (revaluation_grid)
        return plan.desk_pnl(log_returns, chunk_size)
    return _revalue(plan, log_returns, chunk_size, pnl=True)


def _revalue(plan: RevaluationPlan, log_returns: FloatArray, chunk_size: int, *,
             pnl: bool) -> FloatArray:
    x = np.asarray(log_returns, dtype=np.float64)
    layout = plan.layout
    if x.ndim != 2 or x.shape[1] != layout.width:
        raise ValueError(f"scenario block of shape {x.shape}; the plan's factor layout has "
                         f"{layout.width} columns ({layout.n_underlyings} spot, "
                         f"{layout.n_underlyings * layout.n_vol_buckets} vol, "
                         f"{int(layout.rate_factor)} rate)")
    n = x.shape[0]
    out = np.empty((n, plan.n_desks))
    if n == 0:
        return out
    width = plan.tile_size(chunk_size)
    ws = _Workspace(plan, width)
    still = _still_columns(plan)
    shift = plan.value_today if pnl else np.zeros(plan.n_desks)
    for start in range(0, n, width):
        stop = min(start + width, n)
        if stop - start == width and still is None:
            tile = x[start:stop]
        else:  # pad the short last tile with zero returns; zero the still factors
            tile = ws.x
            tile[:stop - start] = x[start:stop]
            tile[stop - start:] = 0.0
            if still is not None:
                tile[:, still] = 0.0
        if plan.factors is None:
            vals = _tile_values(plan, tile, ws)
        else:
            vals = _factor_tile_values(plan, plan.factors, tile, ws)
        np.subtract(vals[:, :stop - start].T, shift, out=out[start:stop])
    return out


def _still_columns(plan: RevaluationPlan) -> IntArray | None:
    """Columns of the factor classes that do not move in ``plan`` (None: all move)."""
    if set(FACTOR_CLASSES) <= set(plan.factor_classes):
        return None
    lay = plan.layout
    cols: list[int] = []
    if "spot" not in plan.factor_classes:
        cols += range(lay.n_underlyings)
    if "vol" not in plan.factor_classes:
        cols += range(lay.vol_columns.start, lay.vol_columns.stop)
    if "rate" not in plan.factor_classes and lay.rate_column is not None:
        cols.append(lay.rate_column)
    return np.array(cols, dtype=np.int64)
