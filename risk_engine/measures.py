"""VaR, expected shortfall, their Monte Carlo standard errors, and Euler contributions.

Convention (DESIGN.md section 3): losses ``L = -P&L`` are positive when money is lost.
With ``N`` losses sorted ascending ``L(1) <= ... <= L(N)`` and ``k = ceil(alpha N)``:

* ``VaR_alpha = L(k)``
* ``ES_alpha = (sum_{i>k} L(i) + (k - alpha N) L(k)) / (N (1 - alpha))``

Standard errors (stated in the README):

* VaR: order-statistic method. The rank of the true quantile among ``N`` draws has standard
  deviation ``s = sqrt(N alpha (1 - alpha))``; the standard error is half the spread
  ``(L(k + m) - L(k - m)) / 2`` with ``m = ceil(s)``.
* ES: ``sqrt((Var[L | L >= VaR] + alpha (ES - VaR)^2) / (N (1 - alpha)))``, the asymptotic
  variance of the Rockafellar-Uryasev estimator.

Both assume independent scenarios; with antithetic pairs they are an approximation.
NaN policy: a NaN loss is an error (it would silently change the ranks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from risk_engine.types import FloatArray

# Fewer scenarios than this beyond VaR ((1 - alpha) N) and ES rests on one or two losses:
# the run says so in a warning (the figures are computed all the same).
MIN_TAIL_SCENARIOS = 10


def thin_tail_warnings(levels: Sequence[float], n_scenarios: int) -> list[str]:
    """A warning per confidence level whose tail holds fewer than ``MIN_TAIL_SCENARIOS``.

    ``(1 - alpha) N`` scenarios lie beyond VaR; with fewer than ``MIN_TAIL_SCENARIOS`` the
    expected shortfall is an average of a handful of losses (ES = VaR below one scenario)
    and the standard errors, which are asymptotic, understate the uncertainty.
    """
    out = []
    for alpha in levels:
        tail = (1.0 - alpha) * n_scenarios
        if tail < MIN_TAIL_SCENARIOS:
            out.append(f"confidence level {alpha}: only {tail:.3g} of {n_scenarios} scenarios "
                       f"in the tail (fewer than {MIN_TAIL_SCENARIOS}); VaR and ES at this "
                       "level rest on too few losses and their standard errors understate "
                       "the uncertainty: raise monte_carlo.n_scenarios")
    return out


def tail_rank(n: int, alpha: float) -> int:
    """``k = ceil(alpha N)``, robust to binary rounding of ``alpha N`` (1-based rank)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), e.g. 0.99; got {alpha!r}")
    if n < 1:
        raise ValueError("need at least one scenario")
    x = alpha * n
    k = math.ceil(x - 1e-9 * max(1.0, x))
    return min(max(k, 1), n)


@dataclass(frozen=True)
class TailEstimate:
    """VaR and ES at one confidence level with their standard errors (positive losses)."""

    confidence_level: float
    var: float
    es: float
    var_std_error: float
    es_std_error: float
    n_scenarios: int


def _check_losses(losses: ArrayLike) -> FloatArray:
    arr = np.asarray(losses, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("no scenario losses")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"loss of scenario {bad} is {arr[bad]}; losses must be finite")
    return arr


