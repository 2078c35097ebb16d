"""Noticing where a span is lost: work handed to another thread without its context.

Hooks on ``ThreadPoolExecutor.submit`` (also ``loop.run_in_executor``) and
``Thread.start`` record the submitter's span and call site; work that then runs dark is
``context_lost`` rather than ``no_span``. The hooks only observe: they never attach,
copy or propagate a context (that would hide the gap), never raise, and cost one span
lookup when no span is active.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from opentelemetry import trace

from .faults import note
from .scope import Scope

LostFrom = dict[str, str]
#: One lost job as it ran: [thread id, start, end (inf while it runs), where it was lost].
JobRun = list[Any]
#: What :meth:`HandoffWatcher.job_ended` needs: the job it interrupted, and its run.
RunningJob = tuple[LostFrom | None, JobRun]
#: Lost jobs remembered for calls counted after they ended (nativecalls.py).
_RECENT_JOBS = 256


class HandoffWatcher:
    """Installs the hooks and answers "was this thread's current work handed over from a
    span?" for the tracker."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._by_thread: dict[int, LostFrom] = {}  # executor workers running a lost job
        self._recent: deque[JobRun] = deque(maxlen=_RECENT_JOBS)  # and when they ran
        self._threads: weakref.WeakKeyDictionary[threading.Thread, LostFrom] = (
            weakref.WeakKeyDictionary()
        )
        self._orig_submit = ThreadPoolExecutor.submit
        self._orig_start = threading.Thread.start
        self._installed = False

    # -- the tracker's question -----------------------------------------------------------

    def lost_context(self, thread_id: int) -> LostFrom | None:
        """The span left behind by whoever handed this thread its current work, if any."""
        found = self._by_thread.get(thread_id)
        return found if found is not None else self._started_from(thread_id)

    def lost_context_at(self, thread_id: int, first: float, last: float) -> LostFrom | None:
        """:meth:`lost_context` for a call that ran from ``first`` to ``last``
        (``perf_counter``), asked after it ended: the lost job it ran in, if any."""
        for tid, start, end, lost in reversed(self._recent):
            if tid == thread_id and start <= first and last <= end:
                return lost  # type: ignore[no-any-return]
        return self._started_from(thread_id)

    def _started_from(self, thread_id: int) -> LostFrom | None:
        """Where a span was left when the thread itself was started, if it was."""
        thread = threading._active.get(thread_id)  # type: ignore[attr-defined]
        return None if thread is None else self._threads.get(thread)

    # -- lost jobs --------------------------------------------------------------------------

    def job_started(self, lost: LostFrom) -> RunningJob:
        """The calling thread starts a job that lost the span ``lost``; pass the result to
        :meth:`job_ended` when the job ends (jobs nest: the outer one is restored)."""
        tid = threading.get_ident()
        previous = self._by_thread.get(tid)
        self._by_thread[tid] = lost
        run: JobRun = [tid, time.perf_counter(), float("inf"), lost]
        self._recent.append(run)
        return previous, run

    def job_ended(self, running: RunningJob) -> None:
        previous, run = running
        run[2] = time.perf_counter()
        if previous is None:
            self._by_thread.pop(run[0], None)
        else:
            self._by_thread[run[0]] = previous

    # -- hooks ----------------------------------------------------------------------------

    def install(self) -> None:
        watcher = self
        orig_submit, orig_start = self._orig_submit, self._orig_start

        def submit(
            self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
        ) -> Any:
            try:
                lost = watcher._capture()
                if lost is not None:
                    fn = _LostJob(fn, lost, watcher)
            except Exception as exc:
                note("handoff_hook", exc)
            return orig_submit(self, fn, *args, **kwargs)

        def start(self: threading.Thread) -> None:
            # Only the application's own hand-offs: an executor starting its worker
            # threads (lazily, inside submit) is not one; the jobs are tracked instead.
            try:
                lost = watcher._capture() if watcher._called_from_app() else None
                if lost is not None:
                    watcher._threads[self] = lost
            except Exception as exc:
                note("handoff_hook", exc)
            orig_start(self)

        submit.__wrapped__ = orig_submit  # type: ignore[attr-defined]
        start.__wrapped__ = orig_start  # type: ignore[attr-defined]
        self._submit, self._start = submit, start
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        threading.Thread.start = start  # type: ignore[method-assign]
        self._installed = True

    def uninstall(self) -> None:
        """Restore the originals, unless someone wrapped them after us."""
        if not self._installed:
            return
        if ThreadPoolExecutor.__dict__.get("submit") is self._submit:
            ThreadPoolExecutor.submit = self._orig_submit  # type: ignore[method-assign]
        if threading.Thread.__dict__.get("start") is self._start:
            threading.Thread.start = self._orig_start  # type: ignore[method-assign]
        self._installed = False

    def reset(self) -> None:
        """Forget running jobs (a forked child has none); the hooks stay installed."""
        self._by_thread.clear()

    def _capture(self) -> LostFrom | None:
        """The submitter's active span and call site; None when there is no span."""
        try:
            span_context = trace.get_current_span().get_span_context()
            if not span_context.is_valid:
                return None
            return {
                "trace_id": format(span_context.trace_id, "032x"),
                "span_id": format(span_context.span_id, "016x"),
                "trace_flags": format(span_context.trace_flags, "02x"),
                "submitter": self._submitter_site(),
            }
        except Exception as exc:
            note("handoff_hook", exc)
            return None

    def _called_from_app(self) -> bool:
        """Whether the code that called the hooked function is in scope."""
        try:
            return self._scope.info_of(sys._getframe(2)).in_scope
        except Exception as exc:
            note("handoff_hook", exc)
            return False

    def _submitter_site(self) -> str:
        frame = sys._getframe(2)
        while frame is not None:
            info = self._scope.info_of(frame)
            if info.in_scope:
                return info.site
            frame = frame.f_back  # type: ignore[assignment]
        return "?"


class _LostJob:
    """Wraps a job submitted from a span without its context: while it runs, its worker
    thread is known to be doing lost-context work. Calls the job unchanged."""

    __slots__ = ("_fn", "_lost", "_watcher")

    def __init__(self, fn: Callable[..., Any], lost: LostFrom, watcher: HandoffWatcher) -> None:
        self._fn = fn
        self._lost = lost
        self._watcher = watcher

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        running = self._watcher.job_started(self._lost)
        try:
            return self._fn(*args, **kwargs)
        finally:
            self._watcher.job_ended(running)
