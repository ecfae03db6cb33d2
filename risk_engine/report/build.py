"""The morning report as one self-contained HTML page, built from published tables.

Pure: :func:`build` turns published tables into a string; the same tables give the same
bytes (fixed SVG hash salt, no dates in SVG metadata, text as text). No script, no
external URL: the page is readable offline and makes no request when opened.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from risk_engine.report.published import GOOD, PublishedDate, loads

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#1d2430}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:2px solid #d0d6de;
padding-bottom:4px;margin-top:32px}h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px}
th,td{border:1px solid #d0d6de;padding:3px 8px;text-align:right}
th{background:#eef1f5}td.l,th.l{text-align:left}
.banner{padding:10px 14px;border-radius:4px;margin:10px 0;font-weight:bold}
.ok{background:#e3f4e8;color:#17602f}.warn{background:#fff4d6;color:#7a5600}
.fail{background:#fde2e1;color:#8f1d18}.note{color:#5b6573;font-style:italic}
.up{color:#b3261e}.down{color:#17602f}.fig{margin:6px 0 14px}
.grid{display:flex;flex-wrap:wrap;gap:8px}
"""


# -- formatting ---------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(x: Any, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    return f"{float(x):,.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    return f"{100 * float(x):.{digits}f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="l">{_e(v)}</td>' if i < left
                                    else f"<td>{_e(v)}</td>" for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


# -- figures ------------------------------------------------------------------------------
def _svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG text, deterministic."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    return '<div class="fig">' + text[text.index("<svg"):] + "</div>"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "risk-engine-report", "svg.fonttype": "none",
                         "font.family": "DejaVu Sans", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt.subplots(figsize=(width, height))


