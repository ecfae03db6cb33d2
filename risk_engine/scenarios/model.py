"""The scenario model: drift and covariance of the underlyings' log returns.

Log returns over a horizon of ``h`` years are multivariate normal with mean
``(mu - diag(Sigma)/2) h`` and covariance ``Sigma h`` (correlated GBM); ``mu`` is the annual
price drift and ``Sigma`` the annual covariance of log returns.

With vol or rate factors on (:class:`~risk_engine.scenarios.factors.FactorLayout`), the
scenario block has more columns: the log relative shock of each underlying's ATM implied
vol per tenor and the parallel shift of the zero curve. They are jointly normal with the
log returns, with **zero mean** (a vol shock's median is "no change") and annual covariance
in the same ``cov`` matrix (columns in layout order), also scaled by ``h``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from risk_engine.covariance import cov_factor
from risk_engine.errors import ModelError
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.types import FloatArray

PERIODS_PER_YEAR = 252.0
_PSD_TOL = 1e-12


@dataclass(frozen=True)
class ScenarioModel:
    """Annualized drift ``mu`` (U,) of the underlyings and covariance ``cov`` (W, W).

    ``cov`` and ``factor`` cover every column of the scenario block in
    :attr:`layout` order (``W = layout.width``; ``W == U`` with vol and rate factors off).
    ``factor`` (W, W) satisfies ``factor @ factor.T == cov`` (to rounding). Its spot block
    ``factor[:U, :U]`` is the eigen-factor of ``cov[:U, :U]`` (so a singular covariance is
    fine) and ``factor[:U, U:] == 0``: the spot columns of a draw depend only on the first
    ``U`` normals, which is what keeps spot draws the same bits with factors on or off.
    ``repair`` describes a positive-semidefinite repair, if one was made. ``factor_layout``
    None means spot only (use :attr:`layout`).
    """

    underlyings: tuple[str, ...]
    mu: FloatArray
    cov: FloatArray
    factor: FloatArray
    source: str
    n_observations: int = 0
    repair: str = ""
    factor_layout: FactorLayout | None = None

    @property
    def layout(self) -> FactorLayout:
        """The column layout of this model's scenario blocks."""
        if self.factor_layout is None:
            return FactorLayout(len(self.underlyings))
        return self.factor_layout

    @property
    def spot(self) -> ScenarioModel:
        """The spot-only model (the first ``U`` columns); ``self`` when already spot only.

        For stages that model log returns only (grid, worst case, governance, hedging).
        """
        if self.layout.spot_only:
            return self
        u = len(self.underlyings)
        return ScenarioModel(self.underlyings, self.mu, self.cov[:u, :u], self.factor[:u, :u],
                             self.source, self.n_observations, self.repair)

    @property
    def volatility(self) -> FloatArray:
        """Annual volatility of each underlying's log return, shape (U,)."""
        u = len(self.underlyings)
        return np.sqrt(np.diag(self.cov)[:u])

    @property
    def factor_volatility(self) -> FloatArray:
        """Annual standard deviation of every column of the block, shape (W,).

        Vol columns: of the log relative vol shock (the vol of vol); rate column: of the
        parallel shift, in decimal.
        """
        return np.sqrt(np.diag(self.cov))

    @property
    def correlation(self) -> FloatArray:
        """Correlation of the block's columns, shape (W, W) (0 where a column is constant)."""
        sd = self.factor_volatility
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = self.cov / np.outer(sd, sd)
        return np.where(np.outer(sd, sd) > 0, corr, 0.0)

    def log_return_mean(self, horizon_years: float) -> FloatArray:
        """Mean of log returns over the horizon, ``(mu - sigma^2/2) h``, shape (U,)."""
        u = len(self.underlyings)
        return (self.mu - 0.5 * np.diag(self.cov)[:u]) * horizon_years

    def block_mean(self, horizon_years: float) -> FloatArray:
        """Mean of every column of the block over the horizon, shape (W,).

        Log returns as :meth:`log_return_mean`; vol and rate columns have mean 0.
        """
        out = np.zeros(self.layout.width)
        out[: len(self.underlyings)] = self.log_return_mean(horizon_years)
        return out

    def subset(self, underlyings: tuple[str, ...]) -> ScenarioModel:
        """The model restricted to (and ordered as) ``underlyings``.

        Vol columns follow their underlyings; the rate column is kept.
        """
        idx = [self.underlyings.index(u) for u in underlyings]
        if self.layout.spot_only:
            cov = self.cov[np.ix_(idx, idx)]
            return ScenarioModel(underlyings, self.mu[idx], cov, cov_factor(cov), self.source,
                                 self.n_observations, self.repair)
        lay = self.layout
        sub = FactorLayout(len(underlyings), lay.vol_tenors_years, lay.rate_factor)
        cols = list(idx)
        cols += [lay.vol_column(i, b) for i in idx for b in range(lay.n_vol_buckets)]
        if lay.rate_column is not None:
            cols.append(lay.rate_column)
        full = self.cov[np.ix_(cols, cols)]
        u = len(underlyings)
        spot_cov = full[:u, :u]
        factor, cov, _ = joint_factor(spot_cov, cov_factor(spot_cov), full[u:, :u],
                                      full[u:, u:])
        return ScenarioModel(underlyings, self.mu[idx], cov, factor, self.source,
                             self.n_observations, self.repair, sub)


