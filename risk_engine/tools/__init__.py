"""Tools around the engine, apart from the numerical core and the nightly job.

* :mod:`risk_engine.tools.demo_data`: the synthetic demo snapshot (``risk-engine demo-data``);
* :mod:`risk_engine.tools.bench`: throughput, accuracy, scaling and memory of the Monte Carlo
  stage (``risk-engine bench``);
* :mod:`risk_engine.tools.worst_case_bench`: timing of the worst-case models against desk
  size (``risk-engine bench-worst-case``).

Nothing in the core or the job imports this package. Submodules are imported on demand, so
``import risk_engine.tools.demo_data`` does not import pyspark (only the benchmark's Spark
sections do, through :mod:`risk_engine.spark`).
"""
