"""The same figures as OpenTelemetry metrics, for stacks that export metrics by OTLP and
have no Prometheus scrape (``otel_metrics=True``).

Observable instruments on the application's MeterProvider read the detector's findings
when the provider collects, so there is one bookkeeping and the two exports cannot
disagree. The names are the Prometheus ones without the ``_total`` suffix an exporter to
Prometheus adds back; ``site`` and ``cause`` are attributes, bounded by ``max_sites`` as
the labels are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from . import metric_names as names
from .faults import note
from .snapshot import Snapshot

_FRESH_S = 0.5  # one collection reads the findings once for all its instruments


_REGISTERED: dict[tuple[int, str], OtelMetrics] = {}
_REGISTERED_LOCK = threading.Lock()


def report_through_otel(snapshot: Callable[[], Snapshot], prefix: str = "") -> OtelMetrics:
    """Report ``snapshot``'s figures on the global MeterProvider. A provider keeps an
    instrument for good, so a later detector (after ``stop()``) takes over the same ones."""
    provider = metrics.get_meter_provider()
    with _REGISTERED_LOCK:
        found = _REGISTERED.get((id(provider), prefix))
        if found is None:
            found = _REGISTERED[(id(provider), prefix)] = OtelMetrics(snapshot, prefix, provider)
        else:
            found.take_over(snapshot)
        return found


class OtelMetrics:
    """Registers the instruments; reads a snapshot (at most every half second) for them."""

    def __init__(
        self, snapshot: Callable[[], Snapshot], prefix: str, provider: metrics.MeterProvider
    ) -> None:
        self.source = snapshot
        self._lock = threading.Lock()
        self._last: tuple[float, Snapshot] | None = None
        meter = provider.get_meter("spangap")
        per_site = "{operation}"
        meter.create_observable_counter(
            prefix + names.OPERATIONS,
            callbacks=[self._operations],
            unit=per_site,
            description="Calls of application functions that ran at least the threshold "
            "with no active span.",
        )
        meter.create_observable_counter(
            prefix + names.SECONDS,
            callbacks=[self._seconds],
            unit="s",
            description="Dark (non-idle) seconds of uninstrumented operations.",
        )
        meter.create_observable_counter(
            prefix + names.SELF_SECONDS,
            callbacks=[self._self_seconds],
            unit="s",
            description="Dark seconds of uninstrumented operations minus their counted children.",
        )
        meter.create_observable_gauge(
            prefix + names.COVERAGE_RATIO,
            callbacks=[self._coverage],
            unit="1",
            description="Share of sampled in-scope time that ran under an active span.",
        )
        meter.create_observable_counter(
            prefix + names.SAMPLER_CPU,
            callbacks=[self._sampler_cpu],
            unit="s",
            description="CPU seconds the detector's sampler used.",
        )

    def take_over(self, snapshot: Callable[[], Snapshot]) -> None:
        with self._lock:
            self.source, self._last = snapshot, None

    def _current(self) -> Snapshot | None:
        """The findings now (None if reading them failed: a collection must not fail)."""
        now = time.monotonic()
        try:
            with self._lock:
                if self._last is None or now - self._last[0] > _FRESH_S:
                    self._last = (now, self.source())
                return self._last[1]
        except Exception as exc:
            note("scrape", exc)
            return None

    def _per_site(self, value: Callable[[Any], float]) -> Iterable[Observation]:
        snapshot = self._current()
        sites = [] if snapshot is None else snapshot.sites
        return [Observation(value(s), {"site": s.site, "cause": s.cause}) for s in sites]

    def _operations(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._per_site(lambda s: s.count)

    def _seconds(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._per_site(lambda s: s.total_seconds)

    def _self_seconds(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._per_site(lambda s: s.self_seconds)

    def _coverage(self, options: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._current()
        coverage = None if snapshot is None else snapshot.totals.coverage
        return [] if coverage is None else [Observation(coverage)]

    def _sampler_cpu(self, options: CallbackOptions) -> Iterable[Observation]:
        snapshot = self._current()
        return [] if snapshot is None else [Observation(snapshot.totals.sampler_cpu_seconds)]