def var_es(losses: ArrayLike, confidence_levels: Sequence[float]) -> list[TailEstimate]:
    """VaR and ES of a loss sample at each confidence level.

    Parameters
    ----------
    losses : array_like, shape (N,)
        Scenario losses (positive = loss). Only the largest ``N - k + m + 1`` are sorted.
    confidence_levels
        Each ``alpha`` in (0, 1).

    Returns
    -------
    list of TailEstimate, in the order of ``confidence_levels``.
    """
    arr = _check_losses(losses)
    n = arr.size
    ranks = [tail_rank(n, a) for a in confidence_levels]
    margins = [math.ceil(math.sqrt(n * a * (1 - a))) for a in confidence_levels]
    lo_rank = max(1, min(k - m for k, m in zip(ranks, margins, strict=True)))
    # The tail from rank lo_rank upward, sorted: tail[j] = L(lo_rank + j).
    start = lo_rank - 1
    tail = np.sort(np.partition(arr, start)[start:]) if start > 0 else np.sort(arr)
    out = []
    for alpha, k, m in zip(confidence_levels, ranks, margins, strict=True):
        lk = float(tail[k - lo_rank])
        above = tail[k - lo_rank + 1:]
        denom = n * (1.0 - alpha)
        es = (float(above.sum()) + max(k - alpha * n, 0.0) * lk) / denom
        hi = tail[min(k + m, n) - lo_rank]
        lo = tail[max(k - m, 1) - lo_rank]
        var_se = 0.5 * float(hi - lo)
        tail_k = tail[k - lo_rank:]
        tail_var = float(tail_k.var(ddof=1)) if tail_k.size > 1 else 0.0
        es_se = math.sqrt(max(tail_var + alpha * (es - lk) ** 2, 0.0) / denom)
        out.append(TailEstimate(alpha, lk, es, var_se, es_se, n))
    return out


def tail_weights(losses: ArrayLike, alpha: float) -> tuple[NDArray[np.int64], FloatArray]:
    """Scenario indices and weights with ``ES = sum(w * L[idx])`` exactly.

    The scenarios ranked above ``k`` get ``1 / (N (1 - alpha))``, the scenario at rank ``k``
    gets ``(k - alpha N) / (N (1 - alpha))``. Ties are broken by scenario index (stable).
    """
    arr = _check_losses(losses)
    n = arr.size
    k = tail_rank(n, alpha)
    order = np.argsort(arr, kind="stable")
    idx = order[k - 1:]
    w = np.full(idx.size, 1.0 / (n * (1.0 - alpha)))
    w[0] = max(k - alpha * n, 0.0) / (n * (1.0 - alpha))
    return idx, w


def euler_contributions(
    component_losses: ArrayLike, confidence_levels: Sequence[float]
) -> list[tuple[FloatArray, FloatArray]]:
    """Euler contributions of components (desks or positions) to VaR and ES of their sum.

    Parameters
    ----------
    component_losses : array_like, shape (N, C)
        Loss of each component per scenario; the total loss is the row sum.
    confidence_levels
        Each ``alpha`` in (0, 1).

    Returns
    -------
    list of (var_contrib (C,), es_contrib (C,)), one per level.

    Notes
    -----
    ES contribution of component ``c``: ``sum_i w_i L_c,i`` with the weights of
    :func:`tail_weights` on the total loss; these add up to the total's ES exactly.
    VaR contribution: the mean component loss over the scenarios ranked ``k - m .. k + m``
    (``m = ceil(sqrt(N alpha (1 - alpha)) / 2)``, a kernel estimate of
    ``E[L_c | L = VaR]``), rescaled so the contributions add up to the total's VaR; if that
    window's mean total loss is 0 the contributions at the scenario of rank ``k`` are used.
    """
    comp = np.asarray(component_losses, dtype=np.float64)
    if comp.ndim != 2:
        raise ValueError("component_losses must have shape (N, C)")
    total = comp.sum(axis=1)
    n = total.size
    order = np.argsort(total, kind="stable")
    out = []
    for alpha in confidence_levels:
        k = tail_rank(n, alpha)
        idx, w = tail_weights(total, alpha)
        es_c = w @ comp[idx]
        var_total = float(total[order[k - 1]])
        m = math.ceil(0.5 * math.sqrt(n * alpha * (1 - alpha)))
        window = order[max(k - 1 - m, 0): min(k + m, n)]
        mean_c = comp[window].mean(axis=0)
        mean_total = float(mean_c.sum())
        if abs(mean_total) > 1e-12 * max(1.0, abs(var_total)) and np.sign(mean_total) == np.sign(
            var_total
        ):
            var_c = mean_c * (var_total / mean_total)
        else:
            var_c = comp[order[k - 1]].copy()
        out.append((var_c, es_c))
    return out
