"""The native liveness watcher: it follows calls without the GIL, and the tracker uses it
to find where a call really ended when its last sample came early."""

from __future__ import annotations

import os
import sys
import threading
import time
from types import FrameType

import pytest

from spangap.liveness import make_watcher, native_liveness_available
from spangap.operation import Operation
from spangap.scope import Scope
from spangap.tracker import CallTracker

pytestmark = pytest.mark.skipif(
    not native_liveness_available() and "CI" not in os.environ,
    reason="spangap._liveness is not built for this interpreter",
)


def test_the_watcher_sees_a_call_running_and_then_returned() -> None:
    watcher = make_watcher("native", 0.002)
    assert watcher is not None
    marks: dict[str, float] = {}
    slots: list[int] = []

    def call() -> None:
        slots.append(watcher.watch(sys._getframe(), time.perf_counter()))
        marks["running"] = time.perf_counter()
        # Return only after a whole watcher round began after the mark: its CPU clock,
        # updated at the end of every round, has changed twice since. Rounds run
        # without the GIL these sleeps free; a busy machine may delay them.
        for _ in range(2):
            seen = watcher.cpu_seconds
            deadline = time.perf_counter() + 30
            while watcher.cpu_seconds == seen and time.perf_counter() < deadline:
                time.sleep(0.002)
        marks["returning"] = time.perf_counter()

    worker = threading.Thread(target=call)
    worker.start()
    worker.join()
    after = time.perf_counter()
    time.sleep(0.02)  # let a round notice the return
    last_alive, ended_at = watcher.ended(slots[0])
    watcher.stop()
    assert marks["running"] <= last_alive <= marks["returning"]
    assert marks["returning"] <= ended_at or ended_at == 0.0
    assert ended_at <= time.perf_counter() and last_alive < after


def test_a_frame_that_already_returned_is_ended_at_once() -> None:
    watcher = make_watcher("native", 0.002)
    assert watcher is not None

    def finished() -> FrameType:
        return sys._getframe()

    slot = watcher.watch(finished(), 1.5)
    assert watcher.ended(slot) == (1.5, 1.5)
    with pytest.raises(KeyError):
        watcher.ended(slot)  # a slot is given back once
    watcher.stop()


def test_slots_are_reused_and_cleared() -> None:
    watcher = make_watcher("native", 0.002)
    assert watcher is not None
    frame = sys._getframe()
    slots = [watcher.watch(frame, 0.0) for _ in range(100)]
    assert watcher.watched == 100
    for slot in slots[:50]:
        watcher.ended(slot)
    again = [watcher.watch(frame, 0.0) for _ in range(50)]
    assert set(again) == set(slots[:50])  # freed slots are used again
    watcher.clear()
    assert watcher.watched == 0
    watcher.stop()


def test_generator_and_coroutine_code_is_not_watched() -> None:
    """Their frames stay "running" while suspended, so the watcher cannot follow them."""

    def gen():  # type: ignore[no-untyped-def]
        yield 1

    async def coro() -> None:
        pass

    scope = Scope()
    assert scope.info(gen.__code__, __name__).resumable
    assert scope.info(coro.__code__, __name__).resumable
    assert not scope.info(test_slots_are_reused_and_cleared.__code__, __name__).resumable


@pytest.mark.parametrize("mode", ["native", "sampled"])
def test_a_call_seen_by_one_sample_counts_only_when_the_watcher_followed_it(mode: str) -> None:
    """A 150 ms call that a single sample saw (the situation behind CPU-bound threads,
    where the sampler gets the GIL late): samples alone cannot tell it from a 2 ms call
    and must not count it; the watcher saw it run to its end, so it counts, once."""
    threshold = 0.010
    watcher = make_watcher(mode, 0.002)
    found: list[Operation] = []
    tracker = CallTracker(
        Scope(include=(__name__,)),
        threshold,
        0.005,
        emit=found.extend,
        thread_name=lambda tid: "worker",
        watcher=watcher,
    )
    inside, release = threading.Event(), threading.Event()

    def long_dark_call() -> None:
        inside.set()
        while not release.is_set():  # busy, not idle, when the sample is taken
            pass
        time.sleep(0.15)

    worker = threading.Thread(target=long_dark_call)
    worker.start()
    inside.wait()
    tid = worker.ident
    assert tid is not None
    tracker.observe({tid: sys._current_frames()[tid]}, set(), time.perf_counter())
    release.set()
    worker.join()
    time.sleep(0.02)
    tracker.observe({}, set(), time.perf_counter(), alive={tid: None})
    tracker.observe({}, set(), time.perf_counter())  # the thread is gone: calls end
    if watcher is not None:
        watcher.stop()
    tracker.flush()
    counted = [op for op in found if op.site.endswith("long_dark_call")]
    if mode == "native":
        assert len(counted) == 1 and counted[0].duration_s >= threshold
    else:
        assert counted == []


