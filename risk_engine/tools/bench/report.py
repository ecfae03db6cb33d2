"""The benchmark's rows, its targets, and the printed table."""

from __future__ import annotations

from typing import Any

import pandas as pd

#: Targets of issue 6, as (metric, comparison, bound).
TARGETS = {
    "spark_vs_single_process": (">=", 0.90),
    "full_kernel_rate": (">=", 60.0),
    "grid_kernel_rate": (">=", 300.0),
    "var_es_rel_error": ("<=", 1e-4),
    "full_vs_scipy_rel_error": ("<=", 1e-9),
    "time_ratio_10x": ("<=", 11.0),
    "peak_memory_growth_mib": ("<=", 64.0),
    "hedging_stage_s": ("<=", 30.0),
    "backfill_year_min": ("<=", 15.0),
    "driver_peak_mib": ("<=", 3072.0),
}

COLUMNS = ["section", "method", "n_scenarios", "metric", "value", "unit", "target", "met",
           "note"]


class Rows:
    """The benchmark's measured figures, one row each (see :data:`COLUMNS`), in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, section: str, method: str | None, n: int | None, metric: str, value: float,
            unit: str = "", target: str | None = None, note: str = "") -> None:
        """Add one figure; ``target`` names an entry of :data:`TARGETS` it is checked on."""
        met = None
        if target is not None and target in TARGETS and value == value:
            op, bound = TARGETS[target]
            met = bool(value >= bound) if op == ">=" else bool(value <= bound)
        self.rows.append({
            "section": section, "method": method, "n_scenarios": n, "metric": metric,
            "value": float(value), "unit": unit,
            "target": f"{TARGETS[target][0]} {TARGETS[target][1]:g}"
            if target in TARGETS else "",
            "met": met, "note": note})

    def frame(self) -> pd.DataFrame:
        """The rows added so far as a frame with :data:`COLUMNS`."""
        return pd.DataFrame(self.rows, columns=COLUMNS)


def _fmt(value: float) -> str:
    if value != value:
        return "n/a"
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e5 or a < 1e-3:
        return f"{value:.3g}" if a >= 1e5 else f"{value:.2e}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}" if a < 100 else f"{value:,.1f}"


def format_table(table: pd.DataFrame) -> str:
    """Render the benchmark rows as an aligned text table, one block per section."""
    lines = []
    for section, grp in table.groupby("section", sort=False):
        lines.append(f"== {section} ==")
        cells = [["method", "scenarios", "metric", "value", "unit", "target", "met", "note"]]
        for r in grp.itertuples(index=False):
            met = "" if r.met is None or r.met != r.met else ("yes" if r.met else "NO")
            n = "" if r.n_scenarios is None or r.n_scenarios != r.n_scenarios \
                else f"{int(r.n_scenarios):,}"
            cells.append([r.method or "", n, r.metric, _fmt(r.value), r.unit, r.target, met,
                          r.note])
        widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]) - 1)]
        for c in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(c[:-1], widths, strict=True))
                         + ("  " + c[-1] if c[-1] else ""))
        lines.append("")
    return "\n".join(lines)
