"""risk-engine: nightly Monte Carlo and worst-case market risk for option books.

The package is split in two layers:

* the pure numerical core (everything except :mod:`risk_engine.spark`), which
  never imports pyspark and is tested without a JVM;
* :mod:`risk_engine.spark`, which wires Parquet I/O and distribution only.
"""

__version__ = "0.1.0"
