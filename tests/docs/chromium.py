"""Open a page in a real headless Chromium and report what a reader would get: every image, every
failed load, every script error, and a screenshot.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON
messages ending in a NUL byte on file descriptors 3 and 4), so nothing but the browser itself is
needed: no driver, no websocket library, no port. The browser is Debian's ``chromium``, installed by
``make setup`` (``make browser``); ``CHROMIUM`` names another binary.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe"]

#: Every <img> after the page loaded (lazy images are asked to load now), with its intrinsic size.
IMAGES_JS = """(async () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.complete ? null :
      new Promise((done) => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  return images.map((img) => ({src: img.currentSrc || img.src, width: img.naturalWidth, height: img.naturalHeight}));
})()"""


def chromium_binary() -> str | None:
    return shutil.which(os.environ.get("CHROMIUM", "chromium"))


@dataclass
class PageReport:
    url: str
    title: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [img for img in self.images if not img["width"]]


class Browser:
    """One headless Chromium; :meth:`open` loads a page in a fresh tab."""

    def __init__(self, binary: str, timeout_s: float = 60.0) -> None:
        self.profile = tempfile.mkdtemp(prefix="nl-docs-chromium-")
        self.timeout_s = timeout_s
        command = " ".join([_quote(binary), *FLAGS, f"--user-data-dir={_quote(self.profile)}", "about:blank"])
        # fd 3 = our stdin pipe (commands), fd 4 = our stdout pipe (answers); its own output to a log.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(["bash", "-c", f"exec {command} 3<&0 4>&1 0</dev/null 1>&2"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close")
            except Exception:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        fd = self.process.stdout.fileno()
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(remaining, 0))[0] if remaining > 0 else []
            chunk = os.read(fd, 1 << 16) if ready else b""
            if not chunk:
                self.log.seek(0)
                raise RuntimeError(f"Chromium did not answer within {self.timeout_s} s (exit code "
                                   f"{self.process.poll()}): {self.log.read()[-2000:].decode(errors='replace')}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return
            self._events.append(self._read())
        raise RuntimeError(f"no {method} within {self.timeout_s} s")

    def open(self, url: str, screenshot: Path | None = None, width: int = 1280,
             max_height: int = 9000) -> PageReport:
        """Load ``url``, wait for the load event and every image, and report; ``screenshot``: the
        whole page (up to ``max_height`` pixels) as a PNG."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._events.clear()
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        self.send("Page.navigate", {"url": url}, session)
        self._wait_event("Page.loadEventFired", session)
        images = self._evaluate(IMAGES_JS, session)
        report = PageReport(url=url, title=self._evaluate("document.title", session), images=images)
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            if event.get("method") == "Network.loadingFailed":
                report.failed_loads.append(f"{event['params'].get('errorText')}: request {event['params']['requestId']}")
            if event.get("method") == "Runtime.exceptionThrown":
                report.script_errors.append(json.dumps(event["params"]["exceptionDetails"])[:500])
        if screenshot is not None:
            height = int(self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"])
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": min(height, max_height), "deviceScaleFactor": 1, "mobile": False},
                      session)
            shot = self.send("Page.captureScreenshot", {"format": "png"}, session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            report.screenshot = screenshot
        self.send("Target.closeTarget", {"targetId": target})
        return report

    def _evaluate(self, expression: str, session: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
