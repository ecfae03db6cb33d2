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


def test_same_published_tables_give_the_same_bytes(published_root):
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
