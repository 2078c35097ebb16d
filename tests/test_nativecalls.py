"""The native stack sampler's calls, in a real detector: counted while the GIL-holding
sampler cannot tick, never when a span was active or made current in them, with the
cause of a hand-off, and once when both samplers saw them (test_ground_truth.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from conftest import counts_by_site

pytest.importorskip("spangap._stacks", reason="the native stack reader is not built")

TRACER = trace.get_tracer(__name__)
SITE = f"{__name__}:wait_for_reply"


def wait_for_reply() -> None:
    time.sleep(0.03)


def between_calls() -> None:
    time.sleep(0.015)


def spanned_wait() -> None:
    with TRACER.start_as_current_span("spanned"):
        time.sleep(0.03)


def wait_then_span() -> None:
    time.sleep(0.03)
    with TRACER.start_as_current_span("late"):
        pass


def in_thread(body) -> None:
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()


def meet(detector, *functions) -> None:
    """Run each function until the GIL sampler has met its code (the native sampler names
    calls after what it met), and let every operation so far be passed on."""
    for fn in functions:
        in_thread(lambda fn=fn: [fn() for _ in range(3)])
    time.sleep(1.2)  # past the native sampler's hold
    detector.operation_counts()


def test_waits_are_counted_while_the_gil_sampler_cannot_tick(start_detector) -> None:
    detector = start_detector(stacks="native", include=[__name__])
    assert detector.stacks == "native"
    meet(detector, wait_for_reply, between_calls, spanned_wait, wait_then_span)
    before = counts_by_site(detector)
    detector._sampler.hold()  # no tick until released: only the native walks see these
    try:

        def body() -> None:
            for _ in range(10):
                wait_for_reply()
                between_calls()
                spanned_wait()
                wait_then_span()
                # A call that starts within one walk of a span made current in its
                # thread is not counted by the native walks (they cannot tell whether
                # it had begun): the next one is a short call, seen by a walk or two.
                between_calls()

        in_thread(body)
    finally:
        detector._sampler.release()
    detector.stop()
    after = counts_by_site(detector)
    # Every call, or all but one on a machine too busy to walk on time (as the ground-
    # truth tests allow 1%); never more: no call counted twice.
    assert 9 <= after[SITE] - before[SITE] <= 10
    assert after[f"{__name__}:spanned_wait"] == 0
    assert after[f"{__name__}:wait_then_span"] == before[f"{__name__}:wait_then_span"] == 0


def test_work_handed_to_an_executor_from_a_span_is_context_lost(start_detector) -> None:
    detector = start_detector(stacks="native", include=[__name__])
    with ThreadPoolExecutor(1) as pool:
        pool.submit(wait_for_reply).result()  # the worker thread exists, its code is met
        time.sleep(1.2)
        before = detector.operation_counts()
        detector._sampler.hold()
        try:
            with TRACER.start_as_current_span("request"):
                for _ in range(5):
                    pool.submit(wait_for_reply).result()
                    # Jobs back to back at one place, with no walk between them, would
                    # be one chain, counted once (c/_chains.h): the worker waits first.
                    time.sleep(0.012)
        finally:
            detector._sampler.release()
    detector.stop()
    after = detector.operation_counts()
    lost, no_span = (SITE, "context_lost"), (SITE, "no_span")
    assert 4 <= after.get(lost, 0) - before.get(lost, 0) <= 5  # one miss allowed, as above
    assert after.get(no_span, 0) == before.get(no_span, 0)


def test_the_native_sampler_is_off_unless_asked(start_detector) -> None:
    detector = start_detector()
    assert detector.stacks == "off"
    detector.stop()
    assert start_detector(native="off", stacks="native").stacks == "native"


@pytest.mark.parametrize("stacks", ["native", "off"])
def test_the_metrics_name_the_walks_in_use_and_the_rates_achieved(start_detector, stacks) -> None:
    registry = CollectorRegistry()
    detector = start_detector(stacks=stacks, registry=registry)
    time.sleep(0.3)
    detector.stop()  # the gauges are updated as it stops
    value = registry.get_sample_value
    assert value("spangap_sampler_native_walks") == (1 if stacks == "native" else 0)
    walks = value("spangap_sampler_rate_hertz", {"sampler": "walks"})
    assert walks == (pytest.approx(200, rel=0.01) if stacks == "native" else 0)
    assert value("spangap_sampler_rate_hertz", {"sampler": "ticks"}) > 0
