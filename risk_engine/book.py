"""The book of one as-of date: row validation and resolution into frozen arrays.

``validate_snapshot`` splits input rows into good rows and rejected rows (each rejection
names table, key, column, value and reason); ``resolve_book`` turns the good rows into a
:class:`ResolvedBook` whose contract terms (times, rates, today's values and Greeks) are
resolved once, before any Monte Carlo work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.errors import DataError
from risk_engine.pricing import black_scholes_greeks
from risk_engine.timeaxis import ZeroCurve, as_days, horizon_date, year_fraction
from risk_engine.types import CALL, EQUITY, KINDS, FloatArray, IntArray
from risk_engine.vol_surface import VolSurface, forward, surface_vols

# Plausibility bounds: a value beyond them is taken as a data error and its row rejected.
MAX_VOLATILITY = 5.0  # 500% annual (implied or factor-model volatility)
MAX_DIVIDEND_YIELD = 1.0  # |q| <= 100% a year
MAX_PRICE = 1e9  # spot and strike, in currency per unit
MAX_NOTIONAL = 1e15  # |quantity x multiplier x spot| of one position, in currency
MAX_EXPIRY_YEARS = 100  # expiry at most 100 years (of 365.25 days) after the as-of date


@dataclass(frozen=True)
class Rejection:
    """One input row set aside, and why."""

    table: str
    key: str
    column: str
    value: Any
    reason: str

    def as_row(self) -> dict[str, Any]:
        """Plain dict with ``value`` as text (None stays None)."""
        value = None if self.value is None or _isnan(self.value) else str(self.value)
        return {"table": self.table, "key": self.key, "column": self.column, "value": value,
                "reason": self.reason}


def _isnan(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Snapshot:
    """Validated input rows of one date (pandas frames, never mutated after creation)."""

    positions: pd.DataFrame
    market: pd.DataFrame
    rejected: tuple[Rejection, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = ()


def duplicate_rows(
    frame: pd.DataFrame, key: pd.Series, columns: list[str]
) -> tuple[pd.Series, dict[Any, tuple[str, list[str]]]]:
    """Rows sharing a key: identical ones collapse, conflicting ones are reported.

    Parameters
    ----------
    frame
        The rows.
    key
        The key of each row (aligned with ``frame``); missing keys are ignored.
    columns
        The columns compared between rows of one key (missing values compare equal).

    Returns
    -------
    drop, conflicts
        ``drop`` marks the extra copies of identical rows (the first copy of each key is
        kept; the copies are equal, so which one does not matter). ``conflicts`` maps each
        key whose rows differ to the first differing column and its distinct values (as
        sorted text), independent of row order.
    """
    drop = pd.Series(False, index=frame.index)
    conflicts: dict[Any, tuple[str, list[str]]] = {}
    dup = (key.duplicated(keep=False) & key.notna()).to_numpy(bool)
    if not dup.any():
        return drop, conflicts
    sub = frame.loc[dup, columns].astype(object)
    sub = sub.where(sub.notna(), None)
    for k, idx in sub.groupby(key[dup].to_numpy(object), sort=True).groups.items():
        rows = sub.loc[idx]
        diff = [c for c in columns if len(set(rows[c])) > 1]
        if diff:
            conflicts[k] = (diff[0], sorted({str(v) for v in rows[diff[0]]}))
        else:
            drop[idx[1:]] = True
    return drop, conflicts


def _date_checks(
    frame: pd.DataFrame, as_of: dt.date
) -> list[tuple[NDArray[np.bool_], str]]:
    """Masks and reasons for rows whose ``as_of_date`` is missing, not a date or another day."""
    if "as_of_date" not in frame.columns:
        return []
    days, not_date = as_days(frame["as_of_date"])
    missing = np.isnat(days) & ~not_date
    other = ~np.isnat(days) & (days != np.datetime64(as_of, "D"))
    return [(missing, "as_of_date is missing: the row belongs to no snapshot"),
            (not_date, "as_of_date is not a date"),
            (other, f"as_of_date is not the run's as-of date {as_of}")]


def validate_snapshot(
    positions: pd.DataFrame, market: pd.DataFrame, as_of: dt.date
) -> Snapshot:
    """Set aside bad market and position rows; keep the good ones.

    Market rows: as_of_date missing or another day, rows of one underlying that differ
    (identical copies collapse, with a warning), spot not finite, <= 0 or above
    ``MAX_PRICE`` (every position on the underlying is rejected), volatility not finite,
    <= 0 or > 500% and dividend yield not finite or beyond ``MAX_DIVIDEND_YIELD`` (options
    on the underlying are rejected; stock positions go on).
    Position rows: as_of_date missing or another day, rows of one position_id that differ
    (identical copies collapse, with a warning), empty desk, unknown instrument_type,
    unknown underlying, non-finite quantity, multiplier not finite or <= 0, notional
    ``|quantity x multiplier x spot|`` above ``MAX_NOTIONAL``, option without a strike in
    (0, ``MAX_PRICE``] or without expiry, expiry before the as-of date or more than
    ``MAX_EXPIRY_YEARS`` after it.
    """
    rej: list[Rejection] = []
    warnings: list[str] = []
    mkt = market.copy()
    mkt["underlying"] = mkt["underlying"].astype("string")
    all_market = set(mkt["underlying"].dropna().astype(str))
    dated = np.ones(len(mkt), dtype=bool)
    for mask, reason in _date_checks(mkt, as_of):
        m = mask & dated
        for u, v in zip(mkt.loc[m, "underlying"], mkt.loc[m, "as_of_date"], strict=True):
            rej.append(Rejection("market", str(u), "as_of_date", v, reason))
        dated &= ~mask
    mkt = mkt[dated]
    rej.extend(Rejection("market", "<missing>", "underlying", None, "underlying is missing")
               for _ in range(int(mkt["underlying"].isna().sum())))
    mkt = mkt[mkt["underlying"].notna()]
    same, conflicts = duplicate_rows(
        mkt, mkt["underlying"], [c for c in mkt.columns if c != "underlying"])
    if same.any():
        warnings.append(f"market: {int(same.sum())} identical duplicate row(s) collapsed "
                        f"(underlying {', '.join(sorted(set(mkt.loc[same, 'underlying'])))})")
    mkt = mkt[~same]
    dup_u = mkt["underlying"].isin(list(conflicts)).fillna(False).astype(bool)
    for u in mkt.loc[dup_u, "underlying"]:
        col, vals = conflicts[u]
        rej.append(Rejection("market", str(u), "underlying", u,
                             f"duplicate underlying in market with different {col}: "
                             f"{' and '.join(vals)}"))
    mkt = mkt[~dup_u]
    spot = pd.to_numeric(mkt["spot"], errors="coerce").astype(float)
    bad_spot = ~(np.isfinite(spot) & (spot > 0) & (spot <= MAX_PRICE))
    for u, s in zip(mkt.loc[bad_spot, "underlying"], spot[bad_spot], strict=True):
        rej.append(Rejection("market", str(u), "spot", s,
                             f"spot must be finite, > 0 and <= {MAX_PRICE:g}"))
    mkt = mkt[~bad_spot]
    vol = pd.to_numeric(mkt["volatility"], errors="coerce").astype(float)
    div = pd.to_numeric(mkt["dividend_yield"], errors="coerce").astype(float)
    bad_vol = ~np.isfinite(vol) | (vol <= 0) | (vol > MAX_VOLATILITY)
    bad_div = ~(np.isfinite(div) & (div.abs() <= MAX_DIVIDEND_YIELD))
    for u, v in zip(mkt.loc[bad_vol, "underlying"], vol[bad_vol], strict=True):
        rej.append(Rejection(
            "market", str(u), "volatility", v,
            f"volatility must be in (0, {MAX_VOLATILITY}]; options on it rejected"))
    only_div = bad_div & ~bad_vol
    for u, v in zip(mkt.loc[only_div, "underlying"], div[only_div], strict=True):
        rej.append(Rejection("market", str(u), "dividend_yield", v,
                             f"dividend_yield must be finite and within "
                             f"+-{MAX_DIVIDEND_YIELD:g}; options on it rejected"))
    no_options = set(mkt.loc[bad_vol | bad_div, "underlying"])
    good_market = set(mkt["underlying"])
    mkt = mkt.assign(sector=mkt["sector"].fillna("unknown")).reset_index(drop=True)

    pos = positions.copy()
    pid = pos["position_id"].astype("string")
    keep = pd.Series(True, index=pos.index)

    def reject(mask: pd.Series | NDArray[np.bool_], column: str, reason: str) -> None:
        hit = np.asarray(mask, dtype=bool)
        if not hit.any():  # the usual case: nothing to set aside
            return
        mask = pd.Series(hit, index=pos.index)
        for i in pos.index[mask & keep]:
            rej.append(Rejection("positions", str(pid[i]), column, pos.at[i, column], reason))
        keep[mask] = False

    for mask, reason in _date_checks(pos, as_of):
        reject(mask, "as_of_date", reason)
    reject(pid.isna(), "position_id", "position_id is missing")
    same, conflicts = duplicate_rows(
        pos[keep], pid[keep], [c for c in pos.columns if c != "position_id"])
    if same.any():
        warnings.append(f"positions: {int(same.sum())} identical duplicate row(s) collapsed "
                        f"(position_id {', '.join(sorted(set(pid[same.index[same]])))})")
        keep[same.index[same]] = False
    for i in pos.index[keep & pid.isin(list(conflicts)).fillna(False).astype(bool)]:
        col, vals = conflicts[pid[i]]
        rej.append(Rejection("positions", str(pid[i]), "position_id", pid[i],
                             f"duplicate position_id for this date with different {col}: "
                             f"{' and '.join(vals)}"))
        keep[i] = False
    desk = pos["desk"].astype("string").str.strip()
    reject(desk.isna() | (desk == ""), "desk", "desk is missing")
    itype = pos["instrument_type"].astype("string").str.strip().str.lower()
    reject(~itype.isin(list(KINDS)).fillna(False).astype(bool), "instrument_type",
           "unknown instrument_type (expected equity, call or put)")
    und = pos["underlying"].astype("string")
    reject(~und.isin(list(all_market)).fillna(False).astype(bool), "underlying",
           "underlying not in market for this date")
    reject(und.isin(list(all_market - good_market)).fillna(False).astype(bool), "underlying",
           "underlying rejected in market (bad or duplicate market row)")
    qty = pd.to_numeric(pos["quantity"], errors="coerce").astype(float)
    reject(~np.isfinite(qty), "quantity", "quantity must be finite")
    mult = pd.to_numeric(pos["multiplier"], errors="coerce").astype(float)
    reject(~np.isfinite(mult) | (mult <= 0), "multiplier", "multiplier must be finite and > 0")
    spot_of = pd.Series(spot[~bad_spot].to_numpy(float),
                        index=mkt["underlying"].astype(str).to_numpy(object))
    pos_spot = und.map(spot_of).astype(float)
    with np.errstate(over="ignore", invalid="ignore"):
        notional = (qty * mult * pos_spot).abs()
    big = keep & ~(notional <= MAX_NOTIONAL)
    for i in pos.index[big]:
        col = "quantity" if abs(qty[i]) >= mult[i] else "multiplier"
        rej.append(Rejection(
            "positions", str(pid[i]), col, pos.at[i, col],
            f"notional |quantity x multiplier x spot| = {notional[i]:.4g} above the "
            f"plausibility bound {MAX_NOTIONAL:g} (quantity {qty[i]:g}, multiplier "
            f"{mult[i]:g}, spot {pos_spot[i]:g})"))
    keep[big] = False
    is_opt = itype.isin(["call", "put"]).fillna(False).astype(bool)
    strike = pd.to_numeric(pos["strike"], errors="coerce").astype(float)
    reject(is_opt & ~(np.isfinite(strike) & (strike > 0) & (strike <= MAX_PRICE)), "strike",
           f"option needs a finite strike > 0 and <= {MAX_PRICE:g}")
    days, not_date = as_days(pos["expiry"])
    as_of_day = np.datetime64(as_of, "D")
    latest = as_of_day + int(MAX_EXPIRY_YEARS * 365.25)
    reject(is_opt & not_date, "expiry", "expiry is not a date")
    reject(is_opt & np.isnat(days), "expiry", "option needs an expiry date")
    reject(is_opt & ~np.isnat(days) & (days < as_of_day), "expiry",
           f"expiry before the as-of date {as_of}")
    reject(is_opt & ~np.isnat(days) & (days > latest), "expiry",
           f"expiry out of range: more than {MAX_EXPIRY_YEARS} years after the as-of date "
           f"{as_of} (latest {latest})")
    reject(is_opt & und.isin(list(no_options)).fillna(False).astype(bool), "underlying",
           "option on an underlying whose volatility or dividend yield was rejected")

    # Kept options' expiries are within MAX_EXPIRY_YEARS, inside the nanosecond range;
    # any other date (ignored on stocks) that is not becomes NaT.
    in_ns = (days >= np.datetime64("1678-01-01")) & (days <= np.datetime64("2262-04-11"))
    expiry = pd.Series(np.where(in_ns, days, np.datetime64("NaT")).astype("datetime64[ns]"),
                       index=pos.index)
    good = pos[keep].assign(
        position_id=pid[keep].astype(str), desk=desk[keep].astype(str),
        instrument_type=itype[keep].astype(str), underlying=und[keep].astype(str),
        quantity=qty[keep], multiplier=mult[keep], strike=strike[keep],
        expiry=expiry[keep],
    ).reset_index(drop=True)
    return Snapshot(positions=good, market=mkt, rejected=tuple(rej), warnings=tuple(warnings))


def reject_positions_on(snapshot: Snapshot, underlyings: dict[str, str]) -> Snapshot:
    """Set aside every position on the given underlyings (name -> reason)."""
    if not underlyings:
        return snapshot
    pos = snapshot.positions
    mask = pos["underlying"].isin(list(underlyings))
    extra = [
        Rejection("positions", pid, "underlying", u, underlyings[u])
        for pid, u in zip(pos.loc[mask, "position_id"], pos.loc[mask, "underlying"], strict=True)
    ]
    return Snapshot(pos[~mask].reset_index(drop=True), snapshot.market,
                    snapshot.rejected + tuple(extra), snapshot.warnings)


@dataclass(frozen=True)
class ResolvedBook:
    """A book with every contract term resolved, as arrays over positions ``P``.

    Underlying-level arrays have length ``U`` (sorted underlying names), desk-level ``D``.
    Quantities include the contract multiplier. Times are year fractions of the configured
    day count; ``tau_h`` is the life left at the horizon (<= 0: expired by then, valued at
    intrinsic on the horizon spot). ``rate_h`` is the zero rate at ``max(tau_h, 0)`` from the
    same curve (no roll-down). NaN in option-only fields for equities.

    ``volatility`` is each option's implied vol: from its underlying's surface in
    ``surfaces`` (at ``k = ln(K / F(T))``, ``F(T) = S exp((r(T) - q) T)``, by the rule of
    :mod:`risk_engine.vol_surface`) where it has one, else the market's ``volatility``.
    ``surfaces`` maps the book's underlyings that have a surface to it (empty without the
    ``vol_surface`` input).
    """

    as_of: dt.date
    horizon_date: dt.date
    horizon_years: float
    position_id: NDArray[np.object_]
    desks: tuple[str, ...]
    desk_index: IntArray
    underlyings: tuple[str, ...]
    sectors: tuple[str, ...]
    underlying_index: IntArray
    kind: NDArray[np.int8]
    quantity: FloatArray
    strike: FloatArray
    expiry_date: NDArray[np.datetime64]
    expiry_years: FloatArray
    tau_h: FloatArray
    volatility: FloatArray
    dividend_yield: FloatArray
    rate: FloatArray
    rate_h: FloatArray
    spot: FloatArray
    unit_value: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    rho: FloatArray
    vanna: FloatArray
    volga: FloatArray
    surfaces: Mapping[str, VolSurface] = field(default_factory=dict)

    @property
    def n_positions(self) -> int:
        """Number of positions ``P``."""
        return int(self.quantity.size)

    @property
    def value(self) -> FloatArray:
        """Market value of each position today, shape (P,)."""
        return self.unit_value * self.quantity

    def gross_value(self) -> FloatArray:
        """Sum of |position values| per desk, shape (D,)."""
        return np.bincount(self.desk_index, np.abs(self.value),
                           minlength=len(self.desks)).astype(np.float64)

    def desk_mask(self, desk: str) -> NDArray[np.bool_]:
        """Boolean mask of the positions of ``desk``."""
        return self.desk_index == self.desks.index(desk)


def resolve_book(
    snapshot: Snapshot,
    curve: ZeroCurve,
    *,
    as_of: dt.date,
    horizon_days: int,
    day_count: str = "trading_252",
    surfaces: Mapping[str, VolSurface] | None = None,
) -> ResolvedBook:
    """Resolve validated rows into a :class:`ResolvedBook`; values and Greeks of today.

    Options on an underlying in ``surfaces`` take their implied vol from that surface at
    their strike's log-forward-moneyness and their expiry's year fraction
    (:func:`risk_engine.vol_surface.surface_vols`); the others the market's volatility.

    Raises
    ------
    DataError
        If no position is left (an empty book cannot be risk-measured).
    """
    pos = snapshot.positions
    if len(pos) == 0:
        raise DataError(
            f"positions: no valid position for as_of_date {as_of} "
            f"({len(snapshot.rejected)} row(s) rejected)"
        )
    pos = pos.sort_values("position_id", kind="stable").reset_index(drop=True)
    mkt = snapshot.market.set_index("underlying")
    underlyings = tuple(sorted(pos["underlying"].unique()))
    desks = tuple(sorted(pos["desk"].unique()))
    u_idx = pd.Index(underlyings).get_indexer(pos["underlying"]).astype(np.int64)
    d_idx = pd.Index(desks).get_indexer(pos["desk"]).astype(np.int64)
    m = mkt.loc[list(underlyings)]
    spot = m["spot"].to_numpy(float)
    kind = pos["instrument_type"].map(KINDS).to_numpy(np.int8)
    is_opt = kind != EQUITY
    quantity = (pos["quantity"] * pos["multiplier"]).to_numpy(float)
    hdate = horizon_date(as_of, horizon_days)
    h = float(year_fraction(as_of, np.array([hdate], dtype="datetime64[D]"), day_count)[0])
    expiry = pos["expiry"].to_numpy("datetime64[D]")
    t = np.full(len(pos), np.nan)
    if is_opt.any():
        t[is_opt] = year_fraction(as_of, expiry[is_opt], day_count)
    tau_h = np.where(is_opt, t - h, np.nan)
    vol = np.where(is_opt, m["volatility"].to_numpy(float)[u_idx], np.nan)
    div = np.where(is_opt, m["dividend_yield"].to_numpy(float)[u_idx], np.nan)
    rate = np.where(is_opt, curve.zero_rate(np.nan_to_num(t)), np.nan)
    rate_h = np.where(is_opt, curve.zero_rate(np.maximum(np.nan_to_num(tau_h), 0.0)), np.nan)
    strike = np.where(is_opt, pos["strike"].to_numpy(float), np.nan)
    s = spot[u_idx]
    held = {u: surfaces[u] for u in underlyings if surfaces and u in surfaces}
    if held and is_opt.any():
        fwd = forward(s[is_opt], rate[is_opt], div[is_opt], t[is_opt])
        s_vol, has = surface_vols(held, pos["underlying"].to_numpy(object)[is_opt],
                                  strike[is_opt], fwd, t[is_opt])
        vol[np.flatnonzero(is_opt)[has]] = s_vol[has]

    unit_value = s.copy()
    delta = np.ones(len(pos))
    gamma = np.zeros(len(pos))
    vega = np.zeros(len(pos))
    theta = np.zeros(len(pos))
    rho = np.zeros(len(pos))
    vanna = np.zeros(len(pos))
    volga = np.zeros(len(pos))
    if is_opt.any():
        g = black_scholes_greeks(
            spots=s[is_opt], strikes=strike[is_opt], expiries=t[is_opt],
            volatilities=vol[is_opt], rates=rate[is_opt], dividend_yields=div[is_opt],
            is_call=kind[is_opt] == CALL,
        )
        unit_value[is_opt] = g.price
        delta[is_opt], gamma[is_opt], vega[is_opt] = g.delta, g.gamma, g.vega
        theta[is_opt], rho[is_opt] = g.theta, g.rho
        vanna[is_opt], volga[is_opt] = g.vanna, g.volga

    return ResolvedBook(
        as_of=as_of, horizon_date=hdate, horizon_years=h,
        position_id=pos["position_id"].to_numpy(object), desks=desks, desk_index=d_idx,
        underlyings=underlyings, sectors=tuple(m["sector"].astype(str)), underlying_index=u_idx,
        kind=kind, quantity=quantity, strike=strike, expiry_date=expiry, expiry_years=t,
        tau_h=tau_h,
        volatility=vol, dividend_yield=div, rate=rate, rate_h=rate_h, spot=spot,
        unit_value=unit_value, delta=delta, gamma=gamma, vega=vega, theta=theta, rho=rho,
        vanna=vanna, volga=volga,
        surfaces=held,
    )


def greeks_table(book: ResolvedBook) -> pd.DataFrame:
    """Greeks and market value per (desk, underlying), summed over positions.

    Columns: desk, underlying, n_positions, market_value, delta, gamma, vega, theta, rho,
    vanna, volga.
    """
    q = book.quantity
    frame = pd.DataFrame({
        "desk": np.asarray(book.desks, dtype=object)[book.desk_index],
        "underlying": np.asarray(book.underlyings, dtype=object)[book.underlying_index],
        "n_positions": 1,
        "market_value": book.value,
        "delta": book.delta * q, "gamma": book.gamma * q, "vega": book.vega * q,
        "theta": book.theta * q, "rho": book.rho * q,
        "vanna": book.vanna * q, "volga": book.volga * q,
    })
    out = frame.groupby(["desk", "underlying"], sort=True, as_index=False).sum()
    out["n_positions"] = out["n_positions"].astype(np.int64)
    return out


#: Expiry buckets of ``vega_buckets``: (label, largest expiry in years), then ``longer``.
VEGA_BUCKETS: tuple[tuple[str, float], ...] = (("1M", 1 / 12), ("3M", 0.25), ("1Y", 1.0))
LONGER = "longer"


def expiry_bucket(expiry_years: FloatArray) -> NDArray[np.object_]:
    """Label of the expiry bucket of each time to expiry ``T`` (years).

    ``T`` falls in the first bucket of :data:`VEGA_BUCKETS` whose bound it does not exceed
    (``1M``: ``T <= 1/12``, ``3M``: ``T <= 0.25``, ``1Y``: ``T <= 1``), else ``longer``.
    """
    t = np.asarray(expiry_years, dtype=np.float64)
    bounds = np.array([b for _, b in VEGA_BUCKETS])
    labels = np.array([lbl for lbl, _ in VEGA_BUCKETS] + [LONGER], dtype=object)
    return labels[np.searchsorted(bounds, t, side="left")]


def vega_buckets_table(book: ResolvedBook) -> pd.DataFrame:
    """Vega per (desk, underlying, expiry bucket) of the options (see :func:`expiry_bucket`).

    Columns: desk, underlying, expiry_bucket, n_positions, vega (``dV/dsigma`` per 1.00 of
    vol, times quantity and multiplier, summed). Rows sorted by desk, underlying and bucket
    (shortest first); only buckets holding options appear.
    """
    opt = book.kind != EQUITY
    frame = pd.DataFrame({
        "desk": np.asarray(book.desks, dtype=object)[book.desk_index[opt]],
        "underlying": np.asarray(book.underlyings, dtype=object)[book.underlying_index[opt]],
        "expiry_bucket": expiry_bucket(book.expiry_years[opt]),
        "n_positions": 1,
        "vega": book.vega[opt] * book.quantity[opt],
    })
    order = {lbl: i for i, lbl in enumerate([*(b for b, _ in VEGA_BUCKETS), LONGER])}
    out = frame.groupby(["desk", "underlying", "expiry_bucket"], sort=False,
                        as_index=False).sum()
    out["_rank"] = out["expiry_bucket"].map(order)
    out = out.sort_values(["desk", "underlying", "_rank"]).drop(columns="_rank")
    out["n_positions"] = out["n_positions"].astype(np.int64)
    out["vega"] = out["vega"].astype(np.float64)
    return out.reset_index(drop=True)


def select_positions(book: ResolvedBook, index: NDArray[np.int64]) -> ResolvedBook:
    """The book restricted to the positions ``index`` (desk and underlying lists unchanged)."""
    n = book.n_positions
    changes = {
        f: getattr(book, f)[index]
        for f in book.__dataclass_fields__
        if isinstance(getattr(book, f), np.ndarray) and getattr(book, f).shape[:1] == (n,)
        and f != "spot"
    }
    return dataclasses.replace(book, **changes)