def joint_factor(
    spot_cov: FloatArray, spot_factor: FloatArray, cross: FloatArray, other: FloatArray
) -> tuple[FloatArray, FloatArray, float]:
    """Block lower-triangular factor of the joint covariance, the spot block kept as given.

    With ``S = spot_cov = F F'`` (``F = spot_factor``), ``X = cross`` the covariance of the
    other factors with spot (E, U) and ``V = other`` (E, E): ``L = X pinv(F')`` (the part of
    the other factors explained by the spot normals) and ``R = V - L L'`` (the rest, its
    negative eigenvalues clipped to 0, ``R = G G'``). The factor is ``[[F, 0], [L, G]]``.

    Returns
    -------
    factor, cov, min_eig
        The (U+E, U+E) factor; the covariance it implies (``S`` itself in the spot block);
        the smallest eigenvalue of ``R`` before clipping (negative: ``V`` or ``X`` were
        inconsistent with ``S`` and the joint matrix was repaired).
    """
    u, e = spot_cov.shape[0], other.shape[0]
    if u:
        lower = cross @ np.linalg.pinv(spot_factor.T, rcond=1e-10)
    else:
        lower = np.zeros((e, 0))
    rest = other - lower @ lower.T
    rest = 0.5 * (rest + rest.T)
    vals, vecs = np.linalg.eigh(rest) if e else (np.zeros(0), np.zeros((0, 0)))
    min_eig = float(vals.min()) if e else 0.0
    g = vecs * np.sqrt(np.clip(vals, 0.0, None))
    factor = np.zeros((u + e, u + e))
    factor[:u, :u] = spot_factor
    factor[u:, :u] = lower
    factor[u:, u:] = g
    cov = np.empty((u + e, u + e))
    cov[:u, :u] = spot_cov
    xs = lower @ spot_factor.T
    cov[u:, :u] = xs
    cov[:u, u:] = xs.T
    cov[u:, u:] = lower @ lower.T + g @ g.T
    cov[u:, u:] = 0.5 * (cov[u:, u:] + cov[u:, u:].T)
    return factor, cov, min_eig


def with_factors(
    spot: ScenarioModel, layout: FactorLayout, cross: FloatArray, other: FloatArray,
    *, source: str | None = None,
) -> ScenarioModel:
    """Extend a spot-only model with vol and rate factor columns.

    Parameters
    ----------
    spot
        The spot model (its ``cov``, ``factor`` and ``mu`` are kept bit for bit).
    layout
        The block layout; ``layout.n_underlyings == len(spot.underlyings)``.
    cross, other
        Annual covariance of the non-spot columns (layout order) with the log returns
        (E, U) and among themselves (E, E).
    source
        The model's ``source`` (default: the spot model's).

    Returns
    -------
    ScenarioModel
        With :func:`joint_factor`; a joint matrix that is not positive semidefinite is
        repaired there and said in ``repair``.
    """
    if layout.spot_only:
        return spot
    u = len(spot.underlyings)
    if layout.n_underlyings != u or cross.shape != (layout.width - u, u):
        raise ValueError(f"layout {layout} does not fit a model of {u} underlyings and "
                         f"cross covariance of shape {cross.shape}")
    factor, cov, min_eig = joint_factor(spot.cov, spot.factor, cross, other)
    scale = float(np.max(np.abs(np.diag(other)))) if other.size else 0.0
    repair = spot.repair
    if min_eig < -1e-10 * max(scale, 1e-300):
        note = (f"joint covariance of spot, vol and rate factors not positive semidefinite "
                f"(smallest eigenvalue of the vol/rate part given spot {min_eig:.3e}); "
                "negative eigenvalues clipped to 0")
        repair = f"{repair}; {note}" if repair else note
    return ScenarioModel(spot.underlyings, spot.mu, cov, factor, source or spot.source,
                         spot.n_observations, repair, layout)


