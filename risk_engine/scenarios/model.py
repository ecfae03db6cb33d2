"""The scenario model: drift and covariance of the underlyings' log returns.

Log returns over a horizon of ``h`` years are multivariate normal with mean
``(mu - diag(Sigma)/2) h`` and covariance ``Sigma h`` (correlated GBM); ``mu`` is the annual
price drift and ``Sigma`` the annual covariance of log returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from risk_engine.covariance import cov_factor
from risk_engine.errors import ModelError
from risk_engine.types import FloatArray

PERIODS_PER_YEAR = 252.0
_PSD_TOL = 1e-12


@dataclass(frozen=True)
class ScenarioModel:
    """Annualized drift ``mu`` (U,) and covariance ``cov`` (U, U) of the underlyings.

    ``factor`` (U, U) satisfies ``factor @ factor.T == cov`` (eigen-factor, so a singular
    covariance is fine). ``repair`` describes a positive-semidefinite repair, if one was made.
    """

    underlyings: tuple[str, ...]
    mu: FloatArray
    cov: FloatArray
    factor: FloatArray
    source: str
    n_observations: int = 0
    repair: str = ""

    @property
    def volatility(self) -> FloatArray:
        """Annual volatility of each underlying."""
        return np.sqrt(np.diag(self.cov))

    def log_return_mean(self, horizon_years: float) -> FloatArray:
        """Mean of log returns over the horizon, ``(mu - sigma^2/2) h``."""
        return (self.mu - 0.5 * np.diag(self.cov)) * horizon_years

    def subset(self, underlyings: tuple[str, ...]) -> ScenarioModel:
        """The model restricted to (and ordered as) ``underlyings``."""
        idx = [self.underlyings.index(u) for u in underlyings]
        cov = self.cov[np.ix_(idx, idx)]
        return ScenarioModel(underlyings, self.mu[idx], cov, cov_factor(cov), self.source,
                             self.n_observations, self.repair)


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
    hist = history[history["underlying"].isin(list(underlyings))]
    hist = hist[pd.to_datetime(hist["date"]) <= pd.Timestamp(as_of)]
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
    closes = hist.pivot_table(index="date", columns="underlying", values="close", aggfunc="last")
    closes = closes.sort_index()
    bad_close = closes.columns[(closes <= 0).any() | ~np.isfinite(closes.fillna(1.0)).all()]
    for u in bad_close:
        missing.setdefault(str(u), "history has a non-positive or non-finite close")
    rets = np.log(closes.where(closes > 0)).diff().iloc[1:].tail(window_days)
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
