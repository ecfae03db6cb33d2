"""Mean-reverting baskets of underlyings, estimated from closing prices.

Within each group of related underlyings (a sector), candidate baskets are the
cointegrating vectors of a Johansen test (statsmodels ``coint_johansen``; the rank from
``select_coint_rank``) or, as the alternative, the smallest principal components of the
price levels (the directions along which prices vary least, a Box-Tiao-like choice).
A basket holds at most ``max_assets`` underlyings: in a larger group the candidate's
support is cut to the underlyings carrying most of its spread's variation and the vector
re-estimated on that support. Weights are whole shares, the largest ``basket_scale_shares``.

Each basket's spread (``weights . prices``) gets an AR(1) fit, read as an
Ornstein-Uhlenbeck process: ``s_t = a + b s_{t-1} + e_t``, speed ``-ln b`` per day,
half-life ``ln 2 / speed`` days, and an augmented Dickey-Fuller statistic. A basket is
kept when its test (Johansen trace for ``johansen``, ADF for both methods) is significant
at ``significance`` and its half-life is at most ``max_half_life_days``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.hedging.settings import HedgingSettings

MAX_GROUP = 12
"""Largest group one Johansen test takes (statsmodels tabulates critical values up to 12)."""
MIN_OBSERVATIONS = 30
"""Fewest common closes a group needs to be tested."""
_LEVEL_COLUMN = {0.10: 0, 0.05: 1, 0.01: 2}


@dataclass(frozen=True)
class Basket:
    """One candidate basket and its tests.

    Attributes
    ----------
    basket_id : str
        ``<group>-<n>``, unique within one estimation.
    method : str
        ``johansen`` or ``pca``.
    names : tuple of str
        Its underlyings.
    weights : ndarray of int64
        Shares of each underlying in one lot of the basket.
    test : str
        ``johansen_trace`` or ``adf``: the test whose statistic is reported.
    statistic, critical_value : float
        The reported test's statistic and its critical value at the configured level
        (Johansen: significant above; ADF: significant below).
    adf_statistic, adf_critical_value : float
        The spread's ADF test (constant, one lag), always computed.
    speed : float
        Mean-reversion speed of the spread per trading day (NaN when not reverting).
    half_life_days : float
        ``ln 2 / speed`` in trading days (inf when not reverting).
    spread_volatility : float
        Standard deviation of the spread level over the window, currency per basket lot.
    kept : bool
        Significant and reverting within ``max_half_life_days``.
    reason : str
        Why a basket was dropped ('' when kept).
    """

    basket_id: str
    method: str
    names: tuple[str, ...]
    weights: NDArray[np.int64]
    test: str
    statistic: float
    critical_value: float
    adf_statistic: float
    adf_critical_value: float
    speed: float
    half_life_days: float
    spread_volatility: float
    kept: bool
    reason: str


def ou_fit(spread: NDArray[np.float64]) -> tuple[float, float]:
    """Mean-reversion speed and half-life of a spread from an AR(1) regression.

    Parameters
    ----------
    spread : ndarray
        The spread's levels, one per trading day, oldest first.

    Returns
    -------
    speed, half_life_days
        ``-ln b`` and ``ln 2 / speed`` for the OLS slope ``b`` of ``s_t`` on
        ``s_{t-1}`` (with a constant); NaN and inf when ``b`` is not in (0, 1).
    """
    x = np.asarray(spread, dtype=np.float64)
    if x.size < 3:
        return math.nan, math.inf
    prev, cur = x[:-1], x[1:]
    dp = prev - prev.mean()
    denom = float(dp @ dp)
    if denom <= 0:
        return math.nan, math.inf
    b = float(dp @ (cur - cur.mean())) / denom
    if not 0.0 < b < 1.0:
        return math.nan, math.inf
    speed = -math.log(b)
    return speed, math.log(2.0) / speed


def adf(spread: NDArray[np.float64], significance: float) -> tuple[float, float]:
    """ADF statistic (constant, one lag) of a spread and its critical value at ``significance``."""
    from statsmodels.tsa.stattools import adfuller

    x = np.asarray(spread, dtype=np.float64)
    if x.size < 10 or float(np.ptp(x)) == 0.0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the tuple form is requested
        stat, _, _, _, crit, *_ = adfuller(x, maxlag=1, regression="c", autolag=None)
    return float(stat), float(crit[f"{int(round(significance * 100))}%"])


def whole_shares(vector: NDArray[np.float64], scale: int) -> NDArray[np.int64]:
    """A weight vector in whole shares: largest ``|weight|`` = ``scale``, first non-zero > 0."""
    v = np.asarray(vector, dtype=np.float64)
    big = float(np.max(np.abs(v))) if v.size else 0.0
    if big == 0.0 or not math.isfinite(big):
        return np.zeros(v.size, dtype=np.int64)
    w = np.rint(v / big * scale).astype(np.int64)
    nz = np.flatnonzero(w)
    if nz.size and w[nz[0]] < 0:
        w = -w
    return w


def _johansen(prices: NDArray[np.float64], significance: float
              ) -> tuple[int, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rank, eigenvectors (columns), trace statistics and their critical values."""
    from statsmodels.tsa.vector_ar.vecm import coint_johansen, select_coint_rank

    res = coint_johansen(prices, det_order=0, k_ar_diff=1)
    rank = int(select_coint_rank(prices, det_order=0, k_ar_diff=1, method="trace",
                                 signif=significance).rank)
    col = _LEVEL_COLUMN[significance]
    return rank, np.asarray(res.evec), np.asarray(res.lr1), np.asarray(res.cvt)[:, col]


