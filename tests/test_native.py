"""The C extension reads the context each thread is executing, including Context.run."""

from __future__ import annotations

import contextvars
import threading

import pytest

from spangap import _native
from spangap.spanstate import HookReader, NativeReader

VAR: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("VAR")


def test_spanned_threads_judges_each_thread_in_its_executing_context() -> None:
    """Each thread is judged by the item in the context it is executing: its own, or one
    entered with Context.run. Only the threads asked about are answered, and the
    answer for an unchanged item comes from the cache."""
    VAR.set({"span": "main"})
    ready, release = threading.Barrier(4), threading.Event()
    ids: dict[str, int] = {}

    def plain() -> None:
        VAR.set({"span": "plain"})
        ids["plain"] = threading.get_ident()
        ready.wait()
        release.wait()

    def entered() -> None:
        ids["entered"] = threading.get_ident()
        ready.wait()
        release.wait()

    def without() -> None:
        VAR.set({})  # a context with no item
        ids["without"] = threading.get_ident()
        ready.wait()
        release.wait()

    carried = contextvars.copy_context()
    carried.run(VAR.set, {"span": "carried"})
    threads = [
        threading.Thread(target=plain),
        threading.Thread(target=carried.run, args=(entered,)),
        threading.Thread(target=without),
    ]
    for t in threads:
        t.start()
    ready.wait()
    asked: list[str] = []

    def is_active(item: object) -> bool:
        asked.append(str(item))
        return item in ("carried", "main")

    cache: dict[int, tuple[object, bool]] = {}
    try:
        wanted = dict.fromkeys([threading.get_ident(), *ids.values()])
        first = _native.spanned_threads(VAR, wanted, "span", cache, is_active)  # type: ignore[arg-type]
        again = _native.spanned_threads(VAR, wanted, "span", cache, is_active)  # type: ignore[arg-type]
        only_plain = _native.spanned_threads(VAR, {ids["plain"]: None}, "span", cache, is_active)  # type: ignore[arg-type]
    finally:
        release.set()
        for t in threads:
            t.join()
    assert first == {threading.get_ident(), ids["entered"]}
    assert again == first and only_plain == set()
    assert sorted(asked) == ["carried", "main", "plain"]  # once each, then cached


def test_spanned_threads_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        _native.spanned_threads("not a var", {}, "span", {}, bool)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _native.spanned_threads(VAR, {}, 1, {}, bool)  # type: ignore[arg-type]


def test_readers_agree_on_attach_in_the_thread_itself() -> None:
    from gt_workloads import TRACER

    native, hook = NativeReader(), HookReader()
    try:
        me = threading.get_ident()
        assert me not in native.spanned_threads([me])
        with TRACER.start_as_current_span("x"):
            assert me in native.spanned_threads([me])
            assert me in hook.spanned_threads([me])
        assert me not in native.spanned_threads([me])
        assert me not in hook.spanned_threads([me])
    finally:
        hook.close()
    from opentelemetry import context

    assert "attach" not in context._RUNTIME_CONTEXT.__dict__  # the hook was removed


def test_a_thread_left_out_of_a_tick_keeps_its_span_in_the_fallback_reader() -> None:
    """With a stride, a tick asks about some threads only; the fallback reader must
    forget the threads that ended, not the live ones that were merely not asked about
    (it learns a thread's context only when that thread attaches or detaches)."""
    from gt_workloads import TRACER

    hook = HookReader()
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with TRACER.start_as_current_span("long"):
            inside.set()
            release.wait()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        inside.wait()
        me, other = threading.get_ident(), thread.ident
        assert other is not None
        alive = {me: None, other: None}
        assert hook.spanned_threads([me], alive) == set()  # this tick: not the worker
        assert hook.spanned_threads([other], alive) == {other}  # next tick: still spanned
    finally:
        release.set()
        thread.join()
        hook.close()


def test_opentelemetry_spans_are_answered_from_their_span_context_without_being_kept() -> None:
    """SDK spans and NonRecordingSpans are judged by their span context's validity in C:
    is_active is not called and the cache does not keep them (so a span ends its life
    on the application's thread). A span of another class still goes to is_active."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext
    from opentelemetry.trace.propagation import _SPAN_KEY

    from spangap.spanstate import plain_span_types, runtime_context_var

    class OwnSpan(NonRecordingSpan):  # a subclass: not one of the plain types
        pass

    plain = plain_span_types()
    assert plain is not None
    var = runtime_context_var()
    valid = SpanContext(trace_id=1, span_id=2, is_remote=False)
    me = threading.get_ident()
    asked: list[object] = []

    def is_active(span: object) -> bool:
        asked.append(span)
        return True

    def answer(span: object) -> tuple[bool, dict[int, tuple[object, bool]]]:
        token = var.set({_SPAN_KEY: span})
        cache: dict[int, tuple[object, bool]] = {}
        try:
            found = _native.spanned_threads(var, {me: None}, _SPAN_KEY, cache, is_active, plain)
        finally:
            var.reset(token)
        return me in found, cache

    sdk_span = TracerProvider().get_tracer("t").start_span("s")
    assert answer(sdk_span) == (True, {})
    assert answer(NonRecordingSpan(valid)) == (True, {})  # sampled out: active
    assert answer(INVALID_SPAN) == (False, {})
    assert asked == []
    own = OwnSpan(valid)
    assert answer(own) == (True, {me: (own, True)})
    assert asked == [own]