def _thousands(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _measure(rm: pd.DataFrame, scope: str, desk: str | None, measure: str,
             level: float) -> float | None:
    sel = rm[(rm["scope"] == scope) & (rm["measure"] == measure)
             & np.isclose(rm["confidence_level"], level)]
    sel = sel[sel["desk"].isna()] if desk is None else sel[sel["desk"] == desk]
    return float(sel["value"].iloc[0]) if len(sel) else None


# -- sections -----------------------------------------------------------------------------
def _summary(date: PublishedDate, good: PublishedDate | None) -> str:
    m = date.manifest
    status = str(m.get("status"))
    cls = {"completed": "ok", "completed_with_warnings": "warn"}.get(status, "fail")
    out = [f'<div class="banner {cls}">Run {_e(m.get("run_id"))}: {_e(status)}</div>']
    if status not in GOOD:
        out.append(f'<p><b>Message:</b> {_e(m.get("message"))}</p>')
        if good is not None:
            out.append(f'<div class="banner warn">The figures below are from the last good '
                       f'date, {good.as_of.isoformat()} (run {_e(good.manifest.get("run_id"))}),'
                       f' not from {date.as_of.isoformat()}.</div>')
        else:
            out.append(_note("No earlier published date: no figures to show."))
    shown = good.manifest if status not in GOOD and good is not None else m
    warnings = loads(m.get("warnings"), [])
    out.append("<h3>Warnings</h3>")
    out.append("<ul>" + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>"
               if warnings else _note("None."))
    counts = loads(shown.get("row_counts"), {})
    out.append("<h3>Input rows</h3>" if shown is m else
               f"<h3>Input rows (last good date {good.as_of.isoformat()})</h3>"
               if good is not None else "<h3>Input rows</h3>")
    out.append(_table(["table", "read", "rejected"],
                      [(k, _num(v.get("in", 0)), _num(v.get("rejected", 0)))
                       for k, v in sorted(counts.items())]) if counts else _note("None."))
    timings = loads(m.get("stage_timings"), {})
    if timings:
        out.append("<h3>Timings (seconds)</h3>")
        out.append(_table(["stage", "seconds"],
                          [(k, _num(v, 2)) for k, v in timings.items()
                           if isinstance(v, (int, float))]))
    out.append(_table(["scenarios", "horizon (days)", "seed", "config hash", "code version"],
                      [(_num(m.get("n_scenarios")), _num(m.get("horizon_days")),
                        _e(m.get("seed")), _e(m.get("config_hash")),
                        _e(m.get("code_version")))], left=0))
    return "".join(out)


def _rejected(tables: dict[str, pd.DataFrame]) -> str:
    rej = tables.get("rejected_rows")
    if rej is None or not len(rej):
        return _note("No rejected rows.")
    rows = rej.sort_values(["table", "key"]).head(50)
    out = _table(["table", "key", "column", "value", "reason"],
                 rows[["table", "key", "column", "value", "reason"]].itertuples(index=False),
                 left=5)
    return f"<p>{len(rej)} rejected row(s){' (first 50)' if len(rej) > 50 else ''}.</p>{out}"


def _var_es(tables: dict[str, pd.DataFrame], prev: PublishedDate | None) -> str:
    rm = tables.get("risk_measures")
    if rm is None or not len(rm):
        return _note("No risk_measures published.")
    prm = prev.tables.get("risk_measures") if prev is not None else None
    rows = []
    keys = rm[["scope", "desk", "confidence_level"]].drop_duplicates()
    keys = keys.assign(o=(keys["scope"] != "firm").astype(int)).sort_values(
        ["o", "desk", "confidence_level"], na_position="first")
    for scope, desk, level in keys[["scope", "desk", "confidence_level"]].itertuples(
            index=False):
        d = None if desk is None or (isinstance(desk, float) and pd.isna(desk)) else desk
        row: list[Any] = ["firm" if scope == "firm" else d, f"{level:.3f}"]
        for meas in ("VaR", "ES"):
            v = _measure(rm, scope, d, meas, level)
            p = _measure(prm, scope, d, meas, level) if prm is not None else None
            ch = None if v is None or p is None else v - p
            row += [_num(v), _num(ch) if ch is not None else "n/a",
                    _pct(ch / p) if ch is not None and p else ""]
        rows.append(row)
    where = f"previous published date {prev.as_of.isoformat()}" if prev is not None \
        else "no previous published date"
    return (f"<p>Change from the {_e(where)}.</p>"
            + _table(["scope", "level", "VaR", "change", "%", "ES", "change", "%"], rows))


def _losses(tables: dict[str, pd.DataFrame], level: float) -> str:
    sp = tables.get("scenario_pnl")
    if sp is None or not len(sp):
        return _note("scenario_pnl is not published for this date: no loss distribution.")
    rm = tables.get("risk_measures", pd.DataFrame())
    desks = sorted(sp["desk"].unique())
    out = []
    for desk in desks:
        rows = sp[sp["desk"] == desk].sort_values("first_scenario")
        pnl = np.concatenate([np.asarray(x, dtype=float) for x in rows["pnl"]])
        loss = -pnl
        fig, ax = _figure(5.6, 2.4)
        ax.hist(loss, bins=60, color="#7d93b2")
        var = _measure(rm, "desk", desk, "VaR", level) if len(rm) else None
        es = _measure(rm, "desk", desk, "ES", level) if len(rm) else None
        if var is not None:
            ax.axvline(var, color="#d08c00", lw=1.5, label=f"VaR {level:.3g}: {var:,.0f}")
        if es is not None:
            ax.axvline(es, color="#b3261e", lw=1.5, ls="--", label=f"ES {level:.3g}: {es:,.0f}")
        ax.set_title(f"{desk}: loss distribution ({len(loss):,} scenarios)")
        ax.set_xlabel("loss")
        _thousands(ax.xaxis)
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        out.append(_svg(fig))
    return '<div class="grid">' + "".join(out) + "</div>"


def _contributions(tables: dict[str, pd.DataFrame], level: float, top: int) -> str:
    c = tables.get("contributions")
    if c is None or not len(c):
        return _note("No contributions published.")
    sel = c[(c["measure"] == "VaR") & np.isclose(c["confidence_level"], level)]
    desks = sel[sel["position_id"].isna()].sort_values("desk")
    out = []
    if len(desks):
        fig, ax = _figure(7.5, 0.35 * len(desks) + 1.0)
        colors = ["#b3261e" if v > 0 else "#17602f" for v in desks["contribution"]]
        ax.barh(list(desks["desk"]), list(desks["contribution"]), color=colors)
        ax.invert_yaxis()
        ax.set_title(f"Euler contributions to firm VaR {level:.3g} by desk")
        ax.set_xlabel("contribution (currency)")
        _thousands(ax.xaxis)
        fig.tight_layout()
        out.append(_svg(fig))
    pos = sel[sel["position_id"].notna()]
    for desk, grp in sorted(pos.groupby("desk"), key=lambda kv: str(kv[0])):
        g = grp.assign(a=grp["contribution"].abs()).sort_values(["a", "position_id"],
                                                                ascending=[False, True])
        out.append(f"<h3>{_e(desk)}: top {top} positions by |contribution| to desk VaR</h3>")
        out.append(_table(["position", "contribution", "share"],
                          [(p, _num(v), _pct(s)) for p, v, s in
                           g[["position_id", "contribution", "share"]].head(top).itertuples(
                               index=False)]))
    return "".join(out)


def _limits(tables: dict[str, pd.DataFrame]) -> str:
    lc = tables.get("limit_checks")
    out = []
    if lc is None or not len(lc):
        out.append(_note("No limit checks published."))
    else:
        lc = lc.assign(b=~lc["breached"].astype(bool)).sort_values(
            ["b", "utilization", "desk", "check", "subject"],
            ascending=[True, False, True, True, True]).head(30)
        labels = [" · ".join(str(x) for x in (d, c, s) if x is not None and x == x)
                  for d, c, s in lc[["desk", "check", "subject"]].itertuples(index=False)]
        fig, ax = _figure(9.0, 0.28 * len(lc) + 1.0)
        util = lc["utilization"].astype(float).to_numpy()
        ax.barh(labels, util, color=["#b3261e" if b else "#7d93b2"
                                     for b in lc["breached"].astype(bool)])
        ax.axvline(1.0, color="#1d2430", lw=1, ls=":")
        ax.invert_yaxis()
        ax.set_xlabel("utilization (1 = limit)")
        ax.set_title("Limit utilization, breaches first (top 30)")
        fig.tight_layout()
        out.append(_svg(fig))
    al = tables.get("alerts")
    out.append("<h3>Alerts</h3>")
    if al is None or not len(al):
        out.append(_note("No alerts."))
    else:
        order = {"critical": 0, "warning": 1, "info": 2}
        al = al.assign(o=al["severity"].map(order).fillna(3)).sort_values(
            ["o", "desk", "check", "subject"], na_position="first")
        out.append(_table(["severity", "source", "message"],
                          al[["severity", "source", "message"]].itertuples(index=False),
                          left=3))
    return "".join(out)


def _worst_case(tables: dict[str, pd.DataFrame]) -> str:
    wc = tables.get("worst_case_var")
    if wc is None or not len(wc):
        return _note("No worst-case VaR published.")
    cur = wc[wc["portfolio"] == "current"]
    level = float(cur["confidence_level"].max())
    cur = cur[np.isclose(cur["confidence_level"], level)]
    desks = sorted(cur["desk"].dropna().unique())
    models = sorted(cur["model"].unique())
    fig, ax = _figure(9.0, 3.4)
    x = np.arange(len(desks))
    width = 0.8 / (len(models) + 1)
    mc = [cur[cur["desk"] == d]["mc_var"].astype(float).max() for d in desks]
    ax.bar(x, mc, width, label="Monte Carlo VaR", color="#1d2430")
    palette = ["#d08c00", "#b3261e", "#7d93b2", "#17602f"]
    for i, model in enumerate(models):
        vals = [cur[(cur["desk"] == d) & (cur["model"] == model)]["value"].astype(float).max()
                for d in desks]
        ax.bar(x + (i + 1) * width, vals, width, label=model, color=palette[i % len(palette)])
    ax.set_xticks(x + width * len(models) / 2, desks, rotation=15)
    ax.set_title(f"Worst-case VaR next to Monte Carlo VaR, current book, level {level:.3g}")
    _thousands(ax.yaxis)
    ax.set_ylabel("VaR (currency)")
    ax.legend(frameon=False, fontsize=8, ncol=len(models) + 1, loc="upper center",
              bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return _svg(fig)


#: Why a desk's current book is not marked, by the frontier table's ``current_status``.
_NOT_MARKED = {
    "no_weights": "net short: no fully invested weights",
    "not_applicable": "the desk's moments or weights are invalid",
}


def _slug(x: Any) -> str:
    """An SVG/HTML id fragment for a desk name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(x))


def _frontier(tables: dict[str, pd.DataFrame]) -> str:
    fr = tables.get("frontier")
    if fr is None or not len(fr):
        return _note("No efficient frontier published.")
    has_current = {"current_expected_return", "current_volatility",
                   "current_status"} <= set(fr.columns)
    out, rows, missing = [], [], []
    for desk, grp in sorted(fr.groupby("desk"), key=lambda kv: str(kv[0])):
        pts = grp.drop_duplicates("point").sort_values("point")
        pts = pts[pts["status"].isin(["optimal", "optimal_inaccurate"])]
        fig, ax = _figure(3.7, 2.6)
        ax.plot(pts["volatility"], pts["expected_return"], "o-", color="#7d93b2", ms=3,
                label="efficient frontier", gid=f"frontier-{_slug(desk)}")
        point = _current_point(grp) if has_current else None
        if point is not None:
            ret, vol, status = point
            outside = status == "outside_bounds"
            # The current book on the frontier's basis (same moments and weights
            # definition), from the frontier table's current_* columns.
            ax.plot([vol], [ret], "D", color="#b3261e", ms=6, gid=f"current-book-{_slug(desk)}",
                    label="current book" + (" (outside the bounds)" if outside else ""))
            rows.append((desk, _pct(ret, 2), _pct(vol, 2), status))
        else:
            why = ("the frontier table has no current_* columns" if not has_current else
                   _NOT_MARKED.get(str(grp["current_status"].iloc[0]), "not evaluated"))
            missing.append(f"{desk} ({why})")
        ax.set_title(str(desk))
        ax.set_xlabel("volatility (annual)")
        ax.set_ylabel("expected return (annual)")
        ax.legend(frameon=False, fontsize=7)
        fig.tight_layout()
        out.append(_svg(fig))
    parts = ['<div class="grid">' + "".join(out) + "</div>"]
    if rows:
        parts.append("<h3>Current book on the frontier's basis (model moments)</h3>"
                     + _table(["desk", "expected return", "volatility", "status"], rows))
    if missing:
        parts.append(_note("Current book not marked for: " + "; ".join(missing) + "."))
    return "".join(parts)


def _current_point(grp: pd.DataFrame) -> tuple[float, float, str] | None:
    """(expected return, volatility, status) of the desk's current book, from ``frontier``.

    The model's annualized return ``mu' w`` and volatility ``sqrt(w' Sigma w)`` with the
    frontier's own moments (``current_*`` columns); None when not evaluated.
    """
    row = grp.iloc[0]
    status = str(row["current_status"])
    if status not in ("evaluated", "outside_bounds"):
        return None
    r, v = float(row["current_expected_return"]), float(row["current_volatility"])
    return (r, v, status) if np.isfinite(r) and np.isfinite(v) else None


def _backtest(tables: dict[str, pd.DataFrame]) -> str:
    bs, bt = tables.get("backtest_series"), tables.get("backtest")
    if bs is None or not len(bs):
        return ""
    out = ["<h2>Backtest</h2>"]
    firm = bs[bs["scope"] == "firm"] if (bs["scope"] == "firm").any() else bs
    level = float(firm["confidence_level"].min())
    series = sorted(firm["series"].unique())[0]
    s = firm[np.isclose(firm["confidence_level"], level) & (firm["series"] == series)]
    s = s.sort_values("date")
    dates = pd.to_datetime(s["date"])
    fig, ax = _figure(9.0, 3.0)
    ax.plot(dates, s["pnl"].astype(float), color="#1d2430", lw=1, label=f"P&L ({series})")
    ax.plot(dates, -s["var"].astype(float), color="#d08c00", lw=1.2, label=f"-VaR {level:.3g}")
    exc = s["exception"].eq(True).to_numpy(dtype=bool)
    ax.plot(dates[exc], s["pnl"].astype(float)[exc], "o", color="#b3261e", ms=4,
            label=f"exceptions ({int(exc.sum())})")
    zone = ""
    if bt is not None and len(bt):
        row = bt[(bt["scope"] == s["scope"].iloc[0]) & np.isclose(bt["confidence_level"], level)
                 & (bt["series"] == series)]
        if len(row):
            zone = str(row["zone"].iloc[0])
    ax.set_title(f"Firm backtest: P&L against -VaR {level:.3g}"
                 + (f", traffic light: {zone}" if zone else ""))
    ax.legend(frameon=False, fontsize=8)
    _thousands(ax.yaxis)
    fig.autofmt_xdate()
    fig.tight_layout()
    out.append(_svg(fig))
    if bt is not None and len(bt):
        cols = ["scope", "desk", "confidence_level", "series", "observations", "exceptions",
                "expected_exceptions", "zone", "kupiec_p"]
        rows = bt[bt["status"] == "ok"]
        rows = rows.assign(o=(rows["scope"] != "firm").astype(int)).sort_values(
            ["o", "desk", "confidence_level", "series"], na_position="first")
        if len(rows) < len(bt):
            out.append(_note(f"{len(bt) - len(rows)} series not evaluated (no P&L or VaR)."))
        out.append(_table(cols, [(a, b, f"{c:.3f}", d, _num(e), _num(f), _num(g, 1), z,
                                  _num(k, 3)) for a, b, c, d, e, f, g, z, k in
                                 rows[cols].itertuples(index=False)], left=2))
    return "".join(out)


def _hedges(tables: dict[str, pd.DataFrame]) -> str:
    hs, hr = tables.get("hedge_summary"), tables.get("hedge_recommendations")
    if (hs is None or not len(hs)) and (hr is None or not len(hr)):
        return ""
    out = ["<h2>Hedge recommendations</h2>"]
    if hs is not None and len(hs):
        cols = ["desk", "status", "exposure_risk", "risk_after_hedge", "cost", "message"]
        out.append(_table(cols, [(d, st, _num(a), _num(b), _num(c, 2), m) for d, st, a, b, c, m
                                 in hs.sort_values("desk")[cols].itertuples(index=False)],
                          left=2))
    if hr is not None and len(hr):
        cols = ["desk", "underlying", "lots", "shares", "notional", "cost"]
        rows = hr[hr["lots"].fillna(0) != 0].sort_values(["desk", "underlying"])
        out.append(_table(cols, [(d, u, _num(lo), _num(s), _num(n), _num(c, 2)) for
                                 d, u, lo, s, n, c in rows[cols].itertuples(index=False)],
                          left=2) if len(rows) else _note("No trade recommended."))
    return "".join(out)


# -- stress and factor sections (each only when its table is published) -------------------
def _is_null(x: Any) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))


def _scope_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Firm rows first, then desks by name (stable)."""
    return frame.assign(_o=(frame["scope"] != "firm").astype(int),
                        _d=frame["desk"].map(lambda d: "" if _is_null(d) else str(d))
                        ).sort_values(["_o", "_d"], kind="stable")


def _scope_label(scope: Any, desk: Any) -> str:
    return "firm" if scope == "firm" or _is_null(desk) else str(desk)


#: Factor classes of ``risk_factor_var`` in the order shown.
_FACTOR_CLASSES = ("spot", "vol", "rate", "all")


def _factor_var(tables: dict[str, pd.DataFrame], label: str) -> str:
    """Risk by factor class (``risk_factor_var``), "" when the table is not published.

    VaR and ES when only spot, only vol, only rates or every factor moves, per desk and firm,
    every level; a chart of the VaR at the highest level.
    """
    fv = tables.get("risk_factor_var")
    if fv is None or not len(fv):
        return ""
    out = [f"<h2>Risk by factor class{_e(label)}</h2>"]
    classes = [c for c in _FACTOR_CLASSES if c in set(fv["factor_class"])]
    classes += sorted(set(fv["factor_class"]) - set(classes))
    keys = _scope_order(fv[["scope", "desk", "confidence_level"]].drop_duplicates())
    keys = keys.sort_values(["_o", "_d", "confidence_level"], kind="stable")
    rows = []
    for scope, desk, level in keys[["scope", "desk", "confidence_level"]].itertuples(
            index=False):
        sel = fv[(fv["scope"] == scope) & np.isclose(fv["confidence_level"], level)]
        sel = sel[sel["desk"].isna()] if _is_null(desk) else sel[sel["desk"] == desk]
        row: list[Any] = [_scope_label(scope, desk), f"{level:.3f}"]
        for meas in ("VaR", "ES"):
            for fc in classes:
                v = sel[(sel["measure"] == meas) & (sel["factor_class"] == fc)]["value"]
                row.append(_num(float(v.iloc[0])) if len(v) else "")
        rows.append(row)
    horizon = sorted({int(h) for h in fv["horizon_days"].dropna()})
    out.append(_note("Each column moves only that factor class on the run's scenarios (the "
                     "others held at today's values); 'all' moves every factor and equals "
                     "the VaR and ES above. Horizon: "
                     + ", ".join(str(h) for h in horizon) + " day(s)."))
    out.append(_table(["scope", "level"] + [f"VaR {c}" for c in classes]
                      + [f"ES {c}" for c in classes], rows))
    # One chart: VaR by factor class at the highest level, firm and desks.
    level = float(fv["confidence_level"].max())
    top = fv[(fv["measure"] == "VaR") & np.isclose(fv["confidence_level"], level)]
    scopes = _scope_order(top[["scope", "desk"]].drop_duplicates())
    names = [_scope_label(s, d) for s, d in scopes[["scope", "desk"]].itertuples(index=False)]
    if names:
        fig, ax = _figure(9.0, 3.2)
        x = np.arange(len(names))
        width = 0.8 / len(classes)
        palette = {"spot": "#7d93b2", "vol": "#d08c00", "rate": "#17602f", "all": "#1d2430"}
        for i, fc in enumerate(classes):
            vals = []
            for s, d in scopes[["scope", "desk"]].itertuples(index=False):
                sel = top[(top["scope"] == s) & (top["factor_class"] == fc)]
                sel = sel[sel["desk"].isna()] if _is_null(d) else sel[sel["desk"] == d]
                vals.append(float(sel["value"].iloc[0]) if len(sel) else 0.0)
            ax.bar(x + i * width, vals, width, label=fc, color=palette.get(fc, "#b3261e"))
        ax.set_xticks(x + width * (len(classes) - 1) / 2, names, rotation=15)
        ax.set_title(f"VaR {level:.3g} by factor class")
        ax.set_ylabel("VaR (currency)")
        _thousands(ax.yaxis)
        ax.legend(frameon=False, fontsize=8, ncol=len(classes))
        fig.tight_layout()
        out.append(_svg(fig))
    return "".join(out)


def _stress_results(tables: dict[str, pd.DataFrame], label: str) -> str:
    """Stress results (``stress_results``), "" when the table is not published.

    Firm and desk P&L per scenario, worst firm P&L first, and the (up to five) losing
    positions of each desk's worst scenario.
    """
    sr = tables.get("stress_results")
    if sr is None or not len(sr):
        return ""
    out = [f"<h2>Stress results{_e(label)}</h2>"]
    firm = sr[sr["scope"] == "firm"].set_index("scenario_id")
    desks = sorted({str(d) for d in sr.loc[sr["scope"] == "desk", "desk"].dropna()})
    scen = sr.drop_duplicates("scenario_id")[["scenario_id", "description"]]
    scen = scen.assign(
        _p=[float(firm["pnl"].get(s, np.nan)) for s in scen["scenario_id"]],
        _s=scen["scenario_id"].astype(str)).sort_values(["_p", "_s"], kind="stable",
                                                         na_position="last")
    rows = []
    for sid, desc, fpnl in scen[["scenario_id", "description", "_p"]].itertuples(index=False):
        base = float(firm["base_value"].get(sid, np.nan))
        row: list[Any] = [sid, "" if _is_null(desc) else desc, _num(fpnl),
                          _pct(fpnl / abs(base)) if np.isfinite(base) and base else ""]
        for desk in desks:
            v = sr[(sr["scenario_id"] == sid) & (sr["scope"] == "desk") & (sr["desk"] == desk)]
            row.append(_num(float(v["pnl"].iloc[0])) if len(v) else "")
        rows.append(row)
    out.append(_note("P&L of each scenario's shocks applied now, full revaluation; worst "
                     "firm P&L first. % is of the firm's absolute base value."))
    out.append(_table(["scenario", "description", "firm P&L", "% of base"]
                      + [f"{d} P&L" for d in desks], rows, left=2))
    worst_rows = []
    for desk in desks:
        d = sr[(sr["scope"] == "desk") & (sr["desk"] == desk)]
        d = d.assign(_s=d["scenario_id"].astype(str)).sort_values(["pnl", "_s"],
                                                                   kind="stable")
        if not len(d):
            continue
        w = d.iloc[0]
        ids = [p for p in str(w["worst_positions"] or "").split(",") if p]
        pnls = [] if _is_null(w["worst_pnl"]) else [float(x) for x in w["worst_pnl"]]
        losers = [(p, v) for p, v in zip(ids, pnls, strict=False) if v < 0][:5]
        if float(w["pnl"]) >= 0 and not losers:
            worst_rows.append((desk, "", "", "no scenario loses", ""))
            continue
        first = True
        for pid, pnl in losers:
            worst_rows.append((desk if first else "", w["scenario_id"] if first else "",
                               _num(w["pnl"]) if first else "", pid, _num(pnl)))
            first = False
        if first:
            worst_rows.append((desk, w["scenario_id"], _num(w["pnl"]), "no position loses", ""))
    if worst_rows:
        out.append("<h3>Five worst positions of each desk's worst scenario</h3>")
        out.append(_note("The desk's scenario with the lowest P&L; its (up to) five "
                         "positions with the largest losses, worst first."))
        out.append(_table(["desk", "worst scenario", "desk P&L", "position", "position P&L"],
                          worst_rows, left=2))
    return "".join(out)


def _compact(x: float) -> str:
    """A short label for a heat-map cell: 1.2M, -350k, 12."""
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.1f}B"
    if a >= 1e6:
        return f"{x / 1e6:.1f}M"
    if a >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


#: Heat-map cells up to which every cell's P&L is written in it.
ANNOTATE_CELLS = 120


def _heat_map(cells: pd.DataFrame, title: str, gid: str) -> str:
    """One spot x vol P&L grid as a heat map (diverging colours centred at 0).

    The cells are the SVG group ``gid``; each holds its P&L as text when the grid has at most
    :data:`ANNOTATE_CELLS` cells.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    grid = cells.pivot_table(index="vol_shock", columns="spot_shock", values="pnl",
                             aggfunc="sum").sort_index().sort_index(axis=1)
    z = grid.to_numpy(float)
    spots, vols = list(grid.columns), list(grid.index)
    lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.0
    lim = lim if lim > 0 else 1.0
    # 21 discrete colours (few enough for a vector colour bar); the middle one holds 0.
    cmap = plt.get_cmap("RdBu", 21)
    norm = Normalize(-lim, lim)
    fig, ax = _figure(max(4.0, 0.3 * len(spots) + 1.5), max(2.4, 0.3 * len(vols) + 1.3))
    mesh = ax.pcolormesh(np.arange(len(spots) + 1), np.arange(len(vols) + 1), z, cmap=cmap,
                         norm=norm, edgecolors="white", linewidth=0.5, gid=gid)
    if z.size <= ANNOTATE_CELLS:
        for i in range(len(vols)):
            for j in range(len(spots)):
                if np.isfinite(z[i, j]):
                    dark = abs(z[i, j]) > 0.6 * lim
                    ax.text(j + 0.5, i + 0.5, _compact(z[i, j]), ha="center", va="center",
                            fontsize=6, color="white" if dark else "#1d2430")
    ax.set_xticks(np.arange(len(spots)) + 0.5, [f"{100 * s:+.0f}%" for s in spots],
                  fontsize=7, rotation=90 if len(spots) > 15 else 0)
    ax.set_yticks(np.arange(len(vols)) + 0.5, [f"{v:+g}" for v in vols], fontsize=7)
    ax.set_xlabel("spot move")
    ax.set_ylabel("vol move (points)")
    ax.set_title(title, fontsize=9)
    ax.spines[["left", "bottom"]].set_visible(False)
    bar = fig.colorbar(mesh, ax=ax, fraction=0.05, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    _thousands(bar.ax.yaxis)
    fig.tight_layout()
    return _svg(fig)


def _stress_grid(tables: dict[str, pd.DataFrame], label: str, per_desk: int = 2) -> str:
    """The spot-vol risk matrix (``stress_grid``) as heat maps, "" when not published.

    Per desk every underlying moved together, then the desk's ``per_desk`` underlyings with
    the largest absolute P&L on the grid.
    """
    sg = tables.get("stress_grid")
    if sg is None or not len(sg):
        return ""
    out = [f"<h2>Spot-vol risk matrix{_e(label)}</h2>",
           _note("Full revaluation P&L now, spot moves (columns) by implied-vol moves in vol "
                 "points (rows); red is a loss, blue a gain, white about zero. Per desk all "
                 f"underlyings moved together, then its {per_desk} underlyings with the "
                 "largest absolute P&L on the grid; each figure has its own colour scale.")]
    for desk in sorted({str(d) for d in sg["desk"].dropna()}):
        d = sg[sg["desk"] == desk]
        figs = []
        whole = d[d["underlying"].isna()]
        if len(whole):
            base = float(whole["base_value"].iloc[0])
            figs.append(_heat_map(whole, f"{desk}: all underlyings (base {base:,.0f})",
                                  f"stress-grid-{_slug(desk)}"))
        und = d[d["underlying"].notna()]
        if len(und):
            size = und.assign(a=und["pnl"].abs()).groupby("underlying")["a"].max()
            size = size.reset_index().assign(u=lambda f: f["underlying"].astype(str))
            size = size.sort_values(["a", "u"], ascending=[False, True], kind="stable")
            for u in size["underlying"].head(per_desk):
                cells = und[und["underlying"] == u]
                base = float(cells["base_value"].iloc[0])
                figs.append(_heat_map(cells, f"{desk}: {u} (base {base:,.0f})",
                                      f"stress-grid-{_slug(desk)}-{_slug(u)}"))
        out.append(f"<h3>{_e(desk)}</h3>" + '<div class="grid">' + "".join(figs) + "</div>")
    return "".join(out)


def _stressed_var(tables: dict[str, pd.DataFrame], label: str) -> str:
    """Stressed VaR and ES (``stressed_var``), "" when the table is not published.

    Per desk and firm and level: the worst rolling window of each measure and its value,
    next to the run's VaR and ES of the same scope and level (``risk_measures``).
    """
    sv = tables.get("stressed_var")
    if sv is None or not len(sv):
        return ""
    rm = tables.get("risk_measures")
    out = [f"<h2>Stressed VaR{_e(label)}</h2>"]
    first = sv.iloc[0]
    out.append(_note(
        f"Today's book over every rolling {int(first['window_days'])}-day window of the "
        f"history {first['history_start']} to {first['history_end']} "
        f"({int(first['n_windows']):,} windows, {int(first['window_scenarios']):,} "
        f"scenarios each, {int(first['horizon_days'])}-day horizon); per measure the window "
        "where it is largest. Today: the run's VaR / ES of the same scope and level."))
    keys = _scope_order(sv[["scope", "desk", "confidence_level"]].drop_duplicates())
    keys = keys.sort_values(["_o", "_d", "confidence_level"], kind="stable")
    rows = []
    for scope, desk, level in keys[["scope", "desk", "confidence_level"]].itertuples(
            index=False):
        d = None if _is_null(desk) else str(desk)
        sel = sv[(sv["scope"] == scope) & np.isclose(sv["confidence_level"], level)]
        sel = sel[sel["desk"].isna()] if d is None else sel[sel["desk"] == d]
        row: list[Any] = [_scope_label(scope, desk), f"{level:.3f}"]
        for meas in ("VaR", "ES"):
            r = sel[sel["measure"] == meas]
            today = _measure(rm, str(scope), d, meas, float(level)) \
                if rm is not None and len(rm) else None
            if not len(r):
                row += ["", "", _num(today), ""]
                continue
            value = float(r["value"].iloc[0])
            row += [f"{r['window_start'].iloc[0]} to {r['window_end'].iloc[0]}", _num(value),
                    _num(today), f"{value / today:.2f}x" if today else ""]
        rows.append(row)
    out.append(_table(["scope", "level", "VaR window", "stressed VaR", "today's VaR",
                       "stressed / today", "ES window", "stressed ES", "today's ES",
                       "stressed / today"], rows, left=1))
    return "".join(out)


def build(date: PublishedDate, good: PublishedDate | None, previous: PublishedDate | None,
          *, top_positions: int = 10) -> str:
    """The morning report of ``date`` as one HTML page.

    Parameters
    ----------
    date
        The report's date: its latest run's manifest row (and its tables if it completed).
    good
        The last published date on or before ``date`` (``date`` itself when it completed);
        its tables give the figures. None if nothing was ever published.
    previous
        The published date before ``good``, for the day-on-day changes (None if none).
    top_positions
        Positions listed per desk in the contributions tables.

    Returns
    -------
    str
        Self-contained HTML (inline SVG figures and styles, no script, no external URL);
        the same inputs give the same string.
    """
    title = f"Risk report {date.as_of.isoformat()}"
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>", "<h2>Run summary</h2>", _summary(date, good)]
    if good is not None:
        t = good.tables
        label = "" if good.as_of == date.as_of else f" (last good date {good.as_of.isoformat()})"
        rm = t.get("risk_measures")
        level = float(rm["confidence_level"].max()) if rm is not None and len(rm) else 0.99
        parts += [f"<h2>Rejected rows{_e(label)}</h2>", _rejected(t),
                  f"<h2>VaR and ES{_e(label)}</h2>", _var_es(t, previous),
                  f"<h2>Loss distribution per desk{_e(label)}</h2>", _losses(t, level),
                  f"<h2>Euler contributions{_e(label)}</h2>",
                  _contributions(t, level, top_positions),
                  f"<h2>Limits and alerts{_e(label)}</h2>", _limits(t),
                  f"<h2>Worst-case VaR{_e(label)}</h2>", _worst_case(t),
                  f"<h2>Efficient frontier per desk{_e(label)}</h2>", _frontier(t),
                  # Sections of tables published only by some runs return "" (no heading)
                  # when absent.
                  _factor_var(t, label), _stress_results(t, label), _stress_grid(t, label),
                  _stressed_var(t, label), _backtest(t), _hedges(t)]
    parts.append("</body></html>\n")
    return "".join(parts)
