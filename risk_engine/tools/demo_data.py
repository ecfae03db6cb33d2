"""A realistic synthetic snapshot of an option market maker's book, written as Parquet.

Deterministic for a given seed: 50 underlyings in 10 sectors with a market + sector factor
structure, two years of correlated daily closes ending on the as-of date, an upward zero
curve, and 2,000 positions on 6 desks (stocks, calls and puts, long and short, weekly to
one-year expiries, some expiring inside a 10-day horizon). It also writes a factor model
(drifts, volatilities, correlations) so ``scenario_model.source: factor_model`` works too,
and ATM vol and zero-curve histories (``vol_history``, ``rate_history``) on the spot
history's dates for the vol and rate factors.
With ``vol_surface=True`` it adds a ``vol_surface`` table of implied-vol quotes for every
other underlying (:func:`demo_vol_surface`); without it the snapshot is unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from risk_engine.schemas import INPUT_TABLES
from risk_engine.timeaxis import ZeroCurve, horizon_date, year_fraction

DEFAULT_AS_OF = dt.date(2026, 11, 20)
SECTORS = ("technology", "financials", "healthcare", "energy", "industrials",
           "consumer", "utilities", "materials", "communication", "real_estate")
DESKS = ("index_vol", "tech_mm", "financials_mm", "energy_mm", "single_stock_vol", "delta_one")



@dataclasses.dataclass(frozen=True)
class _Universe:
    """The generated underlyings: sectors, names, spots and the factor model."""

    sector_id: np.ndarray  # (U,) index into SECTORS
    names: list[str]
    spot: np.ndarray  # (U,) today's close
    vol: np.ndarray  # (U,) annualized volatility
    drift: np.ndarray  # (U,) annualized price drift
    corr: np.ndarray  # (U, U) market + sector correlation


def generate(
    as_of: dt.date = DEFAULT_AS_OF,
    *,
    n_underlyings: int = 50,
    n_positions: int = 2000,
    history_days: int = 504,
    seed: int = 7,
    years: int | None = None,
    vol_surface: bool = False,
    one_desk: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Generate the demo tables in memory (see :mod:`risk_engine.schemas` for columns).

    ``years`` (e.g. 10) replaces the history by ``252 x years`` trading days with a crash and
    two volatility spikes (:func:`stressed_history`), for stressed VaR; every other table is
    the same as without it. ``vol_surface`` adds the ``vol_surface`` table
    (:func:`demo_vol_surface`, drawn from its own generator: the other tables are the same
    with or without it). ``n_positions`` grows the book on the same universe: the first
    2,000 positions are those of the default book, whatever ``n_positions``. ``one_desk``
    books every position on that desk (same instruments, desk and book columns renamed),
    e.g. to try the largest desk a run can take.
    """
    if n_underlyings % len(SECTORS):
        raise ValueError(f"n_underlyings must be a multiple of {len(SECTORS)}")
    # One generator, drawn from in a fixed order: universe, history, market, positions.
    rng = np.random.default_rng(seed)
    uni = _universe(rng, n_underlyings)
    history = _history(rng, uni, as_of, history_days)
    if years is not None:
        history = stressed_history(uni, as_of, 252 * years, seed)
    market = _market(rng, uni, as_of)
    rates = pd.DataFrame({
        "as_of_date": as_of,
        "tenor_years": [1 / 12, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0],
        "zero_rate": [0.0365, 0.0370, 0.0378, 0.0385, 0.0395, 0.0410, 0.0425],
    })
    positions = _positions(rng, uni, as_of, n_positions)
    if one_desk is not None:
        positions["desk"] = one_desk
        positions["book"] = [f"{one_desk}_{i % 3}" for i in range(len(positions))]
    factor_model = pd.DataFrame({"underlying": uni.names, "drift": uni.drift,
                                 "volatility": uni.vol})
    iu = np.triu_indices(n_underlyings, 1)
    correlations = pd.DataFrame({
        "underlying_a": np.asarray(uni.names)[iu[0]],
        "underlying_b": np.asarray(uni.names)[iu[1]],
        "correlation": uni.corr[iu],
    })
    vol_history, rate_history = _factor_histories(seed, uni, history, rates)
    tables = {"positions": positions, "market": market, "rates": rates, "history": history,
              "factor_model": factor_model, "correlations": correlations,
              "vol_history": vol_history, "rate_history": rate_history}
    if vol_surface:
        tables["vol_surface"] = demo_vol_surface(market, rates, as_of, seed=seed)
    return tables


#: Quoted expiries of the demo surfaces, in trading days after the as-of date (2W to 2Y).
SURFACE_EXPIRY_DAYS = (10, 21, 42, 63, 126, 252, 504)
#: Quoted log-forward-moneyness points ln(K / F) (strikes are rounded to the cent).
SURFACE_MONEYNESS = (-0.4, -0.3, -0.2, -0.15, -0.1, -0.05, 0.0, 0.05, 0.1, 0.15, 0.2, 0.3)
_SSVI_ETA = 0.6  # SSVI curvature; eta (1 + |rho|) <= 2 keeps the smiles butterfly-free


def demo_vol_surface(market: pd.DataFrame, rates: pd.DataFrame, as_of: dt.date, *,
                     seed: int = 7) -> pd.DataFrame:
    """Arbitrage-free implied-vol quotes for every other underlying of ``market``.

    Each surface is an SSVI (Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces",
    2014): total variance ``w(k, T) = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 -
    rho^2))`` with ``phi = eta / sqrt(theta (1 + theta))``, ``eta = 0.6`` and ``rho`` in
    [-0.7, -0.3] (a put skew), so ``eta (1 + |rho|) <= 2`` (no butterfly arbitrage); the ATM
    vol is the market's ``volatility`` times ``1 + s (min(T, 2) - 0.25)`` with a term slope
    ``s`` in [-0.15, 0.15], so ``theta = atm^2 T`` increases in ``T`` (no calendar
    arbitrage). Quotes at ``SURFACE_EXPIRY_DAYS`` x ``SURFACE_MONEYNESS``, strikes
    ``F(T) e^k`` (trading-252 year fractions, the curve of ``rates``) rounded to the cent.
    """
    rng = np.random.default_rng([seed, 17])  # its own stream: other tables unchanged
    rows = market.iloc[::2]
    curve = ZeroCurve.from_points(rates["tenor_years"], rates["zero_rate"])
    expiries = [horizon_date(as_of, d) for d in SURFACE_EXPIRY_DAYS]
    t = year_fraction(as_of, np.array(expiries, dtype="datetime64[D]"))
    k = np.asarray(SURFACE_MONEYNESS)
    parts = []
    for name, spot, vol, div in zip(rows["underlying"], rows["spot"], rows["volatility"],
                                    rows["dividend_yield"], strict=True):
        rho = rng.uniform(-0.7, -0.3)
        slope = rng.uniform(-0.15, 0.15)
        for expiry, ti in zip(expiries, t, strict=True):
            atm = vol * (1.0 + slope * (min(ti, 2.0) - 0.25))
            theta = atm**2 * ti
            phi = _SSVI_ETA / np.sqrt(theta * (1.0 + theta))
            w = 0.5 * theta * (1.0 + rho * phi * k
                               + np.sqrt((phi * k + rho) ** 2 + 1.0 - rho**2))
            fwd = spot * np.exp((float(curve.zero_rate(ti)) - div) * ti)
            parts.append(pd.DataFrame({
                "as_of_date": as_of, "underlying": name, "expiry": expiry,
                "strike": np.round(fwd * np.exp(k), 2), "implied_vol": np.sqrt(w / ti)}))
    return pd.concat(parts, ignore_index=True)


VOL_TENORS_DAYS = (21, 63, 126, 252)
"""Tenors (trading days) of the demo's ATM vol history."""


