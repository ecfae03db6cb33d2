"""The bench's stress section measures its three figures on a small demo book."""

from risk_engine.tools.bench.report import Rows, format_table
from risk_engine.tools.bench.stress import stress_rows


def test_stress_section_times_historical_stressed_var_and_grid():
    rows = Rows()
    stress_rows(rows, positions=100, years=3)
    table = rows.frame()
    got = table.set_index("method")
    assert set(got.index) == {"historical", "stressed_var", "stress_grid"}
    assert (got["value"] > 0).all() and (got["metric"] == "wall_s").all()
    assert got.loc["historical", "n_scenarios"] == 500 - 10 + 1
    assert got.loc["stressed_var", "n_scenarios"] == 3 * 252
    assert "rolling windows" in got.loc["stressed_var", "note"]
    assert "== stress ==" in format_table(table)
