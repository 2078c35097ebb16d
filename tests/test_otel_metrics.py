"""``otel_metrics=True``: the counters through the application's MeterProvider, read
here with the SDK's in-memory metric reader; they are the Prometheus figures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import gt_workloads as w

_READER: list[InMemoryMetricReader] = []


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """One SDK MeterProvider for the process (a global can be set once)."""
    if not _READER:
        _READER.append(InMemoryMetricReader())
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER[0]]))
    yield _READER[0]


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_the_counters_go_through_the_meter_provider(start_detector, reader, recorded) -> None:
    detector = start_detector(include=["gt_workloads"], otel_metrics=True)
    for _ in range(3):
        w.dark_sleep()
        w.spanned_cm()
    detector.stop()
    expected = {(site, cause): n for (site, cause), n in detector.operation_counts().items()}
    assert expected[(w.site("dark_sleep"), "no_span")] == 3
    counted = {
        (p.attributes["site"], p.attributes["cause"]): p.value
        for p in points(reader, "uninstrumented_operations")
    }
    assert counted == expected
    seconds = points(reader, "uninstrumented_operation_seconds")
    assert {p.attributes["site"] for p in seconds} == {site for site, _ in expected}
    assert all(p.value > 0 for p in seconds)
    (coverage,) = points(reader, "span_coverage_ratio")
    assert 0 < coverage.value < 1  # some of the sampled time ran under spans
    assert w.site("spanned_body") not in {site for site, _ in counted}


def test_a_later_detector_takes_the_instruments_over(start_detector, reader, recorded) -> None:
    first = start_detector(include=["gt_workloads"], otel_metrics=True)
    first.stop()
    second = start_detector(include=["gt_workloads"], otel_metrics=True)
    for _ in range(2):
        w.dark_sleep()
    second.stop()
    counted = {
        p.attributes["site"]: p.value
        for p in points(reader, "uninstrumented_operations")
        if p.attributes["cause"] == "no_span"
    }
    assert counted[w.site("dark_sleep")] == 2
