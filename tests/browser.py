"""Load a page in headless Chromium and report its console errors, with a screenshot.

Talks the DevTools protocol over `--remote-debugging-pipe` (JSON messages separated by NUL
bytes on file descriptors 3 and 4): no websocket client, no extra package.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


def try_install_browser() -> str | None:
    """Debian's chromium via apt when we are root and apt is there (as CI does)."""
    if find_browser() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return find_browser()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, timeout=900)
    return find_browser()


class _Pipe:
    def __init__(self, browser: str, profile: Path) -> None:
        to_r, to_w = os.pipe()  # we write, chromium reads fd 3
        from_r, from_w = os.pipe()  # chromium writes fd 4, we read
        # Out of the way of 3 and 4 first, so that the dup2 calls below cannot clobber them.
        hi_r, hi_w = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
        os.close(to_r)
        os.close(from_w)

        def fds() -> None:  # in the child; dup2 makes 3 and 4 inheritable
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            close_fds=False,
            preexec_fn=fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.w, self.r = to_w, from_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)


def load_page(browser: str, page: Path, screenshot: Path, profile: Path, width: int = 1100) -> list[str]:
    """Open `page`, wait for its load event, screenshot the whole page; return console errors."""
    pipe = _Pipe(browser, profile)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            pipe.call(f"{domain}.enable", session=sid)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
        pipe.wait_event("Page.loadEventFired")
        pipe.call(
            "Runtime.evaluate",
            {"expression": "new Promise(r => setTimeout(r, 200))", "awaitPromise": True},
            session=sid,
        )
        size = pipe.call("Page.getLayoutMetrics", session=sid)["cssContentSize"]
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": int(size["height"]) + 1, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=sid)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for e in pipe.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.exceptionThrown":
                errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
            elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e.get("method") == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(p["entry"].get("text", "error"))
        return errors
    finally:
        pipe.close()
