"""Prometheus exposition of the detector's findings and of its own cost.

Plain prometheus-client metric objects are used (not a custom collector) so that
prometheus-client's multiprocess mode aggregates them across pre-fork workers. Counted
operations reach them in batches (see tracker.py): a hook collected before them flushes
the batch in progress, so a scrape of this process is never behind. (In multiprocess
mode the scrape runs elsewhere and the once-a-second flush bounds how far it lags.)
The ``site`` label is bounded: the first ``max_sites`` distinct sites get their own
value, later ones fold into ``__other__`` so that no workload can blow up a
Prometheus server with series.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from . import limits
from . import metric_names as names

log = logging.getLogger("spangap")

OTHER_SITE = "__other__"

#: Histogram buckets for operation durations: the threshold is 10 ms by default, and
#: the interesting range for "where did the time go" is tens of ms to seconds.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class MetricSet:
    """The metric objects of one (registry, prefix) pair."""

    operations: Counter
    seconds: Counter
    self_seconds: Counter
    duration: Histogram
    coverage_ratio: Gauge
    in_scope_seconds: Counter
    spanned_seconds: Counter
    sampler_cpu: Counter
    samples: Counter
    sites_dropped: Counter
    internal_errors: Counter
    interval: Gauge
    stride: Gauge
    overhead: Gauge
    max_overhead: Gauge
    over_budget: Gauge
    rate: Gauge
    native_walks: Gauge
    inferred_spans: Counter
    untraced_outbound: Counter
    before_collect: BeforeCollect


class BeforeCollect:
    """A collector with no metrics of its own, registered ahead of the metric objects:
    when the registry is collected (a scrape), it first runs the callbacks (weakly held
    bound methods: a stopped detector is not kept alive by its registry)."""

    def __init__(self) -> None:
        self._callbacks: list[weakref.WeakMethod[Callable[[], object]]] = []
        self._lock = threading.Lock()

    def add(self, method: Callable[[], object]) -> None:
        with self._lock:
            self._callbacks = [ref for ref in self._callbacks if ref() is not None]
            self._callbacks.append(weakref.WeakMethod(method))

    def describe(self) -> list[Metric]:
        return []  # no names of its own, so it never clashes with anyone's

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            callbacks = [ref() for ref in self._callbacks]
        for callback in callbacks:
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # a scrape must not fail because of us
                log.debug("spangap: flush before a scrape failed", exc_info=True)
        return iter(())


# Metrics outlive a detector (SPEC: after stop() "the metrics stay registered"), and a
# registry refuses a second registration of a name, so a later detector on the same
# registry reuses the same objects.
_SETS: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, MetricSet]] = (
    weakref.WeakKeyDictionary()
)
_SETS_LOCK = threading.Lock()


def metric_set(registry: CollectorRegistry | None, prefix: str) -> MetricSet:
    """The metric objects for ``registry`` and ``prefix``, created on first use."""
    reg = REGISTRY if registry is None else registry
    with _SETS_LOCK:
        per_prefix = _SETS.setdefault(reg, {})
        found = per_prefix.get(prefix)
        if found is None:
            found = per_prefix[prefix] = _create(reg, prefix)
        return found


#: In prometheus-client's multiprocess mode, a gauge shows one series per live worker
#: (pid label): the files of a worker marked dead go with it. Ignored otherwise.
LIVE_ONLY: Final = "liveall"


def _create(reg: CollectorRegistry, p: str) -> MetricSet:
    labels = ("site", "cause")

    def gauge(name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        return Gauge(p + name, documentation, labelnames, multiprocess_mode=LIVE_ONLY, registry=reg)

    before_collect = BeforeCollect()
    reg.register(before_collect)  # first: collected before the metrics below
    return MetricSet(
        before_collect=before_collect,
        operations=Counter(
            p + names.OPERATIONS,
            "Calls of application functions that ran at least the threshold with no active span.",
            labels,
            registry=reg,
        ),
        seconds=Counter(
            p + names.SECONDS,
            "Dark (non-idle) seconds of uninstrumented operations; nested operations overlap.",
            labels,
            registry=reg,
        ),
        self_seconds=Counter(
            p + names.SELF_SECONDS,
            "Dark seconds of uninstrumented operations outside counted child operations; "
            "sums over sites without counting a second twice.",
            labels,
            registry=reg,
        ),
        duration=Histogram(
            p + names.DURATION,
            "Estimated duration of each uninstrumented operation.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=reg,
        ),
        coverage_ratio=gauge(
            names.COVERAGE_RATIO,
            "Share of sampled, non-idle, in-scope execution time that ran under an active span, "
            "over the coverage window (NaN before anything was sampled).",
        ),
        in_scope_seconds=Counter(
            p + names.SAMPLED_SECONDS,
            "Sampled non-idle in-scope execution time (coverage denominator).",
            registry=reg,
        ),
        spanned_seconds=Counter(
            p + names.SPANNED_SECONDS,
            "The part of the sampled in-scope time that ran under an active span.",
            registry=reg,
        ),
        sampler_cpu=Counter(
            p + names.SAMPLER_CPU,
            "CPU time used by the spangap sampler (its thread and the native liveness watcher).",
            registry=reg,
        ),
        samples=Counter(p + names.SAMPLES, "Sampling ticks taken.", registry=reg),
        sites_dropped=Counter(
            p + names.SITES_DROPPED,
            'Distinct sites beyond max_sites, folded into site="__other__" (counted up to 10,000).',
            registry=reg,
        ),
        internal_errors=Counter(
            p + names.INTERNAL_ERRORS,
            "Errors caught inside the detector, by kind (sampler, span_read, attach_hook, "
            "handoff_hook, scrape, snapshot, fork, stop); it degrades, the host is unaffected.",
            ["kind"],
            registry=reg,
        ),
        interval=gauge(
            names.SAMPLER_INTERVAL,
            "The sampler's measured interval between ticks (mean of recent ticks).",
        ),
        stride=gauge(
            names.SAMPLER_STRIDE,
            "Each tick examines one thread (and task) in this many, in rotation (1 = all); "
            "raised only when the interval alone cannot hold max_overhead.",
        ),
        overhead=gauge(
            names.SAMPLER_OVERHEAD,
            "CPU share of one core the sampler used over the last budget window.",
        ),
        max_overhead=gauge(
            names.SAMPLER_MAX_OVERHEAD,
            "The configured budget (max_overhead), as a share of one core.",
        ),
        over_budget=gauge(
            names.SAMPLER_OVER_BUDGET,
            "1 when the sampler is at its slowest setting and still over max_overhead.",
        ),
        rate=gauge(
            names.SAMPLER_RATE,
            "How often each thread is sampled now, per second: by the ticks (measured "
            "interval and stride) and by the native walks (0 when they are off).",
            ("sampler",),
        ),
        native_walks=gauge(
            names.NATIVE_WALKS,
            "1 when the native stack reader's walks count calls (stacks=native), else 0.",
        ),
        inferred_spans=Counter(
            p + names.INFERRED_SPANS,
            "Operations offered as inferred spans (inferred_spans=True): sent, rate_limited "
            "(over inferred_spans_per_minute for the site), or dropped (queue full).",
            ("result",),
            registry=reg,
        ),
        untraced_outbound=Counter(
            p + names.UNTRACED_OUTBOUND,
            "Outbound HTTP requests that leave the trace: sent with no active span "
            "(no_span) or without a traceparent header (no_header); at most 100 hosts.",
            ("host", "reason"),
            registry=reg,
        ),
    )


class SiteBound:
    """Maps sites to label values: the first ``max_sites`` keep their name."""

    def __init__(self, max_sites: int) -> None:
        self._max = max_sites
        self._known: set[str] = set()
        self._dropped: set[str] = set()
        self._dropped_limit = limits.LIMITS.dropped_sites

    def label(self, site: str) -> tuple[str, bool]:
        """(label value, True when this site is newly folded into ``__other__``)."""
        if site in self._known:
            return site, False
        if len(self._known) < self._max:
            self._known.add(site)
            return site, False
        if site in self._dropped or len(self._dropped) >= self._dropped_limit:
            return OTHER_SITE, False
        self._dropped.add(site)
        return OTHER_SITE, True

    @property
    def dropped(self) -> int:
        return len(self._dropped)
