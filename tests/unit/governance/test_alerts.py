"""Alert rules, logging, and notification against a real HTTP server and files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk_engine.errors import ConfigError
from risk_engine.governance import (
    ALERT_COLUMNS,
    PERFORMANCE_COLUMNS,
    Alert,
    AlertSettings,
    LimitSettings,
    NotificationSettings,
    alerts_frame,
    alerts_from_limit_checks,
    alerts_from_performance,
    check_desk_limits,
    dispatch_alerts,
    notify,
)

AS_OF = dt.date(2024, 3, 15)


def _book() -> pd.DataFrame:
    return pd.DataFrame({
        "position_id": ["P1", "P2", "P3", "P4", "P5"],
        "sector": ["tech", "tech", "energy", "health", "utilities"],
        "market_value": [300.0, 100.0, -200.0, 150.0, 250.0],
    })


def _checks() -> pd.DataFrame:
    limits = LimitSettings(var_limits={0.99: 100.0}, es_limits={0.975: 85.0, 0.99: 150.0})
    return check_desk_limits("d1", _book(), limits=limits,
                             risk_figures={("VaR", 0.99): 120.0, ("ES", 0.975): 80.0})


def _key(a: Alert) -> tuple[str, str, str]:
    return a.severity, a.check, a.message.split(":")[0]


# --------------------------------------------------------------------------- rules
def test_limit_alert_rules() -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    got = sorted((a.severity, a.check, a.subject or "") for a in alerts)
    assert got == sorted([
        ("critical", "position_concentration", "P1"),   # 30% > 20%
        ("critical", "position_concentration", "P5"),   # 25% > 20%
        ("warning", "position_concentration", "P3"),    # exactly 20%: 100% utilization
        ("critical", "sector_concentration", "tech"),   # 40% > 30%
        ("critical", "var_0.99", ""),                   # 120 > 100
        ("warning", "es_0.975", ""),                    # 80/85 = 94% >= 90%
        ("warning", "es_0.99", ""),                     # no figure: not evaluated
    ])
    assert all(a.source == "limits" and a.desk == "d1" and a.as_of_date == AS_OF
               for a in alerts)
    var = next(a for a in alerts if a.check == "var_0.99")
    assert "breached" in var.message and "120" in var.message
    missing = next(a for a in alerts if a.check == "es_0.99")
    assert "could not be evaluated" in missing.message


def test_leverage_breach_is_critical_and_near_limit_is_warning() -> None:
    breach = check_desk_limits("d1", _book(), capital=450.0)      # 2.22x
    near = check_desk_limits("d1", _book(), capital=520.0)        # 1.92x = 96%
    far = check_desk_limits("d1", _book(), capital=1000.0)        # 1.0x
    sev = {name: [a.severity for a in alerts_from_limit_checks(df, AS_OF)
                  if a.check == "leverage"] for name, df in
           (("breach", breach), ("near", near), ("far", far))}
    assert sev == {"breach": ["critical"], "near": ["warning"], "far": []}


def test_warning_threshold_is_configurable() -> None:
    near = check_desk_limits("d1", _book(), capital=520.0)
    strict = alerts_from_limit_checks(near, AS_OF, AlertSettings(warning_utilization=0.97))
    assert [a for a in strict if a.check == "leverage"] == []


def test_evaluation_failure_row_becomes_warning() -> None:
    df = check_desk_limits("d1", _book().drop(columns=["market_value"]))
    alerts = alerts_from_limit_checks(df, AS_OF)
    assert [(a.severity, a.check) for a in alerts] == [("warning", "evaluation")]


def _perf(desk: str, dd: float, status: str = "ok", message: str = "") -> dict:
    row = {c: np.nan for c in PERFORMANCE_COLUMNS}
    row.update(desk=desk, current_drawdown=dd, status=status, message=message)
    return row


def test_drawdown_alerts() -> None:
    perf = pd.DataFrame([_perf("deep", 0.15), _perf("near", 0.095), _perf("fine", 0.05),
                         _perf("at", 0.10), _perf("broken", np.nan, "error", "no data")])
    alerts = alerts_from_performance(perf, AS_OF)
    got = {a.desk: a.severity for a in alerts}
    assert got == {"deep": "critical", "near": "warning", "at": "warning", "broken": "warning"}
    assert all(a.source == "performance" and a.check == "drawdown" for a in alerts)
    assert "15.00%" in next(a for a in alerts if a.desk == "deep").message
    looser = alerts_from_performance(perf, AS_OF, AlertSettings(max_drawdown=0.16))
    assert {a.desk: a.severity for a in looser} == {"deep": "warning", "broken": "warning"}


def test_alert_severity_validated_and_frame() -> None:
    with pytest.raises(ValueError, match="severity"):
        Alert("fatal", "x", None, "c", "m", AS_OF)  # type: ignore[arg-type]
    df = alerts_frame(alerts_from_limit_checks(_checks(), AS_OF))
    assert {c: str(t) for c, t in df.dtypes.items()} == ALERT_COLUMNS
    assert len(df) == 7 and (df["as_of_date"] == AS_OF).all()
    assert alerts_frame([]).columns.tolist() == list(ALERT_COLUMNS)


def test_alerts_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    with caplog.at_level(logging.INFO, logger="risk_engine.governance.alerts"):
        final = dispatch_alerts(alerts, AS_OF)
    assert final == alerts
    levels = [r.levelno for r in caplog.records if r.name == "risk_engine.governance.alerts"]
    assert levels.count(logging.CRITICAL) == 4
    assert levels.count(logging.WARNING) == 3


# --------------------------------------------------------------------------- HTTP
@dataclass
class Server:
    url: str
    bodies: list[dict] = field(default_factory=list)
    requests: int = 0


def _serve(status: int, delay: float = 0.0) -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            state.requests += 1
            n = int(self.headers["Content-Length"])
            body = self.rfile.read(n)
            assert self.headers["Content-Type"] == "application/json"
            state.bodies.append(json.loads(body))
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:  # the client gave up (timeout test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/alerts"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def ok_server() -> Iterator[Server]:
    yield from _serve(200)


@pytest.fixture
def failing_server() -> Iterator[Server]:
    yield from _serve(500)


@pytest.fixture
def rejecting_server() -> Iterator[Server]:
    yield from _serve(404)


@pytest.fixture
def slow_server() -> Iterator[Server]:
    yield from _serve(200, delay=5.0)


def _http(url: str, **kw: object) -> AlertSettings:
    return AlertSettings(notification=NotificationSettings(kind="http", url=url, **kw))


def test_http_success_server_receives_all_alerts(ok_server: Server) -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    final = dispatch_alerts(alerts, AS_OF, _http(ok_server.url))
    assert final == alerts
    assert ok_server.requests == 1
    body = ok_server.bodies[0]
    assert body["as_of_date"] == "2024-03-15" and body["n_alerts"] == 7
    assert body["alerts"] == [a.to_dict() for a in alerts]


def test_http_500_retries_then_adds_warning_and_keeps_alerts(failing_server: Server) -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    sleeps: list[float] = []
    final = dispatch_alerts(alerts, AS_OF, _http(failing_server.url, max_attempts=3,
                                                 retry_backoff_seconds=0.5),
                            sleep=sleeps.append)
    assert failing_server.requests == 3
    assert sleeps == [0.5, 1.0]
    assert final[:-1] == alerts
    extra = final[-1]
    assert (extra.severity, extra.source, extra.check, extra.desk) == (
        "warning", "notification", "notification", None)
    assert "HTTP 500" in extra.message and "3 attempt" in extra.message


def test_http_4xx_is_not_retried(rejecting_server: Server) -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    final = notify(alerts, NotificationSettings(kind="http", url=rejecting_server.url),
                   AS_OF, sleep=lambda s: None)
    assert rejecting_server.requests == 1
    assert len(final) == len(alerts) + 1 and "404" in final[-1].message


def test_http_nothing_listening(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    with caplog.at_level(logging.WARNING, logger="risk_engine.governance.alerts"):
        final = dispatch_alerts(alerts, AS_OF, _http(f"http://127.0.0.1:{port}/x",
                                                     max_attempts=2, timeout_seconds=2.0),
                                sleep=lambda s: None)
    assert final[:-1] == alerts
    assert final[-1].source == "notification"
    assert "2 attempt" in final[-1].message
    assert any("could not deliver" in r.getMessage() for r in caplog.records)


def test_http_timeout(slow_server: Server) -> None:
    alerts = alerts_from_limit_checks(_checks(), AS_OF)[:1]
    final = notify(alerts, NotificationSettings(kind="http", url=slow_server.url,
                                                timeout_seconds=0.2, max_attempts=1),
                   AS_OF)
    # The server answers after 5 s: only the 0.2 s timeout makes this a failure (the socket
    # read's timeout or the attempt's deadline, whichever the scheduler lets fire first).
    assert len(final) == 2 and final[-1].source == "notification"
    assert "deadline" in final[-1].message or "timed out" in final[-1].message, \
        final[-1].message


def test_empty_alert_list_is_sent_only_when_asked(ok_server: Server) -> None:
    assert dispatch_alerts([], AS_OF, _http(ok_server.url)) == []
    assert ok_server.requests == 0
    assert dispatch_alerts([], AS_OF, _http(ok_server.url, send_when_empty=True)) == []
    assert ok_server.bodies == [{"as_of_date": "2024-03-15", "n_alerts": 0, "alerts": []}]


# --------------------------------------------------------------------------- file
def test_file_target_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "alerts.jsonl"
    settings = AlertSettings(notification=NotificationSettings(kind="file", path=str(path)))
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    assert dispatch_alerts(alerts[:2], AS_OF, settings) == alerts[:2]
    assert dispatch_alerts(alerts[2:3], AS_OF, settings) == alerts[2:3]
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [a.to_dict() for a in alerts[:3]]


def test_file_target_failure_adds_warning(tmp_path: Path) -> None:
    settings = AlertSettings(notification=NotificationSettings(kind="file", path=str(tmp_path)))
    alerts = alerts_from_limit_checks(_checks(), AS_OF)
    final = dispatch_alerts(alerts, AS_OF, settings)
    assert final[:-1] == alerts
    assert final[-1].source == "notification" and "Error" in final[-1].message


@pytest.mark.parametrize(
    "kwargs",
    [{"kind": "http", "url": "file:///etc/passwd"}, {"kind": "http"}, {"kind": "file"},
     {"kind": "smtp", "url": "http://x"}, {"kind": "http", "url": "http://x", "max_attempts": 0},
     {"kind": "http", "url": "http://x", "timeout_seconds": 0.0}],
)
def test_notification_settings_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        NotificationSettings(**kwargs)


def test_alert_settings_validation() -> None:
    with pytest.raises(ConfigError):
        AlertSettings(warning_utilization=90)
    with pytest.raises(ConfigError):
        AlertSettings(max_drawdown=10)
