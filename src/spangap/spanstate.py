"""Which threads have an active span, judged in the context each is executing.

SPEC "active span": ``trace.get_current_span()`` in the executing context returns a span
whose span context is valid (a sampled-out span counts). :class:`NativeReader` reads
every thread's ``PyThreadState.context`` (``c/_native.c``) and sees ``Context.run``;
:class:`HookReader`, the pure-Python fallback, remembers each thread's last attached
context and has blind spots (docs/how-it-works.md, "The pure-Python fallback").
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Container, Iterable
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry.trace import Span
from opentelemetry.trace.propagation import _SPAN_KEY

from .faults import note


class SpanStateReader(Protocol):
    """Answers, for a set of threads, which of them execute under an active span."""

    name: str

    def spanned_threads(
        self, thread_ids: Iterable[int], alive: Collection[int] | None = None
    ) -> set[int]:
        """Ids, among ``thread_ids``, whose executing context has an active span.
        ``alive`` holds every live thread (default: ``thread_ids``); what the reader
        keeps about other threads is dropped, since their ids may be reused."""
        ...

    def close(self) -> None:
        """Undo anything installed into the process."""
        ...

    def reset(self) -> None:
        """Forget per-thread state, keeping anything installed."""
        ...


def span_is_active(otel_ctx: object) -> bool:
    """True when an OpenTelemetry ``Context`` holds a span with a valid span context."""
    return isinstance(otel_ctx, dict) and span_is_valid(otel_ctx.get(_SPAN_KEY))


def span_is_valid(span: object) -> bool:
    """True for a span with a valid span context. A span whose ``get_span_context()``
    raises (a broken custom span) counts as valid: the application made it current, so
    its work is instrumented, if badly; the error is counted (faults.py)."""
    try:
        return isinstance(span, Span) and bool(span.get_span_context().is_valid)
    except Exception as exc:
        note("span_read", exc)
        return True


def forget_ended(table: dict[int, Any], alive: Container[int]) -> None:
    """Drop the entries of threads not in ``alive`` (ended: their ids may be reused).
    The keys are copied in one step first, because the application's threads may add
    entries meanwhile."""
    for tid in list(table):
        if tid not in alive:
            table.pop(tid, None)


def active_span_of(otel_ctx: object) -> Span | None:
    """The active span held by an OpenTelemetry ``Context``, or None."""
    if not isinstance(otel_ctx, dict):
        return None
    span = otel_ctx.get(_SPAN_KEY)
    return span if isinstance(span, Span) and span_is_valid(span) else None


def plain_span_types() -> tuple[tuple[type, ...], type] | None:
    """(span types, SpanContext) for the native reader's fast path: OpenTelemetry's own
    span classes (the SDK's and ``NonRecordingSpan``), for each of which
    ``get_span_context()`` returns ``self._context``, as long as nothing customises their
    attribute access, so reading ``_context`` from C runs no Python code."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    candidates: list[type] = [NonRecordingSpan]
    try:
        from opentelemetry.sdk.trace import _Span
    except ImportError:
        pass
    else:
        candidates.append(_Span)
    plain = tuple(
        t
        for t in candidates
        if getattr(t, "__getattribute__", None) is object.__getattribute__
        and not any("_context" in vars(c) or "__getattr__" in vars(c) for c in t.__mro__)
        and _returns_own_context(t)
    )
    return (plain, SpanContext) if plain and issubclass(SpanContext, tuple) else None


def _returns_own_context(span_type: type) -> bool:
    """Whether ``get_span_context`` of ``span_type`` is the plain ``return self._context``
    (checked on a bare instance that has only that attribute)."""
    probe: Any = object.__new__(span_type)
    marker = object()
    try:
        probe._context = marker
        return bool(probe.get_span_context() is marker)
    except Exception:
        return False


def runtime_context_var() -> Any:
    """The ContextVar in which OpenTelemetry keeps its current Context, or None."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    return getattr(runtime, "_current_context", None)


class NativeReader:
    """Exact reader: each thread's ``PyThreadState.context``, via the C extension."""

    name = "native"

    def __init__(self) -> None:
        from . import _native

        var = runtime_context_var()
        if var is None:
            raise RuntimeError("OpenTelemetry's runtime context is not the contextvars one")
        self._spanned = _native.spanned_threads
        self._var = var
        self._plain = plain_span_types()
        # Per thread: the last span seen in its Context and the answer for it. A span's
        # span context never changes, so the same object always gives the same answer;
        # the reference we hold keeps its id from being reused.
        self._last: dict[int, tuple[object, bool]] = {}

    def spanned_threads(
        self, thread_ids: Iterable[int], alive: Collection[int] | None = None
    ) -> set[int]:
        ids = thread_ids if isinstance(thread_ids, dict) else dict.fromkeys(thread_ids)
        last = self._last
        alive_ids = ids if alive is None else alive
        if len(last) > len(alive_ids) + 16:  # a cache: pruned once ended threads pile up
            forget_ended(last, alive_ids)
        return self._spanned(self._var, ids, _SPAN_KEY, last, span_is_valid, self._plain)

    def reset(self) -> None:
        """Forget per-thread answers (a forked child has new threads)."""
        self._last.clear()

    def close(self) -> None:
        self._last.clear()


class HookReader:
    """Fallback reader: remembers the context each thread last attached or detached to.

    The wrappers run on the application's own thread inside ``context.attach`` and
    ``context.detach``; they only read the resulting current context and store it in a
    dict, and can neither raise into the caller nor change what it attaches.
    """

    name = "python"

    def __init__(self) -> None:
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if runtime is None:
            raise RuntimeError("OpenTelemetry's runtime context is not available")
        self._runtime = runtime
        self._by_thread: dict[int, object] = {}
        self._orig_attach = runtime.attach
        self._orig_detach = runtime.detach
        by_thread = self._by_thread
        get_ident = threading.get_ident
        get_current = runtime.get_current
        orig_attach, orig_detach = self._orig_attach, self._orig_detach

        def attach(ctx: Any) -> Any:
            token = orig_attach(ctx)
            try:
                by_thread[get_ident()] = get_current()
            except Exception as exc:
                note("attach_hook", exc)
            return token

        def detach(token: Any) -> None:
            orig_detach(token)
            try:
                by_thread[get_ident()] = get_current()
            except Exception as exc:
                note("attach_hook", exc)

        self._attach, self._detach = attach, detach
        runtime.attach = attach
        runtime.detach = detach

    def reset(self) -> None:
        """Forget per-thread answers (a forked child has new threads)."""
        self._by_thread.clear()

    def spanned_threads(
        self, thread_ids: Iterable[int], alive: Collection[int] | None = None
    ) -> set[int]:
        by_thread = self._by_thread
        ids = set(thread_ids)
        # At every tick: a thread that reuses an ended one's id must not inherit its
        # context. Only ended threads: a live one is known again only at its next attach.
        forget_ended(by_thread, ids if alive is None else alive)
        return {tid for tid in ids if span_is_active(by_thread.get(tid))}

    def close(self) -> None:
        # Restore only if nobody wrapped the methods after us; otherwise leave the
        # (harmless) wrappers in place rather than break the other wrapper.
        attrs = self._runtime.__dict__
        if attrs.get("attach") is self._attach and attrs.get("detach") is self._detach:
            del attrs["attach"], attrs["detach"]


def native_available() -> bool:
    try:
        from . import _native  # noqa: F401
    except ImportError:
        return False
    return runtime_context_var() is not None


def make_reader(choice: str) -> SpanStateReader:
    """Build the reader for the ``context_reader`` option: "auto", "native" or "python"."""
    if choice == "python":
        return HookReader()
    if choice == "native":
        return NativeReader()
    return NativeReader() if native_available() else HookReader()
