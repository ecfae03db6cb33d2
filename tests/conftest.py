"""Shared fixtures: one local Spark session per test run, and a small demo snapshot."""

from __future__ import annotations

import datetime as dt

import pytest

D1 = dt.date(2026, 11, 19)
D2 = dt.date(2026, 11, 20)


@pytest.fixture(scope="session")
def spark():
    from risk_engine.config import SparkConfig
    from risk_engine.spark.session import build_session

    session = build_session(
        SparkConfig(app_name="risk-engine-tests",
                    conf={"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}),
        master="local[2]",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def snapshot_root(tmp_path_factory):
    """Demo data for two as-of dates (400 positions each) under one input root."""
    from risk_engine.demo_data import generate, write_tables

    root = tmp_path_factory.mktemp("snapshot")
    for i, day in enumerate((D1, D2)):
        tables = generate(day, n_positions=400, seed=11 + i)
        if i == 0:
            write_tables(tables, root)
        else:  # history and the factor model are shared; add the second date's snapshot
            write_tables({k: tables[k] for k in ("positions", "market", "rates")}, root)
    return root
