"""A tiny Chrome DevTools Protocol client for browser tests: headless Chromium over a pipe.

``--remote-debugging-pipe`` makes Chromium read protocol commands from its file descriptor 3
and write replies and events to descriptor 4, each a JSON message ended by a NUL byte. That
needs no websocket library, no chromedriver and no free TCP port, and nothing the browser
does can reach the network (the page is a local file; background networking is off).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
    "--remote-debugging-pipe",
)


def find_browser() -> str | None:
    """Path of a Chromium-family browser on PATH (Debian's ``chromium`` first)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """One headless Chromium with one page attached; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="dfer-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 answers
            # lifted above 4 first: a pipe end may already be fd 3 or 4, and dup2 onto itself
            # would keep its close-on-exec flag
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds, close_fds=False,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Condition()
        self.console: list[str] = []  # every console error, exception and failed load
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = self._attach(width, height)

    # ------------------------------------------------------------------ protocol plumbing
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:  # closed by close()
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        self._replies[msg["id"]] = msg
                        self._lock.notify_all()
                else:
                    self._note(msg)
                    self._events.put(msg)

    def _note(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.console.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        """Send one command and wait for its reply (an error reply raises)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and getattr(self, "session", None):
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._lock:
            while self._next_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise CDPError(f"no reply to {method} (browser exit code {self.proc.poll()})")
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _attach(self, width: int, height: int) -> str:
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                            session=False)["sessionId"]
        self.session = session
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return session

    def wait_event(self, method: str) -> dict[str, Any]:
        """The next event ``method`` (earlier other events are dropped)."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"no {method} event")
            try:
                msg = self._events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if msg.get("method") == method:
                return msg.get("params", {})

    # ------------------------------------------------------------------ page helpers
    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        while not self._events.empty():
            self._events.get_nowait()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        """Poll until ``expression`` is truthy (a hang guard of ``timeout``, not a timing check)."""
        deadline = time.monotonic() + self.timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"still false after {self.timeout} s: {expression}")
            time.sleep(0.05)

    def rect(self, selector: str) -> dict[str, float]:
        """Viewport rectangle of the first element matching ``selector``, scrolled into view."""
        rect = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                       " if (!e) return null; e.scrollIntoView({block: 'center'});"
                       " const r = e.getBoundingClientRect();"
                       " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        if rect is None:
            raise CDPError(f"no element {selector}")
        return rect

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        r = self.rect(selector)
        x, y = r["x"] + r["width"] / 2, r["y"] + r["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path, selector: str | None = None, full_page: bool = False) -> Path:
        """PNG of the viewport, of the whole page or of one element."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            r = self.rect(selector)
            scroll = self.js("({x: window.scrollX, y: window.scrollY})")
            params["clip"] = {"x": r["x"] + scroll["x"], "y": r["y"] + scroll["y"],
                              "width": r["width"], "height": r["height"], "scale": 1}
        elif full_page:
            params["captureBeyondViewport"] = True
            size = self.js("({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})")
            params["clip"] = {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1}
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        path.write_bytes(data)
        return path

    def close(self) -> None:
        with contextlib.suppress(CDPError, OSError):
            self.send("Browser.close", session=False)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
