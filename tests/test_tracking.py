"""The C thread path (``_tracking.c``) against the reference (``tracker.py``).

Both trackers are fed exactly the same samples (the same frame objects of a real thread
held at known points, the same span state, the same times) and must report the same
operations, field for field, and the same coverage. The ground-truth tests then run
the whole detector on each path (test_ground_truth.py).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import pytest

from spangap.operation import Operation
from spangap.scope import Scope
from spangap.tracker import CallTracker, native_tracking_available

pytestmark = pytest.mark.skipif(
    not native_tracking_available() and "CI" not in os.environ,
    reason="spangap._tracking is not built for this interpreter",
)

THRESHOLD = 0.010
INTERVAL = 0.005


def leaf_wait(gate: threading.Lock) -> None:
    """Blocks on a lock the test holds: a dark, non-idle wait in application code."""
    gate.acquire()
    gate.release()


def middle(gates: list[threading.Lock]) -> None:
    for gate in gates:
        leaf_wait(gate)


def outer(gates: list[threading.Lock], tail: threading.Lock) -> None:
    middle(gates)
    leaf_wait(tail)


def generator_body(gates: list[threading.Lock]) -> Iterator[None]:
    for gate in gates:
        leaf_wait(gate)
        yield


def drive(steps: Iterator[None], times: int) -> None:
    for _ in range(times):
        next(steps, None)


def resume_elsewhere(steps: Iterator[None]) -> None:
    next(steps, None)


def outer_with_generator(gates: list[threading.Lock], tail: threading.Lock) -> None:
    """One generator, resumed twice by one caller, then by another."""
    steps = generator_body(gates)
    drive(steps, 2)
    resume_elsewhere(steps)
    leaf_wait(tail)


class Worker:
    """A real thread whose stack the test moves from one known state to the next."""

    def __init__(self, steps: int, target: Callable[..., None] = outer) -> None:
        self.gates = [threading.Lock() for _ in range(steps)]
        self.tail = threading.Lock()
        for gate in [*self.gates, self.tail]:
            gate.acquire()
        self.thread = threading.Thread(target=target, args=(self.gates, self.tail))
        self.thread.start()
        assert self.thread.ident is not None
        self.tid = self.thread.ident
        self.step = 0
        self.wait_blocked(self.gates[0])

    def leaf(self) -> FrameType:
        return sys._current_frames()[self.tid]

    def wait_blocked(self, gate: threading.Lock) -> None:
        """Until the thread sits in ``leaf_wait(gate)`` and its position stops moving."""
        last = None
        while True:
            frame = sys._current_frames().get(self.tid)
            here = None
            if (
                frame is not None
                and frame.f_code is leaf_wait.__code__
                and frame.f_locals.get("gate") is gate
            ):
                here = (frame, frame.f_lasti)
            if here is not None and here == last:
                return
            last = here
            time.sleep(0.005)

    def advance(self) -> None:
        """Let the thread go on to its next gate (or to the tail, then to its end)."""
        gates = [*self.gates, self.tail]
        gates[self.step].release()
        self.step += 1
        if self.step < len(gates):
            self.wait_blocked(gates[self.step])
        else:
            self.thread.join()


class Pair:
    """The reference tracker and the C one, fed the same samples."""

    def __init__(self, lost: dict[int, dict[str, str]]) -> None:
        self.found: dict[str, list[Operation]] = {"python": [], "native": []}
        scope = Scope(include=(__name__,))
        self.trackers = {
            mode: CallTracker(
                scope,
                THRESHOLD,
                INTERVAL,
                emit=self.found[mode].extend,
                thread_name=lambda tid: "worker",
                lost_context=lost.get,
                native=mode == "native",
            )
            for mode in self.found
        }

    def sample(
        self,
        frames: dict[int, FrameType],
        spanned: set[int],
        now: float,
        frozen: tuple[float, dict[int, float]] | None = None,
    ) -> None:
        for tracker in self.trackers.values():
            tracker.observe(frames, spanned, now, alive=frames, frozen=frozen)
            tracker.flush()

    def coverage(self) -> dict[str, tuple[float, float]]:
        return {mode: t.take_coverage() for mode, t in self.trackers.items()}


@contextmanager
def worker_and_pair(
    steps: int, lost: dict[int, dict[str, str]], target: Callable[..., None] = outer
) -> Iterator[tuple[Worker, Pair]]:
    worker = Worker(steps, target)
    try:
        yield worker, Pair(lost)
    finally:
        for gate in [*worker.gates, worker.tail]:
            if gate.locked():
                gate.release()
        worker.thread.join()


def run_script(
    worker: Worker, pair: Pair, script: list[tuple[int, bool]], extra: Callable[[int], None]
) -> None:
    """``script``: per step, how many samples 5 ms apart and whether they are spanned."""
    now = 100.0
    for step, (samples, spanned) in enumerate(script):
        extra(step)
        for _ in range(samples):
            frames = {worker.tid: worker.leaf()}
            pair.sample(frames, {worker.tid} if spanned else set(), now)
            now += INTERVAL
        worker.advance()
    pair.sample({}, set(), now)  # the thread has ended: everything completes


def test_both_paths_report_the_same_operations() -> None:
    """Long dark waits (counted), one too short to count, a spanned stretch (nothing on
    the stack may count), a hand-off that lost its span, nested calls whose self time
    excludes counted children, and the thread's end completing the rest."""
    lost: dict[int, dict[str, str]] = {}
    with worker_and_pair(5, lost) as (worker, pair):
        coverage: list[dict[str, tuple[float, float]]] = []

        def extra(step: int) -> None:
            coverage.append(pair.coverage())
            if step == 3:  # the next new calls were handed over without their span
                lost[worker.tid] = {"trace_id": "ab" * 16, "span_id": "cd" * 8}

        # gate 0: 4 samples (counted); gate 1: 1 sample (too short); gate 2: spanned;
        # gate 3: 3 samples after the span; gate 4 and the tail: 3 samples each.
        run_script(
            worker,
            pair,
            [(4, False), (1, False), (2, True), (3, False), (3, False), (3, False)],
            extra,
        )
    python, native = pair.found["python"], pair.found["native"]
    assert native == python
    assert [c["native"] for c in coverage] == [c["python"] for c in coverage]
    assert any(c["python"][1] > 0 for c in coverage)  # the spanned step was in scope
    sites = [op.site.rpartition(":")[2] for op in python]
    assert sites.count("leaf_wait") == 4  # gates 0, 3, 4 and the tail; not 1 or 2
    assert "middle" not in sites and "outer" not in sites  # tainted by the spanned step
    assert {op.cause for op in python} == {"no_span", "context_lost"}
    first_of_each_site = {op.site: op for op in reversed(python)}.values()
    assert all(op.example_stack for op in first_of_each_site)  # one example per code
    assert all(op.example_stack is None for op in python if op not in first_of_each_site)


