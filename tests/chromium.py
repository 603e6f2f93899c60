"""Headless Chromium driven over the DevTools protocol through a pipe (no driver, no extra package).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from fd 3 and writes
replies and events to fd 4, each a JSON message ended by a NUL byte. :func:`load_page` opens one
file in a fresh tab and reports what a user's browser would have done: the console messages and
uncaught exceptions, every network request, any JavaScript dialog (an ``alert`` that ran), values
read from the DOM, and a full-page screenshot.

Debian's ``chromium`` package provides the browser (``make chromium`` installs it).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium executable on PATH (or $CHROMIUM), None when there is none."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    url: str
    console: list[dict[str, Any]] = field(default_factory=list)  # {"level", "text"}
    exceptions: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for, its own first
    dialogs: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and log errors (CSP violations among them)."""
        return [m["text"] for m in self.console if m["level"] in ("error", "assert")] + self.exceptions

    @property
    def fetches(self) -> list[str]:
        """Requests other than the page itself and inline ``data:`` URLs: what would touch a network or disk."""
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


class _Pipe:
    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int):
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.next_id = 0
        self.replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self.lock:
                        q = self.replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self.events.put(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            q: queue.Queue = queue.Queue()
            self.replies[mid] = q
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"chromium did not answer {method} within {timeout}s") from None
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})


def _high(fd: int) -> int:
    """A copy of ``fd`` numbered >= 10 (so moving it to 3 or 4 in the child cannot clobber the other)."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


def load_page(path: Path, *, screenshot: Path | None = None, expressions: dict[str, str] | None = None,
              width: int = 1280, height: int = 900, settle_s: float = 0.5, timeout: float = 60) -> PageLoad:
    """Open ``path`` in headless Chromium; collect console, exceptions, requests, dialogs, DOM values."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH (make chromium installs Debian's package)")
    cmd_r, cmd_w = os.pipe()
    out_r, out_w = os.pipe()
    cmd_r, out_w = _high(cmd_r), _high(out_w)

    def child_fds() -> None:
        os.dup2(cmd_r, 3)
        os.dup2(out_w, 4)

    profile = tempfile.mkdtemp(prefix="tuneloop-chromium-")
    args = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
            f"--user-data-dir={profile}", f"--window-size={width},{height}", "--remote-debugging-pipe",
            "about:blank"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=child_fds, pass_fds=(3, 4))  # noqa: PLW1509 - the pipe must sit at fds 3/4
    os.close(cmd_r)
    os.close(out_w)
    pipe = _Pipe(proc, cmd_w, out_r)
    url = Path(path).resolve().as_uri()
    result = PageLoad(url=url)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + timeout
        loaded_at = None
        while True:
            now = time.monotonic()
            if loaded_at is not None and now - loaded_at > settle_s:
                break
            if now > deadline:
                raise TimeoutError(f"{url} did not finish loading within {timeout}s")
            try:
                ev = pipe.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if ev.get("sessionId") != session:
                continue
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Page.loadEventFired":
                loaded_at = time.monotonic()
            elif method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                result.console.append({"level": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                d = params.get("exceptionDetails", {})
                result.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
            elif method == "Log.entryAdded":
                e = params.get("entry", {})
                result.console.append({"level": e.get("level"), "text": f"[{e.get('source')}] {e.get('text')}"})
            elif method == "Network.requestWillBeSent":
                result.requests.append(params.get("request", {}).get("url", ""))
            elif method == "Page.javascriptDialogOpening":
                result.dialogs.append(params.get("message", ""))
                pipe.call("Page.handleJavaScriptDialog", {"accept": True}, session=session)
        for name, expr in (expressions or {}).items():
            got = pipe.call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session)
            if "exceptionDetails" in got:
                raise RuntimeError(f"evaluating {name}: {got['exceptionDetails']}")
            result.values[name] = got.get("result", {}).get("value")
        if screenshot is not None:
            size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            shot = pipe.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
            }, session=session)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
        try:
            pipe.call("Browser.close", timeout=10)
        except (TimeoutError, RuntimeError, OSError):
            pass
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        os.close(cmd_w)
        os.close(out_r)
        shutil.rmtree(profile, ignore_errors=True)
    return result
