"""Alerts from limit checks and performance, logging and notification.

Rules (one alert per offending row):

* a breached VaR or ES limit -> ``critical`` (source ``limits``);
* any other breached limit (position or sector concentration, leverage) -> ``critical`` too:
  a hard limit is a hard limit, whatever its kind;
* not breached but ``utilization >= warning_utilization`` (default 0.90) -> ``warning``;
* a check that could not be evaluated (NaN value) -> ``warning`` (silence is not compliance);
* current drawdown > ``max_drawdown`` (default 10%) -> ``critical`` (source ``performance``),
  drawdown at or above ``warning_utilization * max_drawdown`` -> ``warning``; a performance
  row that could not be computed -> ``warning``;
* a failed notification -> one extra ``warning`` (source ``notification``); the original
  alerts are always kept and returned.

``info`` is a valid severity for callers (e.g. a run summary); no rule here emits it.

Every alert is logged with :mod:`logging` (critical -> ``CRITICAL``, warning -> ``WARNING``,
info -> ``INFO``) on the ``risk_engine.governance.alerts`` logger.

Notification targets: an HTTP(S) endpoint receiving one JSON POST with all alerts
(``{"as_of_date": ..., "n_alerts": n, "alerts": [...]}``, ``Content-Type:
application/json``), at most ``max_attempts`` attempts with a linear back-off, retrying only on
connection errors, timeouts and 5xx answers; or a file to which each alert is appended as
one JSON line.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from risk_engine import schemas
from risk_engine.settings import require

logger = logging.getLogger(__name__)

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
_LOG_LEVEL = {"critical": logging.CRITICAL, "warning": logging.WARNING, "info": logging.INFO}

#: The ``alerts`` table with its ``as_of_date`` (dates as ``datetime.date``).
ALERT_COLUMNS: dict[str, str] = schemas.ALERTS.pandas_dtypes(drop=("run_id",))


@dataclass(frozen=True)
class Alert:
    """One alert.

    Attributes
    ----------
    severity : {"critical", "warning", "info"}
        How urgent.
    source : str
        What raised it: ``limits``, ``performance``, ``notification``, ...
    desk : str or None
        The desk concerned (None for firm-wide or technical alerts).
    check : str
        The check, e.g. ``var_0.99``, ``position_concentration``, ``drawdown``.
    message : str
        Human-readable text with the figures.
    as_of_date : datetime.date
        As-of date of the run.
    subject : str or None
        What the check is about within the desk (position_id, sector), if anything.
    """

    severity: Severity
    source: str
    desk: str | None
    check: str
    message: str
    as_of_date: dt.date
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} must be one of {SEVERITIES}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (date as ISO string)."""
        d = asdict(self)
        d["as_of_date"] = self.as_of_date.isoformat()
        return d


@dataclass(frozen=True)
class NotificationSettings:
    """Where to send alerts.

    Attributes
    ----------
    kind : {"http", "file"}
        HTTP(S) POST of all alerts as one JSON document, or JSON lines appended to a file.
    url : str or None
        Endpoint for ``http`` (``http://`` or ``https://`` only).
    path : str or None
        File for ``file``; parent folders are created.
    timeout_seconds : float
        Timeout of one HTTP attempt; default 5.
    max_attempts : int
        At most this many HTTP attempts (1..10); default 3.
    retry_backoff_seconds : float
        Sleep ``retry_backoff_seconds * attempt`` between attempts; default 1.
    send_when_empty : bool
        Send (POST an empty list / touch nothing for files) even with no alerts; default
        False.
    """

    kind: Literal["http", "file"]
    url: str | None = None
    path: str | None = None
    timeout_seconds: float = 5.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 1.0
    send_when_empty: bool = False

    def __post_init__(self) -> None:
        require(self.kind in ("http", "file"), "kind", self.kind, "'http' or 'file'")
        if self.kind == "http":
            require(bool(self.url) and str(self.url).lower().startswith(("http://", "https://")),
                    "url", self.url, "an http(s) URL (kind: http)")
        else:
            require(bool(self.path), "path", self.path, "a file path (kind: file)")
        require(math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0,
                "timeout_seconds", self.timeout_seconds, "> 0")
        require(not isinstance(self.max_attempts, bool) and isinstance(self.max_attempts, int)
                and 1 <= self.max_attempts <= 10, "max_attempts", self.max_attempts, "1..10")
        require(math.isfinite(self.retry_backoff_seconds) and self.retry_backoff_seconds >= 0,
                "retry_backoff_seconds", self.retry_backoff_seconds, ">= 0")


