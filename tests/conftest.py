"""Shared fixtures: a real OpenTelemetry SDK, and detectors on private registries."""

from __future__ import annotations

import collections
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

import spangap
from spangap.detector import GapDetector

# Tests run like a service that configured the SDK at start-up.
if not isinstance(trace.get_tracer_provider(), TracerProvider):
    trace.set_tracer_provider(TracerProvider())


#: For a program run in a subprocess: the overhead budget lifted, as ``start_detector``
#: does in-process. These programs last under a second and are checked for exact
#: counts; the budget acts after its first tenth of a second and, on a busy machine,
#: would widen the interval (the README's advice for a measurement run is the same).
FULL_RATE_ENV = {"SPANGAP_MAX_OVERHEAD": "1"}


@pytest.fixture
def start_detector() -> Iterator[Callable[..., GapDetector]]:
    """Start a detector on a fresh registry; it is stopped after the test either way.

    The overhead budget is lifted (``max_overhead=1``) unless a test sets it: these tests
    check what the detector counts by its definition at its full sampling rate, and on
    a 2-core test machine the default budget of 1% would thin out the samples of the
    busier workloads. The budget itself is tested in test_budget.py."""
    started: list[GapDetector] = []

    def start(**options: Any) -> GapDetector:
        options.setdefault("registry", CollectorRegistry())
        options.setdefault("max_overhead", 1.0)
        detector = spangap.enable_gap_detector(**options)
        started.append(detector)
        return detector

    yield start
    for detector in started:
        detector.stop()


@pytest.fixture
def service_sized_heap() -> Iterator[None]:
    """A full garbage collection pauses every thread, the sampler included (see the
    README's known limits). Over pytest's heap of earlier tests one can take 30+ ms and
    blind the sampler for a whole round of calls; freeze that heap so collections scan
    only the workload's objects, as they would in a service process."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def recorded() -> Iterator[list[tuple[str, float]]]:
    """The ground-truth log of workload calls, emptied for each test."""
    import gt_workloads

    gt_workloads.reset()
    yield gt_workloads.RECORDED
    gt_workloads.reset()


def counts_by_site(detector: GapDetector) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for (site, _cause), n in detector.operation_counts().items():
        counts[site] += n
    return counts


# A code base the audit reads (test_audit_project.py), not tests to run.
collect_ignore = ["audit_project"]

#: Modules whose tests assert nothing that a second test process beside them could
#: change: no sampling rates or recall, no timings, no counts of calls (at most that
#: something was counted); what they check is output, files, exit codes, crashes and
#: hangs (with timeouts of a minute), exact request counts. They spend their time in
#: subprocesses and servers, so nox runs them two at a time (``-m parallel -n 2``) and
#: the rest, which measure the sampler, alone.
PARALLEL_MODULES = frozenset(
    {
        "test_audit",
        "test_audit_fix",
        "test_audit_project",
        "test_benchmarks",
        "test_cli_show",
        "test_dashboard",
        "test_diff",
        "test_doctor",
        "test_faults",
        "test_fuzz",
        "test_flame",
        "test_host_safety",
        "test_options",
        "test_outbound",
        "test_prometheus",
        "test_pytest_plugin",
        "test_reference",
        "test_render",
        "test_snapshot",
        "test_top",
        "test_traced",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__ in PARALLEL_MODULES:
            item.add_marker(pytest.mark.parallel)
