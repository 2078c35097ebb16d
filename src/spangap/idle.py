"""Which waits mean "idle" (waiting for new work) and which mean "waiting for a reply".

SPEC: a thread is idle when it only waits for new work to arrive (a worker in
``queue.get``, an event loop in its selector with nothing to run, ``accept``); waiting for
something the code asked for (a response, ``Future.result``, ``Thread.join``) is work.

Both kinds of wait often end in the same primitive (``Future.result`` and ``Queue.get``
both sit in ``Condition.wait``), so the decision is made by the *outermost* matching
function between the application's code and the leaf: the call the application made
says what it was waiting for.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

#: Functions whose presence (outermost first) marks a thread as idle.
DEFAULT_IDLE_FUNCTIONS: tuple[str, ...] = (
    "queue:Queue.get",
    "threading:Condition.wait",
    "threading:Condition.wait_for",
    "threading:Event.wait",
    "socket:socket.accept",
    "socketserver:BaseServer.serve_forever",
    "selectors:*Selector.select",
    "concurrent.futures.thread:_worker",
    "multiprocessing.pool:worker",
    "asyncio.base_events:BaseEventLoop._run_once",
    "asyncio.base_events:BaseEventLoop.run_forever",
    "asyncio.queues:Queue.get",
    "asyncio.locks:Event.wait",
    "asyncio.locks:Condition.wait",
)

#: Functions that wait for a reply the code asked for; they win over an idle wait
#: nested inside them.
WORK_WAITS: tuple[str, ...] = (
    "concurrent.futures._base:Future.result",
    "concurrent.futures._base:wait",
    "concurrent.futures._base:as_completed",
    "threading:Thread.join",
    "subprocess:Popen.*",
    "subprocess:run",
    "asyncio.tasks:wait_for",
    "asyncio.tasks:gather",
    "asyncio.tasks:wait",
)

IDLE = 1
WORK = 2
NEITHER = 0


class IdleRules:
    """Classifies a function (``module:qualname``) as an idle wait, a work wait, or neither."""

    def __init__(self, extra_idle: tuple[str, ...] = ()) -> None:
        self._idle = DEFAULT_IDLE_FUNCTIONS + tuple(extra_idle)
        self._exact_idle = frozenset(p for p in self._idle if not _is_glob(p))
        self._glob_idle = tuple(p for p in self._idle if _is_glob(p))
        self._exact_work = frozenset(p for p in WORK_WAITS if not _is_glob(p))
        self._glob_work = tuple(p for p in WORK_WAITS if _is_glob(p))

    def classify(self, site: str) -> int:
        """Return IDLE, WORK or NEITHER for a ``module:qualname`` site."""
        if site in self._exact_work or any(fnmatchcase(site, p) for p in self._glob_work):
            return WORK
        if site in self._exact_idle or any(fnmatchcase(site, p) for p in self._glob_idle):
            return IDLE
        return NEITHER


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
