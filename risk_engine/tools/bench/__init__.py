"""``risk-engine bench``: throughput, accuracy, scaling and memory of the Monte Carlo stage."""

from risk_engine.tools.bench.run import bench_main, format_table, run_benchmark

__all__ = ["bench_main", "format_table", "run_benchmark"]