def _factor_histories(seed: int, uni: _Universe, history: pd.DataFrame,
                      rates: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ATM vol and zero-curve histories on the dates of the spot ``history``.

    From their own generator (seeded ``[seed, 16]``), so the other tables are unchanged.
    Per underlying, the log ATM vol at each of :data:`VOL_TENORS_DAYS` mean-reverts
    (half-life about 35 trading days) around a level near 1.1 times the name's volatility,
    with a term structure and a vol of vol falling with tenor (about 90% a year at one
    month, 45% at one year); its daily shock has correlation between -0.76 and -0.38 with the
    name's own return (vol rises when spot falls) and 0.9 across tenors. The zero curve is
    today's ``rates`` curve moved in parallel by a mean-reverting level (about 1% a year),
    zero on the last date, so the last curve is today's.
    """
    rng = np.random.default_rng([seed, 16])
    closes = history.pivot(index="date", columns="underlying", values="close")[uni.names]
    dates = list(closes.index)
    n_days, n_u = len(dates), len(uni.names)
    z_spot = np.vstack([np.zeros(n_u), np.diff(np.log(closes.to_numpy(float)), axis=0)
                        / (uni.vol * np.sqrt(1 / 252))])
    tenors = np.asarray(VOL_TENORS_DAYS, dtype=float)
    nu = 0.9 * (tenors / 21.0) ** -0.28  # annual vol of vol per tenor
    rho = rng.uniform(-0.8, -0.4, n_u)
    phi = 0.98
    common = rng.standard_normal((n_days, n_u))
    own = rng.standard_normal((n_days, n_u, len(tenors)))
    shock = rho * z_spot + np.sqrt(1 - rho**2) * common  # (days, U), unit variance
    eps = np.sqrt(0.9) * shock[:, :, None] + np.sqrt(0.1) * own
    x = eps * nu / np.sqrt(252)
    level = np.log(uni.vol * 1.1)[:, None] + 0.08 * np.log(tenors / 63.0)[None, :] \
        * rng.uniform(-1.0, 1.0, n_u)[:, None]
    y = np.zeros((n_u, len(tenors)))
    path = np.empty((n_days, n_u, len(tenors)))
    for i in range(n_days):
        y = phi * y + x[i] if i else y
        path[i] = np.exp(level + y)
    vol_history = pd.DataFrame({
        "date": np.repeat(np.asarray(dates, dtype=object), n_u * len(tenors)),
        "underlying": np.tile(np.repeat(uni.names, len(tenors)), n_days),
        "tenor_days": np.tile(np.asarray(VOL_TENORS_DAYS, dtype=np.int64), n_days * n_u),
        "atm_vol": np.round(path.ravel(), 6),
    })
    shift = np.zeros(n_days)
    steps = 0.01 / np.sqrt(252) * rng.standard_normal(n_days)
    for i in range(1, n_days):
        shift[i] = 0.99 * shift[i - 1] + steps[i]
    shift -= shift[-1]
    curve_t = rates["tenor_years"].to_numpy(float)
    curve_r = rates["zero_rate"].to_numpy(float)
    rate_history = pd.DataFrame({
        "date": np.repeat(np.asarray(dates, dtype=object), len(curve_t)),
        "tenor_years": np.tile(curve_t, n_days),
        "zero_rate": np.round((curve_r[None, :] + shift[:, None]).ravel(), 8),
    })
    return vol_history, rate_history


def _universe(rng: np.random.Generator, n_underlyings: int) -> _Universe:
    """Sectors, market and sector betas, volatilities, drifts, names and spots."""
    sector_id = np.repeat(np.arange(len(SECTORS)), n_underlyings // len(SECTORS))
    beta_m = rng.uniform(0.5, 0.8, n_underlyings)
    beta_s = rng.uniform(0.3, 0.5, n_underlyings)
    corr = np.outer(beta_m, beta_m) + np.outer(beta_s, beta_s) * (
        sector_id[:, None] == sector_id[None, :])
    np.fill_diagonal(corr, 1.0)
    vol = rng.uniform(0.15, 0.55, n_underlyings)
    drift = rng.uniform(0.02, 0.12, n_underlyings)
    names = [f"{SECTORS[s][:4].upper()}{i % (n_underlyings // len(SECTORS)) + 1:02d}"
             for i, s in enumerate(sector_id)]
    spot = np.round(np.exp(rng.uniform(np.log(20), np.log(500), n_underlyings)), 2)
    return _Universe(sector_id, names, spot, vol, drift, corr)


def _history(rng: np.random.Generator, uni: _Universe, as_of: dt.date,
             history_days: int) -> pd.DataFrame:
    """GBM daily closes on trading days ending at ``as_of``, the last close = spot."""
    n_underlyings = len(uni.names)
    days = np.busday_offset(np.datetime64(as_of, "D"), -np.arange(history_days + 1)[::-1],
                            roll="backward")
    chol = np.linalg.cholesky(uni.corr)
    dt_y = 1 / 252
    z = rng.standard_normal((history_days, n_underlyings)) @ chol.T
    rets = (uni.drift - 0.5 * uni.vol**2) * dt_y + uni.vol * np.sqrt(dt_y) * z
    log_path = np.vstack([np.zeros(n_underlyings), np.cumsum(rets, axis=0)])
    closes = uni.spot * np.exp(log_path - log_path[-1])
    history = pd.DataFrame({
        "date": np.repeat(days.astype("datetime64[D]"), n_underlyings),
        "underlying": np.tile(uni.names, history_days + 1),
        "close": np.round(closes.ravel(), 4),
    })
    history["date"] = pd.to_datetime(history["date"]).dt.date
    return history


def stressed_history(uni: _Universe, as_of: dt.date, history_days: int,
                     seed: int) -> pd.DataFrame:
    """Daily closes over ``history_days`` trading days with a crash and two vol spikes.

    The same factor structure as the default history, from its own generator (keyed by
    ``seed``): a one-day crash 60% of the way back (every name falls by 20 of its daily
    standard deviations, clipped to 15% .. 25%, in log), volatility tripled for the 60 days
    after it, and doubled for 40 days a quarter of the way back. The last close is the spot.
    """
    rng = np.random.default_rng([seed, 1987])
    n_underlyings = len(uni.names)
    days = np.busday_offset(np.datetime64(as_of, "D"), -np.arange(history_days + 1)[::-1],
                            roll="backward")
    chol = np.linalg.cholesky(uni.corr)
    dt_y = 1 / 252
    z = rng.standard_normal((history_days, n_underlyings)) @ chol.T
    scale = np.ones(history_days)
    crash = int(history_days * 0.4)
    scale[crash + 1:crash + 61] = 3.0
    spike = int(history_days * 0.75)
    scale[spike:spike + 40] = 2.0
    rets = ((uni.drift - 0.5 * uni.vol**2) * dt_y
            + uni.vol * np.sqrt(dt_y) * z * scale[:, None])
    rets[crash] = -np.clip(20.0 * uni.vol * np.sqrt(dt_y), 0.15, 0.25)
    log_path = np.vstack([np.zeros(n_underlyings), np.cumsum(rets, axis=0)])
    closes = uni.spot * np.exp(log_path - log_path[-1])
    history = pd.DataFrame({
        "date": np.repeat(days.astype("datetime64[D]"), n_underlyings),
        "underlying": np.tile(uni.names, history_days + 1),
        "close": np.round(closes.ravel(), 4),
    })
    history["date"] = pd.to_datetime(history["date"]).dt.date
    return history


def _market(rng: np.random.Generator, uni: _Universe, as_of: dt.date) -> pd.DataFrame:
    """Today's spots, implied volatilities (near the model's) and dividend yields."""
    n_underlyings = len(uni.names)
    implied = np.round(uni.vol * rng.uniform(0.9, 1.25, n_underlyings), 4)
    return pd.DataFrame({
        "as_of_date": as_of, "underlying": uni.names, "spot": uni.spot, "volatility": implied,
        "dividend_yield": np.round(rng.uniform(0.0, 0.03, n_underlyings), 4),
        "sector": [SECTORS[s] for s in uni.sector_id],
    })


#: Desks that trade only some sectors (indices into SECTORS); the others trade every name.
_DESK_SECTORS = {"tech_mm": [0, 8], "financials_mm": [1, 9], "energy_mm": [3, 7]}


def _positions(rng: np.random.Generator, uni: _Universe, as_of: dt.date,
               n_positions: int) -> pd.DataFrame:
    """Stocks, calls and puts, long and short, dealt round-robin over DESKS."""
    # Expiries: two weeklies inside a 10-day horizon, monthlies and quarterlies beyond.
    expiries = [horizon_date(as_of, d) for d in (5, 10, 20, 40, 85, 146, 252)]
    exp_p = np.array([0.08, 0.08, 0.2, 0.2, 0.18, 0.14, 0.12])
    rows = [_position_row(rng, uni, i, expiries, exp_p) for i in range(n_positions)]
    positions = pd.DataFrame(rows, columns=["position_id", "desk", "book", "instrument_type",
                                            "underlying", "quantity", "strike", "expiry",
                                            "multiplier"])
    positions.insert(0, "as_of_date", as_of)
    return positions


def _position_row(rng: np.random.Generator, uni: _Universe, i: int,
                  expiries: list[dt.date], exp_p: np.ndarray) -> tuple[object, ...]:
    """Draw position ``i``: underlying, instrument, side, size (and strike, expiry)."""
    desk = DESKS[i % len(DESKS)]
    if desk in _DESK_SECTORS:
        cands = np.flatnonzero(np.isin(uni.sector_id, _DESK_SECTORS[desk]))
    else:
        cands = np.arange(len(uni.names))
    u = int(rng.choice(cands))
    if desk == "delta_one":
        itype = "equity"
    else:
        itype = rng.choice(["equity", "call", "put"], p=[0.2, 0.42, 0.38])
    long_short = 1 if rng.random() < 0.55 else -1
    if itype == "equity":
        qty = long_short * float(rng.integers(1, 50)) * 100
        return (f"P{i + 1:06d}", desk, f"{desk}_{i % 3}", "equity", uni.names[u], qty,
                None, None, 1.0)
    exp = expiries[int(rng.choice(len(expiries), p=exp_p))]
    moneyness = float(np.exp(rng.normal(0.0, 0.12)))
    step = 1.0 if uni.spot[u] < 100 else 5.0
    strike = max(step, round(uni.spot[u] * moneyness / step) * step)
    qty = long_short * float(rng.integers(1, 40))
    return (f"P{i + 1:06d}", desk, f"{desk}_{i % 3}", str(itype), uni.names[u], qty,
            strike, exp, 100.0)


def write_tables(tables: dict[str, pd.DataFrame], root: str | Path) -> list[Path]:
    """Write tables under ``root``: dated tables as hive-partitioned folders, others as files.

    ``positions``, ``market`` and ``rates`` go to ``<root>/<table>/as_of_date=<date>/``
    (replacing that date's folder); ``history``, ``factor_model`` and ``correlations`` to
    ``<root>/<table>.parquet``. Columns are cast to the declared schemas.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.items():
        schema = INPUT_TABLES[name].arrow_schema()
        if "as_of_date" in frame.columns:
            for day, part in frame.groupby("as_of_date"):
                folder = root / name / f"as_of_date={day}"
                if folder.exists():
                    for old in folder.glob("*.parquet"):
                        old.unlink()
                folder.mkdir(parents=True, exist_ok=True)
                body = pa.Table.from_pandas(part, schema=schema, preserve_index=False)
                body = body.drop_columns(["as_of_date"])
                path = folder / "part-00000.parquet"
                pq.write_table(body, path)
                written.append(path)
        else:
            path = root / f"{name}.parquet"
            pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), path)
            written.append(path)
    return written


