"""Instrumented work is never counted (SPEC "uninstrumented operation"), at any sampling
setting the overhead budget can reach: a property test over random mixes of threads and
asyncio task bursts, with spans opened at the first statement, in the middle, in a
nested helper, sampled out, or carried into another thread by ``Context.run``.

Every function here is a site. Those marked ``SPANNED`` had a span made current in their
own thread or task during every call, so no count of them is ever right; the ``DARK``
ones may be counted, at most once per call.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry

import spangap
from spangap.budget import Setting
from spangap.detector import GapDetector

TRACER = TracerProvider().get_tracer("never-counted")
SAMPLED_OUT = TracerProvider(sampler=ALWAYS_OFF).get_tracer("never-counted-sampled-out")
THRESHOLD_S = 0.010
calls: Counter[str] = Counter()


def note(name: str) -> None:
    calls[name] += 1


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# -- threads -------------------------------------------------------------------------


def dark_part(d: float) -> None:
    note("dark_part")
    time.sleep(d)


def helper_with_span() -> None:
    note("helper_with_span")
    with TRACER.start_as_current_span("helper"):
        spin(0.0005)


def dark_body(d: float) -> None:
    note("dark_body")
    time.sleep(d)


def spanned_first(d: float) -> None:
    note("spanned_first")
    with TRACER.start_as_current_span("first"):
        time.sleep(d)


def spanned_middle(d: float) -> None:
    note("spanned_middle")
    time.sleep(d / 2)
    with TRACER.start_as_current_span("middle"):
        spin(0.0005)
    time.sleep(d / 2)


def spanned_helper(d: float) -> None:
    note("spanned_helper")
    dark_part(d / 2)
    helper_with_span()
    dark_part(d / 2)


def sampled_out(d: float) -> None:
    note("sampled_out")
    with SAMPLED_OUT.start_as_current_span("sampled-out"):
        time.sleep(d)


def ran_in_context(d: float) -> None:
    note("ran_in_context")
    time.sleep(d)


def handed_over(d: float) -> None:
    """Runs ``ran_in_context`` in a context that holds this call's span, on another
    thread (``Context.run``, as ``asyncio.to_thread`` and anyio's pools do)."""
    note("handed_over")
    with TRACER.start_as_current_span("hand-over"):
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(ran_in_context, d))
        worker.start()
        worker.join()


def _root(body: Callable[[float], None]) -> Callable[[list[float]], None]:
    """A thread root of its own per body (a site named ``root_<body>``): a root is
    spanned exactly when its body is."""
    name = f"root_{body.__name__}"

    def root(ds: list[float]) -> None:
        note(name)
        for d in ds:
            body(d)

    root.__code__ = root.__code__.replace(co_name=name, co_qualname=name)
    root.__name__ = root.__qualname__ = name
    return root


THREAD_ROOTS: dict[str, Callable[[list[float]], None]] = {
    body.__name__: _root(body)
    for body in (dark_body, spanned_first, spanned_middle, spanned_helper, sampled_out, handed_over)
}


# -- tasks ---------------------------------------------------------------------------


async def task_dark_part(d: float) -> None:
    note("task_dark_part")
    await asyncio.sleep(d)


async def task_helper_with_span() -> None:
    note("task_helper_with_span")
    with TRACER.start_as_current_span("helper"):
        await asyncio.sleep(0)


def dark_spin(seconds: float) -> None:
    """``spin`` outside any span (a site of its own, so that ``spin`` is always spanned)."""
    note("dark_spin")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def task_dark(d: float) -> None:
    note("task_dark")
    dark_spin(0.0002)
    await asyncio.sleep(d)


async def task_spanned_first(d: float) -> None:
    note("task_spanned_first")
    with TRACER.start_as_current_span("first"):
        spin(0.0002)
        await task_dark_part_in_span(d)


async def task_dark_part_in_span(d: float) -> None:
    note("task_dark_part_in_span")
    await asyncio.sleep(d)


async def task_spanned_middle(d: float) -> None:
    note("task_spanned_middle")
    await asyncio.sleep(d / 2)
    with TRACER.start_as_current_span("middle"):
        spin(0.0002)
    await asyncio.sleep(d / 2)


async def task_spanned_helper(d: float) -> None:
    note("task_spanned_helper")
    await task_dark_part(d / 2)
    await task_helper_with_span()
    await task_dark_part(d / 2)


async def task_sampled_out(d: float) -> None:
    note("task_sampled_out")
    with SAMPLED_OUT.start_as_current_span("sampled-out"):
        await asyncio.sleep(d)


