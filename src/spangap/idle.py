"""Which waits mean "idle" (waiting for new work) and which mean "waiting for a reply".

SPEC: a thread is idle when it only waits for new work to arrive (a worker in
``queue.get``, an event loop in its selector with nothing to run, ``accept``); waiting for
something the code asked for (a response, ``Future.result``, ``Thread.join``) is work.

Both kinds of wait often end in the same primitive (``Future.result`` and ``Queue.get``
both sit in ``Condition.wait``), so what the *application* called decides: a queue,
event or condition wait it calls itself is idle; the same primitive inside a library
call (an HTTP client waiting for its response) is work; loop and server machinery
(``serve_forever``, an event loop's ``_run_once``) is idle wherever it sits, and a reply
wait (``Future.result``, ``Thread.join``) is work wherever it sits.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Protocol

#: Loop and server machinery: a thread or task inside one of these, with nothing of the
#: application's above it, is waiting for new work wherever the function sits.
DEFAULT_IDLE_FUNCTIONS: tuple[str, ...] = (
    "socketserver:BaseServer.serve_forever",
    "socket:socket.accept",
    "concurrent.futures.thread:_worker",
    "multiprocessing.pool:worker",
    "asyncio.base_events:BaseEventLoop._run_once",
    "asyncio.base_events:BaseEventLoop.run_forever",
)

#: Waits that mean "idle" only when the application calls them itself (a worker in
#: ``queue.get``). Libraries use the same primitives to wait for a *reply* (an HTTP
#: client waiting on an ``asyncio.Event`` for its response): that is work.
DIRECT_IDLE_FUNCTIONS: tuple[str, ...] = (
    "queue:Queue.get",
    "multiprocessing.queues:Queue.get",
    "threading:Condition.wait",
    "threading:Condition.wait_for",
    "threading:Event.wait",
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

NEITHER = 0
IDLE = 1
WORK = 2
IDLE_IF_DIRECT = 3


class Classified(Protocol):
    """What idleness needs to know of a frame's code (scope.CodeInfo)."""

    @property
    def in_scope(self) -> bool: ...
    @property
    def idle(self) -> int: ...


def is_idle_stack(infos: Sequence[Classified]) -> bool:
    """SPEC "idle" for a stack (root to leaf), decided by what the innermost in-scope frame
    called: a direct queue/event/condition wait is idle; otherwise the outermost loop,
    server or reply-wait function between that frame and the leaf decides."""
    i = len(infos) - 1
    while i >= 0 and not infos[i].in_scope:
        i -= 1
    if i >= 0 and infos[i].idle == IDLE:  # a function the user named idle
        return True
    if i + 1 < len(infos) and infos[i + 1].idle == IDLE_IF_DIRECT:
        return True
    for info in infos[i + 1 :]:
        if info.idle == IDLE:
            return True
        if info.idle == WORK:
            return False
    return False


class IdleRules:
    """Classifies a function (``module:qualname``) as an idle wait, a work wait, or neither."""

    def __init__(self, extra_idle: tuple[str, ...] = ()) -> None:
        self._classes = (
            (WORK, _Patterns(WORK_WAITS)),
            (IDLE, _Patterns(DEFAULT_IDLE_FUNCTIONS + tuple(extra_idle))),
            (IDLE_IF_DIRECT, _Patterns(DIRECT_IDLE_FUNCTIONS)),
        )

    def classify(self, site: str) -> int:
        """IDLE, IDLE_IF_DIRECT, WORK or NEITHER for a ``module:qualname`` site."""
        for kind, patterns in self._classes:
            if patterns.match(site):
                return kind
        return NEITHER


class _Patterns:
    """Exact names in a set, globs tried one by one (there are few)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._exact = frozenset(p for p in patterns if not _is_glob(p))
        self._globs = tuple(p for p in patterns if _is_glob(p))

    def match(self, site: str) -> bool:
        return site in self._exact or any(fnmatchcase(site, p) for p in self._globs)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")
