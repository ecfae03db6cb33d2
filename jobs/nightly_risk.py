"""spark-submit entry: the same code path as ``risk-engine run``, master chosen by spark-submit.

    spark-submit jobs/nightly_risk.py run --config conf/cluster.yaml [--as-of 2026-11-20]
"""

import sys

from risk_engine.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], master_from_submit=True))