def nearest_psd_correlation(corr: FloatArray) -> tuple[FloatArray, float]:
    """Clip negative eigenvalues of a correlation matrix to 0 and restore the unit diagonal.

    Returns the repaired matrix and the smallest eigenvalue before repair. A matrix that is
    already positive semidefinite (to 1e-12) is returned unchanged.
    """
    sym = 0.5 * (corr + corr.T)
    if sym.size == 0:
        return sym, 0.0
    vals, vecs = np.linalg.eigh(sym)
    min_eig = float(vals.min())
    if min_eig >= -_PSD_TOL:
        return sym, min_eig
    fixed = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
    d = np.sqrt(np.clip(np.diag(fixed), 1e-300, None))
    fixed = fixed / np.outer(d, d)
    np.fill_diagonal(fixed, 1.0)
    return 0.5 * (fixed + fixed.T), min_eig


def _from_vol_corr(
    underlyings: tuple[str, ...], mu: FloatArray, vol: FloatArray, corr: FloatArray,
    source: str, n_obs: int = 0,
) -> ScenarioModel:
    fixed, min_eig = nearest_psd_correlation(corr)
    repair = ""
    if fixed is not corr and min_eig < -_PSD_TOL:
        repair = (f"correlation matrix not positive semidefinite (smallest eigenvalue "
                  f"{min_eig:.3e}); negative eigenvalues clipped to 0")
    cov = fixed * np.outer(vol, vol)
    return ScenarioModel(underlyings, mu, cov, cov_factor(cov), source, n_obs, repair)


def _history_of(history: pd.DataFrame, underlyings: tuple[str, ...],
                as_of: dt.date) -> pd.DataFrame:
    hist = history[history["underlying"].isin(list(underlyings))]
    return hist[pd.to_datetime(hist["date"]) <= pd.Timestamp(as_of)]


def _closes(hist: pd.DataFrame) -> pd.DataFrame:
    closes = hist.pivot_table(index="date", columns="underlying", values="close", aggfunc="last")
    return closes.sort_index()


def history_closes(history: pd.DataFrame, underlyings: tuple[str, ...],
                   as_of: dt.date) -> pd.DataFrame:
    """The closes :func:`estimate_from_history` uses: dates (rows, sorted) x underlyings.

    Its index is the date axis of the history's returns; vol and rate factor changes are
    taken between the same consecutive dates (:func:`window_changes`).
    """
    return _closes(_history_of(history, underlyings, as_of))


