"""Headless Chromium driven over the Chrome DevTools Protocol (websocket-client)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"


@dataclass
class PageVisit:
    """What opening a page did: console errors, requests, the DOM facts asked for."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    facts: Any = None


class _Cdp:
    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > end:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv()))


def visit(url: str, profile: Path, screenshot: Path, facts_js: str) -> PageVisit:
    """Open ``url`` in headless Chromium; record console errors and every request made;
    evaluate ``facts_js``; save a full-page PNG screenshot."""
    if not Path(CHROMIUM).exists():  # a missing browser fails the test, it never skips it
        raise FileNotFoundError(f"{CHROMIUM} not found: install Debian's chromium package "
                                "(apt-get install chromium; .ci/run does)")
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*",
         f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as resp:
            pages = [t for t in json.load(resp) if t["type"] == "page"]
        cdp = _Cdp(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            cdp.call(f"{domain}.enable")
        cdp.events.clear()
        cdp.call("Page.navigate", url=url)
        cdp.wait_for("Page.loadEventFired")
        out = PageVisit()
        out.facts = cdp.call("Runtime.evaluate", expression=facts_js,
                             returnByValue=True)["result"]["value"]
        shot = cdp.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        for e in cdp.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Network.requestWillBeSent":
                out.requests.append(p["request"]["url"])
            elif m == "Runtime.exceptionThrown":
                out.console_errors.append(json.dumps(p["exceptionDetails"])[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.console_errors.append(json.dumps(p.get("args"))[:300])
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.console_errors.append(p["entry"].get("text", ""))
        cdp.ws.close()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
