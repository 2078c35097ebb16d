"""The C extension reads the context each thread is executing, including Context.run."""

from __future__ import annotations

import contextvars
import threading

import pytest

from spangap import _native
from spangap.spanstate import HookReader, NativeReader

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR")


def test_thread_values_sees_each_threads_executing_context() -> None:
    VAR.set("main")
    ready, release = threading.Barrier(3), threading.Event()
    ids: dict[str, int] = {}

    def plain() -> None:
        VAR.set("plain")
        ids["plain"] = threading.get_ident()
        ready.wait()
        release.wait()

    def entered() -> None:
        ids["entered"] = threading.get_ident()
        ready.wait()
        release.wait()

    carried = contextvars.copy_context()
    carried.run(VAR.set, "carried")
    threads = [
        threading.Thread(target=plain),
        threading.Thread(target=carried.run, args=(entered,)),
    ]
    for t in threads:
        t.start()
    ready.wait()
    try:
        values = _native.thread_values(VAR)
        contexts = _native.thread_contexts()
    finally:
        release.set()
        for t in threads:
            t.join()
    assert values[threading.get_ident()] == "main"
    assert values[ids["plain"]] == "plain"
    assert values[ids["entered"]] == "carried"
    assert contexts[ids["entered"]] is carried


def test_thread_values_rejects_non_context_vars() -> None:
    with pytest.raises(TypeError):
        _native.thread_values("not a var")  # type: ignore[arg-type]


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
