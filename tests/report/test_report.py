"""The morning report: sections, failed dates, byte-identical rebuilds, a real browser."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from risk_engine.report import build, read_published, write_report
from tests.report.browser import visit
from tests.report.conftest import D1, D2, D3

REPO = Path(__file__).resolve().parents[2]
_SVG = "{http://www.w3.org/2000/svg}"


def test_report_has_every_section_and_the_change_from_the_previous_date(published_root):
    path = write_report(str(published_root), D2)
    assert path == published_root / "report" / f"as_of_date={D2}" / "report.html"
    text = path.read_text()
    for heading in ("Run summary", "VaR and ES", "Loss distribution per desk",
                    "Euler contributions", "Limits and alerts", "Worst-case VaR",
                    "Efficient frontier per desk"):
        assert f"<h2>{heading}</h2>" in text
    assert f"Change from the previous published date {D1}" in text
    assert "top 10 positions" in text
    assert "<script" not in text.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text)
    assert "last good date" not in text
    assert "<h2>Hedge recommendations</h2>" in text
    # Tables this run does not publish give no section at all, not an empty heading.
    for absent in ("risk_factor_var", "stress_results", "stress_grid", "backtest"):
        assert not (published_root / absent).exists()
    assert "<h2>Backtest</h2>" not in text
    assert not re.search(r"<h2>[^<]*(stress|factor class|spot-vol)", text, flags=re.I)


def test_first_date_has_no_previous_and_says_so(published_root):
    text = build(*read_published(str(published_root), D1))
    assert "no previous published date" in text


def test_failed_date_says_so_and_shows_the_last_good_date(published_root):
    text = write_report(str(published_root), D3).read_text()
    assert "failed" in text
    assert "no row for underlying TECH01 on 2026-11-23" in text
    assert f"The figures below are from the last good date, {D2}" in text
    assert f"<h2>VaR and ES (last good date {D2})</h2>" in text
    assert text.count("<svg") >= 5


@pytest.mark.parametrize("root_fixture", ["published_root", "stress_root"])
def test_same_published_tables_give_the_same_bytes(request, root_fixture):
    published_root = request.getfixturevalue(root_fixture)
    first = write_report(str(published_root), D2).read_bytes()
    second = write_report(str(published_root), D2).read_bytes()
    assert first == second
    code = ("import datetime, sys; from risk_engine.report import build, read_published; "
            "sys.stdout.write(build(*read_published(sys.argv[1], "
            "datetime.date.fromisoformat(sys.argv[2]))))")
    fresh = subprocess.run([sys.executable, "-c", code, str(published_root), D2.isoformat()],
                           capture_output=True, check=True, cwd=REPO).stdout
    assert fresh == first


_FACTS = """(() => {
  const svgs = [...document.querySelectorAll('svg')];
  return {title: document.title, h2: document.querySelectorAll('h2').length,
          svgs: svgs.length,
          empty: svgs.filter(s => s.querySelectorAll('path').length === 0
                                  || s.getBoundingClientRect().width === 0).length,
          scripts: document.querySelectorAll('script').length};
})()"""


@pytest.mark.parametrize("as_of", [D2, D3])
def test_report_in_headless_chromium(published_root, tmp_path, as_of):
    path = write_report(str(published_root), as_of)
    shot = tmp_path / f"report-{as_of}.png"
    seen = visit(path.as_uri(), tmp_path / "profile", shot, _FACTS)
    assert seen.console_errors == []
    assert seen.requests == [path.as_uri()]  # the page itself, nothing else
    facts = seen.facts
    assert facts["title"] == f"Risk report {as_of}"
    assert facts["svgs"] >= 5 and facts["empty"] == 0 and facts["scripts"] == 0
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_report_command_writes_the_page(published_root, capsys):
    from risk_engine.cli import main

    code = main(["report", "--config", str(REPO / "conf" / "local.yaml"), "--as-of",
                 D2.isoformat(), "--set", f"output.root={published_root}"])
    assert code == 0
    path = published_root / "report" / f"as_of_date={D2}" / "report.html"
    assert f"report: {path}" in capsys.readouterr().out


def test_report_command_on_a_date_without_run_is_a_clear_error(published_root, capsys):
    from risk_engine.cli import main

    code = main(["report", "--config", str(REPO / "conf" / "local.yaml"), "--as-of",
                 "2026-11-02", "--set", f"output.root={published_root}"])
    assert code == 2
    assert "no run of 2026-11-02" in capsys.readouterr().err


def test_report_settings_are_checked():
    from risk_engine.config import config_from_dict
    from risk_engine.errors import ConfigError

    with pytest.raises(ConfigError, match="report.top_positions"):
        config_from_dict({"as_of_date": "2026-11-20", "report": {"top_positions": 0}})


def test_backtest_section_in_headless_chromium(backtest_root, tmp_path):
    path = write_report(str(backtest_root), D2)
    text = path.read_text()
    assert "<h2>Backtest</h2>" in text and "traffic light" in text
    shot = tmp_path / f"report-backtest-{D2}.png"
    seen = visit(path.as_uri(), tmp_path / "profile", shot, _FACTS)
    assert seen.console_errors == [] and seen.requests == [path.as_uri()]
    assert seen.facts["empty"] == 0
    print(f"screenshot: {shot}")


def _frontier_svgs(text: str) -> dict[str, ET.Element]:
    """Each desk's efficient-frontier figure of the page, parsed, by desk slug."""
    figs = {}
    section = text[text.index("<h2>Efficient frontier per desk"):]
    for svg in re.findall(r"<svg.*?</svg>", section, flags=re.S):
        root = ET.fromstring(svg)
        for g in root.iter(f"{_SVG}g"):
            gid = g.get("id", "")
            if gid.startswith("frontier-"):
                figs[gid[len("frontier-"):]] = root
    return figs


