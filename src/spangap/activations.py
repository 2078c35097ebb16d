"""Span activations between samples: a span that came and went unseen still counts.

Samples see a thread's span state only at the moments they are taken. A call that is
dark for a while and then opens a span for a short part of its body is not an
uninstrumented operation (it was not dark at every moment), but when no sample lands
inside that span it looks dark at every sample, and the wider the interval (the
overhead budget widens it), the more often that happens.

So the detector also notes, per thread, the first ``context.attach`` of a Context that
holds an active span since the sampler last examined the thread: that is how
``start_as_current_span`` and ``use_span`` make a span current. A span was then active
at that moment, so a call that was running then was not dark throughout and is not
counted: every call on the stack at both samples (so throughout), and a call that has
ended since, if the liveness watcher saw it still running after that moment. A call
that began after the previous sample is left alone (the span may have come before it),
and so is one whose end the watcher did not see past that moment. A span carried in by
``Context.run`` is not an attach; samples see it.

The wrapper runs on the application's thread inside ``attach``: it reads the Context it
was given and, the first time per thread between two samples, the clock; it can
neither raise into the caller nor change what is attached. It costs the host about a
microsecond per span activation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context

from .spanstate import forget_ended, span_is_active


class Activations:
    """Notes, per thread, the first moment a span was activated since the sampler last
    examined that thread."""

    def __init__(self) -> None:
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if runtime is None:
            raise RuntimeError("OpenTelemetry's runtime context is not available")
        self._runtime = runtime
        self._first: dict[int, float] = {}  # thread id -> first activation since taken
        first = self._first
        get_ident = threading.get_ident
        clock = time.perf_counter
        original = runtime.attach
        self._previous = runtime.__dict__.get("attach")  # another wrapper, if any

        def attach(ctx: Any) -> Any:
            token = original(ctx)
            try:
                if span_is_active(ctx):
                    tid = get_ident()
                    if tid not in first:
                        first[tid] = clock()
            except Exception:  # never fail the application's attach
                pass
            return token

        self._attach = attach
        runtime.attach = attach

    def since_last(
        self, examined: Mapping[int, object], alive: Mapping[int, object]
    ) -> dict[int, float]:
        """For the threads in ``examined`` (this tick's) that activated a span since
        they were last examined: the time of the first such activation. ``alive`` holds
        every live thread, so that entries of ended threads are dropped."""
        first = self._first
        if not first:
            return {}
        # list() copies the keys in one step under the GIL: the application's threads
        # add entries concurrently, and iterating the dict itself could see it change.
        threads = list(first)
        taken = {tid: first.pop(tid, 0.0) for tid in threads if tid in examined}
        if len(threads) > len(alive) + 16:
            forget_ended(first, alive)
        return taken

    def reset(self) -> None:
        """Forget everything (a forked child has new threads)."""
        self._first.clear()

    def close(self) -> None:
        """Remove the wrapper, unless someone wrapped ``attach`` after us (then leave the
        harmless wrapper in place rather than break theirs)."""
        attrs = self._runtime.__dict__
        if attrs.get("attach") is self._attach:
            if self._previous is not None:
                attrs["attach"] = self._previous
            else:
                del attrs["attach"]
