"""asyncio ground truth: tasks judged in their own context, also while suspended, and
work handed to threads without its span reported as context_lost."""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import gt_workloads as w
from conftest import counts_by_site
from spangap.operation import CONTEXT_LOST, NO_SPAN
from spangap.spanstate import runtime_context_var
from spangap.tasks import TaskSampler


async def dark_await() -> None:
    start = time.perf_counter()
    await asyncio.sleep(0.025)
    w._record("dark_await", start)


async def spanned_await() -> None:
    start = time.perf_counter()
    await asyncio.sleep(0.025)
    w._record("spanned_await", start)


async def interleaved(i: int, rounds: int) -> None:
    """Odd tasks await inside a span, even ones without; every await switches tasks.
    Tasks start at staggered times, as requests arrive, rather than in lockstep."""
    await asyncio.sleep(random.Random(i).uniform(0, 0.025))
    for _ in range(rounds):
        if i % 2:
            with w.TRACER.start_as_current_span("request"):
                await spanned_await()
        else:
            await dark_await()
        await asyncio.sleep(0)


async def consume_forever(queue: asyncio.Queue[object], event: asyncio.Event) -> None:
    """Long-lived consumers: parked in queue.get / Event.wait; cancelled at the end."""
    while True:
        await queue.get()
        await event.wait()


def site(name: str) -> str:
    return f"{__name__}:{name}"


def recorded_calls(recorded: list[tuple[str, float]], name: str) -> list[float]:
    return [d for s, d in recorded if s == w.site(name)]


@pytest.mark.parametrize("reader", ["native", "python"])
def test_hundreds_of_interleaved_tasks_on_one_loop(
    start_detector, recorded, reader, service_sized_heap
) -> None:
    """240 tasks, half awaiting inside spans: 99% of the dark awaits are counted and no
    spanned one is.

    The whole workload lasts about a quarter of a second, and a stall of this 2-core
    VM's scheduling that keeps the sampler from the GIL for 20 ms or so blinds it to a
    good part of the 120 awaits in flight: about one run in twenty fell just short of
    99% that way. Such a run is repeated once. What must never happen (a spanned,
    idle or over-counted await) is checked in every run.
    """

    async def main() -> None:
        queue: asyncio.Queue[object] = asyncio.Queue()
        consumers = [asyncio.create_task(consume_forever(queue, asyncio.Event())) for _ in range(5)]
        await asyncio.gather(*(interleaved(i, 8) for i in range(240)))
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    for _attempt in range(2):
        recorded.clear()
        detector = start_detector(include=[__name__, "gt_workloads"], context_reader=reader)
        asyncio.run(main())
        detector.stop()
        counted = counts_by_site(detector)
        dark = recorded_calls(recorded, "dark_await")
        assert len(dark) == 120 * 8 and len(recorded_calls(recorded, "spanned_await")) == 960
        assert counted[site("dark_await")] <= 1.02 * len(dark)
        assert counted[site("spanned_await")] == 0
        assert counted[site("consume_forever")] == 0  # idle, then cancelled: never completed
        causes = {cause for (s, cause) in detector.operation_counts() if s == site("dark_await")}
        assert causes == {NO_SPAN}
        must_find = sum(1 for d in dark if d >= 0.020)
        if counted[site("dark_await")] >= 0.99 * must_find:
            break
    found = counted[site("dark_await")]
    assert found >= 0.99 * must_find, f"found {found} of {must_find} dark awaits, in two runs"


def test_a_loop_started_before_the_detector_is_found(start_detector, recorded) -> None:
    started, release = threading.Event(), threading.Event()
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        started.set()
        while not release.is_set():
            await asyncio.gather(*(dark_await() for _ in range(20)))

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    started.wait()
    detector = start_detector(include=[__name__])
    time.sleep(0.5)
    release.set()
    thread.join()
    loop.close()
    detector.stop()
    assert counts_by_site(detector)[site("dark_await")] >= 20


async def fetch_rows() -> None:
    await asyncio.sleep(0.030)


