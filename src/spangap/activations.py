"""Span activations between samples: a span that came and went unseen still counts.

Wraps OpenTelemetry's ``context.attach`` and notes, per thread and per asyncio task,
the calls running at the first and at the latest span activation since the sampler
last looked at it; the tracker never counts those calls. A note is made, and taken, in
one step that runs no Python code (``note_activation`` in ``c/_tracking.c``). The
wrapper can neither raise into the caller nor change what is attached. Why two notes
suffice: docs/how-it-works.md, "Instrumented work is never counted".
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation import _SPAN_KEY

from .faults import note as note_fault
from .frames import back
from .spanstate import plain_span_types, span_is_active

_running_loop: Callable[[], Any] = asyncio.events._get_running_loop
_current_tasks: dict[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})

#: One activation: the frames it ran in that had frame objects, down to where they join
#: the thread's first stack; those that had none, by interpreter frame address (packed)
#: and code, found again in a later stack (``_tracking.frames_at``); the first stack
#: (leaf first); where they join it (-1: not at all); and the activation's number (from 1).
Mark = tuple[tuple[FrameType, ...], bytes, tuple[Any, ...], tuple[FrameType, ...], int, int]
#: A thread's notes: its first stack, frame -> index in it, the number of the first
#: activation, and the latest mark.
ThreadNotes = tuple[tuple[FrameType, ...], dict[FrameType, int], int, Mark]


def stack_of(leaf: FrameType | None) -> list[FrameType]:
    """``leaf`` and its callers, read safely (another thread's)."""
    frames: list[FrameType] = []
    while leaf is not None:
        frames.append(leaf)
        leaf = back(leaf)
    return frames


def _frames_until(known: dict[FrameType, int]) -> tuple[tuple[FrameType, ...], int]:
    """The caller's caller's frames towards the root: all of them, filling ``known``,
    when it is empty; else up to the first frame in ``known`` (and its index)."""
    frame: FrameType | None = sys._getframe(3)
    if not known:
        stack = stack_of(frame)
        known.update((f, i) for i, f in enumerate(stack))
        return tuple(stack), -1
    frames: list[FrameType] = []
    while frame is not None and frame not in known:
        frames.append(frame)
        frame = back(frame)
    return tuple(frames), known[frame] if frame is not None else -1


_noted = itertools.count(1)
_last_noted = [0]


def _note_in_python(
    threads: dict[int, ThreadNotes], tasks: dict[Any, tuple[Mark, Mark]], tid: int, task: Any
) -> None:
    """``_tracking.note_activation`` for a build without the C extension. Not one step:
    a sampler taking the notes between its reads and writes can miss this activation."""
    number = _last_noted[0] = next(_noted)
    notes = threads.get(tid)
    if notes is None:
        known: dict[FrameType, int] = {}
        stack, _ = _frames_until(known)
        first = number
        mark: Mark = ((), b"", (), stack, 0, number)
    else:
        stack, known, first, _ = notes
        new, join = _frames_until(known)
        mark = (new, b"", (), stack, join, number)
    threads[tid] = (stack, known, first, mark)
    if task is not None:
        had = tasks.get(task)
        tasks[task] = (had[0] if had is not None else mark, mark)


def _native() -> tuple[Callable[..., None], Callable[[], int], Callable[..., Any] | None]:
    """The note, the count and frames_at, in C when built."""
    try:
        from ._tracking import activation_count, frames_at, note_activation
    except ImportError:
        return _note_in_python, lambda: _last_noted[0], None
    return note_activation, activation_count, frames_at


_note, _count, _frames_at = _native()


def _active_span_check() -> Callable[[Any], bool]:
    """span_is_active, answered in C for the SDK's own span types when built."""
    try:
        from ._native import holds_active_span
    except ImportError:
        return span_is_active
    plain = plain_span_types()

    def active(ctx: Any) -> bool:
        verdict = holds_active_span(ctx, _SPAN_KEY, plain)
        return span_is_active(ctx) if verdict is None else verdict

    return active


def running_at(*marks: Mark | None, stack: Sequence[FrameType] = ()) -> tuple[FrameType, ...]:
    """The frames running at the activations ``marks`` note (with repeats); frames noted
    by address are looked for in ``stack``, a stack read since (none without one)."""
    frames: list[FrameType] = []
    for mark in marks:
        if mark is not None:
            objs, addresses, codes, first, join, _ = mark
            frames.extend(objs)
            if join >= 0:
                frames.extend(first[join:])
            if addresses and stack and _frames_at is not None:
                frames.extend(_frames_at(addresses, codes, stack))
    return tuple(frames)


class Activations:
    """Notes, per thread and per asyncio task, the calls running at the first and at
    the latest span activation since the sampler last examined that thread or task."""

    def __init__(self) -> None:
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if runtime is None:
            raise RuntimeError("OpenTelemetry's runtime context is not available")
        self._runtime = runtime
        self._threads: dict[int, ThreadNotes] = {}
        self._tasks: dict[Any, tuple[Mark, Mark]] = {}  # task -> its first, latest mark
        threads, tasks = self._threads, self._tasks
        self._noting = noting = [True]  # close() stops a wrapper that must stay in place
        note = _note
        self.count: Callable[[], int] = _count  # the last activation's number
        #: Whether notes are made in C, which also counts each thread's activations for
        #: the native stack sampler (_tracking's activation counts).
        self.native = _frames_at is not None
        get_ident = threading.get_ident
        original = runtime.attach
        self._previous = runtime.__dict__.get("attach")  # another wrapper, if any

        active = _active_span_check()

        def attach(ctx: Any) -> Any:
            token = original(ctx)
            try:
                if noting[0] and active(ctx):
                    loop = _running_loop()
                    task = _current_tasks.get(loop) if loop is not None else None
                    note(threads, tasks, get_ident(), task)
            except Exception as exc:  # never fail the application's attach
                note_fault("attach_hook", exc)
            return token

        self._attach = attach
        runtime.attach = attach

    def since_last(
        self, examined: Mapping[int, FrameType], alive: Mapping[int, object], before: int
    ) -> dict[int, tuple[FrameType, ...]]:
        """For the threads in ``examined`` (this tick's, id -> innermost frame), and those
        no longer ``alive``, that made a span current since they were last examined: the
        frames running at the first and at the latest such moment. ``before`` is
        :meth:`count` read before the tick read the stacks: notes made after it are given
        now and again next time, for the calls that began after the stacks were read. An
        ended thread's calls end at this tick: they must not be counted if a span was
        made current in them."""
        threads = self._threads
        if not threads:
            return {}
        # list() copies the keys in one step under the GIL: the application's threads
        # add entries concurrently, and iterating the dict itself could see it change.
        taken: dict[int, tuple[FrameType, ...]] = {}
        for tid in list(threads):
            ended = tid not in alive
            if not ended and tid not in examined:
                continue
            notes = threads.pop(tid, None)  # one step: an activation is wholly in or out
            if notes is None:
                continue
            stack, _, first, latest = notes
            if not ended and latest[5] > before:
                threads.setdefault(tid, notes)  # again next time
            if ended or first <= before:
                now = stack_of(examined.get(tid)) if latest[1] and not ended else ()
                taken[tid] = running_at(((), b"", (), stack, 0, first), latest, stack=now)
        return taken

    def of_task(
        self, task: Any, before: int, ended: bool = False
    ) -> tuple[Mark | None, Mark | None]:
        """The first and the latest span activation in ``task`` since this was last
        asked (:func:`running_at` gives their frames, found in the task's stack read
        after this); ``before`` as in :meth:`since_last`."""
        marks = self._tasks.pop(task, None) if self._tasks else None
        if marks is None:
            return None, None
        if not ended and marks[1][5] > before:
            self._tasks.setdefault(task, marks)  # again next time
        return marks

    def forget_tasks(self, keep: Callable[[Any], bool]) -> None:
        """Drop the notes of tasks for which ``keep`` is false (done ones)."""
        for task in [t for t in list(self._tasks) if not keep(t)]:
            self._tasks.pop(task, None)

    @property
    def marked_tasks(self) -> int:
        return len(self._tasks)

    def reset(self) -> None:
        """Forget everything (a forked child has new threads)."""
        self._threads.clear()
        self._tasks.clear()

    def close(self) -> None:
        """Remove the wrapper, unless someone wrapped ``attach`` after us (then leave the
        wrapper in place, noting nothing, rather than break theirs), and drop the notes
        (they hold frames)."""
        self._noting[0] = False
        self.reset()
        attrs = self._runtime.__dict__
        if attrs.get("attach") is self._attach:
            if self._previous is not None:
                attrs["attach"] = self._previous
            else:
                del attrs["attach"]
