"""Headless Chromium driven over the DevTools protocol: load a page, run JavaScript in it,
click and drag with real input events, take screenshots. The viewer's browser test and
the README's screenshot use it.

Chromium is Debian's ``chromium`` package (scripts/setup.sh installs it). It is started
so that it can reach nothing but 127.0.0.1: every other host resolves to nothing and goes
to a proxy that does not exist, and its background services (updates, sync, safe
browsing, metrics) are off.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from cloudfree.errors import CloudFreeError

#: Executables tried in this order when none is given.
EXECUTABLES = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")
#: Chromium's switches: headless, WebGL in software (MapLibre needs WebGL 2), and nothing
#: sent anywhere but 127.0.0.1.
SWITCHES = (
    "--headless",
    "--use-angle=swiftshader",  # WebGL on the CPU: no GPU on our machines
    "--enable-unsafe-swiftshader",  # allows WebGL on SwiftShader (Chromium >= 137)
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--no-first-run",
    "--no-pings",
    "--dns-prefetch-disable",
    "--mute-audio",
    "--hide-scrollbars",
    # Any host but 127.0.0.1 resolves to nothing, and a request that still leaves goes to
    # a proxy on the discard port, where nothing listens (loopback bypasses proxies).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


class ChromiumError(CloudFreeError, RuntimeError):
    """Chromium is missing, did not start, or a page command failed."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"headless Chromium: {what}: {reason}")


def find_chromium(candidates: Sequence[str] = EXECUTABLES) -> str:
    """The path of the first Chromium on PATH; fails saying how to install one."""
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise ChromiumError(
        "not found", f"none of {', '.join(candidates)} is on PATH. Run the set-up, which "
        "installs Debian's chromium with apt ('make setup' or 'scripts/setup.sh .venv', "
        "as root), or install it yourself: apt-get install --no-install-recommends chromium")


class Chromium:
    """One headless Chromium with one page of ``width`` x ``height`` CSS pixels.

    Use as a context manager; it leaves no process and no profile directory behind."""

    def __init__(self, *, width: int = 1000, height: int = 700, executable: str | None = None,
                 timeout_s: float = 30.0) -> None:
        self.width, self.height = width, height
        self.executable = executable or find_chromium()
        self.timeout_s = timeout_s
        self.console: list[str] = []  # the page's console errors and uncaught exceptions
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._socket: Any = None

    def __enter__(self) -> Chromium:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the process ----------------------------------------------------------------------

    def start(self) -> None:
        import websocket

        self._profile = tempfile.mkdtemp(prefix="cloudfree-chromium-")
        argv = [self.executable, *SWITCHES, f"--window-size={self.width},{self.height}",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self._profile}", "about:blank"]
        if os.geteuid() == 0:
            argv.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        log = Path(self._profile) / "chromium.log"
        with log.open("wb") as out:
            self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        port = self._devtools_port(log)
        target = self._page_target(port)
        self._socket = websocket.create_connection(
            target, timeout=self.timeout_s, suppress_origin=True)
        for domain in ("Page", "Runtime"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)

    def _devtools_port(self, log: Path) -> int:
        """Chromium writes the port it chose into its profile's DevToolsActivePort."""
        assert self._process is not None and self._profile is not None
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ChromiumError("did not start", f"exit code {self._process.returncode}: "
                                    f"{log.read_text(errors='replace')[-2000:]}")
            if marker.exists() and (lines := marker.read_text().split()):
                return int(lines[0])
            time.sleep(0.05)
        raise ChromiumError("did not start", f"no DevTools port after {self.timeout_s:.0f} s")

    def _page_target(self, port: int) -> str:
        import httpx

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5.0,
                                trust_env=False).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.05)
        raise ChromiumError("did not start", "no page target")

    def close(self) -> None:
        if self._socket is not None:
            try:
                self.send("Browser.close")
            except Exception:  # noqa: BLE001  # closing anyway: the socket may be gone
                pass
            self._socket.close()
            self._socket = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    # --- the protocol ---------------------------------------------------------------------

    def send(self, method: str, *, timeout_s: float | None = None, **params: Any) -> Any:
        """One DevTools command; its result (events that arrive meanwhile are noted)."""
        if self._socket is None:
            raise ChromiumError(method, "the browser is not running")
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            self._socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = json.loads(self._socket.recv())
            except Exception as exc:  # websocket's timeout and closed-socket errors
                raise ChromiumError(method, f"no answer ({type(exc).__name__}: {exc})") from exc
            if message.get("id") == call_id:
                if "error" in message:
                    raise ChromiumError(method, str(message["error"].get("message")))
                return message.get("result", {})
            self._note(message)

    def _note(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.console.append("console.error: " + " ".join(args))

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise ChromiumError(f"loading {url}", str(result["errorText"]))
        self.evaluate("new Promise(r => document.readyState === 'complete' ? r(true) : "
                      "addEventListener('load', () => r(true)))")

    def evaluate(self, expression: str, *, timeout_s: float | None = None) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True,
                           returnByValue=True, timeout_s=timeout_s)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise ChromiumError(f"evaluating {expression[:80]!r}", str(text))
        return result.get("result", {}).get("value")

    def click(self, x: float, y: float) -> None:
        """A left click at page coordinates (CSS pixels), as a user's mouse makes it."""
        self._mouse("mouseMoved", x, y)
        self._mouse("mousePressed", x, y, button="left", buttons=1, clickCount=1)
        self._mouse("mouseReleased", x, y, button="left", buttons=0, clickCount=1)

    def drag(self, start: tuple[float, float], end: tuple[float, float], *,
             steps: int = 8) -> None:
        """Press the left button at ``start``, move to ``end`` in ``steps``, release."""
        self._mouse("mouseMoved", *start)
        self._mouse("mousePressed", *start, button="left", buttons=1, clickCount=1)
        for i in range(1, steps + 1):
            x = start[0] + (end[0] - start[0]) * i / steps
            y = start[1] + (end[1] - start[1]) * i / steps
            self._mouse("mouseMoved", x, y, button="left", buttons=1)
        self._mouse("mouseReleased", *end, button="left", buttons=0, clickCount=1)

    def _mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def screenshot(self) -> bytes:
        """The page as a PNG of ``width`` x ``height`` pixels."""
        result = self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])
