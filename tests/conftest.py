"""Shared fixtures: one local Spark session per test run, and a small demo snapshot.

The folders mirror the layering: ``unit/`` needs no JVM, ``spark/`` runs local-mode Spark,
``cluster/`` starts a standalone cluster on 127.0.0.1; each folder marks its tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import D1, D2

_FOLDER_MARKS = {"spark": pytest.mark.spark, "cluster": pytest.mark.cluster}


def pytest_collection_modifyitems(items):
    """Tests under tests/spark need a JVM, those under tests/cluster start a cluster."""
    root = Path(__file__).parent
    for item in items:
        folder = Path(item.fspath).relative_to(root).parts[0]
        if folder in _FOLDER_MARKS:
            item.add_marker(_FOLDER_MARKS[folder])


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
    from risk_engine.tools.demo_data import generate, write_tables

    root = tmp_path_factory.mktemp("snapshot")
    for i, day in enumerate((D1, D2)):
        tables = generate(day, n_positions=400, seed=11 + i)
        if i == 0:
            write_tables(tables, root)
        else:  # history and the factor model are shared; add the second date's snapshot
            write_tables({k: tables[k] for k in ("positions", "market", "rates")}, root)
    return root
