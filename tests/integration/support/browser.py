"""A real headless Chromium driven over the DevTools protocol (tornado's websocket client).

Chromium is started in its own process group and stopped with it, so no renderer or
zygote process survives the test. Skips when Chromium is missing, fails under ``CI``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from celery_kit.testing.processes import stop_process

#: Flags from the team's notes: no sandbox (containers), nothing phoning home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)


def find_chromium() -> str:
    """Path of Chromium; skip the test without it (fail under ``CI``)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no Chromium on PATH (apt-get install chromium) - browser check not run"
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


class Chromium:
    """A headless Chromium with a fresh profile; :meth:`page` gives a DevTools session."""

    def __init__(self, workdir: Path) -> None:
        profile = workdir / "chromium-profile"
        profile.mkdir()
        self.log_path = workdir / "chromium.log"
        argv = [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise AssertionError(f"Chromium did not open its DevTools port:\n{tail}")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def page_ws_url(self) -> str:
        """The DevTools websocket of the first page target (the ``about:blank`` tab)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL it after 10 s, reap."""
        stop_process(self._proc, signal.SIGTERM, group=True, timeout_s=10.0)


class Page:
    """One DevTools session on a page: commands by id, events collected as they arrive."""

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self._ws, self._ids = ws, 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str) -> Page:
        return cls(await websocket_connect(url, max_message_size=64 * 1024 * 1024))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one DevTools command and return its result (raises on a protocol error)."""
        self._ids += 1
        self._ws.write_message(json.dumps({"id": self._ids, "method": method, "params": params}))
        while True:
            message = await asyncio.wait_for(self._ws.read_message(), timeout=30)
            if message is None:
                raise AssertionError("Chromium closed the DevTools connection")
            data = json.loads(message)
            if data.get("id") == self._ids:
                if "error" in data:
                    raise AssertionError(f"{method}: {data['error']}")
                return dict(data.get("result", {}))
            self.events.append(data)

    async def navigate(self, url: str) -> int:
        """Load ``url``, wait for its load event; return the document's HTTP status."""
        self.events.clear()
        frame = (await self.send("Page.navigate", url=url))["frameId"]
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not finish loading")
            await self.send("Runtime.evaluate", expression="1")  # pumps pending events
            await asyncio.sleep(0.1)
        for event in self.events:
            params = event.get("params", {})
            if (
                event.get("method") == "Network.responseReceived"
                and params.get("type") == "Document"
                and params.get("frameId") == frame
            ):
                return int(params["response"]["status"])
        raise AssertionError(f"no document response seen for {url}")

    async def text(self, selector: str) -> str:
        """``textContent`` of the first element matching ``selector`` ('' if none)."""
        expr = f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        result = await self.send("Runtime.evaluate", expression=expr, returnByValue=True)
        return str(result["result"].get("value", ""))

    async def screenshot(self, path: Path) -> None:
        """Save a PNG of the viewport."""
        data = (await self.send("Page.captureScreenshot", format="png"))["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._ws.close()
