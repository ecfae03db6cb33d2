"""risk_factor_var: the Spark engine gives the in-process engine's bits."""

import datetime as dt

import pandas as pd

from risk_engine import config
from risk_engine.engine import InProcessEngine
from risk_engine.factor_var import risk_factor_var
from risk_engine.revaluation import plan_revaluation
from risk_engine.scenarios.factors import FactorLayout
from risk_engine.simulation import SimulationSpec
from risk_engine.spark.engine import SparkEngine
from tests import helpers as h
from tests.unit.test_factor_var import NormalFactors, _book

LEVELS = (0.95, 0.99)


def test_risk_factor_var_is_the_same_on_both_engines(spark, tmp_path):
    book = _book([("c", "d1", "call", "A", 5.0, 95.0, dt.date(2027, 5, 21), 100.0),
                  ("p", "d2", "put", "A", -3.0, 105.0, dt.date(2027, 2, 19), 100.0),
                  ("s", "d2", "equity", "A", 100.0, None, None, 1.0)])
    layout = FactorLayout(1, (0.1, 1.0), rate_factor=True)
    source = NormalFactors((0.0, 0.01, 0.0, 0.0), (0.05, 0.1, 0.1, 0.003), seed=5,
                           block_size=1500, n_scenarios=6000)
    spec = SimulationSpec(plan=plan_revaluation(book, layout), source=source, chunk_size=512)
    tables = []
    for engine in (InProcessEngine(),
                   SparkEngine(spark, partitions=None, faults=config.TestingConfig(),
                               staging=str(tmp_path), run_id="r", as_of=h.AS_OF)):
        blocks = engine.simulate(spec, LEVELS)
        try:
            tails = blocks.tail_summary(LEVELS)
            tables.append(risk_factor_var(spec, blocks.fold, tails, book, 10))
        finally:
            blocks.release()
    pd.testing.assert_frame_equal(tables[0], tables[1], check_exact=True)
