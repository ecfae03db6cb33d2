"""Alert delivery against a real endpoint that trickles its answer (no JVM).

urllib's timeout bounds each socket read; a server sending one byte every 0.5 s never
trips a 1 s read timeout and held the nightly run for minutes. Each attempt now has a
whole-attempt deadline. The test asserts the outcome (the call returns, with the reason),
not a duration: without the deadline it would hang until the server's 600-byte answer is
over (5 minutes) and the test's own join below would fail.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from risk_engine.governance.alerts import (
    Alert,
    AlertSettings,
    NotificationSettings,
    delivery_warnings,
    dispatch_alerts,
)

AS_OF = dt.date(2026, 11, 20)


@pytest.fixture
def trickling_url() -> Iterator[str]:
    stop = threading.Event()
    requests: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            requests.append(1)
            self.rfile.read(int(self.headers["Content-Length"]))
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: " + b"." * 600
            try:
                for i in range(len(answer)):  # one byte every 0.5 s: 5 minutes in all
                    if stop.wait(0.5):
                        return
                    self.wfile.write(answer[i:i + 1])
                    self.wfile.flush()
            except OSError:  # the client hung up: what the deadline does
                return

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/alerts"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


def _alerts() -> list[Alert]:
    return [Alert("critical", "limits", "d1", "var_0.99", "desk d1: VaR breached", AS_OF),
            Alert("warning", "limits", "d2", "leverage", "desk d2: leverage at 95%", AS_OF)]


def test_trickling_endpoint_fails_the_attempt_at_its_deadline(trickling_url: str) -> None:
    settings = AlertSettings(notification=NotificationSettings(
        kind="http", url=trickling_url, timeout_seconds=1.0, max_attempts=2,
        retry_backoff_seconds=0.0))
    box: dict[str, list[Alert]] = {}
    caller = threading.Thread(
        target=lambda: box.update(final=dispatch_alerts(_alerts(), AS_OF, settings)),
        daemon=True)
    caller.start()
    caller.join(120)  # generous: the structure of the test, not a timing assertion
    assert not caller.is_alive(), "dispatch_alerts did not return: no whole-attempt deadline"
    final = box["final"]
    assert final[:2] == _alerts()
    failure = final[-1]
    assert (failure.source, failure.severity) == ("notification", "warning")
    assert "no complete answer within the 1 s attempt deadline after 2 attempt(s)" in (
        failure.message)
    warnings = delivery_warnings(final)
    assert len(warnings) == 1
    assert warnings[0].startswith("alert notification failed, 1 critical alert(s) not "
                                  "delivered: could not deliver 2 alert(s) to http target")


def test_delivered_alerts_give_no_manifest_warning() -> None:
    assert delivery_warnings(_alerts()) == []
    assert delivery_warnings([]) == []
