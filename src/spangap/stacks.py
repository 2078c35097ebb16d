"""Every thread's stack without the GIL: opening the native reader (``c/_stacks.c``).

The reader is used only where it is known to read this interpreter right: a CPython it
was built for, ``process_vm_readv`` allowed on this process, and a walk of the calling
thread equal to what ``sys._getframe()`` shows. :func:`open_reader` says which check
failed, so that the caller can name the reader in use (or why there is none) in its log.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING

from opentelemetry.trace import INVALID_SPAN
from opentelemetry.trace.propagation import _SPAN_KEY

from .spanstate import runtime_context_var

if TYPE_CHECKING:
    from ._stacks import Reader


def open_reader() -> tuple[Reader | None, str]:
    """(a checked reader, "native") or (None, why there is none). The reader also finds
    the span in each thread's executing context when OpenTelemetry keeps its context
    in a ContextVar (its default runtime context)."""
    try:
        from . import _stacks
    except ImportError:
        return None, "spangap._stacks is not built for this interpreter"
    refused = _stacks.usable()
    if refused is not None:
        return None, refused
    var = runtime_context_var()
    if var is None:
        reader = _stacks.Reader()
    else:
        reader = _stacks.Reader(var=var, span_key=_SPAN_KEY, invalid_span=INVALID_SPAN)
    if not walks_like_getframe(reader):
        return None, "the native walk of this thread differs from sys._getframe()"
    if var is not None and not finds_spans_like_opentelemetry(reader):
        return None, "the native span lookup differs from trace.get_current_span()"
    return reader, "native"


def walks_like_getframe(reader: Reader) -> bool:
    """Whether the reader's walk of this thread shows the frames of ``sys._getframe()``:
    the same code objects from here to the root, at the same instructions (but the
    innermost, which has moved on since the walk)."""
    from ._stacks import code_address

    stacks, _, _ = reader.walk(release_gil=False)
    walked = stacks.get(threading.get_ident())
    expected = _chain(sys._getframe(), code_address)
    if not walked or len(walked) != len(expected):
        return False
    return bool(walked[0][0] == expected[0][0] and walked[1:] == expected[1:])


def finds_spans_like_opentelemetry(reader: Reader) -> bool:
    """Whether the reader finds in this thread's context the span OpenTelemetry returns:
    none, then a span made current here, then none again, with enough other context
    variables set that the context's mapping has nodes of more than one kind."""
    import contextvars

    from opentelemetry import trace

    fillers: list[contextvars.ContextVar[int]] = [
        contextvars.ContextVar(f"spangap_check_{i}") for i in range(40)
    ]

    def check() -> bool:
        for var in fillers:
            var.set(0)
        me = threading.get_ident()
        _, spans, _ = reader.walk(release_gil=False)
        if spans.get(me) != 0:
            return False
        span = trace.NonRecordingSpan(trace.SpanContext(1, 1, False))
        with trace.use_span(span):
            _, spans, _ = reader.walk(release_gil=False)
            if spans.get(me) != id(trace.get_current_span()):
                return False
        _, spans, _ = reader.walk(release_gil=False)
        return spans.get(me) == 0

    return bool(contextvars.copy_context().run(check))


def _chain(
    frame: FrameType | None, code_address: Callable[[CodeType], int]
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while frame is not None:
        out.append((code_address(frame.f_code), frame.f_lasti))
        frame = frame.f_back
    return out
