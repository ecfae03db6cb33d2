"""Historical simulation: scenario ``j`` is the joint historical change of every risk factor.

``scenario_model.source: historical`` replaces the Monte Carlo draws by the historical
changes of the factors over the last ``historical.window_days`` daily observations, applied
to today's market. The history is shipped to the executors as a small array of factor
levels (:class:`HistoricalSource`, ``(T + 1, width)`` floats); block ``b`` is the set of
historical dates ``b * block_size ..`` and its scenario matrix is regenerated from those
levels where the block is revalued, never shipped. A block is laid out as
:class:`risk_engine.scenarios.factors.FactorLayout` says.

Definitions (stated in the README), with ``T = window_days`` daily changes of each factor in
the window, ``t_0 < ... < t_T`` the window's dates and ``h`` the horizon in trading days:

* **Levels.** Per column a level series ``y``: ``ln(close)`` for a spot with relative
  shifts, ``close`` with absolute shifts.
* **Multi-day horizon.** ``overlapping`` (default): scenario ``j = 0 .. T - h`` is the
  change ``y(t_{j+h}) - y(t_j)``, ``T - h + 1`` scenarios. ``sqrt_scaled``: scenario
  ``j = 0 .. T - 1`` is the one-day change ``sqrt(h) (y(t_{j+1}) - y(t_j))``, ``T``
  scenarios. With ``h = 1`` both give the same bits.
* **Shift types.** A relative spot change ``d`` is the block's log return ``d``; an absolute
  spot change ``d`` (in price units) becomes the log return ``ln((S_0 + d) / S_0)`` of
  today's spot ``S_0``, and a window taking some spot to zero or below rejects that
  underlying's positions.
* **Filter** (filtered historical simulation, Hull and White 1998): each factor's daily
  change ``r_t`` becomes ``r_t sigma_{T+1} / sigma_t``, with ``sigma_t`` the factor's
  volatility forecast for day ``t`` made the day before and ``sigma_{T+1}`` today's forecast
  for tomorrow; the levels are rebuilt from the rescaled changes by a running sum from
  ``y(t_0)``. ``ewma``: ``sigma_1^2`` is the mean of the window's squared changes and
  ``sigma_{t+1}^2 = lambda sigma_t^2 + (1 - lambda) r_t^2`` (RiskMetrics; ``lambda = 1``
  leaves every change unchanged). ``garch``: GARCH(1,1) with zero mean fitted per factor
  by maximum likelihood with the ``arch`` package; ``sigma_t`` its conditional volatility
  and ``sigma_{T+1}`` its one-day forecast.
* **Dates.** The window is the last ``T + 1`` dates on or before the as-of date on which at
  least one of the book's underlyings has a close. An underlying without a valid close on
  every one of them is not shocked by zero on the missing days: its positions are rejected
  with the reason.

VaR and ES of the historical scenarios use the same exact estimators and tail machinery as
Monte Carlo (:mod:`risk_engine.measures`, :mod:`risk_engine.tails`). Standard errors: the
VaR's is the order-statistic (binomial) interval, half the spread of the losses of ranks
``k +- ceil(sqrt(N alpha (1 - alpha)))``, which needs no distributional assumption and is
meaningful at a few hundred scenarios; the ES's is the asymptotic one. Both assume
independent scenarios: overlapping h-day windows are serially dependent, so they understate
the uncertainty by up to about ``sqrt(h)``.

Vol and rate columns (``FactorLayout`` with vol tenors or a rate factor) come from the
``vol_history`` and ``rate_history`` inputs (:func:`add_vol_rate_columns`): ``ln`` of the
ATM vol at each layout tenor (or the vol itself with ``historical.vol_shift: absolute``) and
the mean zero rate (absolute; its log with ``historical.rate_shift: relative``), filtered and
windowed like the spots. A layout asking for columns the data does not have is a
:class:`~risk_engine.errors.ConfigError` naming ``scenario_model.source``
(:func:`check_layout`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from risk_engine.errors import ConfigError, DataError
from risk_engine.scenarios.factor_history import TENOR_DAYS_PER_YEAR, atm_vol_levels
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.scenarios.generator import ScenarioSource
from risk_engine.scenarios.model import ScenarioModel
from risk_engine.settings import require
from risk_engine.types import FloatArray

HORIZON_METHODS = ("overlapping", "sqrt_scaled")
FILTERS = ("none", "ewma", "garch")
SPOT_SHIFTS = ("relative", "absolute")
MAX_WINDOW_DAYS = 10_000
"""Longest historical window, in daily observations (about 40 years)."""

VOL_SHIFTS = ("relative", "absolute")
RATE_SHIFTS = ("absolute", "relative")

#: Shift type codes of a column. ``CHANGE``: the column is the level change ``d`` itself (a
#: log return, a log vol change, an absolute rate shift). ``ABSOLUTE``: ``d`` is an absolute
#: change of a positive quantity (a spot, a vol), turned into the log relative shock
#: ``ln((x_0 + d) / x_0)`` of today's value ``x_0``. ``RELATIVE_RATE``: ``d`` is a log change
#: of a rate, turned into the absolute shift ``r_0 (exp(d) - 1)`` of today's rate ``r_0``.
CHANGE, ABSOLUTE, RELATIVE_RATE = 0, 1, 2
ABSOLUTE_SPOT = ABSOLUTE


@dataclass(frozen=True)
class HistoricalSettings:
    """The ``historical`` config section: how historical scenarios are built.

    Used when ``scenario_model.source`` is ``historical`` (see the module docstring).

    Attributes
    ----------
    window_days
        Daily changes in the window (default 500).
    horizon_method
        ``overlapping`` h-day windows (default) or ``sqrt_scaled`` one-day changes.
    spot_shift
        ``relative`` (log, default) or ``absolute`` spot changes.
    filter
        ``none`` (plain historical simulation), ``ewma`` or ``garch`` (filtered).
    ewma_lambda
        The EWMA decay ``lambda`` in (0, 1] (default 0.94).
    block_size
        Historical scenarios per block (the unit of work of the fan-out).
    vol_shift
        ``relative`` (log, default) or ``absolute`` changes of the implied vols (vol factors).
    rate_shift
        ``absolute`` (default) or ``relative`` (log) changes of the zero rate (rate factor).
    """

    window_days: int = 500
    horizon_method: str = "overlapping"
    spot_shift: str = "relative"
    filter: str = "none"
    ewma_lambda: float = 0.94
    block_size: int = 100
    vol_shift: str = "relative"
    rate_shift: str = "absolute"

    def __post_init__(self) -> None:
        require(2 <= self.window_days <= MAX_WINDOW_DAYS, "window_days", self.window_days,
                f"daily observations, >= 2 and <= {MAX_WINDOW_DAYS:_}")
        require(self.horizon_method in HORIZON_METHODS, "horizon_method", self.horizon_method,
                f"one of {HORIZON_METHODS}")
        require(self.spot_shift in SPOT_SHIFTS, "spot_shift", self.spot_shift,
                f"one of {SPOT_SHIFTS}")
        require(self.filter in FILTERS, "filter", self.filter, f"one of {FILTERS}")
        require(math.isfinite(self.ewma_lambda) and 0.0 < self.ewma_lambda <= 1.0,
                "ewma_lambda", self.ewma_lambda, "a decay in (0, 1], e.g. 0.94")
        require(1 <= self.block_size <= 10_000_000, "block_size", self.block_size,
                "historical scenarios per block, >= 1 and <= 10_000_000")
        require(self.vol_shift in VOL_SHIFTS, "vol_shift", self.vol_shift,
                f"one of {VOL_SHIFTS}")
        require(self.rate_shift in RATE_SHIFTS, "rate_shift", self.rate_shift,
                f"one of {RATE_SHIFTS}")


def scenario_count(settings: HistoricalSettings, horizon_days: int) -> int:
    """Historical scenarios of a run: ``window_days - h + 1`` overlapping, or ``window_days``.

    Fixed by the config: an underlying without the whole window is rejected, never allowed
    to shorten it.
    """
    if settings.horizon_method == "overlapping":
        return max(settings.window_days - horizon_days + 1, 0)
    return settings.window_days


def check_layout(layout: FactorLayout, data: HistoricalData | None = None) -> None:
    """Refuse a layout whose vol or rate columns the historical data does not have.

    ``data`` None stands for spot columns only (no ``vol_history`` / ``rate_history`` read).

    Raises
    ------
    ConfigError
        Naming ``scenario_model.source`` when the layout asks for vol or rate columns that
        the data lacks (see :func:`add_vol_rate_columns`).
    """
    buckets = data.n_vol_buckets if data is not None else 0
    rate = data.rate if data is not None else False
    if layout.n_vol_buckets != buckets or layout.rate_factor != rate:
        raise ConfigError(
            "config key 'scenario_model.source' = 'historical' is out of range: the vol and "
            f"rate factors ({layout.n_vol_buckets} vol tenor(s), rate factor "
            f"{'on' if layout.rate_factor else 'off'}) need their history (vol_history, "
            "rate_history) in the historical window; this run has "
            f"{buckets} vol tenor(s) and rate {'on' if rate else 'off'}: switch the vol and "
            "rate factors off or use a Monte Carlo source")


@dataclass(frozen=True)
class HistoricalData:
    """The factor levels of a historical window, one column per spot factor.

    ``levels[i, c]`` is column ``c``'s level on ``dates[i]`` (``ln(close)`` or ``close``,
    see ``shift``); ``base[c]`` today's value of an absolute spot column (else 1).
    """

    dates: NDArray[np.datetime64]
    underlyings: tuple[str, ...]
    levels: FloatArray
    shift: NDArray[np.int8]
    base: FloatArray
    n_vol_buckets: int = 0
    rate: bool = False

    def subset(self, underlyings: tuple[str, ...]) -> HistoricalData:
        """The columns of ``underlyings`` only, in that order (vol and rate columns kept)."""
        idx = [self.underlyings.index(u) for u in underlyings]
        n_u, n_b = len(self.underlyings), self.n_vol_buckets
        cols = idx + [n_u + i * n_b + b for i in idx for b in range(n_b)]
        if self.rate:
            cols.append(self.levels.shape[1] - 1)
        return HistoricalData(self.dates, tuple(underlyings), self.levels[:, cols],
                              self.shift[cols], self.base[cols], n_b, self.rate)


def close_matrix(history: pd.DataFrame, underlyings: tuple[str, ...], as_of: dt.date
                 ) -> pd.DataFrame:
    """Valid closes (finite, > 0) of ``underlyings`` on or before ``as_of``, date x underlying.

    Dates are those on which at least one of ``underlyings`` has a valid close, ascending;
    a missing close is NaN.
    """
    hist = history[history["underlying"].astype(str).isin(list(underlyings))]
    days = pd.to_datetime(hist["date"]).dt.normalize()
    close = pd.to_numeric(hist["close"], errors="coerce").astype(float)
    ok = (days <= pd.Timestamp(as_of)) & np.isfinite(close) & (close > 0)
    frame = pd.DataFrame({"date": days[ok], "underlying": hist["underlying"][ok].astype(str),
                          "close": close[ok]})
    wide = frame.pivot_table(index="date", columns="underlying", values="close",
                             aggfunc="last").sort_index()
    return wide.reindex(columns=list(underlyings))


def historical_data(
    history: pd.DataFrame,
    underlyings: tuple[str, ...],
    as_of: dt.date,
    *,
    window_days: int,
    spot_shift: str = "relative",
    spots: FloatArray | None = None,
) -> tuple[HistoricalData, dict[str, str]]:
    """The levels of the last ``window_days + 1`` history dates, and the underlyings lacking.

    Parameters
    ----------
    history
        The ``history`` table (date, underlying, close), already row-checked.
    underlyings
        The book's underlyings.
    as_of
        The run date; later rows are ignored.
    window_days
        Daily changes in the window ``T``.
    spot_shift
        ``relative`` or ``absolute``.
    spots
        Today's spot per underlying of ``underlyings`` (needed for absolute shifts).

    Returns
    -------
    data, missing
        The levels of the underlyings with a valid close on every window date, and
        ``{underlying: reason}`` for the others.
    """
    closes = close_matrix(history, underlyings, as_of)
    need = window_days + 1
    missing: dict[str, str] = {}
    if len(closes) < need:
        for u in underlyings:
            missing[u] = (f"history holds {len(closes)} date(s) up to {as_of}; historical "
                          f"simulation needs historical.window_days + 1 = {need}")
        kept: tuple[str, ...] = ()
        window = closes.iloc[0:0]
    else:
        window = closes.iloc[-need:]
        for u in underlyings:
            gaps = window[u].isna().to_numpy(bool)
            if gaps.any():
                first = window.index[np.flatnonzero(gaps)[0]].date()
                missing[u] = (f"history lacks a close on {int(gaps.sum())} of the {need} dates "
                              f"of the historical window {window.index[0].date()} .. "
                              f"{window.index[-1].date()} (first {first}); historical "
                              "simulation needs every date")
        kept = tuple(u for u in underlyings if u not in missing)
    values = window[list(kept)].to_numpy(float).reshape(len(window), len(kept))
    if spot_shift == "absolute":
        if spots is None:
            raise ValueError("absolute spot shifts need today's spots")
        base = np.asarray(spots, float)[[underlyings.index(u) for u in kept]]
        shift = np.full(len(kept), ABSOLUTE, np.int8)
        levels = values
    else:
        base = np.ones(len(kept))
        shift = np.full(len(kept), CHANGE, np.int8)
        levels = np.log(values)
    dates = window.index.to_numpy("datetime64[D]")
    data = HistoricalData(dates, kept, levels, shift, base)
    return data, missing


def add_vol_rate_columns(
    data: HistoricalData,
    layout: FactorLayout,
    *,
    vol_history: pd.DataFrame | None = None,
    rate_history: pd.DataFrame | None = None,
    vol_shift: str = "relative",
    rate_shift: str = "absolute",
) -> tuple[HistoricalData, dict[str, str]]:
    """``data`` with the vol and rate columns of ``layout``, from their history.

    Vol column ``(u, b)``: underlying ``u``'s ATM implied vol at the layout's tenor
    ``T_b`` on each window date, read from that date's ``vol_history`` quotes by
    :func:`risk_engine.scenarios.factor_history.atm_vol_levels`, the scenario model's one
    definition (``tenor_days / 252`` years, moneyness 0, the surface rule); level
    ``ln(vol)`` (relative) or ``vol`` (absolute, applied to today's vol, the last window
    date's). Rate column: the mean zero rate over the tenors quoted on
    every window date in ``rate_history`` (its change is the parallel shift); level the rate
    (absolute) or its log (relative, applied to today's mean rate).

    Returns
    -------
    data, missing
        ``data`` with the columns added (only the underlyings with a vol on every window
        date), and ``{underlying: reason}`` for the others.

    Raises
    ------
    DataError
        If the rate factor is on and ``rate_history`` lacks a window date, or is missing.
    """
    n_b = layout.n_vol_buckets
    days = pd.DatetimeIndex(data.dates)
    missing: dict[str, str] = {}
    vol_cols: list[FloatArray] = []
    if n_b:
        if vol_history is None:
            raise DataError("vol_history: table not found but the vol factors are on with "
                            "scenario_model.source historical")
        tenors_days = tuple(int(round(t * TENOR_DAYS_PER_YEAR)) for t in layout.vol_tenors_years)
        vh = vol_history.assign(date=np.asarray(pd.to_datetime(vol_history["date"])
                                                .dt.normalize(), dtype="datetime64[D]"))
        atm = atm_vol_levels(vh, data.underlyings, tenors_days)
        atm = atm.reindex(pd.Index(np.asarray(data.dates, dtype="datetime64[D]")))
        for u in data.underlyings:
            block = atm[u].to_numpy(float)
            gaps = np.flatnonzero(~(np.isfinite(block) & (block > 0)).all(axis=1))
            if gaps.size:
                missing[u] = (f"vol_history lacks a valid ATM vol on {gaps.size} of the "
                              f"{days.size} dates of the historical window (first "
                              f"{days[gaps[0]].date()}); historical simulation needs every date")
            vol_cols.append(block)
    keep = [u for u in data.underlyings if u not in missing]
    out = data.subset(tuple(keep))
    levels = [out.levels]
    shift = [out.shift]
    base = [out.base]
    if n_b:
        kept_idx = [data.underlyings.index(u) for u in keep]
        vols = (np.concatenate([vol_cols[i] for i in kept_idx], axis=1) if kept_idx
                else np.empty((days.size, 0)))
        if vol_shift == "absolute":
            levels.append(vols)
            shift.append(np.full(vols.shape[1], ABSOLUTE, np.int8))
            base.append(vols[-1].copy())
        else:
            levels.append(np.log(vols))
            shift.append(np.full(vols.shape[1], CHANGE, np.int8))
            base.append(np.ones(vols.shape[1]))
    if layout.rate_factor:
        if rate_history is None:
            raise DataError("rate_history: table not found but the rate factor is on with "
                            "scenario_model.source historical")
        rh = rate_history.assign(date=pd.to_datetime(rate_history["date"]).dt.normalize())
        wide = rh[rh["date"].isin(days)].pivot_table(index="date", columns="tenor_years",
                                                     values="zero_rate", aggfunc="last")
        wide = wide.reindex(days)
        lacking = wide.index[wide.isna().all(axis=1)]
        if len(lacking):
            raise DataError(f"rate_history: no zero rate on {len(lacking)} date(s) of the "
                            f"historical window (first {lacking[0].date()})")
        wide = wide.dropna(axis=1)
        if wide.shape[1] == 0:
            raise DataError("rate_history: no tenor is quoted on every date of the "
                            "historical window")
        mean = wide.to_numpy(float).mean(axis=1)
        if rate_shift == "relative":
            if not (mean > 0).all():
                raise DataError("rate_history: relative rate shifts need positive rates; "
                                f"the mean zero rate is {float(mean.min())} in the window")
            levels.append(np.log(mean)[:, None])
            shift.append(np.array([RELATIVE_RATE], np.int8))
            base.append(np.array([mean[-1]]))
        else:
            levels.append(mean[:, None])
            shift.append(np.array([CHANGE], np.int8))
            base.append(np.ones(1))
    result = HistoricalData(out.dates, out.underlyings, np.concatenate(levels, axis=1),
                            np.concatenate(shift), np.concatenate(base), n_b,
                            layout.rate_factor)
    return result, missing


def ewma_scale(changes: FloatArray, lam: float) -> FloatArray:
    """Hull-White factors ``sigma_{T+1} / sigma_t`` of EWMA volatilities, shape like ``changes``.

    ``changes`` is (T, F), one column per factor; ``sigma_1^2`` is the column's mean square
    and ``sigma_{t+1}^2 = lam sigma_t^2 + (1 - lam) r_t^2``.
    """
    r2 = changes * changes
    var = np.empty((changes.shape[0] + 1, changes.shape[1]))
    var[0] = r2.mean(axis=0)
    for t in range(changes.shape[0]):
        var[t + 1] = lam * var[t] + (1.0 - lam) * r2[t]
    out: FloatArray = np.sqrt(var[-1] / var[:-1])
    return out


def garch_scale(changes: FloatArray) -> FloatArray:
    """Hull-White factors ``sigma_{T+1} / sigma_t`` of a GARCH(1,1) fitted per column.

    Zero-mean GARCH(1,1) by maximum likelihood (``arch.arch_model``), on changes scaled to
    a unit sample standard deviation for the optimizer (the factors are scale-free).
    """
    from arch import arch_model  # imported here: only filtered runs need it

    out = np.empty_like(changes)
    for c in range(changes.shape[1]):
        r = changes[:, c]
        scale = float(np.sqrt(np.mean(r * r)))
        if not scale > 0:
            out[:, c] = 1.0
            continue
        res = arch_model(r / scale, mean="Zero", vol="GARCH", p=1, q=1,
                         rescale=False).fit(disp="off")
        sig = np.asarray(res.conditional_volatility, float)
        nxt = float(np.sqrt(res.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]))
        out[:, c] = nxt / sig
    return out


def filtered(data: HistoricalData, method: str, lam: float = 0.94) -> HistoricalData:
    """``data`` with each column's daily changes rescaled by ``sigma_{T+1} / sigma_t``.

    ``method`` is ``none`` (``data`` itself), ``ewma`` or ``garch``. The levels are rebuilt
    from the first level by a running sum of the rescaled changes.
    """
    if method == "none" or data.levels.shape[1] == 0:
        return data
    changes = np.diff(data.levels, axis=0)
    scale = ewma_scale(changes, lam) if method == "ewma" else garch_scale(changes)
    levels = np.empty_like(data.levels)
    levels[0] = data.levels[0]
    levels[1:] = data.levels[0] + np.cumsum(changes * scale, axis=0)
    return dataclasses.replace(data, levels=levels)


@dataclass(frozen=True)
class HistoricalSource(ScenarioSource):
    """Historical scenarios block by block, regenerated from the window's factor levels.

    A :class:`risk_engine.scenarios.ScenarioSource` whose :meth:`block` cuts historical
    windows instead of drawing (``seed`` and ``antithetic`` are unused), so both engines and
    every later stage take it unchanged. Build it with :func:`historical_source`.
    ``model`` is the history-estimated scenario model the other stages use (hedging, worst
    case, grid revaluation ranges); it does not enter the historical scenarios.
    ``n_scenarios`` is ``T - h + 1`` overlapping windows or ``T`` scaled one-day changes.
    """

    data: HistoricalData
    horizon_days: int
    horizon_method: str

    def window_dates(self, first: int, n: int) -> tuple[NDArray[np.datetime64],
                                                          NDArray[np.datetime64]]:
        """Start and end date of scenarios ``first .. first + n - 1``."""
        j = np.arange(first, first + n)
        step = self.horizon_days if self.horizon_method == "overlapping" else 1
        return self.data.dates[j], self.data.dates[j + step]

    def changes(self, first: int, n: int) -> FloatArray:
        """The block matrix of scenarios ``first .. first + n - 1``, shape (n, width)."""
        lv = self.data.levels
        j = np.arange(first, first + n)
        if self.horizon_method == "overlapping":
            d = lv[j + self.horizon_days] - lv[j]
        else:
            d = (lv[j + 1] - lv[j]) * math.sqrt(self.horizon_days)
        absolute = self.data.shift == ABSOLUTE
        if absolute.any():
            base = self.data.base[absolute]
            with np.errstate(invalid="ignore", divide="ignore"):
                d[:, absolute] = np.log((base + d[:, absolute]) / base)
        relative = self.data.shift == RELATIVE_RATE
        if relative.any():
            d[:, relative] = self.data.base[relative] * np.expm1(d[:, relative])
        return d

    def block(self, block_id: int) -> FloatArray:
        """Scenario matrix of block ``block_id``, shape (n_b, width)."""
        return self.changes(block_id * self.block_size, self.block_length(block_id))


def non_positive_spots(source: HistoricalSource) -> dict[str, str]:
    """Underlyings whose absolute shift takes today's spot (or a vol) to zero or below."""
    x = source.changes(0, source.n_scenarios)
    data = source.data
    n_u, n_b = len(data.underlyings), data.n_vol_buckets
    out: dict[str, str] = {}
    for c in range(n_u * (1 + n_b)):
        u = data.underlyings[c if c < n_u else (c - n_u) // n_b]
        bad = np.flatnonzero(~np.isfinite(x[:, c]))
        if bad.size and u not in out:
            start, end = source.window_dates(int(bad[0]), 1)
            what = "spot" if c < n_u else "ATM vol"
            out[u] = (f"the absolute historical change of {start[0]} .. {end[0]} takes the "
                      f"{what} {data.base[c]} to zero or below")
    return out


def historical_source(data: HistoricalData, settings: HistoricalSettings, *,
                      horizon_days: int, model: ScenarioModel, horizon_years: float,
                      layout: FactorLayout | None = None) -> HistoricalSource:
    """The historical scenario source of a run (filter applied on the driver, once).

    Raises
    ------
    ConfigError
        If ``layout`` asks for vol or rate factors (:func:`check_layout`), or the window
        holds fewer than ``h`` daily changes for overlapping windows.
    """
    check_layout(layout or FactorLayout(len(data.underlyings)), data)
    if settings.horizon_method == "overlapping":
        if settings.window_days < horizon_days:
            raise ConfigError(
                f"config key 'historical.window_days' = {settings.window_days} is out of "
                f"range: overlapping windows need at least monte_carlo.horizon_days = "
                f"{horizon_days} daily changes")
    t = data.levels.shape[0] - 1
    n = t - horizon_days + 1 if settings.horizon_method == "overlapping" else t
    return HistoricalSource(
        model=model, horizon_years=horizon_years, seed=0, antithetic=False,
        block_size=settings.block_size, n_scenarios=max(n, 0),
        data=filtered(data, settings.filter, settings.ewma_lambda),
        horizon_days=horizon_days, horizon_method=settings.horizon_method)