def _pca(prices: NDArray[np.float64]) -> NDArray[np.float64]:
    """Eigenvectors of the price levels' covariance, smallest variance first (columns)."""
    _, vecs = np.linalg.eigh(np.cov(prices, rowvar=False))
    return np.asarray(vecs)


def _support(vector: NDArray[np.float64], prices: NDArray[np.float64], k: int
             ) -> NDArray[np.int64]:
    """The ``k`` underlyings carrying most of the spread's variation, in column order."""
    size = np.abs(vector) * prices.std(axis=0)
    return np.sort(np.argsort(-size, kind="stable")[:k]).astype(np.int64)


def johansen_rank(prices: NDArray[np.float64], significance: float = 0.05) -> int:
    """Cointegration rank of ``prices`` (T, n) by the Johansen trace test."""
    return _johansen(np.asarray(prices, dtype=np.float64), significance)[0]


def group_baskets(prices: NDArray[np.float64], names: Sequence[str], group: str,
                  settings: HedgingSettings) -> list[Basket]:
    """Candidate baskets of one group of underlyings and their tests.

    Parameters
    ----------
    prices : ndarray, shape (T, n)
        Common closes of the group's underlyings, oldest first, ``2 <= n <= MAX_GROUP``.
    names : sequence of str
        The ``n`` underlyings, in column order.
    group : str
        The group's name (prefix of basket ids).
    settings : HedgingSettings
        Method, ``max_assets``, significance, ``max_half_life_days``, share scale.

    Returns
    -------
    list of Basket
        At most ``n - 1`` candidates, duplicates (same whole-share weights) removed.
    """
    p = np.asarray(prices, dtype=np.float64)
    n = p.shape[1]
    level = settings.significance
    raw: list[tuple[NDArray[np.int64], NDArray[np.float64], str, float, float, bool]] = []
    if settings.method == "johansen":
        rank, evec, trace, crit = _johansen(p, level)
        for i in range(n - 1):
            vec, stat, cv, sig = evec[:, i], float(trace[i]), float(crit[i]), i < rank
            idx = np.arange(n, dtype=np.int64)
            if n > settings.max_assets:
                idx = _support(vec, p, settings.max_assets)
                r2, ev2, tr2, cr2 = _johansen(p[:, idx], level)
                vec, stat, cv, sig = ev2[:, 0], float(tr2[0]), float(cr2[0]), r2 >= 1
            raw.append((idx, vec, "johansen_trace", stat, cv, sig))
    else:
        vecs = _pca(p)
        for i in range(n - 1):
            vec = vecs[:, i]
            idx = np.arange(n, dtype=np.int64)
            if n > settings.max_assets:
                idx = _support(vec, p, settings.max_assets)
                vec = _pca(p[:, idx])[:, 0]
            raw.append((idx, vec, "adf", math.nan, math.nan, True))
    out: list[Basket] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    for idx, vec, test, stat, cv, sig in raw:
        w = whole_shares(vec, settings.basket_scale_shares)
        nz = np.flatnonzero(w)
        key = tuple((names[int(idx[j])], int(w[j])) for j in nz)
        if key in seen:
            continue
        seen.add(key)
        sub = idx[nz]
        weights = w[nz]
        spread = p[:, sub] @ weights.astype(np.float64)
        adf_stat, adf_cv = adf(spread, level)
        if test == "adf":
            stat, cv = adf_stat, adf_cv
        speed, hl = ou_fit(spread)
        adf_ok = math.isfinite(adf_stat) and adf_stat < adf_cv
        if nz.size < 2:
            reason = "fewer than 2 underlyings after scaling to whole shares"
        elif not sig:
            reason = f"Johansen trace statistic {stat:.3g} not above {cv:.3g}"
        elif not adf_ok:
            reason = f"ADF statistic {adf_stat:.3g} not below {adf_cv:.3g}"
        elif not hl <= settings.max_half_life_days:
            reason = f"half-life {hl:.3g} days above max_half_life_days"
        else:
            reason = ""
        out.append(Basket(
            basket_id=f"{group}-{len(out) + 1}", method=settings.method,
            names=tuple(names[int(j)] for j in sub), weights=weights, test=test,
            statistic=stat, critical_value=cv, adf_statistic=adf_stat,
            adf_critical_value=adf_cv, speed=speed, half_life_days=hl,
            spread_volatility=float(spread.std()), kept=reason == "", reason=reason))
    return out