def window_changes(levels: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Changes of ``levels`` between consecutive rows, the last ``window_days`` of them."""
    return levels.diff().iloc[1:].tail(window_days)


def estimate_from_history(
    history: pd.DataFrame,
    underlyings: tuple[str, ...],
    as_of: dt.date,
    *,
    window_days: int,
    min_days: int,
) -> tuple[ScenarioModel, dict[str, str]]:
    """Estimate annualized drift and covariance from daily closes up to ``as_of``.

    Daily log returns of ``close`` over the last ``window_days`` return dates; covariance is
    pairwise over dates where both underlyings have a return, then repaired to positive
    semidefinite if needed. ``mu = mean * 252 + sigma^2 / 2`` (price drift).

    Returns
    -------
    model, missing
        The model over the underlyings with enough history, and ``{underlying: reason}`` for
        those without: a (date, underlying) given twice with different closes, a
        non-positive or non-finite close, fewer than ``min_days`` returns, a constant close
        (zero volatility), or fewer than 2 return dates shared with other underlyings (the
        underlyings short of shared dates with the most others go first, ties together, until
        every pair left shares 2 dates). The outcome does not depend on the order of rows.
    """
    hist = _history_of(history, underlyings, as_of)
    missing: dict[str, str] = {}
    twice = hist[hist.duplicated(["date", "underlying"], keep=False)]
    if len(twice):
        g = twice.groupby(["underlying", "date"])["close"]
        spread = pd.DataFrame({"min": g.min(), "max": g.max(), "n": g.count(),
                               "size": g.size()})
        same = (spread["n"] == 0) | ((spread["n"] == spread["size"])
                                     & (spread["min"] == spread["max"]))
        for u, d in spread.index[~same]:
            rows = twice[(twice["underlying"] == u) & (twice["date"] == d)]
            vals = " and ".join(sorted({str(v) for v in rows["close"]}))
            missing.setdefault(str(u), f"history has different closes for {u} on {d}: {vals}")
    closes = _closes(hist)
    bad_close = closes.columns[(closes <= 0).any() | ~np.isfinite(closes.fillna(1.0)).all()]
    for u in bad_close:
        missing.setdefault(str(u), "history has a non-positive or non-finite close")
    rets = window_changes(np.log(closes.where(closes > 0)), window_days)
    counts = rets.notna().sum()
    for u in underlyings:
        n = int(counts.get(u, 0))
        if u not in missing and n < min_days:
            missing[u] = f"only {n} daily returns in history (need {min_days})"
    kept = [u for u in underlyings if u not in missing]
    if kept:
        cov_d = rets[kept].cov(min_periods=2).to_numpy(float)
        var = np.diag(cov_d)
        for i in np.flatnonzero(~(var > 0)):
            missing[kept[i]] = "history has a constant close (zero volatility)"
        alive = var > 0
        short = ~np.isfinite(cov_d)
        while (short & np.outer(alive, alive)).any():
            n_short = (short & np.outer(alive, alive)).sum(axis=1)
            worst = np.flatnonzero(n_short == n_short.max())
            for i in worst:
                others = [kept[j] for j in np.flatnonzero(short[i] & alive) if j != i]
                missing[kept[i]] = ("history shares fewer than 2 return dates with "
                                    + ", ".join(others[:5])
                                    + (f" and {len(others) - 5} more" if len(others) > 5 else ""))
            alive[worst] = False
    kept_t = tuple(u for u in underlyings if u not in missing)
    if not kept_t:
        empty = ScenarioModel((), np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)), "history")
        return empty, missing
    r = rets[list(kept_t)]
    cov_d = r.cov(min_periods=2).to_numpy(float)
    vol = np.sqrt(np.diag(cov_d) * PERIODS_PER_YEAR)
    corr = cov_d * PERIODS_PER_YEAR / np.outer(vol, vol)
    mu = r.mean().to_numpy(float) * PERIODS_PER_YEAR + 0.5 * vol**2
    return _from_vol_corr(kept_t, mu, vol, corr, "history", int(len(r))), missing


def from_factor_model(
    factor_model: pd.DataFrame, correlations: pd.DataFrame, underlyings: tuple[str, ...]
) -> tuple[ScenarioModel, dict[str, str]]:
    """Build the model from given drifts, volatilities and pairwise correlations.

    Pairs may come in either order; missing pairs are 0; the diagonal is 1. A pair given twice
    with different values, a correlation outside [-1, 1] or a volatility <= 0 is an error.
    """
    fm = factor_model.drop_duplicates("underlying", keep="last").set_index("underlying")
    missing = {u: "underlying not in factor_model" for u in underlyings if u not in fm.index}
    kept = tuple(u for u in underlyings if u not in missing)
    mu = fm.loc[list(kept), "drift"].to_numpy(float)
    vol = fm.loc[list(kept), "volatility"].to_numpy(float)
    for u, m, v in zip(kept, mu, vol, strict=True):
        if not (np.isfinite(m) and np.isfinite(v) and v > 0):
            raise ModelError(f"factor_model: underlying {u}: drift {m}, volatility {v} "
                             "(need finite drift and volatility > 0)")
    pos = {u: i for i, u in enumerate(kept)}
    corr = np.eye(len(kept))
    seen: dict[tuple[int, int], float] = {}
    for a, b, c in correlations[["underlying_a", "underlying_b", "correlation"]].itertuples(
        index=False
    ):
        if a not in pos or b not in pos:
            continue
        if not (np.isfinite(c) and -1.0 <= c <= 1.0):
            raise ModelError(f"correlations: ({a}, {b}) = {c} is not in [-1, 1]")
        i, j = sorted((pos[a], pos[b]))
        if i == j:
            if abs(c - 1.0) > 1e-12:
                raise ModelError(f"correlations: diagonal ({a}, {b}) = {c}, must be 1")
            continue
        if (i, j) in seen and abs(seen[(i, j)] - c) > 1e-12:
            raise ModelError(f"correlations: pair ({a}, {b}) given twice: {seen[(i, j)]} and {c}")
        seen[(i, j)] = float(c)
        corr[i, j] = corr[j, i] = c
    return _from_vol_corr(kept, mu, vol, corr, "factor_model"), missing
