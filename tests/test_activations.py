"""The span-activation hook: what it notes, for which threads, and that it leaves the
application's attach alone."""

from __future__ import annotations

import sys
import threading

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from spangap.activations import Activations

VALID = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(0))


def test_notes_the_first_span_activation_per_thread_once() -> None:
    """Once per thread between two looks, with the frames running at that moment."""
    hook = Activations()
    try:
        me = {threading.get_ident(): None}
        assert hook.since_last(me, me) == {}
        token = context.attach(context.Context())  # a Context with no span: not noted
        context.detach(token)
        assert hook.since_last(me, me) == {}
        with trace.use_span(NonRecordingSpan(VALID)):  # sampled out, but active
            pass
        with trace.use_span(NonRecordingSpan(VALID)):
            pass
        first = hook.since_last(me, me)
        assert list(first) == list(me)
        running = first[threading.get_ident()]  # the calls running at the first one
        assert sys._getframe() in running
        assert hook.since_last(me, me) == {}  # taken as seen
    finally:
        hook.close()


def test_other_threads_are_kept_until_examined_and_dropped_when_they_end() -> None:
    hook = Activations()
    try:
        done: list[int] = []

        def worker() -> None:
            with trace.use_span(NonRecordingSpan(VALID)):
                done.append(threading.get_ident())

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        me = {threading.get_ident(): None}
        assert hook.since_last(me, me) == {}  # the worker was not examined
        worker_id = {done[0]: None}
        assert list(hook.since_last(worker_id, worker_id)) == [done[0]]
    finally:
        hook.close()


def test_close_restores_attach_and_a_failing_check_never_reaches_the_caller() -> None:
    class Hostile(dict[str, object]):
        def get(self, *args: object) -> object:
            raise ValueError("a Context that fails when read")

    runtime = context._RUNTIME_CONTEXT  # type: ignore[attr-defined]
    hook = Activations()
    try:
        token = context.attach(Hostile())  # type: ignore[arg-type]
        assert isinstance(context.get_current(), Hostile)  # attached as given
        context.detach(token)
    finally:
        hook.close()
    assert "attach" not in vars(runtime)


def test_a_wrapper_that_close_must_leave_in_place_notes_nothing() -> None:
    """When someone wrapped ``attach`` after us, close() leaves our wrapper under theirs;
    it then notes nothing, so no frames pile up for threads nobody examines."""
    runtime = context._RUNTIME_CONTEXT  # type: ignore[attr-defined]
    hook = Activations()
    ours = runtime.attach
    runtime.attach = lambda ctx: ours(ctx)  # another library wraps after us
    try:
        hook.close()
        with trace.use_span(NonRecordingSpan(VALID)):
            pass
        me = {threading.get_ident(): None}
        assert hook.since_last(me, me) == {}
    finally:
        del vars(runtime)["attach"]
