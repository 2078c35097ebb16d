"""The span-activation hook: what it notes, for which threads, and that it leaves the
application's attach alone."""

from __future__ import annotations

import sys
import threading
import time

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from spangap.activations import Activations

VALID = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(0))


def test_notes_the_first_span_activation_per_thread_once() -> None:
    """Once per thread between two looks, with the frames running at that moment."""
    hook = Activations()
    try:
        me = {threading.get_ident(): sys._getframe()}  # the tick's stack: this frame up
        assert hook.since_last(me, me, hook.count()) == {}
        token = context.attach(context.Context())  # a Context with no span: not noted
        context.detach(token)
        assert hook.since_last(me, me, hook.count()) == {}
        with trace.use_span(NonRecordingSpan(VALID)):  # sampled out, but active
            pass
        with trace.use_span(NonRecordingSpan(VALID)):
            pass
        first = hook.since_last(me, me, hook.count())
        assert list(first) == list(me)
        running = first[threading.get_ident()]  # the calls running at the first one
        assert sys._getframe() in running
        assert hook.since_last(me, me, hook.count()) == {}  # taken as seen
    finally:
        hook.close()


def test_other_threads_are_kept_until_examined_and_given_when_they_end() -> None:
    """A live thread's notes wait for the tick that examines it; an ended thread's are
    given at the next tick whatever it examines (its calls end there)."""
    hook = Activations()
    try:
        ids: list[int] = []
        release = threading.Event()

        def worker() -> None:
            sys._getframe()  # a frame the sampler follows has a frame object
            with trace.use_span(NonRecordingSpan(VALID)):
                ids.append(threading.get_ident())
            release.wait()

        thread = threading.Thread(target=worker)
        thread.start()
        while not ids:
            time.sleep(0.001)
        me = {threading.get_ident(): sys._getframe()}
        both = {**me, ids[0]: None}
        assert hook.since_last(me, both, hook.count()) == {}  # alive, not examined: kept
        assert list(hook.since_last({ids[0]: None}, both, hook.count())) == [ids[0]]
        with trace.use_span(NonRecordingSpan(VALID)):  # noted again ...
            pass
        thread2 = threading.Thread(target=worker)
        ids.clear()
        thread2.start()
        while not ids:
            time.sleep(0.001)
        release.set()
        thread.join()
        thread2.join()
        ended = hook.since_last(me, me, hook.count())  # and the ended worker's with mine
        assert set(ended) == {threading.get_ident(), ids[0]}
        assert any(f.f_code is worker.__code__ for f in ended[ids[0]])
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
        assert hook.since_last(me, me, hook.count()) == {}
    finally:
        del vars(runtime)["attach"]