TASK_BODIES: dict[str, Callable[[float], Any]] = {
    "task_dark": task_dark,
    "task_spanned_first": task_spanned_first,
    "task_spanned_middle": task_spanned_middle,
    "task_spanned_helper": task_spanned_helper,
    "task_sampled_out": task_sampled_out,
}

#: Sites that may be counted (dark at every moment of every call): the rest never may.
DARK = {"dark_body", "dark_part", "root_dark_body", "task_dark", "task_dark_part", "dark_spin"}
#: ``task_dark_part_in_span`` is awaited inside the span: spanned, as everything else.


def run_bursts(bursts: list[tuple[str, int, float]]) -> None:
    """Each burst: ``size`` tasks of one body created at once, then gathered."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for body, size, d in bursts:
            tasks = [loop.create_task(TASK_BODIES[body](d)) for _ in range(size)]
            await asyncio.gather(*tasks)

    asyncio.run(main())


def pin_sampling(detector: GapDetector, interval_s: float, stride: int) -> None:
    """Hold the sampler at one setting of the overhead budget's range."""
    setting = Setting(interval_s, stride)
    sampler = detector._sampler
    sampler._update_budget = lambda *_: setting  # what each window asks
    with sampler._lock:
        sampler._apply_budget(0.0, 0.0, 1.0)
    assert sampler._setting == setting  # pinned: the budget's next windows ask the pin


durations = st.lists(st.sampled_from([0.012, 0.02, 0.03, 0.05]), min_size=1, max_size=3)
threads = st.lists(st.tuples(st.sampled_from(sorted(THREAD_ROOTS)), durations), max_size=4)
bursts = st.lists(
    st.tuples(
        st.sampled_from(sorted(TASK_BODIES)),
        st.sampled_from([1, 2, 50, 200, 2000]),
        st.sampled_from([0.012, 0.025, 0.04]),
    ),
    max_size=3,
)


@seed(20261205)
@settings(max_examples=24, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    interval_ms=st.sampled_from([5.0, 10.0, 20.0, 50.0, 100.0]),
    stride=st.integers(1, 8),
    tracker=st.sampled_from(["native", "python"]),
    threads=threads,
    bursts=bursts,
)
def test_nothing_spanned_is_ever_counted_at_any_sampling_setting(
    interval_ms: float,
    stride: int,
    tracker: str,
    threads: list[tuple[str, list[float]]],
    bursts: list[tuple[str, int, float]],
) -> None:
    calls.clear()
    registry = CollectorRegistry()
    detector = spangap.enable_gap_detector(
        registry=registry,
        include=[__name__],
        threshold_ms=THRESHOLD_S * 1000,
        max_overhead=1,
        tracker=tracker,
    )
    try:
        pin_sampling(detector, interval_ms / 1000, stride)
        workers = [
            threading.Thread(target=THREAD_ROOTS[body], args=(ds,), name=f"unit-{i}")
            for i, (body, ds) in enumerate(threads)
        ]
        if bursts:
            workers.append(threading.Thread(target=run_bursts, args=(bursts,), name="loop"))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        detector.stop()
    counted = Counter(
        {site.split(":", 1)[1]: n for (site, _), n in detector.operation_counts().items()}
    )
    # The harness is in scope too: the test waits dark for its threads; the burst
    # runner's main task is dark (spans of other tasks are not its own), and its thread
    # is dark unless a task on it made a span current.
    dark = DARK | {
        "run_bursts.<locals>.main",
        test_nothing_spanned_is_ever_counted_at_any_sampling_setting.__name__,
    }
    if all(body == "task_dark" for body, _, _ in bursts):
        dark.add("run_bursts")
    wrong = {name: n for name, n in counted.items() if name not in dark}
    assert wrong == {}, f"spanned work counted: {wrong} (calls made: {dict(calls)})"
    over = {name: n for name, n in counted.items() if name in DARK and n > calls[name]}
    assert over == {}, f"counted more often than called: {over}"


def test_bursts_of_spanned_handlers_are_never_counted_at_the_default_budget_or_below(
    start_detector,
) -> None:
    """Handlers spanned from their first statement, 100 of 200 tasks created at once:
    none is counted at the default budget or at the lowest one, where ticks are rare and
    each sees many tasks not yet started."""
    import burst_workload

    for max_overhead in (0.01, 0.001):
        detector = start_detector(include=["burst_workload"], max_overhead=max_overhead)
        made = burst_workload.run(3)
        detector.stop()
        counted = Counter(
            {site.split(":", 1)[1]: n for (site, _), n in detector.operation_counts().items()}
        )
        assert counted["spanned_handler"] == counted["fetch_spanned"] == 0, max_overhead
        assert counted["dark_handler"] <= made["dark_handler"]
        assert counted["fetch_dark"] <= made["fetch_dark"]
