"""Noticing a span lost on the way into a Celery task, and flushing a pool process
before it exits.

A producer with a span (and Celery's OpenTelemetry instrumentation) puts a
``traceparent`` header on the task's message. A worker without the instrumentation runs
the task body with no span: the span was lost on the way into the task, so the body's
dark calls are ``context_lost``, with the producer's span as where it was lost. Without
the header nothing upstream is known to have had a span: ``no_span``.

Celery's prefork pool ends its processes with ``os._exit``, after its
``worker_process_shutdown`` signal and without running ``atexit``: the detector is
stopped there, so a process's last counts reach the metrics before it goes.

Only Celery's signals are used, connected once ``celery.signals`` has been imported by
the application (spangap never imports Celery). The receivers only observe: they read
one header, never the task's arguments, and never attach or propagate a context.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from .faults import note
from .handoff import HandoffWatcher, LostFrom, RunningJob

_HEADER = "traceparent"
#: How a Celery producer is named where the span was lost (reports give it its own fix).
CELERY_PRODUCER = "the Celery producer of "


class CeleryWatcher:
    """Connects spangap's receivers to Celery's task and pool-process signals."""

    def __init__(self, handoff: HandoffWatcher, on_process_exit: Callable[[], None]) -> None:
        self._handoff = handoff
        self._on_process_exit = on_process_exit
        self._running: dict[str, RunningJob] = {}  # task id -> its lost job
        self._signals: Any = None
        self._lock = threading.Lock()
        self._uid = f"spangap-{id(self)}"  # a later detector connects its own

    def waiting(self) -> bool:
        """Whether Celery has been imported and the receivers are not connected yet."""
        return self._signals is None and "celery.signals" in sys.modules

    def connect(self) -> None:
        """Connect the receivers if Celery has been imported (cheap when it has not).
        Never while the process may fork: Celery's signals hold a lock while connecting."""
        with self._lock:
            if not self.waiting():
                return
            try:
                signals = sys.modules["celery.signals"]
                for signal, receiver in _receivers(signals, self):
                    signal.connect(receiver, weak=False, dispatch_uid=self._uid)
                self._signals = signals
            except Exception as exc:
                note("handoff_hook", exc)

    def disconnect(self) -> None:
        with self._lock:
            signals, self._signals = self._signals, None
        if signals is None:
            return
        for signal, receiver in _receivers(signals, self):
            signal.disconnect(receiver, dispatch_uid=self._uid)

    def reset(self) -> None:
        """Forget running tasks (a forked child runs none); the receivers stay."""
        self._running.clear()

    # -- receivers (Celery calls them with keyword arguments; the task's are not read) ----

    def _task_started(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        try:
            lost = _lost_from(task)
            if lost is not None and task_id is not None:
                self._running[task_id] = self._handoff.job_started(lost)
        except Exception as exc:
            note("handoff_hook", exc)

    def _task_ended(self, task_id: str | None = None, **_: Any) -> None:
        try:
            running = self._running.pop(task_id, None) if task_id is not None else None
            if running is not None:
                self._handoff.job_ended(running)
        except Exception as exc:
            note("handoff_hook", exc)

    def _process_exits(self, **_: Any) -> None:
        try:
            self._on_process_exit()
        except Exception as exc:
            note("stop", exc)


def _receivers(signals: Any, watcher: CeleryWatcher) -> list[tuple[Any, Callable[..., None]]]:
    return [
        (signals.task_prerun, watcher._task_started),
        (signals.task_postrun, watcher._task_ended),
        (signals.worker_process_shutdown, watcher._process_exits),
    ]


def _lost_from(task: Any) -> LostFrom | None:
    """The producer's span named by the task message's ``traceparent`` header, if valid
    (W3C Trace Context: version-traceid-spanid-flags, ids not all zero)."""
    request = getattr(task, "request", None)
    header = getattr(request, _HEADER, None)
    if header is None:
        headers = getattr(request, "headers", None)
        header = headers.get(_HEADER) if isinstance(headers, dict) else None
    if not isinstance(header, str):
        return None
    parts = header.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        if int(parts[1], 16) == 0 or int(parts[2], 16) == 0:
            return None
    except ValueError:
        return None
    name = getattr(task, "name", None) or "?"
    return {
        "trace_id": parts[1].lower(),
        "span_id": parts[2].lower(),
        "trace_flags": parts[3][:2].lower(),
        "submitter": CELERY_PRODUCER + name,
    }