@dataclass(frozen=True)
class AlertSettings:
    """Alert thresholds and the optional notification target.

    Attributes
    ----------
    warning_utilization : float
        Warn when a limit's utilization reaches this fraction without breaching, in (0, 1];
        default 0.90.
    max_drawdown : float
        Critical alert when the current drawdown exceeds this fraction, in (0, 1]; default
        0.10 (the seed's 10%).
    notification : NotificationSettings or None
        Where to send the alerts; None: log only.
    """

    warning_utilization: float = 0.90
    max_drawdown: float = 0.10
    notification: NotificationSettings | None = None

    def __post_init__(self) -> None:
        require(0.0 < self.warning_utilization <= 1.0, "warning_utilization",
                self.warning_utilization, "a fraction in (0, 1] (0.9 for 90%)")
        require(0.0 < self.max_drawdown <= 1.0, "max_drawdown", self.max_drawdown,
                "a fraction in (0, 1] (0.1 for 10%)")


def _fmt(x: float) -> str:
    return f"{x:,.6g}"


def alerts_from_limit_checks(
    checks: pd.DataFrame,
    as_of_date: dt.date,
    settings: AlertSettings = AlertSettings(),
) -> list[Alert]:
    """Alerts for breached, nearly breached and unevaluated limit checks.

    Parameters
    ----------
    checks : DataFrame
        Rows of ``limit_checks`` (:data:`risk_engine.governance.limits.LIMIT_CHECK_COLUMNS`),
        any number of desks. Not modified.
    as_of_date : datetime.date
        As-of date of the run.
    settings : AlertSettings
        Warning threshold.

    Returns
    -------
    list of Alert
        In the row order of ``checks``; ``source = "limits"``.
    """
    out: list[Alert] = []
    for r in checks.itertuples(index=False):
        subj = None if r.subject is None or (isinstance(r.subject, float)
                                             and math.isnan(r.subject)) else str(r.subject)
        desk = str(r.desk)
        what = f"desk {desk}: {r.check}" + ("" if subj is None else f" {subj}")
        value, limit, util = float(r.value), float(r.limit), float(r.utilization)
        if bool(r.breached):
            sev: Severity = "critical"
            msg = (f"{what} breached: {_fmt(value)} > limit {_fmt(limit)} "
                   f"(utilization {util:.1%})")
        elif math.isnan(value):
            sev = "warning"
            msg = f"{what} could not be evaluated: {r.message}"
        elif util >= settings.warning_utilization:
            sev = "warning"
            msg = (f"{what} at {util:.1%} of limit: {_fmt(value)} vs {_fmt(limit)} "
                   f"(warning from {settings.warning_utilization:.0%})")
        else:
            continue
        out.append(Alert(sev, "limits", desk, str(r.check), msg, as_of_date, subj))
    return out


def alerts_from_performance(
    performance: pd.DataFrame,
    as_of_date: dt.date,
    settings: AlertSettings = AlertSettings(),
) -> list[Alert]:
    """Drawdown alerts from ``performance`` rows (one per desk).

    Parameters
    ----------
    performance : DataFrame
        Rows of the performance table (:data:`risk_engine.governance.performance.
        PERFORMANCE_COLUMNS`); uses ``desk``, ``current_drawdown``, ``status``, ``message``.
    as_of_date : datetime.date
        As-of date of the run.
    settings : AlertSettings
        ``max_drawdown`` and ``warning_utilization``.

    Returns
    -------
    list of Alert
        ``source = "performance"``, ``check = "drawdown"``.
    """
    out: list[Alert] = []
    limit = settings.max_drawdown
    for r in performance.itertuples(index=False):
        desk = str(r.desk)
        dd = float(r.current_drawdown)
        if r.status != "ok" or math.isnan(dd):
            out.append(Alert("warning", "performance", desk, "drawdown",
                             f"desk {desk}: drawdown could not be evaluated: {r.message}",
                             as_of_date))
        elif dd > limit:
            out.append(Alert("critical", "performance", desk, "drawdown",
                             f"desk {desk}: drawdown {dd:.2%} exceeds {limit:.2%}", as_of_date))
        elif dd >= settings.warning_utilization * limit:
            out.append(Alert("warning", "performance", desk, "drawdown",
                             f"desk {desk}: drawdown {dd:.2%} is {dd / limit:.0%} of the "
                             f"{limit:.2%} limit", as_of_date))
    return out


