"""spangap's own errors: caught where they happen, counted by kind, each kind logged once.

The detector runs inside someone else's process, so an error of its own must never reach
the application: every place spangap code runs (a hook on the application's thread, the
sampler, a scrape, a snapshot, a fork, exit) catches what it raises and notes it here.

Noting is safe anywhere, in a hook inside ``context.attach`` or in a finalizer: it takes
no lock and allocates next to nothing (an append to a bounded deque, atomic under the
GIL). The detector drains the notes on its own thread, once a second and at a scrape or
stop, into ``spangap_internal_errors_total{kind=...}``, and logs the first error of each
kind once, as one warning line (the traceback goes to the debug log). Only the
exception's type and the code it came from are kept, never its message or the frames'
locals: a message can hold an argument value, and the frames the application's objects.
"""

from __future__ import annotations

import collections
import logging
import threading
import traceback
from collections.abc import Callable

log = logging.getLogger("spangap")

#: The places an error can come from, the ``kind`` label's values.
KINDS = (
    "sampler",  # a tick or a flush on the sampler thread
    "span_read",  # a span whose get_span_context() raised
    "attach_hook",  # the wrapper around OpenTelemetry's context.attach / detach
    "handoff_hook",  # the wrappers around ThreadPoolExecutor.submit and Thread.start
    "scrape",  # the flush that runs before /metrics is collected
    "snapshot",  # writing the snapshot file
    "fork",  # the fork handlers
    "stop",  # stop(), at exit or called by the application
    "inferred_span",  # sending an inferred span through the application's provider
    "outbound_hook",  # the hooks on outbound HTTP requests (outbound.py)
)

#: Errors noted between two drains beyond this are dropped (and counted as dropped):
#: a hook failing on every call of a busy application must not grow memory.
PENDING_LIMIT = 65_536


class Faults:
    """Notes of errors, taken on any thread and drained on the detector's."""

    def __init__(self) -> None:
        self._pending: collections.deque[str] = collections.deque(maxlen=PENDING_LIMIT)
        self._first: dict[str, tuple[str, traceback.StackSummary]] = {}  # type, where
        self._logged: set[str] = set()
        self._drain_lock = threading.Lock()

    def note(self, kind: str, exc: BaseException | None = None) -> None:
        """Record one error of ``kind``. Never raises."""
        try:
            self._pending.append(kind)
            if kind not in self._first:
                self._first.setdefault(kind, _describe(exc))
        except BaseException:  # nothing may escape into the application
            pass

    def logged_elsewhere(self, kind: str) -> None:
        """The caller logged this kind in words of its own: do not log it again."""
        self._logged.add(kind)

    def drain(self, count: Callable[[str, int], None]) -> None:
        """Pass the errors noted since the last drain to ``count(kind, n)``, and log the
        first of each kind not logged before."""
        with self._drain_lock:
            tally: collections.Counter[str] = collections.Counter()
            pending = self._pending
            while pending:
                try:
                    tally[pending.popleft()] += 1
                except IndexError:  # drained by nobody else, but be safe
                    break
            for kind, n in tally.items():
                count(kind, n)
                if kind not in self._logged:
                    self._logged.add(kind)
                    self._log_first(kind)

    def _log_first(self, kind: str) -> None:
        name, where = self._first.get(kind, ("an error", traceback.StackSummary()))
        log.warning(
            "spangap: internal error in %s, %s (counted in spangap_internal_errors_total"
            '{kind="%s"}, logged once; the application is not affected)',
            kind,
            name,
            kind,
        )
        if where:
            stack = "".join(where.format())
            log.debug("spangap: where the first %s error came from:\n%s", kind, stack)

    def forget(self) -> None:
        """Drop pending notes (a forked child's copy holds its parent's)."""
        self._pending.clear()


def _describe(exc: BaseException | None) -> tuple[str, traceback.StackSummary]:
    """The exception's type and where it was raised (file, line, function: no message,
    no locals; the source lines are read later, when logged, not inside a hook)."""
    if exc is None:
        return "an error", traceback.StackSummary()
    walk = traceback.walk_tb(exc.__traceback__)
    return type(exc).__name__, traceback.StackSummary.extract(walk, lookup_lines=False)


#: One per process, like the hooks it serves: the hooks are installed once per process.
FAULTS = Faults()


def note(kind: str, exc: BaseException | None = None) -> None:
    """Record one error of ``kind`` in the process's notes. Never raises."""
    FAULTS.note(kind, exc)