def test_sleep_looks_once_at_the_calls_watched_since_the_last_sleep() -> None:
    watcher = make_watcher("native", 1.0)  # its own rounds: none within this test
    assert watcher is not None
    inside, release = threading.Event(), threading.Event()
    progress = [0]
    frames: list[FrameType] = []

    def call() -> None:
        frames.append(sys._getframe())
        inside.set()
        while not release.is_set():
            progress[0] += 1

    worker = threading.Thread(target=call)
    worker.start()
    inside.wait()
    first = watcher.watch(frames[0], 1.0)
    start = time.perf_counter()
    before = progress[0]
    watcher.sleep(start + 0.02, start + 0.04)
    woke = time.perf_counter()
    moved = progress[0] - before
    second = watcher.watch(frames[0], 2.0)
    watcher.sleep(start + 0.06, start + 0.05)  # the look would come after: none
    third = watcher.watch(frames[0], 3.0)
    again = time.perf_counter()
    watcher.sleep(again + 0.01, again + 0.02)  # looks at the third only
    release.set()
    worker.join()
    times = [watcher.ended(slot) for slot in (first, second, third)]
    watcher.stop()
    assert woke >= start + 0.04  # slept until the end
    assert moved > 0  # ... with the GIL released: the worker ran meanwhile
    assert start + 0.02 <= times[0][0] < woke  # one look, at its time, saw the call
    assert times[1] == (2.0, 0.0)  # no look: the next tick came first
    assert times[2][0] >= again + 0.01  # the new call was looked at ...
    assert times[0][0] < woke  # ... and the first was not looked at again


@pytest.mark.parametrize("native", [False, True])
def test_the_look_after_a_sample_tells_a_long_call_from_a_short_one(native: bool) -> None:
    """Samples far apart and a watcher whose own rounds are rarer still: a call seen by
    one sample counts when the look the sampler asks for, look_after_s later, found it
    still running, and not without that look (it might have been a 1 ms call)."""
    counts = {}
    for look in (True, False):
        watcher = make_watcher("native", 1.0)
        assert watcher is not None
        found: list[Operation] = []
        tracker = CallTracker(
            Scope(include=(__name__,)),
            0.010,
            0.005,
            emit=found.extend,
            thread_name=lambda tid: "worker",
            watcher=watcher,
            native=native,
        )
        inside, release = threading.Event(), threading.Event()

        def long_dark_call(inside: threading.Event, release: threading.Event) -> None:
            inside.set()
            while not release.is_set():  # busy, not idle, when the sample is taken
                time.sleep(0)

        worker = threading.Thread(target=long_dark_call, args=(inside, release))
        worker.start()
        inside.wait()
        tid = worker.ident
        assert tid is not None
        seen = time.perf_counter()
        tracker.observe({tid: sys._current_frames()[tid]}, set(), seen)
        look_after = tracker.look_after_s(0.005)  # the interval: a thread's first sample
        if look:
            watcher.sleep(seen + look_after, seen + look_after + 0.001)
        else:
            time.sleep(look_after + 0.001)
        release.set()
        worker.join()
        time.sleep(0.02)
        tracker.observe({}, set(), time.perf_counter())  # the thread is gone: calls end
        watcher.stop()
        tracker.flush()
        counts[look] = len([op for op in found if op.site.endswith("long_dark_call")])
    assert counts == {True: 1, False: 0}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking beside the watcher's running thread is the case under test (3.12 warns of it).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_watcher_copied_by_fork_is_left_to_its_parent() -> None:
    """In a forked child the watcher's thread and lock belong to the parent: the child's
    copy refuses new calls, sleeps without looking, and goes away without waiting for a
    thread that is not there; the parent's watcher goes on working."""
    watcher = make_watcher("native", 0.002)
    assert watcher is not None
    frame = sys._getframe()
    slot = watcher.watch(frame, time.perf_counter())
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            try:
                watcher.watch(frame, time.perf_counter())
            except RuntimeError as exc:
                if "parent" in str(exc):
                    status = 2
            if status == 2:
                now = time.perf_counter()
                watcher.sleep(now + 0.001, now + 0.002)
                now = time.perf_counter()
                since, held = watcher.frozen_since(now)  # the log is the parent's
                watcher.stop()
                status = 0 if since >= now and not held else 3
        finally:
            os._exit(status)
    deadline = time.perf_counter() + 30  # a child stuck on the parent's lock fails, not hangs
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.perf_counter() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
    alive, ended = watcher.ended(slot)  # the parent's copy still follows its call
    assert alive > 0 and ended == 0.0
    watcher.stop()


def test_frozen_since_never_dates_a_stack_before_its_thread_last_ran_python() -> None:
    """Ticks taken like the sampler's (sleep in the watcher, take the GIL back, read the
    threads, then ask frozen_since) beside two threads running Python flat out and one
    that sleeps: no thread is ever said to be unchanged since before a moment it was
    running Python, and the sleeping one is known unchanged from before the tick."""
    watcher = make_watcher("native", 0.005)
    assert watcher is not None
    last_ran: dict[int, float] = {}
    stop = threading.Event()

    def busy() -> None:
        me = threading.get_ident()
        while not stop.is_set():
            last_ran[me] = time.perf_counter()

    def sleeper() -> None:
        me = threading.get_ident()
        while not stop.is_set():
            last_ran[me] = time.perf_counter()
            time.sleep(0.05)

    threads = [threading.Thread(target=t) for t in (busy, busy, sleeper)]
    for thread in threads:
        thread.start()
    checked = 0
    sleeper_known_earlier = False
    try:
        deadline = time.perf_counter()
        for _ in range(150):
            deadline += 0.005
            watcher.sleep(0.0, deadline)
            now = time.perf_counter()
            ran = dict(last_ran)  # what the threads did before this moment
            since_all, held = watcher.frozen_since(now)
            for tid, last in ran.items():
                since = held.get(tid, since_all)
                if since < now:
                    checked += 1
                    assert since >= last, "dated before the thread last ran Python"
            sleeper_known_earlier |= held.get(threads[2].ident or 0, since_all) < now
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        watcher.stop()
    assert checked > 50
    assert sleeper_known_earlier
