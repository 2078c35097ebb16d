"""Span activations between samples: a span that came and went unseen still counts.

Samples see a thread's span state only at the moments they are taken. A call that is
dark for a while and then opens a span for a short part of its body is not an
uninstrumented operation (it was not dark at every moment), but when no sample lands
inside that span it looks dark at every sample, and the wider the interval (the
overhead budget widens it), the more often that happens.

So the detector also notes, per thread, the first ``context.attach`` of a Context that
holds an active span since the sampler last examined the thread: that is how
``start_as_current_span`` and ``use_span`` make a span current. It keeps the frames
running at that moment (the thread's stack, which the attach wrapper reads on its own
thread). A span was active then, so none of those calls was dark throughout, and the
tracker does not count them: neither the calls it was following nor calls that began
after the previous sample, whether they have returned since or are still running. A
span carried in by ``Context.run`` is not an attach; samples see it.

Only the first activation between two samples is kept: a call that begins after it and
opens a span of its own before the next sample, with no sample inside either span, is
still counted. The wrapper runs on the application's thread inside ``attach``: it reads
the Context it was given and, the first time per thread between two samples, the stack;
it can neither raise into the caller nor change what is attached. The frames are held
until the next sample of the thread, as the tracker holds the frames it follows.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context

from .spanstate import forget_ended, span_is_active


def _caller_frames() -> Callable[[], tuple[FrameType, ...]]:
    """The C ``caller_frames`` when built, else the same walk in Python: the frames
    from the caller of the function that calls it up to the thread's root."""
    try:
        from ._tracking import caller_frames
    except ImportError:
        return _caller_frames_in_python
    return caller_frames


def _caller_frames_in_python() -> tuple[FrameType, ...]:
    frames = []
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return tuple(frames)


class Activations:
    """Notes, per thread, the frames running at the first span activation since the
    sampler last examined that thread."""

    def __init__(self) -> None:
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if runtime is None:
            raise RuntimeError("OpenTelemetry's runtime context is not available")
        self._runtime = runtime
        # thread id -> the frames running at its first activation since last taken
        self._first: dict[int, tuple[FrameType, ...]] = {}
        first = self._first
        self._noting = noting = [True]  # close() stops a wrapper that must stay in place
        get_ident = threading.get_ident
        running = _caller_frames()
        original = runtime.attach
        self._previous = runtime.__dict__.get("attach")  # another wrapper, if any

        def attach(ctx: Any) -> Any:
            token = original(ctx)
            try:
                if noting[0] and span_is_active(ctx):
                    tid = get_ident()
                    if tid not in first:
                        first[tid] = running()
            except Exception:  # never fail the application's attach
                pass
            return token

        self._attach = attach
        runtime.attach = attach

    def since_last(
        self, examined: Mapping[int, object], alive: Mapping[int, object]
    ) -> dict[int, tuple[FrameType, ...]]:
        """For the threads in ``examined`` (this tick's) that activated a span since
        they were last examined: the frames running at the first such activation. ``alive`` holds
        every live thread, so that entries of ended threads are dropped."""
        first = self._first
        if not first:
            return {}
        # list() copies the keys in one step under the GIL: the application's threads
        # add entries concurrently, and iterating the dict itself could see it change.
        threads = list(first)
        taken = {tid: first.pop(tid, ()) for tid in threads if tid in examined}
        if len(threads) > len(alive) + 16:
            forget_ended(first, alive)
        return taken

    def reset(self) -> None:
        """Forget everything (a forked child has new threads)."""
        self._first.clear()

    def close(self) -> None:
        """Remove the wrapper, unless someone wrapped ``attach`` after us (then leave the
        wrapper in place, noting nothing, rather than break theirs), and drop the notes
        (they hold frames)."""
        self._noting[0] = False
        self._first.clear()
        attrs = self._runtime.__dict__
        if attrs.get("attach") is self._attach:
            if self._previous is not None:
                attrs["attach"] = self._previous
            else:
                del attrs["attach"]