def log_alerts(alerts: Iterable[Alert], log: logging.Logger | None = None) -> None:
    """Log each alert at the level of its severity."""
    lg = log or logger
    for a in alerts:
        lg.log(_LOG_LEVEL[a.severity], "[%s] %s/%s desk=%s: %s", a.as_of_date.isoformat(),
               a.source, a.check, a.desk, a.message)


def _payload(alerts: Sequence[Alert], as_of_date: dt.date) -> bytes:
    doc = {"as_of_date": as_of_date.isoformat(), "n_alerts": len(alerts),
           "alerts": [a.to_dict() for a in alerts]}
    return json.dumps(doc).encode("utf-8")


class _Tracking:
    """Handler mixin keeping every HTTP connection it opens, to abort it from outside."""

    connections: list[http.client.HTTPConnection]

    def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:
        def connect(*args: Any, **kwargs: Any) -> Any:
            conn = http_class(*args, **kwargs)
            self.connections.append(conn)
            return conn

        return super().do_open(connect, req, **kw)  # type: ignore[misc]


class _TrackingHTTP(_Tracking, urllib.request.HTTPHandler):
    pass


class _TrackingHTTPS(_Tracking, urllib.request.HTTPSHandler):
    pass


def _attempt(req: urllib.request.Request, timeout: float) -> tuple[int | None, str, bool]:
    """One POST that ends within ``timeout`` seconds, however slowly the server answers.

    urllib's ``timeout`` bounds each socket operation, not the request: a server sending a
    byte every few seconds holds it for ever. The request runs in a daemon thread; at the
    deadline its connection is shut down, which ends the thread's blocking read.

    Returns
    -------
    (status, reason, retry)
        The HTTP status (None without an answer), the failure reason ("" on success) and
        whether the failure is worth another attempt.
    """
    connections: list[http.client.HTTPConnection] = []
    plain, secure = _TrackingHTTP(), _TrackingHTTPS()
    plain.connections = secure.connections = connections
    opener = urllib.request.build_opener(plain, secure)
    result: dict[str, Any] = {}

    def send() -> None:
        try:
            with opener.open(req, timeout=timeout) as resp:
                result["status"] = resp.status
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            result["error"] = exc

    worker = threading.Thread(target=send, name="alert-notification", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        for conn in list(connections):
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return None, f"no complete answer within the {timeout:g} s attempt deadline", True
    exc = result.get("error")
    if exc is None:
        code = int(result["status"])
        if 200 <= code < 300:
            return code, "", False
        return code, f"HTTP {code}", code >= 500
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code, f"HTTP {exc.code} {exc.reason}", exc.code >= 500
    if isinstance(exc, (OSError, http.client.HTTPException)):
        return None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", True
    raise exc


def _post(alerts: Sequence[Alert], as_of_date: dt.date, ns: NotificationSettings,
          sleep: Callable[[float], None]) -> str | None:
    """POST the alerts; return None on success, else the reason.

    Each attempt ends within ``ns.timeout_seconds`` (a whole-attempt deadline, not a
    per-read one), so the call ends within ``max_attempts`` times the timeout plus the
    back-off sleeps.
    """
    assert ns.url is not None
    data = _payload(alerts, as_of_date)
    reason = ""
    for attempt in range(1, ns.max_attempts + 1):
        req = urllib.request.Request(
            ns.url, data=data, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "risk-engine"},
        )
        code, reason, retry = _attempt(req, ns.timeout_seconds)
        if code is not None and 200 <= code < 300:
            return None
        if not retry:
            return f"{reason} after {attempt} attempt(s) (not retried)"
        if attempt < ns.max_attempts and ns.retry_backoff_seconds > 0:
            sleep(ns.retry_backoff_seconds * attempt)
    return f"{reason} after {ns.max_attempts} attempt(s)"


def _append_file(alerts: Sequence[Alert], ns: NotificationSettings) -> str | None:
    assert ns.path is not None
    try:
        path = Path(ns.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(a.to_dict()) + "\n" for a in alerts)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def notify(
    alerts: Sequence[Alert],
    notification: NotificationSettings,
    as_of_date: dt.date,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Alert]:
    """Send the alerts to the target; a failure becomes an extra warning alert.

    Parameters
    ----------
    alerts : sequence of Alert
        Alerts to send (not modified).
    notification : NotificationSettings
        Target.
    as_of_date : datetime.date
        As-of date (payload header and date of the failure alert).
    sleep : callable
        Back-off sleep (injectable for tests).

    Returns
    -------
    list of Alert
        ``alerts`` (all of them, in order) plus, if sending failed, one ``warning`` alert with
        ``source = "notification"``, ``check = "notification"``, ``desk = None``.
    """
    final = list(alerts)
    if not final and not notification.send_when_empty:
        return final
    try:
        if notification.kind == "http":
            failure = _post(final, as_of_date, notification, sleep)
            target = notification.url
        else:
            failure = _append_file(final, notification)
            target = notification.path
    except Exception as exc:  # noqa: BLE001 - a notification must never lose the alerts
        failure = f"{type(exc).__name__}: {exc}"
        target = notification.url or notification.path
    if failure is not None:
        final.append(Alert("warning", "notification", None, "notification",
                           f"could not deliver {len(alerts)} alert(s) to {notification.kind} "
                           f"target {target}: {failure}", as_of_date))
    return final


def dispatch_alerts(
    alerts: Sequence[Alert],
    as_of_date: dt.date,
    settings: AlertSettings = AlertSettings(),
    *,
    log: logging.Logger | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Alert]:
    """Log every alert, notify the configured target, log a notification failure.

    Parameters
    ----------
    alerts : sequence of Alert
        Alerts of the run.
    as_of_date : datetime.date
        As-of date.
    settings : AlertSettings
        ``notification`` (None: log only).
    log : logging.Logger, optional
        Logger (default: this module's).
    sleep : callable
        Back-off sleep (injectable for tests).

    Returns
    -------
    list of Alert
        The final list: the input alerts plus a notification-failure alert if any.
    """
    log_alerts(alerts, log)
    if settings.notification is None:
        return list(alerts)
    final = notify(alerts, settings.notification, as_of_date, sleep=sleep)
    log_alerts(final[len(alerts):], log)
    return final


def delivery_warnings(final: Sequence[Alert]) -> list[str]:
    """Run-manifest warnings for alerts that were not delivered.

    Parameters
    ----------
    final : sequence of Alert
        The list returned by :func:`dispatch_alerts` or :func:`notify`: the run's alerts
        followed, when the notification failed, by its ``source = "notification"`` alert.

    Returns
    -------
    list of str
        One line per failed notification, with the number of critical alerts it left
        undelivered; empty when delivery succeeded or no target is configured. A caller adds
        them to the run's warnings (status ``completed_with_warnings``).
    """
    failures = [a for a in final if a.source == "notification" and a.check == "notification"]
    critical = sum(a.severity == "critical" for a in final)
    return [f"alert notification failed, {critical} critical alert(s) not delivered: "
            f"{a.message}" for a in failures]


def alerts_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    """Alerts as a DataFrame with columns :data:`ALERT_COLUMNS` (dates as datetime.date)."""
    rows = [{"as_of_date": a.as_of_date, "severity": a.severity, "source": a.source,
             "desk": a.desk, "check": a.check, "subject": a.subject, "message": a.message}
            for a in alerts]
    return pd.DataFrame(rows, columns=list(ALERT_COLUMNS)).astype(ALERT_COLUMNS)