def test_the_unseen_gaps_are_credited_together_under_half_the_threshold() -> None:
    """Half of the gap before a call's first sample and half of the gap after its last
    are added to what the samples saw, the two together capped under half the
    threshold: a call seen for 5.3 ms after a 100 ms gap, whose return was seen 0.5 ms
    after its last sample, counts (a quarter-threshold cap on each side would not let
    it); a call seen for half the threshold never counts, however wide the gaps."""
    with worker_and_pair(3, {}) as (worker, pair):

        def sample_at(now: float) -> None:
            pair.sample({worker.tid: worker.leaf()}, set(), now)

        sample_at(100.000)  # gate 0, seen once
        worker.advance()
        sample_at(100.100)  # gate 1, first seen after a 100 ms gap ...
        sample_at(100.105)  # ... and last seen 5 ms later
        worker.advance()
        sample_at(100.205)  # 100 ms after that, gate 1 is gone; gate 2 is first seen
        sample_at(100.2103)  # last seen 5.3 ms later ...
        worker.advance()
        sample_at(100.2108)  # ... and gone 0.5 ms after that; the tail is first seen
        worker.advance()
        pair.sample({}, set(), 100.2158)
    python, native = pair.found["python"], pair.found["native"]
    assert native == python
    leaf_calls = [op for op in python if op.site.endswith(":leaf_wait")]
    assert len(leaf_calls) == 1  # gate 2's call only
    assert leaf_calls[0].duration_s == pytest.approx(0.0053 + 0.48 * THRESHOLD)


