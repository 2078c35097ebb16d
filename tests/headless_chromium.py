"""A real Chromium, headless, driven over the DevTools protocol: open a page, evaluate
script in it, click where a person would, take a screenshot. Debian's ``chromium``
package (.ci/run installs it); ``websocket-client`` speaks the protocol."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websocket


def browser_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Page:
    """One tab: commands go out with an id, their answer comes back under it."""

    def __init__(self, url: str) -> None:
        self._socket = websocket.create_connection(url, timeout=30)
        self._next = 0

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        self._socket.send(json.dumps({"id": self._next, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)  # fmt: skip

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._socket.close()


@contextmanager
def opened(page: Path, width: int = 1200, height: int = 700) -> Iterator[Page]:
    """``page`` in a headless Chromium of its own (a fresh profile, a free port)."""
    binary = browser_path()
    assert binary is not None, "Chromium is not installed (Debian: apt-get install chromium)"
    port = _free_port()
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", page.resolve().as_uri()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            tab = Page(_page_socket(port, page.name))
            try:
                _wait_loaded(tab, page.resolve().as_uri())
                yield tab
            finally:
                tab.close()
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()


def _page_socket(port: int, name: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as answer:
                targets = json.loads(answer.read())
            for target in targets:
                if target.get("type") == "page" and name in target.get("url", ""):
                    return str(target["webSocketDebuggerUrl"])
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("Chromium did not open the page")
        time.sleep(0.2)


def _wait_loaded(tab: Page, uri: str, timeout: float = 30.0) -> None:
    """Until the page itself has loaded (a new tab's first, empty document is "complete"
    too, before the navigation to the page commits)."""
    deadline = time.monotonic() + timeout
    check = f"document.readyState === 'complete' && location.href === {json.dumps(uri)}"
    while not tab.evaluate(check):
        if time.monotonic() > deadline:
            raise AssertionError("the page did not finish loading")
        time.sleep(0.1)


def main() -> None:
    """``python tests/headless_chromium.py PAGE.html OUT.png [WIDTH HEIGHT]``: the
    screenshot in the README (docs/images/flame.png) is taken this way."""
    import sys

    page, out = Path(sys.argv[1]), Path(sys.argv[2])
    width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1100, 420)
    with opened(page, width, height) as tab:
        tab.screenshot(out)


if __name__ == "__main__":
    main()