@pytest.mark.parametrize("loop_first", [True, False], ids=["loop-before", "loop-after"])
def test_coroutines_sent_to_a_loop_in_another_thread_are_counted(
    start_detector, loop_first: bool
) -> None:
    """``run_coroutine_threadsafe``: 20 coroutines at once, each awaiting 30 ms, five
    times; the loop runs in another thread, started before the detector or after it.
    Every await is found either way (a second run only if a host stall hid some)."""
    for _attempt in range(2):
        loop, started = asyncio.new_event_loop(), threading.Event()
        loop.call_soon(started.set)
        thread = threading.Thread(target=loop.run_forever)
        detector = None if loop_first else start_detector(include=[__name__])
        thread.start()
        started.wait()
        detector = detector or start_detector(include=[__name__])
        for _ in range(5):
            batch = [asyncio.run_coroutine_threadsafe(fetch_rows(), loop) for _ in range(20)]
            for future in batch:
                future.result()
        detector.stop()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        found = counts_by_site(detector)[site("fetch_rows")]
        assert found <= 100
        if found >= 99:
            break
    assert found >= 99, f"found {found} of 100 awaits of 30 ms, in two runs"


def spanned_job() -> None:
    time.sleep(0.025)


def lost_job() -> None:
    time.sleep(0.025)


def test_context_carried_into_threads_is_spanned(start_detector) -> None:
    detector = start_detector(include=[__name__])
    pool = ThreadPoolExecutor(2)

    async def main() -> None:
        with w.TRACER.start_as_current_span("request"):
            for _ in range(5):
                await asyncio.to_thread(spanned_job)
                ctx = contextvars.copy_context()
                await asyncio.get_running_loop().run_in_executor(pool, ctx.run, spanned_job)
                pool.submit(contextvars.copy_context().run, spanned_job).result()

    asyncio.run(main())
    pool.shutdown()
    detector.stop()
    assert counts_by_site(detector)[site("spanned_job")] == 0


