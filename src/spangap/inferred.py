"""Inferred spans: each counted operation sent as a span, so the gap shows in the trace.

Opt-in (``inferred_spans=True``). A span per operation goes out through the
application's own TracerProvider, with the call's estimated start and end, flagged
``spangap.inferred=true``, named after its site, with the ``code.*`` attributes and the
cause. A ``context_lost`` operation's span is a child of the span that was left behind,
so it lands inside the right trace; a ``no_span`` operation's is the root of a trace of
its own. Per site at most ``inferred_spans_per_minute`` go out.

The spans are started and ended with explicit times and never made current, so they
can never make spangap's own samples see a span. They are made on a thread of their own
from a bounded queue: an exporter that blocks (a ``SimpleSpanProcessor`` over a slow
network) holds up that thread only, never the sampler or the application; when the
queue is full the newest operations are dropped and counted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from .faults import note
from .operation import CONTEXT_LOST, Operation

TRACER_NAME = "spangap.inferred"
INFERRED_ATTRIBUTE = "spangap.inferred"
_QUEUE = 2048
_MAX_TRACKED_SITES = 10_000


class InferredSpans:
    """Turns operations into spans, at most ``per_minute`` a site, off the sampler."""

    def __init__(self, per_minute: int, counted: Callable[[str, int], None]) -> None:
        """``counted(result, n)``: sent, rate_limited or dropped (the metric)."""
        self._per_minute = per_minute
        self._counted = counted
        self._queue: deque[tuple[Operation, float]] = deque()
        self._budget: dict[str, tuple[float, int]] = {}  # site -> (minute start, spans sent)
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def offer(self, ops: list[Operation]) -> None:
        """Queue the operations the rate allows (on the sampler's thread: no export)."""
        now = time.monotonic()
        wall_offset = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
        chosen = [(op, wall_offset) for op in ops if self._allowed(op.site, now)]
        if len(chosen) < len(ops):
            self._counted("rate_limited", len(ops) - len(chosen))
        if not chosen:
            return
        with self._wake:
            room = max(_QUEUE - len(self._queue), 0)
            if room < len(chosen):
                self._counted("dropped", len(chosen) - room)
                chosen = chosen[:room]
            self._queue.extend(chosen)
            self._wake.notify()
        if self._thread is None and chosen:
            self._thread = threading.Thread(target=self._run, name="spangap-inferred", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued (within ``timeout``) and end the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _allowed(self, site: str, now: float) -> bool:
        start, sent = self._budget.get(site, (now, 0))
        if now - start >= 60.0:
            start, sent = now, 0
        if sent >= self._per_minute:
            return False
        if len(self._budget) >= _MAX_TRACKED_SITES and site not in self._budget:
            self._budget.clear()  # bounded memory: a new minute for everyone
        self._budget[site] = (start, sent + 1)
        return True

    def _run(self) -> None:
        tracer = trace.get_tracer(TRACER_NAME)
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if not self._queue:
                    return
                op, wall_offset = self._queue.popleft()
            try:
                _send(tracer, op, wall_offset)
                self._counted("sent", 1)
            except Exception as exc:  # the application's exporter failed: not ours to raise
                note("inferred_span", exc)


def _send(tracer: trace.Tracer, op: Operation, wall_offset: float) -> None:
    end_ns = int((op.end_time + wall_offset) * 1e9)
    start_ns = end_ns - int(op.duration_s * 1e9)
    module, _, qualname = op.site.partition(":")
    span = tracer.start_span(
        op.site,
        context=_parent(op),
        kind=SpanKind.INTERNAL,
        start_time=start_ns,
        attributes={
            INFERRED_ATTRIBUTE: True,
            "spangap.cause": op.cause,
            "spangap.dark_seconds": op.dark_s,
            "code.function": qualname,
            "code.namespace": module,
            "code.filepath": op.file,
            "code.lineno": op.line,
            "thread.name": op.thread,
        },
    )
    span.end(end_time=end_ns)


def _parent(op: Operation) -> Context:
    """The span left behind, for a ``context_lost`` operation; else no parent (a root)."""
    lost = op.lost_from
    if op.cause != CONTEXT_LOST or not lost:
        return Context()
    try:
        parent = SpanContext(
            trace_id=int(lost["trace_id"], 16),
            span_id=int(lost["span_id"], 16),
            is_remote=False,
            trace_flags=TraceFlags(int(lost.get("trace_flags", "01"), 16)),
        )
    except (KeyError, ValueError):
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())
