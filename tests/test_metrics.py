"""The metric set's hook that flushes counted operations before a scrape."""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spangap.metrics import metric_set


def _operations(registry: CollectorRegistry) -> float:
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        if family.name == "uninstrumented_operations":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("uninstrumented_operations is not exposed")


class PendingWork:
    """Stands in for a detector with operations not yet handed to the metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = metric_set(registry, "")
        self.pending = 0
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.metrics.operations.labels("app:work", "no_span").inc(self.pending)
        self.pending = 0


def test_a_scrape_sees_operations_flushed_just_before_it() -> None:
    registry = CollectorRegistry()
    work = PendingWork(registry)
    work.metrics.before_collect.add(work.flush)
    work.pending = 3
    assert _operations(registry) == 3  # flushed first, then collected
    work.pending = 2
    assert _operations(registry) == 5
    assert work.flushes == 2


def test_the_hook_does_not_keep_a_stopped_detector_alive_or_break_scrapes() -> None:
    registry = CollectorRegistry()
    work = PendingWork(registry)
    work.metrics.before_collect.add(work.flush)
    work.pending = 1
    assert _operations(registry) == 1
    del work
    gc.collect()
    assert _operations(registry) == 1  # nothing flushes now, and the scrape still works

    class Failing(PendingWork):
        def flush(self) -> None:
            raise RuntimeError("broken")

    failing = Failing(registry)
    failing.metrics.before_collect.add(failing.flush)
    assert _operations(registry) == 1