def test_handing_work_over_without_the_span_is_context_lost(start_detector) -> None:
    detector = start_detector(include=[__name__])
    pool = ThreadPoolExecutor(2)
    parents: list[tuple[str, str]] = []

    async def hand_over() -> None:
        with w.TRACER.start_as_current_span("request") as span:
            ctx = span.get_span_context()
            parents.append((format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")))
            for _ in range(4):
                await asyncio.get_running_loop().run_in_executor(pool, lost_job)
                pool.submit(lost_job).result()
                thread = threading.Thread(target=lost_job)
                thread.start()
                thread.join()
        # The same hand-offs from code without any span are plain no_span gaps.
        for _ in range(2):
            pool.submit(lost_job).result()

    asyncio.run(hand_over())
    pool.shutdown()
    detector.stop()
    counts = detector.operation_counts()
    assert counts[(site("lost_job"), CONTEXT_LOST)] == 12
    assert counts[(site("lost_job"), NO_SPAN)] == 2
    lost = next(
        s
        for s in detector.snapshot().sites
        if s.site == site("lost_job") and s.cause == CONTEXT_LOST
    )
    assert lost.lost_context is not None
    assert lost.lost_context.submitters[0].name == site(hand_over.__qualname__)
    example = lost.lost_context.examples[0]
    assert (example["trace_id"], example["span_id"]) == parents[0]


def test_hooks_are_removed_at_stop(start_detector) -> None:
    import concurrent.futures

    original_submit = concurrent.futures.ThreadPoolExecutor.submit
    original_start = threading.Thread.start
    detector = start_detector()
    assert concurrent.futures.ThreadPoolExecutor.submit is not original_submit
    detector.stop()
    assert concurrent.futures.ThreadPoolExecutor.submit is original_submit
    assert threading.Thread.start is original_start


def test_more_tasks_than_a_tick_examines_are_followed_in_cohorts() -> None:
    """With more busy tasks than one tick examines, the same tasks are examined at
    consecutive ticks for a while (two samples close together are what measuring an
    operation of the threshold's order takes), and then the next ones get their turn,
    until every task has had one."""
    sampler = TaskSampler(
        runtime_context_var(), max_tasks=8, max_moved=8, max_moved_rotating=8, dwell_s=0.045
    )
    examined: list[set[int]] = []

    async def busy() -> None:
        while True:
            await asyncio.sleep(0)  # no future to wait on: moved at every tick

    async def main() -> set[int]:
        tasks = [asyncio.create_task(busy()) for _ in range(40)]
        me = -id(asyncio.current_task())
        for tick in range(35):
            await asyncio.sleep(0)  # every busy task takes a step
            moved, _ = sampler.sample(sys._current_frames(), now=tick * 0.01)
            examined.append({m.key for m in moved} - {me})
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {-id(task) for task in tasks}

    everyone = asyncio.run(main())
    # 8 moved stacks a tick at most, and the running task (this test's) is always one
    assert all(len(keys) == 7 for keys in examined)
    for turn in range(7):  # ticks 0-4, 5-9, ...: one cohort each (0.045 s, a tick every 0.01 s)
        cohort = examined[5 * turn : 5 * turn + 5]
        assert all(keys == cohort[0] for keys in cohort)
    assert set().union(*examined) == everyone


def test_more_tasks_than_a_tick_examines_still_never_over_count(start_detector, recorded) -> None:
    """600 interleaved tasks, more than one tick examines: the sampler follows cohorts
    of them, so it counts a sample of the dark calls (about a fifth here; none when it
    moved on to other tasks at every tick), never more dark calls than there were, and
    never the spanned ones."""
    detector = start_detector(include=[__name__, "gt_workloads"])

    async def main() -> None:
        await asyncio.gather(*(interleaved(i, 24) for i in range(600)))

    asyncio.run(main())
    detector.stop()
    counted = counts_by_site(detector)
    dark = recorded_calls(recorded, "dark_await")
    assert len(dark) == 300 * 24
    assert 0 < counted[site("dark_await")] <= len(dark)
    assert counted[site("spanned_await")] == 0


def test_a_followed_tasks_span_activation_outlives_a_crowd_of_finished_tasks() -> None:
    """A task the sampler follows makes a span current and ends while a thousand other
    tasks, never followed, made spans current and ended too. Their notes are dropped
    once they pile up, but the followed task's note must reach the tick that sees it
    done, whichever turn that is: it is what keeps its call from being counted."""
    from spangap.activations import Activations

    tracer = w.TRACER
    for _ in range(4):  # the followed task's turn in the registry's order is arbitrary
        activations = Activations()
        try:
            sampler = TaskSampler(
                runtime_context_var(),
                max_tasks=8,
                max_moved=8,
                max_moved_rotating=8,
                dwell_s=0.0,
                activations=activations,
            )

            async def followed(go: asyncio.Event) -> None:
                await go.wait()
                with tracer.start_as_current_span("followed"):
                    await asyncio.sleep(0)

            async def crowd() -> None:
                with tracer.start_as_current_span("crowd"):
                    await asyncio.sleep(0)

            async def main(sampler: TaskSampler) -> list[object]:
                go = asyncio.Event()
                task = asyncio.create_task(followed(go))
                await asyncio.sleep(0)
                sampler.sample(sys._current_frames(), now=0.0)  # follows it: it waits
                others = [asyncio.create_task(crowd()) for _ in range(1000)]
                await asyncio.gather(*others)
                go.set()
                await task
                key, ends = -id(task), []
                for tick in range(1, 1000):
                    _, done = sampler.sample(sys._current_frames(), now=tick * 1.0)
                    if key in done:
                        ends.append(done[key])
                        break
                others.clear()  # the next round's registry holds its own tasks only
                return ends

            ends = asyncio.run(main(sampler))
        finally:
            activations.close()
        assert len(ends) == 1, "the followed task was never seen done"
        assert ends[0].activated, "its span activation was dropped with the crowd's"