def _marker_xy(root: ET.Element, gid: str) -> np.ndarray:
    """Pixel positions (x, y) of the markers drawn in the group ``gid``."""
    group = next(g for g in root.iter(f"{_SVG}g") if g.get("id") == gid)
    return np.array([(float(u.get("x")), float(u.get("y")))
                     for u in group.iter(f"{_SVG}use")])


def test_frontier_marks_the_current_book_from_the_frontier_tables_columns(published_root):
    """Where the diamond is drawn, mapped back through the axes that the frontier's own
    points fix, is the frontier table's current_volatility / current_expected_return."""
    date, good, prev = read_published(str(published_root), D2)
    fr = good.tables["frontier"]
    text = build(date, good, prev)
    figs = _frontier_svgs(text)
    assert set(figs) == set(fr["desk"])
    marked = 0
    for desk, grp in fr.groupby("desk"):
        root, row = figs[desk], grp.iloc[0]
        has_marker = any(g.get("id") == f"current-book-{desk}" for g in root.iter(f"{_SVG}g"))
        if row["current_status"] not in ("evaluated", "outside_bounds"):
            assert not has_marker
            assert f"{desk} (net short: no fully invested weights)" in text
            continue
        marked += 1
        pts = grp.drop_duplicates("point").sort_values("point")
        px = _marker_xy(root, f"frontier-{desk}")
        assert len(px) == len(pts) >= 2
        # the axes' linear maps from data to pixels, fitted on the frontier's points
        ax_x = np.polyfit(pts["volatility"], px[:, 0], 1)
        ax_y = np.polyfit(pts["expected_return"], px[:, 1], 1)
        np.testing.assert_allclose(np.polyval(ax_x, pts["volatility"]), px[:, 0], atol=1e-3)
        (cx, cy), = _marker_xy(root, f"current-book-{desk}")
        assert (cx - ax_x[1]) / ax_x[0] == pytest.approx(row["current_volatility"], abs=1e-5)
        assert (cy - ax_y[1]) / ax_y[0] == pytest.approx(row["current_expected_return"],
                                                         abs=1e-5)
        assert (f'<td class="l">{desk}</td><td>{100 * row["current_expected_return"]:.2f}%'
                f'</td><td>{100 * row["current_volatility"]:.2f}%</td>') in text
    assert marked >= 2


