"""Log output for operators: plain text, or one JSON object per line for log shippers.

A running job sets :data:`RUN_ID` and :data:`STAGE` (the Spark job's ``Run`` and its
``RunLog.on_stage``); :class:`ContextFilter` copies them onto every log record, so both
formats can name the run and stage a line belongs to.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import sys
from typing import TextIO

#: The id of the run in progress in this context (None outside a run).
RUN_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("risk_engine_run_id",
                                                                    default=None)
#: The stage of the run in progress (None outside a run).
STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("risk_engine_stage",
                                                                   default=None)

#: Values of ``--log-format`` / ``RISK_ENGINE_LOG_FORMAT``.
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ContextFilter(logging.Filter):
    """Adds ``run_id`` and ``stage`` (from :data:`RUN_ID`, :data:`STAGE`) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        record.run_id = RUN_ID.get()
        record.stage = STAGE.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601 UTC), level, logger, run_id, stage, message.

    An exception's traceback, if any, is the key ``exc_info`` (so the object stays one line).
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        obj: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "run_id": getattr(record, "run_id", None),
            "stage": getattr(record, "stage", None),
            "message": record.getMessage(),
        }
        if record.exc_info:
            obj["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def resolve_format(option: str | None) -> str:
    """The log format: the option if given, else ``RISK_ENGINE_LOG_FORMAT``, else ``text``.

    Raises
    ------
    ValueError
        If the value is not one of :data:`LOG_FORMATS`.
    """
    value = (option or os.environ.get("RISK_ENGINE_LOG_FORMAT") or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {value!r} "
                         "(--log-format or RISK_ENGINE_LOG_FORMAT)")
    return value


def configure_logging(level: int, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send log records to ``stream`` (stderr) at ``level``, as ``fmt`` (text or json).

    Replaces the root logger's handlers, so calling it twice does not duplicate lines.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