def generate_days(
    as_of: dt.date = DEFAULT_AS_OF,
    days: int = 260,
    *,
    n_underlyings: int = 50,
    n_positions: int = 2000,
    history_days: int = 504,
    seed: int = 7,
    turnover: float = 0.05,
) -> dict[str, pd.DataFrame]:
    """Daily snapshots of ``days`` business days ending at ``as_of``, on one market path.

    One simulated path of closes (``history_days`` days before the first snapshot, then the
    snapshots' days; the ``history`` table holds it all, ending at ``as_of``): each day's
    spots are that day's closes, implied volatilities move around the model's, the curve is
    fixed. The book trades every day: expired options leave it, a ``turnover`` share of the
    positions is closed, and new positions (fresh ids, strikes around the day's spot,
    expiries from the day) bring it back to ``n_positions``. ``pnl_history`` is the actual
    P&L of each day after the first: the hypothetical P&L of the day before's book
    (:func:`risk_engine.backtest.hypothetical.hypothetical_pnl`) plus a small trading P&L
    (normal, 5% of its size), so a backtest on the demo is real.

    Returns
    -------
    dict of frames: ``positions``, ``market``, ``rates`` (every date), ``history``,
    ``factor_model``, ``correlations``, ``pnl_history``.
    """
    from risk_engine.backtest.hypothetical import hypothetical_pnl

    if days < 1:
        raise ValueError("days must be >= 1")
    if n_underlyings % len(SECTORS):
        raise ValueError(f"n_underlyings must be a multiple of {len(SECTORS)}")
    rng = np.random.default_rng(seed)
    uni = _universe(rng, n_underlyings)
    history = _history(rng, uni, as_of, history_days + days - 1)
    closes = history.pivot(index="date", columns="underlying", values="close")[uni.names]
    dates = list(closes.index[-days:])
    ratio = rng.uniform(0.9, 1.25, n_underlyings)
    dividends = np.round(rng.uniform(0.0, 0.03, n_underlyings), 4)
    curve = {"tenor_years": [1 / 12, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0],
             "zero_rate": [0.0365, 0.0370, 0.0378, 0.0385, 0.0395, 0.0410, 0.0425]}
    exp_p = np.array([0.08, 0.08, 0.2, 0.2, 0.18, 0.14, 0.12])
    columns = ["position_id", "desk", "book", "instrument_type", "underlying", "quantity",
               "strike", "expiry", "multiplier"]
    markets, rates, books, pnls = [], [], [], []
    book = pd.DataFrame(columns=columns)
    next_id = 0
    for k, day in enumerate(dates):
        spot = closes.loc[day].to_numpy(float)
        today = dataclasses.replace(uni, spot=spot)
        implied = np.round(uni.vol * ratio * np.exp(0.05 * rng.standard_normal(n_underlyings)),
                           4)
        markets.append(pd.DataFrame({
            "as_of_date": day, "underlying": uni.names, "spot": spot, "volatility": implied,
            "dividend_yield": dividends, "sector": [SECTORS[s] for s in uni.sector_id]}))
        rates.append(pd.DataFrame({"as_of_date": day, **curve}))
        expiry = pd.to_datetime(book["expiry"]).dt.date
        live = book[book["instrument_type"].eq("equity") | (expiry > day).to_numpy(bool)]
        live = live[rng.random(len(live)) >= turnover] if k else live
        expiries = [horizon_date(day, d) for d in (5, 10, 20, 40, 85, 146, 252)]
        new = []
        for _ in range(n_positions - len(live)):
            row = _position_row(rng, today, next_id, expiries, exp_p)
            new.append((f"P{next_id + 1:08d}", *row[1:]))
            next_id += 1
        added = pd.DataFrame(new, columns=columns)
        book = (pd.concat([live, added], ignore_index=True) if len(live) and len(added)
                else (added if len(added) else live).reset_index(drop=True))
        books.append(book.assign(as_of_date=day)[["as_of_date", *columns]])
        if k:
            prev = dates[k - 1]
            hpl, _ = hypothetical_pnl(books[k - 1], markets[k - 1], rates[k - 1], markets[k],
                                      rates[k], prev, day)
            noise = rng.standard_normal(len(hpl)) * 0.05 * hpl["pnl"].abs().to_numpy()
            pnls.append(hpl.assign(pnl=np.round(hpl["pnl"].to_numpy() + noise, 2)))
    factor_model = pd.DataFrame({"underlying": uni.names, "drift": uni.drift,
                                 "volatility": uni.vol})
    iu = np.triu_indices(n_underlyings, 1)
    correlations = pd.DataFrame({
        "underlying_a": np.asarray(uni.names)[iu[0]],
        "underlying_b": np.asarray(uni.names)[iu[1]],
        "correlation": uni.corr[iu],
    })
    pnl_history = (pd.concat(pnls, ignore_index=True) if pnls
                   else pd.DataFrame(columns=["date", "desk", "pnl"]))
    vol_history, rate_history = _factor_histories(seed, uni, history,
                                                  pd.DataFrame(curve))
    return {"positions": pd.concat(books, ignore_index=True),
            "market": pd.concat(markets, ignore_index=True),
            "rates": pd.concat(rates, ignore_index=True), "history": history,
            "factor_model": factor_model, "correlations": correlations,
            "pnl_history": pnl_history, "vol_history": vol_history,
            "rate_history": rate_history}
