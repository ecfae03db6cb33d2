"""Accuracy: full revaluation against an independent scipy pricer, other methods against full.

Desk and firm VaR and ES (all levels), the largest desk P&L error, and for the grid method
the largest pricing error per contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from risk_engine.book import CALL, EQUITY, ResolvedBook
from risk_engine.measures import var_es
from risk_engine.pipeline import Prepared
from risk_engine.revaluation_grid import GridPlan, contract_errors
from risk_engine.simulation import SimulationSpec
from risk_engine.tools.bench.report import Rows
from risk_engine.tools.bench.workload import LEVELS


def scipy_reference_pnl(book: ResolvedBook, x: np.ndarray, chunk: int = 2000) -> np.ndarray:
    """Desk P&L from an independent Black-Scholes written with ``scipy.stats.norm.cdf``."""
    from scipy.stats import norm

    out = np.empty((x.shape[0], len(book.desks)))
    kind, k, tau = book.kind, book.strike, np.where(book.kind > 0, book.tau_h, 1.0)
    live = (kind > 0) & (book.tau_h > 0)
    v, r, q = book.volatility, book.rate_h, book.dividend_yield
    onehot = np.zeros((book.n_positions, len(book.desks)))
    onehot[np.arange(book.n_positions), book.desk_index] = 1.0
    for a in range(0, x.shape[0], chunk):
        sg = (book.spot * np.exp(x[a:a + chunk]))[:, book.underlying_index]
        with np.errstate(all="ignore"):
            d1 = (np.log(sg / k) + (r - q + v * v / 2) * tau) / (v * np.sqrt(tau))
            d2 = d1 - v * np.sqrt(tau)
            call = sg * np.exp(-q * tau) * norm.cdf(d1) - k * np.exp(-r * tau) * norm.cdf(d2)
            put = k * np.exp(-r * tau) * norm.cdf(-d2) - sg * np.exp(-q * tau) * norm.cdf(-d1)
        unit = np.where(kind == EQUITY, sg,
                        np.where(live, np.where(kind == CALL, call, put),
                                 np.where(kind == CALL, np.maximum(sg - k, 0),
                                          np.maximum(k - sg, 0))))
        vals = unit * book.quantity - book.value
        # exact desk sums in a fixed order (no BLAS): position columns added one by one
        for d in range(len(book.desks)):
            out[a:a + chunk, d] = vals[:, book.desk_index == d].sum(axis=1)
    return out


def var_es_errors(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Largest relative error of desk and firm VaR and ES (all levels): (desks, firm)."""
    worst_desk = 0.0
    for d in range(ref.shape[1]):
        for a, b in zip(var_es(-ref[:, d], LEVELS), var_es(-got[:, d], LEVELS), strict=True):
            worst_desk = max(worst_desk, _rel(a.var, b.var), _rel(a.es, b.es))
    worst_firm = 0.0
    for a, b in zip(var_es(-ref.sum(axis=1), LEVELS), var_es(-got.sum(axis=1), LEVELS),
                    strict=True):
        worst_firm = max(worst_firm, _rel(a.var, b.var), _rel(a.es, b.es))
    return worst_desk, worst_firm


def _rel(a: float, b: float) -> float:
    return abs(b - a) / abs(a) if a != 0 else abs(b - a)


def accuracy_rows(rows: Rows, prep: Prepared, specs: dict[str, SimulationSpec],
                  pnls: dict[str, np.ndarray], methods: Sequence[str], n0: int,
                  accuracy_scenarios: int) -> None:
    """Add the ``accuracy`` section's rows from the P&L each method's Spark stage gathered.

    Full revaluation is checked against :func:`scipy_reference_pnl` on the first
    ``accuracy_scenarios`` scenarios; every other method against full on all ``n0``.
    """
    book = prep.book
    n_acc = min(accuracy_scenarios, n0)
    x_acc = np.concatenate([prep.spec.source.block(b)
                            for b in range(-(-n_acc // prep.spec.source.block_size))])[:n_acc]
    gross = book.gross_value()
    if "full" in methods:
        _scipy_rows(rows, book, x_acc, pnls["full"][:n_acc], gross)
    for m in methods:
        if m == "full":
            continue
        if "full" not in pnls:
            rows.add("accuracy", m, None, "not_measured", float("nan"), note="needs method full")
            continue
        d_err, f_err = var_es_errors(pnls["full"], pnls[m])
        rows.add("accuracy", m, n0, "desk_var_es_rel_error", d_err, "vs full",
                 "var_es_rel_error")
        rows.add("accuracy", m, n0, "firm_var_es_rel_error", f_err, "vs full",
                 "var_es_rel_error")
        rows.add("accuracy", m, n0, "max_desk_pnl_error", float(np.max(
            np.abs(pnls[m] - pnls["full"]) / gross)), "of desk gross value")
        plan = specs[m].plan
        if isinstance(plan, GridPlan):
            _contract_rows(rows, m, book, plan, x_acc)


def _scipy_rows(rows: Rows, book: ResolvedBook, x_acc: np.ndarray, got: np.ndarray,
                gross: np.ndarray) -> None:
    """Full revaluation's P&L ``got`` on scenarios ``x_acc`` against the scipy pricer."""
    n_acc = x_acc.shape[0]
    ref = scipy_reference_pnl(book, x_acc)
    rows.add("accuracy", "full", n_acc, "max_desk_pnl_error_vs_scipy",
             float(np.max(np.abs(got - ref) / gross)), "of desk gross value",
             "full_vs_scipy_rel_error")
    d_err, f_err = var_es_errors(ref, got)
    rows.add("accuracy", "full", n_acc, "desk_var_es_rel_error_vs_scipy", d_err, "",
             "full_vs_scipy_rel_error")
    rows.add("accuracy", "full", n_acc, "firm_var_es_rel_error_vs_scipy", f_err, "",
             "full_vs_scipy_rel_error")


def _contract_rows(rows: Rows, m: str, book: ResolvedBook, plan: GridPlan,
                   x_acc: np.ndarray) -> None:
    """The grid's largest pricing error per contract on scenarios ``x_acc``."""
    n_acc = x_acc.shape[0]
    errs = contract_errors(book, plan, x_acc)
    worst = errs.loc[errs["max_abs_error"].idxmax()]
    rows.add("accuracy", m, n_acc, "max_contract_error", float(worst["max_abs_error"]),
             "currency", note=f"{worst['position_id']} ({worst['instrument_type']} on "
             f"{worst['underlying']}, notional {worst['notional']:,.0f})")
    rows.add("accuracy", m, n_acc, "max_contract_error_per_unit",
             float(errs["max_abs_error_per_unit"].max()), "currency per option")
    rows.add("accuracy", m, n_acc, "max_contract_error_of_notional",
             float(errs["max_rel_error_notional"].max()), "")
