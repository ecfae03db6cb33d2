"""Entry of the scheduled Kubernetes run: ``jobs/nightly_risk.py`` for the previous day (UTC).

A ``ScheduledSparkApplication`` passes the same arguments to every run, so the as-of date
cannot be written into the manifest. This entry appends ``--as-of <yesterday, UTC>`` to the
arguments unless they name one, then runs the job exactly as ``jobs/nightly_risk.py``
(the master is spark-submit's). Scheduled Tuesday to Saturday at 01:30 UTC, each run
processes the business day that just ended (Monday to Friday).

    spark-submit nightly_previous_day.py run --config /etc/risk-engine/cluster.yaml
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence


def with_default_as_of(argv: Sequence[str], now: dt.datetime) -> list[str]:
    """``argv`` with ``--as-of`` set to the UTC day before ``now`` when it has none."""
    args = list(argv)
    if any(a == "--as-of" or a.startswith("--as-of=") for a in args):
        return args
    previous = (now.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
    return [*args, "--as-of", previous.isoformat()]


if __name__ == "__main__":
    from risk_engine.cli import main

    sys.exit(main(with_default_as_of(sys.argv[1:], dt.datetime.now(dt.timezone.utc)),
                  master_from_submit=True))