def test_a_call_first_seen_late_counts_from_when_its_thread_last_held_the_gil() -> None:
    """A sample that comes late (the sampler waited for the GIL) sees a thread whose
    stack has not changed since the thread last held the GIL: its new calls were
    running from then, and the calls gone had returned by then. A call first seen 2.5 ms
    before its last sample, but frozen from 8 ms before that first sample, counts, with
    the 0.5 ms to the moment it was known to be gone; a time before the thread's
    previous sample is taken as that sample (the stack changed after it)."""
    with worker_and_pair(3, {}) as (worker, pair):

        def sample_at(now: float, frozen: tuple[float, dict[int, float]] | None = None) -> None:
            pair.sample({worker.tid: worker.leaf()}, set(), now, frozen)

        sample_at(100.000)  # gate 0
        worker.advance()
        sample_at(100.100, (100.092, {}))  # gate 1, running since 100.092 ...
        sample_at(100.1025)  # ... and last seen here
        worker.advance()
        # Gate 1 had returned by 100.103 (the worker held the GIL after the rest).
        sample_at(100.200, (100.0, {worker.tid: 100.103}))
        sample_at(100.2001)
        worker.advance()
        sample_at(100.300, (50.0, {}))  # before the previous sample: from 100.2001
        worker.advance()
        pair.sample({}, set(), 100.301)
    python, native = pair.found["python"], pair.found["native"]
    assert native == python
    leaf_calls = [op.duration_s for op in python if op.site.endswith(":leaf_wait")]
    assert leaf_calls == [
        # seen from 100.092 to 100.1025, plus (92 + 0.5) / 2 ms, capped
        pytest.approx((0.1025 - 0.092) + 0.48 * THRESHOLD),
        # from 100.103 to 100.2001, plus (0.5 + 0) / 2 ms: gone by its last sample
        pytest.approx((0.2001 - 0.103) + 0.0005 / 2),
        # the tail: from its previous sample (not 50 s), plus (0 + 1) / 2 ms
        pytest.approx((0.300 - 0.2001) + 0.001 / 2),
    ]


def test_both_paths_account_the_same_self_time() -> None:
    """No span at all: every level counts, and a parent's self time leaves out its
    counted children's dark time."""
    with worker_and_pair(3, {}) as (worker, pair):
        run_script(worker, pair, [(3, False), (3, False), (4, False), (3, False)], print)
    python, native = pair.found["python"], pair.found["native"]
    assert native == python
    by_site = {op.site.rpartition(":")[2]: op for op in python}
    assert {"leaf_wait", "middle", "outer"} <= set(by_site)
    assert by_site["middle"].self_s < by_site["middle"].dark_s
    assert all(op.waited_in for op in python)  # where each waited, by name


def test_both_paths_follow_a_generator_by_its_caller() -> None:
    """A generator resumed again by the same caller (a frame still on the stack) is one
    call on a known stack; resumed by another caller, it is a new call. Both agree."""
    with worker_and_pair(3, {}, outer_with_generator) as (worker, pair):
        run_script(worker, pair, [(3, False), (3, False), (3, False), (3, False)], print)
    python, native = pair.found["python"], pair.found["native"]
    assert native == python
    calls = {op.site.rpartition(":")[2]: [] for op in python}
    for op in python:
        calls[op.site.rpartition(":")[2]].append(round(op.duration_s / INTERVAL))
    assert calls["generator_body"] == [6, 3]  # two steps under drive(), one elsewhere
    assert calls["drive"] == [6] and calls["resume_elsewhere"] == [3]
    assert calls["leaf_wait"] == [3, 3, 3, 3]


def test_native_tracker_is_used_when_asked(start_detector) -> None:
    detector = start_detector(tracker="native")
    assert detector.tracker == "native"
    detector.stop()
    detector = start_detector(tracker="python")
    assert detector.tracker == "python"


def test_an_operation_of_the_c_path_waited_where_most_of_its_samples_sat() -> None:
    """The C path hands over a call's waits counted by place; the operation names the
    place with the most samples, adding up places with the same name, the first met on
    a tie (as the reference does from its per-sample log)."""
    scope = Scope(include=(__name__,))
    tracker = CallTracker(scope, THRESHOLD, INTERVAL, emit=print, thread_name=str)
    # Two out-of-scope places (the CodeInfo of a leaf outside the application).
    sleep, recv = scope.info(middle.__code__, "time"), scope.info(leaf_wait.__code__, "socket")
    info = scope.info(leaf_wait.__code__, __name__)

    def waited_in(waits: list[tuple[object, int, int]]) -> str | None:
        record = (info, "no_span", None, 0.02, 0.02, 0.02, None, "t", waits, 1.0, None, 1)
        from spangap._tracking import CompletedCall

        return tracker._from_native(CompletedCall(record)).waited_in

    assert waited_in([(sleep, -1, 2), (recv, -1, 3), (sleep, -1, 2)]) == sleep.display
    assert waited_in([(recv, -1, 1), (sleep, -1, 1)]) == recv.display
    assert waited_in([(recv, -1, 5)]) == recv.display
    assert waited_in([]) is None