def clean_closes(history: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Closes as a (date x underlying) frame; conflicting or non-positive closes are NaN."""
    mine = history[history["underlying"].isin(list(names))]
    close = pd.to_numeric(mine["close"], errors="coerce").astype(float)
    mine = mine.assign(close=close.where(np.isfinite(close) & (close > 0)))
    lo = mine.pivot_table(index="date", columns="underlying", values="close", aggfunc="min")
    hi = mine.pivot_table(index="date", columns="underlying", values="close", aggfunc="max")
    closes = lo.where(lo == hi).sort_index()
    return closes.reindex(columns=[n for n in names if n in closes.columns])


def estimate_baskets(closes: pd.DataFrame, groups: Mapping[str, Sequence[str]],
                     settings: HedgingSettings) -> tuple[list[Basket], list[str]]:
    """Baskets of every group from a (date x underlying) frame of closes.

    A group is cut into chunks of at most :data:`MAX_GROUP` underlyings (sorted names);
    each chunk uses its last ``window_days`` dates where all its closes are known. A chunk
    with fewer than 2 underlyings with closes, or fewer than :data:`MIN_OBSERVATIONS`
    dates, is skipped (with a warning for the latter).

    Returns
    -------
    baskets, warnings
    """
    baskets: list[Basket] = []
    notes: list[str] = []
    for group in sorted(groups):
        names = sorted(n for n in groups[group] if n in closes.columns)
        chunks = [names[i:i + MAX_GROUP] for i in range(0, len(names), MAX_GROUP)]
        for c, chunk in enumerate(chunks):
            if len(chunk) < 2:
                continue
            label = group if len(chunks) == 1 else f"{group}.{c + 1}"
            frame = closes[chunk].dropna().tail(settings.window_days)
            if len(frame) < MIN_OBSERVATIONS:
                notes.append(f"hedging: group {label}: {len(frame)} common closes, fewer "
                                f"than {MIN_OBSERVATIONS}; no basket estimated")
                continue
            try:
                baskets += group_baskets(frame.to_numpy(float), chunk, label, settings)
            except (np.linalg.LinAlgError, ValueError) as exc:
                notes.append(f"hedging: group {label}: baskets not estimated: {exc}")
    return baskets, notes