def test_frontier_marker_needs_no_performance_and_old_tables_say_why(published_root):
    import dataclasses

    date, good, prev = read_published(str(published_root), D2)
    no_perf = dataclasses.replace(good, tables={k: v for k, v in good.tables.items()
                                                if k != "performance"})
    assert build(date, no_perf, prev) == build(date, good, prev)
    old = good.tables["frontier"].drop(columns=[c for c in good.tables["frontier"].columns
                                                if c.startswith("current_")])
    before = dataclasses.replace(good, tables={**good.tables, "frontier": old})
    text = build(date, before, prev)
    assert 'id="current-book-' not in text
    assert "the frontier table has no current_* columns" in text


# -- stress, stressed VaR and risk by factor class (tests/report/conftest.py stress_root) ----
def _cells(row):
    return [c for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def _section(text: str, heading: str) -> str:
    start = text.index(f"<h2>{heading}</h2>")
    end = text.find("<h2>", start + 4)
    return text[start:end if end >= 0 else len(text)]


def test_stress_sections_follow_the_published_tables(stress_root):
    import pyarrow.parquet as pq

    text = write_report(str(stress_root), D2).read_text()
    heads = re.findall(r"<h2>([^<]*)</h2>", text)
    new = ["Risk by factor class", "Stress results", "Spot-vol risk matrix", "Stressed VaR"]
    assert heads[heads.index("Efficient frontier per desk") + 1:][:4] == new
    part = stress_root / "{}" / f"as_of_date={D2}"
    sr = pq.read_table(str(part).format("stress_results")).to_pandas()
    firm = sr[sr["scope"] == "firm"].sort_values("pnl")

    # Stress results: one row per scenario, worst firm P&L first, each desk's P&L.
    sec = _section(text, "Stress results")
    rows = re.findall(r"<tr>(<td.*?)</tr>", sec)
    desks = sorted(sr["desk"].dropna().unique())
    scen_rows = [_cells(r) for r in rows[:len(firm)]]
    assert [r[0] for r in scen_rows] == list(firm["scenario_id"])
    for cells, (sid, fpnl) in zip(scen_rows, firm[["scenario_id", "pnl"]].itertuples(
            index=False), strict=True):
        assert cells[2] == f"{fpnl:,.0f}"
        for desk, cell in zip(desks, cells[4:], strict=True):
            v = sr[(sr["scenario_id"] == sid) & (sr["desk"] == desk)]["pnl"].iloc[0]
            assert cell == f"{v:,.0f}"
    # ... and per desk its worst scenario's losing positions, worst first.
    worst = [_cells(r) for r in rows[len(firm):]]
    assert len(worst) >= 3
    for desk in desks:
        d = sr[sr["desk"] == desk].sort_values(["pnl", "scenario_id"]).iloc[0]
        losers = [(p, v) for p, v in zip(d["worst_positions"].split(","), d["worst_pnl"],
                                         strict=True) if v < 0]
        at = next(i for i, r in enumerate(worst) if r[0] == desk)
        if not losers:
            continue
        got = [(r[3], r[4]) for r in worst[at:at + len(losers)]]
        assert got == [(p, f"{v:,.0f}") for p, v in losers]
        assert worst[at][1] == d["scenario_id"] and worst[at][2] == f"{d['pnl']:,.0f}"

    # Stressed VaR: the worst window and value next to today's VaR, per desk and firm.
    sv = pq.read_table(str(part).format("stressed_var")).to_pandas()
    rm = pq.read_table(str(part).format("risk_measures")).to_pandas()
    sec = _section(text, "Stressed VaR")
    level = sv["confidence_level"].max()
    f_var = sv[(sv["scope"] == "firm") & (sv["measure"] == "VaR")
               & (sv["confidence_level"] == level)].iloc[0]
    today = rm[(rm["scope"] == "firm") & (rm["measure"] == "VaR")
               & (rm["confidence_level"] == level)]["value"].iloc[0]
    assert (f"<td>{f_var['window_start']} to {f_var['window_end']}</td>"
            f"<td>{f_var['value']:,.0f}</td><td>{today:,.0f}</td>") in sec
    assert len(re.findall(r"<tr><td", sec)) == len(sv) // 2  # VaR and ES on one row

    # Risk by factor class: the hand-written partition, read by name, VaR per class.
    fv = pq.read_table(str(part).format("risk_factor_var")).to_pandas()
    sec = _section(text, "Risk by factor class")
    row = next(_cells(r) for r in re.findall(r"<tr>(<td.*?)</tr>", sec)
               if _cells(r)[:2] == ["firm", f"{level:.3f}"])
    firm_fv = fv[(fv["scope"] == "firm") & (fv["confidence_level"] == level)]
    value = firm_fv.set_index(["measure", "factor_class"])["value"]
    expect = [f"{value[(m, c)]:,.0f}" for m in ("VaR", "ES")
              for c in ("spot", "vol", "rate", "all")]
    assert row[2:] == expect
    assert sec.count("<svg") == 1


def test_spot_vol_heat_maps_annotate_every_cell_of_the_grid(stress_root):
    import pyarrow.parquet as pq

    from risk_engine.report.build import _compact

    text = write_report(str(stress_root), D2).read_text()
    sg = pq.read_table(str(stress_root / "stress_grid" / f"as_of_date={D2}")).to_pandas()
    sec = _section(text, "Spot-vol risk matrix")
    svgs = re.findall(r"<svg.*?</svg>", sec, flags=re.S)
    per_desk = {d: min(2, g["underlying"].nunique()) + 1 for d, g in sg.groupby("desk")}
    assert len(svgs) == sum(per_desk.values())
    for desk, grp in sg.groupby("desk"):
        whole = grp[grp["underlying"].isna()]
        svg = next(ET.fromstring(s) for s in svgs if f'id="stress-grid-{desk}"' in s)
        texts = [t.text for t in svg.iter(f"{_SVG}text") if t.text]
        # every cell's P&L written in it (13 spot x 5 vol moves)
        assert len(whole) == 65
        labels = [_compact(v) for v in whole["pnl"]]
        for lab in set(labels):
            assert texts.count(lab) >= labels.count(lab), (desk, lab)
        # Colours diverge at 0: red for a loss, blue for a gain, the neutral middle colour
        # within one colour step (2 max|P&L| / 21) of 0. Cells are drawn row by row from
        # the lowest vol move, spot moves ascending.
        group = next(g for g in svg.iter(f"{_SVG}g") if g.get("id") == f"stress-grid-{desk}")
        fills = [re.search(r"fill: #(\w{6})", p.get("style")).group(1)
                 for p in group.iter(f"{_SVG}path")]
        z = whole.sort_values(["vol_shock", "spot_shock"])["pnl"].to_numpy()
        assert len(fills) == len(z)
        lim = np.abs(z).max()
        for v, fill in zip(z, fills, strict=True):
            r, b = int(fill[:2], 16), int(fill[4:], 16)
            if abs(v) < 0.9 * lim / 21:
                assert r == b, (desk, v, fill)
            elif abs(v) > 1.1 * lim / 21:
                assert (r > b) == (v < 0) and r != b, (desk, v, fill)


def test_stress_sections_in_headless_chromium(stress_root, tmp_path):
    path = write_report(str(stress_root), D2)
    shot = tmp_path / f"report-stress-{D2}.png"
    seen = visit(path.as_uri(), tmp_path / "profile", shot, _FACTS)
    assert seen.console_errors == [] and seen.requests == [path.as_uri()]
    assert seen.facts["svgs"] >= 20 and seen.facts["empty"] == 0
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
