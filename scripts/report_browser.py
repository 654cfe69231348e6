"""Open a ``moalign report`` page in a real headless browser: check it, click a point, screenshot.

The browser is Chromium (Debian's ``chromium``), driven through its DevTools protocol over a
pipe (``--remote-debugging-pipe``: no port, no extra package). While the page loads and a
point is clicked, every console error, uncaught exception and request the page makes is
recorded. ``tests/fronts/test_report.py`` uses :class:`Browser` to check a report; run as a
script, it prints what the page shows and can save a screenshot (``docs/report.png`` was made
this way)::

    python scripts/report_browser.py report.html                     # checks, as JSON
    python scripts/report_browser.py report.html --select w0.50-0.50 \\
        --screenshot docs/report.png --width 1200 --height 1500

Exit status 0 when the page shows one marker per point, logs no console error and makes no
request other than for the page itself; 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Browser", "BrowserError", "find_chromium", "report_checks"]

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update",
         "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         # a request the page makes fails at once instead of reaching a network
         "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    """The browser could not start, or did not answer in time."""


def find_chromium() -> str | None:
    """The path of an installed Chromium (``$CHROMIUM`` first), or ``None``."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, NAMES) if p), None)


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe.

    ``console_errors`` (console ``error`` calls, uncaught exceptions, ``error`` log entries) and
    ``requests`` (every URL the page requested) accumulate from the moment the page is opened.
    """

    def __init__(self, executable: str | None = None, *, width: int = 1200, height: int = 900,
                 timeout: float = 60.0):
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no Chromium found (install Debian's chromium)")
        self.timeout = timeout
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._profile = tempfile.TemporaryDirectory(prefix="moalign-browser-")
        self._log = tempfile.TemporaryFile()  # the browser's own messages (a pipe could fill)
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def pipes_as_3_and_4() -> None:  # in the child, before exec: DevTools reads 3, writes 4
            a = fcntl.fcntl(to_browser, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_browser, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self._proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log,
            close_fds=False, preexec_fn=pipes_as_3_and_4)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        try:
            target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self._send("Target.attachToTarget",
                                       {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if self._proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")
                raise BrowserError(f"the browser exited ({self._proc.returncode}): {err[-2000:]}")
            if time.monotonic() > deadline:
                raise BrowserError("the browser did not answer in time")
            ready, _, _ = select.select([self._read], [], [], 0.2)
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError("the browser closed its DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._record(message)
        return message

    def _record(self, event: dict[str, Any]) -> None:
        method, params = event["method"], event.get("params", {})
        self._events.append(event)
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console_errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            self.console_errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.console_errors.append(f"log: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])

    def _send(self, method: str, params: dict[str, Any] | None = None,
              session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One DevTools command to the page; its result."""
        return self._send(method, params, self._session)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The first event ``method`` not waited for yet (waiting for it if needed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method:
                    return self._events.pop(i)
            self._message(deadline)

    # ------------------------------------------------------------------ page

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event."""
        self._events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.05)

    def click(self, x: float, y: float) -> None:
        """A real mouse click (move, press, release) at page coordinates."""
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        time.sleep(0.15)  # the page's hover handling is throttled
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                   "button": "left", "clickCount": 1})

    def screenshot(self, path: str | Path, *, full_page: bool = False) -> Path:
        """Save the page as a PNG (the viewport, or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                              "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """End the browser (the process this object started) and remove its profile."""
        if self._proc.poll() is None:
            try:
                self._send("Browser.close")
            except (BrowserError, OSError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------- a report page

#: Per trace of the figure: its ``meta``, its point ids and the markers the browser drew for
#: it; ``null`` until the figure is drawn (every trace with markers).
MARKERS_JS = """(() => {
  const el = document.getElementById('front');
  if (!el || !el.data || !el._fullLayout) return null;
  const drawn = el.querySelectorAll('.scatterlayer .trace');
  const out = el.data.map((t, i) => ({name: t.name, meta: t.meta || {}, ids: t.customdata || [],
    markers: drawn[i] ? drawn[i].querySelectorAll('path.point').length : 0}));
  return out.every(t => t.markers > 0) ? out : null;
})()"""

#: Page coordinates of the marker of point ``{id}`` of front ``{front}``.
MARKER_AT_JS = """(() => {
  const el = document.getElementById('front');
  const drawn = el.querySelectorAll('.scatterlayer .trace');
  window.scrollTo(0, 0);
  for (let i = 0; i < el.data.length; i++) {
    const t = el.data[i];
    if (!t.meta || t.meta.front !== %d || t.meta.kind !== 'points') continue;
    const j = (t.customdata || []).indexOf(%s);
    if (j < 0) return null;
    const r = drawn[i].querySelectorAll('path.point')[j].getBoundingClientRect();
    return {x: r.left + r.width / 2, y: r.top + r.height / 2};
  }
  return null;
})()"""


def report_checks(browser: Browser, page: str | Path, *, select: str | None = None,
                  front: int = 0) -> dict[str, Any]:
    """Open a report page and say what it shows: ``traces`` (per trace of the figure its name,
    ``meta``, point ids and drawn markers); with ``select`` (a point id of front ``front``), a
    click on its marker, then ``selected`` (the text of the selected point's replies panel) and
    ``marked`` (the reply rows marked); ``console_errors`` and ``requests`` (URLs other than the
    page itself and the ``data:`` / ``blob:`` URLs made inside it) up to then."""
    url = Path(page).resolve().as_uri()
    browser.open(url)
    traces = browser.wait_for(MARKERS_JS, timeout=20)
    if traces is None:
        raise BrowserError(f"the front was not drawn in 20 s; console: {browser.console_errors}")
    out: dict[str, Any] = {"traces": traces}
    if select is not None:
        where = browser.evaluate(MARKER_AT_JS % (front, json.dumps(select)))
        if where is None:
            raise BrowserError(f"no marker for point {select!r} of front {front}")
        browser.click(where["x"], where["y"])
        out["selected"] = browser.wait_for(
            "(document.getElementById('selected-replies') || {}).innerText", timeout=10) or ""
        out["marked"] = browser.evaluate(
            "[...document.querySelectorAll('tr.selected[data-reply]')]"
            ".map(tr => tr.getAttribute('data-point'))")
    browser.evaluate("new Promise(r => setTimeout(r, 200))")  # late errors have time to show
    out["console_errors"] = list(browser.console_errors)
    # data: and blob: URLs are made inside the page (plotly probes image support with one)
    out["requests"] = [u for u in browser.requests
                       if u != url and not u.startswith(("data:", "blob:"))]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="a report page (moalign report ... -o page.html)")
    parser.add_argument("--select", metavar="POINT", help="click this point's marker first")
    parser.add_argument("--front", type=int, default=0, help="the front of --select (0: first)")
    parser.add_argument("--screenshot", metavar="PNG", help="save the viewport as a PNG")
    parser.add_argument("--full-page", action="store_true", help="the screenshot: whole page")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    with Browser(width=args.width, height=args.height) as browser:
        result = report_checks(browser, args.page, select=args.select, front=args.front)
        if args.screenshot:
            browser.evaluate("window.scrollTo(0, 0)")
            browser.screenshot(args.screenshot, full_page=args.full_page)
    print(json.dumps(result, indent=1))
    points = [t for t in result["traces"] if t["meta"].get("kind") == "points"]
    ok = (all(t["markers"] == len(t["ids"]) for t in points) and not result["console_errors"]
          and not result["requests"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
