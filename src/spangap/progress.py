"""The live count ``gapreport run`` shows on a terminal while the program runs.

One status line on stderr, redrawn every second: how long the program has run, and the
operations and sites counted so far. Only when stderr is a terminal (piped or redirected
output stays exactly the program's and the report's), and never with ``--quiet``. The
line is cleared before the report is printed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

_CLEAR = "\r\x1b[K"


class Progress:
    """A thread that redraws the status line until :meth:`stop`."""

    def __init__(
        self, counts: Callable[[], dict[tuple[str, str], int]], stream: TextIO, every_s: float = 1.0
    ) -> None:
        self._counts = counts
        self._stream = stream
        self._every = every_s
        self._started = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spangap-progress", daemon=True)

    @staticmethod
    def wanted(stream: TextIO, quiet: bool) -> bool:
        try:
            return not quiet and stream.isatty()
        except (AttributeError, ValueError):  # a closed or replaced stream
            return False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=2)
        self._write(_CLEAR)

    def line(self) -> str:
        counts = self._counts()
        operations = sum(counts.values())
        sites = len({site for site, _cause in counts})
        elapsed = time.monotonic() - self._started
        return (
            f"spangap: {elapsed:.0f} s, {operations:,} uninstrumented operations at "
            f"{sites:,} sites so far"
        )

    def _run(self) -> None:
        while not self._done.wait(self._every):
            try:
                self._write(_CLEAR + self.line())
            except Exception:  # the terminal went away: the program goes on without us
                return

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass
