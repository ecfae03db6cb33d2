"""``python -m risk_engine.tools.bench``: the same as ``risk-engine bench``."""

import sys

from risk_engine.tools.bench.command import bench_main

raise SystemExit(bench_main(sys.argv[1:]))
