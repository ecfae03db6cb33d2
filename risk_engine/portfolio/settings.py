"""Settings of the per-desk portfolio analytics (the YAML ``portfolio:`` section maps onto them)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from risk_engine.settings import SettingError, require
from risk_engine.solvers import QP_SOLVERS

TargetMode = Literal["eq", "ge"]


@dataclass(frozen=True)
class Bounds:
    """Per-asset weight bounds ``lower <= w_i <= upper`` applied to every underlying.

    Attributes
    ----------
    lower : float or None
        Lower bound on each weight; ``0.0`` (long-only) by default, ``None`` for no bound
        (short sales allowed without limit).
    upper : float or None
        Upper bound on each weight; ``None`` (no bound) by default.
    """

    lower: float | None = 0.0
    upper: float | None = None

    def __post_init__(self) -> None:
        for name in ("lower", "upper"):
            v = getattr(self, name)
            require(v is None or math.isfinite(v), name, v, "finite or null")
        if self.lower is not None and self.upper is not None:
            require(self.lower <= self.upper, "upper", self.upper,
                    f"lower={self.lower} exceeds upper: need lower <= upper")
        require(self.upper is None or self.upper > 0, "upper", self.upper,
                "> 0 (weights sum to 1), or null")

    @classmethod
    def unbounded(cls) -> Bounds:
        """No bounds at all (short sales allowed), the setting of the closed forms."""
        return cls(lower=None, upper=None)


#: Long-only bounds, the default of every function taking ``bounds``.
LONG_ONLY = Bounds()


@dataclass(frozen=True)
class PortfolioSettings:
    """Portfolio analytics settings, with defaults.

    Attributes
    ----------
    bounds : Bounds
        Weight bounds for min-variance and the frontier (long-only by default). Risk parity
        is long-only by construction.
    target_return : float or None
        Optional annual target return of the min-variance portfolio (None: none).
    target_mode : {"eq", "ge"}
        ``"eq"``: the portfolio's expected return equals ``target_return``; ``"ge"``: it is
        at least ``target_return`` (then a target below the min-variance return is inactive
        and the result is the min-variance portfolio).
    n_frontier_points : int
        Points on the efficient frontier, >= 2, including the min-variance point.
    max_frontier_return : float or None
        Cap on the frontier's highest target return. Needed when the maximum achievable
        return is unbounded (no upper bound and short sales allowed); when set it replaces the
        maximum achievable return only if it is lower.
    risk_free_rate : float
        Annual risk-free rate (simple fraction, 0.02 for 2%) for Sharpe ratios.
    risk_budgets : tuple of (str, float) pairs, or None
        Relative risk parity budgets by underlying name (a mapping is accepted and stored as
        sorted pairs). Underlyings not listed get budget 1.0; a desk's budgets are normalized
        to sum 1 over its own underlyings. None: equal budgets.
    solver : {"CLARABEL", "SCS"}
        cvxpy solver for min-variance and the frontier.
    fallback_solver : {"SCS", "CLARABEL"} or None
        Solver tried when ``solver`` raises, stops at a limit or is inaccurate (None: none).
    risk_parity_tol : float
        Convergence tolerance of the risk parity Newton method on the risk shares.
    risk_parity_max_iter : int
        Iteration cap of the Newton method.
    """

    bounds: Bounds = LONG_ONLY
    target_return: float | None = None
    target_mode: TargetMode = "eq"
    n_frontier_points: int = 20
    max_frontier_return: float | None = None
    risk_free_rate: float = 0.0
    risk_budgets: tuple[tuple[str, float], ...] | None = None
    solver: str = "CLARABEL"
    fallback_solver: str | None = "SCS"
    risk_parity_tol: float = 1e-10
    risk_parity_max_iter: int = 100

    def __post_init__(self) -> None:
        require(self.target_mode in ("eq", "ge"), "target_mode", self.target_mode,
                "'eq' or 'ge'")
        require(self.target_return is None or math.isfinite(self.target_return),
                "target_return", self.target_return, "finite or null")
        require(not isinstance(self.n_frontier_points, bool)
                and isinstance(self.n_frontier_points, int) and self.n_frontier_points >= 2,
                "n_frontier_points", self.n_frontier_points, "an integer >= 2")
        require(self.max_frontier_return is None or math.isfinite(self.max_frontier_return),
                "max_frontier_return", self.max_frontier_return, "finite or null")
        require(math.isfinite(self.risk_free_rate) and abs(self.risk_free_rate) < 1.0,
                "risk_free_rate", self.risk_free_rate,
                "a fraction (0.02 for 2%), not a percentage")
        if self.risk_budgets is not None:
            raw = self.risk_budgets
            pairs = list(raw.items()) if isinstance(raw, Mapping) else list(raw)
            try:
                clean = tuple(sorted((str(k), float(v)) for k, v in pairs))
            except (TypeError, ValueError) as exc:
                raise SettingError("risk_budgets", raw,
                                   "a mapping of underlying names to numbers") from exc
            for k, v in clean:
                require(math.isfinite(v) and v > 0, f"risk_budgets.{k}", v,
                        "a positive finite number")
            object.__setattr__(self, "risk_budgets", clean)
        for key in ("solver", "fallback_solver"):
            name = getattr(self, key)
            require((name is None and key == "fallback_solver")
                    or str(name).upper() in QP_SOLVERS, key, name,
                    f"one of {QP_SOLVERS}" + (" or null" if key == "fallback_solver" else ""))
        require(0 < self.risk_parity_tol < 1e-3, "risk_parity_tol", self.risk_parity_tol,
                "in (0, 1e-3)")
        require(self.risk_parity_max_iter >= 1, "risk_parity_max_iter",
                self.risk_parity_max_iter, ">= 1")

    @property
    def solvers(self) -> tuple[str, ...]:
        """Solvers in the order they are tried (the fallback only if it differs)."""
        first = self.solver.upper()
        if self.fallback_solver is None or self.fallback_solver.upper() == first:
            return (first,)
        return (first, self.fallback_solver.upper())

    def budgets_for(self, underlyings: Sequence[str]) -> tuple[float, ...] | None:
        """Relative risk budgets for a desk's underlyings (None: equal budgets)."""
        if self.risk_budgets is None:
            return None
        table = dict(self.risk_budgets)
        return tuple(table.get(u, 1.0) for u in underlyings)


#: Default settings instance.
DEFAULT_PORTFOLIO_SETTINGS = PortfolioSettings()
