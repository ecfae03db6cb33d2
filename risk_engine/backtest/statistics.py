"""Backtest statistics of a VaR model: pure functions of exception sequences and P&L.

Conventions
-----------
* An *exception* on day t is a loss larger than the VaR published for day t-1:
  ``pnl_t < -var_{t-1}`` (VaR a positive loss). A day without a VaR or a P&L is *missing*;
  it is neither an exception nor a pass and does not count as an observation.
* ``p = 1 - alpha`` is the expected exception rate of a VaR at confidence level ``alpha``.
* Likelihoods use ``0 ln 0 = 0``, so the statistics are finite for empty cells (no
  exception at all, exceptions only).
* Kupiec's proportion-of-failures (POF) statistic, with ``n`` observations and ``x``
  exceptions, ``pi = x / n``::

      LR_pof = -2 [ (n - x) ln(1 - p) + x ln p - (n - x) ln(1 - pi) - x ln pi ]  ~ chi2(1)

* Christoffersen's independence statistic over the transitions between consecutive
  observed days (a missing day breaks the chain: no transition across it). With ``n_ij``
  the number of days in state ``j`` after a day in state ``i`` (1 = exception),
  ``pi_01 = n01 / (n00 + n01)``, ``pi_11 = n11 / (n10 + n11)``,
  ``pi = (n01 + n11) / (n00 + n01 + n10 + n11)``::

      LR_ind = -2 [ (n00 + n10) ln(1 - pi) + (n01 + n11) ln pi
                    - n00 ln(1 - pi_01) - n01 ln pi_01 - n10 ln(1 - pi_11) - n11 ln pi_11 ]
               ~ chi2(1)

  and conditional coverage ``LR_cc = LR_pof + LR_ind ~ chi2(2)``.
* Basel traffic light, from the exact binomial ``X ~ Bin(n, p)`` of the exception count under
  a correct model: with ``c = P(X <= x)``, the zone is green if ``c < 0.95``, red if
  ``c >= 0.9999`` and yellow otherwise; no exception at all is always green (on fewer than
  6 days at 99%, ``P(X <= 0)`` alone is above 0.95). At n = 250 and alpha = 0.99 this gives
  the Basel zones green 0-4, yellow 5-9, red 10+.
* The multiplier add-on is Basel's table (green 0; yellow 5, 6, 7, 8, 9 exceptions at
  250 days and 99%: 0.40, 0.50, 0.65, 0.75, 0.85; red 1.00), generalised by quantile: a
  yellow count ``x`` at (n, p) takes the add-on of the smallest Basel count ``k`` in 5..9
  whose cumulative probability ``P(Bin(250, 0.01) <= k)`` is at least ``c`` (9 if none),
  i.e. the Basel row of the same cumulative probability, rounded towards the stricter row.
  At 250 days and 99% this is Basel's table exactly.
* FRTB P&L attribution test (MAR32) between hypothetical P&L (HPL) and the model's
  risk-theoretical P&L (RTPL) of the same days: the Spearman rank correlation and the
  two-sample Kolmogorov-Smirnov statistic. Green if Spearman >= 0.80 and KS <= 0.09; red if
  Spearman < 0.70 or KS > 0.12; amber otherwise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray

from risk_engine.types import FloatArray

GREEN, YELLOW, RED, AMBER = "green", "yellow", "red", "amber"
GREEN_BELOW = 0.95
"""Cumulative binomial probability at which the yellow zone starts."""
RED_FROM = 0.9999
"""Cumulative binomial probability at which the red zone starts."""
BASEL_ADDON: dict[int, float] = {5: 0.40, 6: 0.50, 7: 0.65, 8: 0.75, 9: 0.85}
"""Basel plus factor of the yellow zone at 250 days and 99%, by exception count."""
RED_ADDON = 1.0
"""Basel plus factor of the red zone."""
PLA_GREEN_SPEARMAN, PLA_GREEN_KS = 0.80, 0.09
PLA_RED_SPEARMAN, PLA_RED_KS = 0.70, 0.12


def xlogy(x: ArrayLike, y: ArrayLike) -> FloatArray:
    """``x ln y`` elementwise with ``0 ln 0 = 0`` (and ``0 ln y = 0`` for any y)."""
    xa, ya = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    out = np.zeros(xa.shape)
    nz = xa != 0
    with np.errstate(divide="ignore"):
        out[nz] = xa[nz] * np.log(ya[nz])
    return out


def exceptions(pnl: ArrayLike, var: ArrayLike) -> FloatArray:
    """Exception indicator per day: 1.0 if ``pnl < -var``, 0.0 if not, NaN if either is NaN.

    Parameters
    ----------
    pnl
        P&L of day t (gain > 0), any shape.
    var
        VaR published for day t-1 (a positive loss), broadcast against ``pnl``.
    """
    p, v = np.broadcast_arrays(np.asarray(pnl, float), np.asarray(var, float))
    out = (p < -v).astype(float)
    out[np.isnan(p) | np.isnan(v)] = np.nan
    return out


def _check_level(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"confidence level {alpha!r} must be in (0, 1)")
    return 1.0 - alpha


def kupiec_pof(n: ArrayLike, x: ArrayLike, alpha: float) -> tuple[FloatArray, FloatArray]:
    """Kupiec's proportion-of-failures statistic and its chi2(1) p-value.

    Parameters
    ----------
    n, x
        Observations and exceptions (arrays broadcast together; ``0 <= x <= n``). ``n = 0``
        gives NaN.
    alpha
        Confidence level of the VaR.

    Returns
    -------
    (lr, p_value)
        Arrays of the broadcast shape.
    """
    p = _check_level(alpha)
    na, xa = np.broadcast_arrays(np.asarray(n, float), np.asarray(x, float))
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = np.where(na > 0, xa / np.where(na > 0, na, 1.0), np.nan)
    lr = -2.0 * (xlogy(na - xa, 1.0 - p) + xlogy(xa, p)
                 - xlogy(na - xa, 1.0 - pi) - xlogy(xa, pi))
    lr = np.where(na > 0, np.maximum(lr, 0.0), np.nan)
    return lr, scipy.stats.chi2.sf(lr, 1)


@dataclass(frozen=True)
class Transitions:
    """Counts of consecutive observed day pairs by state (0 pass, 1 exception)."""

    n00: int
    n01: int
    n10: int
    n11: int


def transitions(hits: ArrayLike) -> Transitions:
    """Transition counts of an exception sequence (1.0, 0.0, NaN for missing).

    Only pairs of consecutive days both observed count: a missing day breaks the chain.
    """
    h = np.asarray(hits, float)
    a, b = h[:-1], h[1:]
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    return Transitions(int(((a == 0) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum()),
                       int(((a == 1) & (b == 0)).sum()), int(((a == 1) & (b == 1)).sum()))


def christoffersen_independence(t: Transitions) -> tuple[float, float]:
    """Christoffersen's independence statistic (Markov alternative) and its chi2(1) p-value.

    NaN when there is no transition.
    """
    n0, n1 = t.n00 + t.n01, t.n10 + t.n11
    total = n0 + n1
    if total == 0:
        return float("nan"), float("nan")
    pi = (t.n01 + t.n11) / total
    pi01 = t.n01 / n0 if n0 else 0.0
    pi11 = t.n11 / n1 if n1 else 0.0
    restricted = xlogy(t.n00 + t.n10, 1.0 - pi) + xlogy(t.n01 + t.n11, pi)
    free = (xlogy(t.n00, 1.0 - pi01) + xlogy(t.n01, pi01)
            + xlogy(t.n10, 1.0 - pi11) + xlogy(t.n11, pi11))
    lr = max(float(-2.0 * (restricted - free)), 0.0)
    return lr, float(scipy.stats.chi2.sf(lr, 1))


@dataclass(frozen=True)
class CoverageTests:
    """Exceptions and the three coverage tests of one exception sequence."""

    observations: int
    exceptions: int
    missing: int
    exception_rate: float
    kupiec_lr: float
    kupiec_p: float
    independence_lr: float
    independence_p: float
    cc_lr: float
    cc_p: float


def coverage_tests(hits: ArrayLike, alpha: float) -> CoverageTests:
    """Exceptions and the Kupiec, Christoffersen and conditional coverage tests of a sequence.

    ``hits`` is in day order: 1.0 exception, 0.0 pass, NaN missing.
    """
    h = np.asarray(hits, float)
    obs = int((~np.isnan(h)).sum())
    x = int(np.nansum(h))
    pof, pof_p = kupiec_pof(obs, x, alpha)
    ind, ind_p = christoffersen_independence(transitions(h))
    cc = float(pof) + ind
    return CoverageTests(
        observations=obs, exceptions=x, missing=int(len(h) - obs),
        exception_rate=x / obs if obs else float("nan"),
        kupiec_lr=float(pof), kupiec_p=float(pof_p), independence_lr=ind,
        independence_p=ind_p, cc_lr=cc, cc_p=float(scipy.stats.chi2.sf(cc, 2)))


def traffic_light(n: ArrayLike, x: ArrayLike, alpha: float
                  ) -> tuple[NDArray[np.object_], FloatArray]:
    """Basel traffic-light zone and multiplier add-on from the exact binomial.

    Parameters
    ----------
    n, x
        Observations and exceptions (broadcast together).
    alpha
        Confidence level of the VaR.

    Returns
    -------
    (zone, addon)
        ``zone`` is ``"green"``, ``"yellow"`` or ``"red"`` (None where ``n == 0``);
        ``addon`` the multiplier add-on (NaN where ``n == 0``). See the module docstring for
        the rule.
    """
    p = _check_level(alpha)
    na, xa = np.broadcast_arrays(np.asarray(n, float), np.asarray(x, float))
    c = scipy.stats.binom.cdf(xa, na, p)
    # No exception is never evidence against the model: green, even on so few days that
    # P(X <= 0) = alpha^n is itself at least GREEN_BELOW (fewer than 6 days at 99%).
    zone = np.where((c < GREEN_BELOW) | (xa == 0), GREEN,
                    np.where(c >= RED_FROM, RED, YELLOW)).astype(object)
    basel_k = np.array(sorted(BASEL_ADDON))
    basel_c = scipy.stats.binom.cdf(basel_k, 250, 0.01)
    # the smallest Basel count whose cumulative probability is >= c (9 if none)
    idx = np.minimum(np.searchsorted(basel_c, c, side="left"), len(basel_k) - 1)
    yellow_addon = np.array([BASEL_ADDON[int(k)] for k in basel_k])[idx]
    addon = np.where(zone == GREEN, 0.0, np.where(zone == RED, RED_ADDON, yellow_addon))
    empty = na <= 0
    zone[empty] = None
    addon = np.where(empty, np.nan, addon)
    return zone, addon


def zone_boundaries(n: int, alpha: float) -> tuple[int, int]:
    """The largest green count and the largest yellow count at ``n`` days and ``alpha``."""
    p = _check_level(alpha)
    k = np.arange(n + 1)
    c = scipy.stats.binom.cdf(k, n, p)
    green = max(int(k[c < GREEN_BELOW].max(initial=-1)), 0)  # 0 exceptions: green
    yellow = max(int(k[c < RED_FROM].max(initial=-1)), green)
    return green, yellow


@dataclass(frozen=True)
class Attribution:
    """FRTB P&L attribution test of one desk."""

    observations: int
    spearman: float
    ks: float
    zone: str | None


def pla_zone(spearman: float, ks: float) -> str | None:
    """Green / amber / red zone of the P&L attribution test (None if either is NaN)."""
    if np.isnan(spearman) or np.isnan(ks):
        return None
    if spearman < PLA_RED_SPEARMAN or ks > PLA_RED_KS:
        return RED
    if spearman >= PLA_GREEN_SPEARMAN and ks <= PLA_GREEN_KS:
        return GREEN
    return AMBER


def pnl_attribution(hpl: ArrayLike, rtpl: ArrayLike) -> Attribution:
    """FRTB P&L attribution test: Spearman correlation and KS statistic of HPL vs RTPL.

    Days where either series is NaN are dropped (pairwise). Fewer than 2 paired days give
    NaN statistics and no zone.
    """
    h, r = np.asarray(hpl, float), np.asarray(rtpl, float)
    ok = ~(np.isnan(h) | np.isnan(r))
    h, r = h[ok], r[ok]
    if len(h) < 2:
        return Attribution(int(len(h)), float("nan"), float("nan"), None)
    rho = float(scipy.stats.spearmanr(h, r).statistic)
    with warnings.catch_warnings():
        # Only the statistic is used (the zones are on it), not the p-value, whose exact
        # computation scipy may give up for the asymptotic one with a RuntimeWarning. (The
        # method stays scipy's default: its exact path rounds the statistic to a multiple
        # of 1 / lcm(n, n), 0.4 where the asymptotic one gives 0.39999999999999997.)
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful",
                                RuntimeWarning)
        ks = float(scipy.stats.ks_2samp(h, r).statistic)
    return Attribution(int(len(h)), rho, ks, pla_zone(rho, ks))
