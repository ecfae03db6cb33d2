"""Per-desk risk limits: concentration, leverage, VaR and ES.

Definitions (all in the reporting currency; ``mv`` is a position's market value, signed):

* gross value ``G = sum |mv|`` over the desk's positions (DESIGN section 3);
* position share ``|mv_j| / G``; limit ``max_position_share`` (seed: 20%);
* sector share ``sum_{j in sector} |mv_j| / G`` (gross within the sector: a long and a short
  in the same sector both count, hedges do not net away concentration); positions with a
  missing sector are grouped under ``"unassigned"``; limit ``max_sector_share`` (seed: 30%);
* leverage ``G / capital``; limit ``max_leverage`` (seed: 2x). ``capital`` is the desk's
  capital in currency: the ``capital`` argument if given, else ``LimitSettings.capital`` if
  configured, else ``|sum mv|`` (the absolute net market value, i.e. what a cash-funded book
  would have put up). With the default, a fully hedged book (net 0) has infinite leverage and
  breaches: configure ``capital`` for long/short desks;
* ``var_<level>`` / ``es_<level>``: the desk's VaR / ES (positive losses in currency) at a
  confidence level against a configured limit in currency.

Output: every check is evaluated and reported as rows (:data:`LIMIT_CHECK_COLUMNS`). The
concentration checks give one row per position / per sector (every subject, so every breach
is listed), sorted worst first with ``rank = 1`` on the worst offender; leverage, VaR and ES
give one row each. ``utilization = value / limit``; ``breached = value > limit`` (strict: a
value exactly at the limit is not a breach but is reported at 100% utilization). A check
that cannot be evaluated (zero gross value, missing VaR figure, bad input) is a row with NaN
value, ``breached = False`` and the reason in ``message``; the alert rules turn it into a
warning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from risk_engine import schemas
from risk_engine.errors import DataError, SchemaError
from risk_engine.settings import MERGE_OVER, SettingError, require

logger = logging.getLogger(__name__)

POSITION_CHECK = "position_concentration"
SECTOR_CHECK = "sector_concentration"
LEVERAGE_CHECK = "leverage"
UNASSIGNED_SECTOR = "unassigned"

#: limit_checks table: one row per (desk, check, subject).
LIMIT_CHECK_COLUMNS: dict[str, str] = schemas.LIMIT_CHECKS.pandas_dtypes()

POSITION_COLUMNS = ("position_id", "sector", "market_value")


def check_name(measure: str, confidence_level: float) -> str:
    """Name of a VaR/ES check, e.g. ``check_name("VaR", 0.99) == "var_0.99"``."""
    return f"{measure.lower()}_{confidence_level:g}"


def _level_limits(raw: Any, what: str) -> tuple[tuple[float, float], ...]:
    if raw is None:
        return ()
    pairs = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
    out: dict[float, float] = {}
    for item in pairs:
        try:
            level, limit = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError) as exc:
            raise SettingError(what, item, "entries (confidence_level, limit in currency)"
                               ) from exc
        require(0.0 < level < 1.0, f"{what}.{level:g}", item[0],
                "the key is a confidence level in (0, 1) (0.99, not 99)")
        require(math.isfinite(limit) and limit > 0, f"{what}.{level:g}", item[1],
                "a positive amount in currency")
        require(level not in out, f"{what}.{level:g}", item[1],
                "the confidence level is given twice")
        out[level] = limit
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class LimitSettings:
    """Limits of one desk (defaults from the seed's risk manager).

    Attributes
    ----------
    max_position_share : float
        Max ``|mv| / gross value`` of a single position, in (0, 1]; default 0.20.
    max_sector_share : float
        Max gross share of a sector, in (0, 1]; default 0.30.
    max_leverage : float
        Max ``gross value / capital``, > 0; default 2.0.
    capital : float or None
        Desk capital in currency (> 0); None: ``|net market value|`` (see module docstring).
    var_limits : tuple of (confidence_level, limit) pairs
        VaR limits in currency per confidence level in (0, 1); a mapping is accepted and
        stored as sorted pairs. Empty: no VaR check.
    es_limits : tuple of (confidence_level, limit) pairs
        ES limits likewise.
    """

    max_position_share: float = 0.20
    max_sector_share: float = 0.30
    max_leverage: float = 2.0
    capital: float | None = None
    var_limits: tuple[tuple[float, float], ...] = field(default=())
    es_limits: tuple[tuple[float, float], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("max_position_share", "max_sector_share"):
            v = getattr(self, name)
            require(isinstance(v, (int, float)) and 0.0 < v <= 1.0, name, v,
                    "a fraction in (0, 1] (0.2 for 20%)")
        require(isinstance(self.max_leverage, (int, float)) and math.isfinite(self.max_leverage)
                and self.max_leverage > 0, "max_leverage", self.max_leverage, "> 0")
        require(self.capital is None or (math.isfinite(self.capital) and self.capital > 0),
                "capital", self.capital, "a positive amount in currency, or null")
        object.__setattr__(self, "var_limits", _level_limits(self.var_limits, "var_limits"))
        object.__setattr__(self, "es_limits", _level_limits(self.es_limits, "es_limits"))


@dataclass(frozen=True)
class GovernanceLimits:
    """Default limits plus per-desk overrides (complete :class:`LimitSettings` per desk).

    In the run config, each desk's keys are merged over ``default``'s keys.

    Attributes
    ----------
    default : LimitSettings
        Limits of every desk without an override.
    desks : tuple of (desk, LimitSettings) pairs
        Overrides; a mapping is accepted. Build an override from the default with
        ``dataclasses.replace(default, capital=5e6, ...)``.
    """

    default: LimitSettings = LimitSettings()
    desks: tuple[tuple[str, LimitSettings], ...] = field(default=(),
                                                         metadata={MERGE_OVER: "default"})

    def __post_init__(self) -> None:
        raw = self.desks
        pairs = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
        for desk, lim in pairs:
            require(isinstance(lim, LimitSettings), f"desks.{desk}", lim, "LimitSettings")
        names = [str(d) for d, _ in pairs]
        require(len(set(names)) == len(names), "desks", names, "each desk once")
        object.__setattr__(self, "desks", tuple(sorted((str(d), v) for d, v in pairs)))

    def for_desk(self, desk: str) -> LimitSettings:
        """Limits of ``desk`` (its override, else the default)."""
        return dict(self.desks).get(desk, self.default)


def _validate_positions(positions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in POSITION_COLUMNS if c not in positions.columns]
    if missing:
        raise SchemaError(
            f"positions lack columns {missing}; have {list(positions.columns)}"
        )
    df = positions.loc[:, list(POSITION_COLUMNS)].copy()
    df["position_id"] = df["position_id"].astype(str)
    dup = df["position_id"][df["position_id"].duplicated()].unique().tolist()
    if dup:
        raise DataError(f"duplicate position_id {dup[:5]}")
    mv = pd.to_numeric(df["market_value"], errors="coerce").astype("float64")
    bad = df["position_id"][~np.isfinite(mv.to_numpy())].tolist()
    if bad:
        raise DataError(f"market_value missing or not finite for positions {bad[:5]}")
    df["market_value"] = mv
    df["sector"] = [
        UNASSIGNED_SECTOR if (s is None or (isinstance(s, float) and math.isnan(s)) or s == "")
        else str(s)
        for s in df["sector"]
    ]
    return df


def _figures(risk_figures: pd.DataFrame | Mapping[tuple[str, float], float] | None
             ) -> dict[tuple[str, float], float]:
    if risk_figures is None:
        return {}
    out: dict[tuple[str, float], float] = {}
    if isinstance(risk_figures, pd.DataFrame):
        missing = [c for c in ("measure", "confidence_level", "value")
                   if c not in risk_figures.columns]
        if missing:
            raise SchemaError(
                f"risk figures lack columns {missing}; have {list(risk_figures.columns)}"
            )
        items: Iterable[tuple[Any, Any, Any]] = zip(
            risk_figures["measure"], risk_figures["confidence_level"], risk_figures["value"],
            strict=True,
        )
    else:
        items = ((k[0], k[1], v) for k, v in risk_figures.items())
    for measure, level, value in items:
        key = (str(measure).lower(), round(float(level), 12))
        out[key] = float(value)
    return out


def _row(desk: str, check: str, subject: str | None, value: float, limit: float,
         rank: int = 1, message: str = "") -> dict[str, Any]:
    if math.isnan(value):
        util = float("nan")
    elif math.isinf(value):
        util = float("inf")
    else:
        util = value / limit
    return {"desk": desk, "check": check, "subject": subject, "value": value, "limit": limit,
            "utilization": util, "breached": bool(value > limit), "rank": rank,
            "message": message}


def _share_rows(desk: str, check: str, shares: pd.Series, limit: float) -> list[dict[str, Any]]:
    ordered = shares.sort_values(ascending=False, kind="mergesort")
    return [_row(desk, check, str(subj), float(v), limit, rank=k + 1)
            for k, (subj, v) in enumerate(ordered.items())]


def check_desk_limits(
    desk: str,
    positions: pd.DataFrame,
    *,
    limits: LimitSettings = LimitSettings(),
    capital: float | None = None,
    risk_figures: pd.DataFrame | Mapping[tuple[str, float], float] | None = None,
) -> pd.DataFrame:
    """Evaluate every limit of one desk; never raises on the desk's data.

    Parameters
    ----------
    desk : str
        Desk name.
    positions : DataFrame
        The desk's positions with columns ``position_id`` (unique), ``sector`` (str or
        null) and ``market_value`` (float, signed, currency); extra columns are ignored.
        Not modified.
    limits : LimitSettings
        The desk's limits.
    capital : float, optional
        Desk capital in currency; overrides ``limits.capital``. Default: ``|net value|``.
    risk_figures : DataFrame or mapping, optional
        The desk's VaR/ES: a frame with columns ``measure`` ("VaR"/"ES", any case),
        ``confidence_level`` and ``value`` (positive loss, currency), e.g. the desk's rows
        of ``risk_measures``; or a mapping ``{("VaR", 0.99): value}``.

    Returns
    -------
    DataFrame
        Columns :data:`LIMIT_CHECK_COLUMNS`; checks in the order position, sector,
        leverage, VaR limits, ES limits. On unusable input: one row with
        ``check = "evaluation"``, NaN value and the error in ``message``.
    """
    try:
        rows = _check_rows(desk, positions, limits, capital, risk_figures)
    except Exception as exc:  # noqa: BLE001 - a failed desk is a row
        logger.warning("desk %s: limit checks failed: %s: %s", desk, type(exc).__name__, exc)
        rows = [{"desk": desk, "check": "evaluation", "subject": None, "value": float("nan"),
                 "limit": float("nan"), "utilization": float("nan"), "breached": False,
                 "rank": 1, "message": f"limit checks failed: {type(exc).__name__}: {exc}"}]
    return pd.DataFrame(rows, columns=list(LIMIT_CHECK_COLUMNS)).astype(LIMIT_CHECK_COLUMNS)


def _check_rows(
    desk: str,
    positions: pd.DataFrame,
    limits: LimitSettings,
    capital: float | None,
    risk_figures: pd.DataFrame | Mapping[tuple[str, float], float] | None,
) -> list[dict[str, Any]]:
    df = _validate_positions(positions)
    figures = _figures(risk_figures)
    nan = float("nan")
    rows: list[dict[str, Any]] = []
    absval = df["market_value"].abs()
    gross = float(absval.sum())
    net = float(df["market_value"].sum())

    if gross > 0:
        shares = pd.Series(absval.to_numpy() / gross, index=df["position_id"].to_numpy())
        rows += _share_rows(desk, POSITION_CHECK, shares, limits.max_position_share)
        sector = (absval.groupby(df["sector"].to_numpy(), sort=True).sum() / gross)
        rows += _share_rows(desk, SECTOR_CHECK, sector, limits.max_sector_share)
    else:
        why = ("desk has no positions" if len(df) == 0
               else "desk gross market value is zero: shares undefined")
        rows.append(_row(desk, POSITION_CHECK, None, nan, limits.max_position_share,
                         message=why))
        rows.append(_row(desk, SECTOR_CHECK, None, nan, limits.max_sector_share, message=why))

    if capital is not None:
        cap, source = float(capital), "capital given for the run"
        if not (math.isfinite(cap) and cap > 0):
            raise DataError(f"capital={capital!r} must be a positive amount in currency")
    elif limits.capital is not None:
        cap, source = float(limits.capital), "configured capital"
    else:
        cap, source = abs(net), "capital = |net market value| (default)"
    if cap > 0:
        rows.append(_row(desk, LEVERAGE_CHECK, None, gross / cap, limits.max_leverage,
                         message=f"gross {gross:.6g} / {source} {cap:.6g}"))
    elif gross > 0:
        rows.append(_row(desk, LEVERAGE_CHECK, None, float("inf"), limits.max_leverage,
                         message=f"gross {gross:.6g} on zero capital ({source}); configure "
                         "the desk's capital"))
    else:
        rows.append(_row(desk, LEVERAGE_CHECK, None, nan, limits.max_leverage,
                         message="gross value and capital are both zero"))

    for measure, limit_pairs in (("VaR", limits.var_limits), ("ES", limits.es_limits)):
        for level, limit in limit_pairs:
            key = (measure.lower(), round(level, 12))
            name = check_name(measure, level)
            if key not in figures:
                rows.append(_row(desk, name, None, nan, limit,
                                 message=f"no {measure} figure at {level:g} for this desk"))
            elif not math.isfinite(figures[key]):
                rows.append(_row(desk, name, None, nan, limit,
                                 message=f"{measure} at {level:g} is not finite "
                                 f"({figures[key]!r})"))
            else:
                rows.append(_row(desk, name, None, figures[key], limit))
    return rows
