"""The findings: operations kept per site, the coverage window, and the metric updates.

The sampler thread records operations here; readers (``snapshot()``, the exit hook)
take the same lock to read a consistent view. Each ``(site, cause)`` keeps counts,
dark and self seconds, a bounded reservoir of durations for percentiles, and bounded
tallies of callers, waits and threads.
"""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import threading
import time
from collections import Counter, deque
from typing import Any

import psutil

from .metrics import OTHER_SITE, MetricSet, SiteBound
from .operation import Operation
from .options import Options
from .snapshot import Counted, LostContext, SiteStats, Snapshot, Totals

_RESERVOIR = 512
_TALLY_LIMIT = 64
_TOP = 5
_LOST_EXAMPLES = 5


class _SiteAggregate:
    __slots__ = (
        "callers",
        "count",
        "durations",
        "example",
        "file",
        "last_seen",
        "line",
        "lost_examples",
        "max_s",
        "self_s",
        "submitters",
        "threads",
        "total_s",
        "waits",
    )

    def __init__(self, file: str, line: int) -> None:
        self.file = file
        self.line = line
        self.count = 0
        self.total_s = 0.0
        self.self_s = 0.0
        self.max_s = 0.0
        self.last_seen = 0.0
        self.durations: list[float] = []
        self.callers: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self.threads: Counter[str] = Counter()
        self.submitters: Counter[str] = Counter()
        self.lost_examples: list[dict[str, str]] = []
        self.example: tuple[str, ...] | None = None

    def add(self, op: Operation, rng: random.Random) -> None:
        count = self.count = self.count + 1
        self.total_s += op.dark_s
        self.self_s += op.self_s
        duration = op.duration_s
        if duration > self.max_s:
            self.max_s = duration
        if op.end_time > self.last_seen:
            self.last_seen = op.end_time
        durations = self.durations
        if len(durations) < _RESERVOIR:
            durations.append(duration)
        else:  # reservoir sampling keeps an unbiased sample of all durations
            slot = int(rng.random() * count)
            if slot < _RESERVOIR:
                durations[slot] = duration
        _tally(self.callers, op.caller or "(thread root)")
        if op.waited_in:
            _tally(self.waits, op.waited_in)
        _tally(self.threads, op.thread)
        if op.example_stack and self.example is None:
            self.example = op.example_stack
        if op.lost_from:
            _tally(self.submitters, op.lost_from.get("submitter", "?"))
            if len(self.lost_examples) < _LOST_EXAMPLES:
                self.lost_examples.append(dict(op.lost_from))


def _tally(counter: Counter[str], key: str) -> None:
    if key in counter or len(counter) < _TALLY_LIMIT:
        counter[key] += 1
    else:
        counter["(other)"] += 1


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _top(counter: Counter[str]) -> list[Counted]:
    return [Counted(name, n) for name, n in counter.most_common(_TOP)]


class Findings:
    """Everything the detector has found so far; thread-safe."""

    def __init__(self, options: Options, metrics: MetricSet) -> None:
        self._options = options
        self._metrics = metrics
        self._lock = threading.Lock()
        self._sites: dict[tuple[str, str], _SiteAggregate] = {}
        self._children: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}
        self._bound = SiteBound(options.max_sites)
        self._rng = random.Random(0x5EED)
        self._wall_offset = time.time() - time.perf_counter()
        self.operations = 0
        self.samples = 0
        self.sampler_cpu_s = 0.0
        self.internal_errors = 0
        self.in_scope_s = 0.0
        self.spanned_s = 0.0
        # What flush_tick_metrics() already added to the Prometheus counters.
        self._pushed: tuple[float, float, float, float] = (0, 0.0, 0.0, 0.0)
        # Coverage window: (perf_counter second, in-scope s, spanned s) per second.
        self._window: deque[tuple[int, float, float]] = deque()

    def record(self, ops: list[Operation]) -> None:
        """Add a batch of operations (the tracker's flush, on any thread). Each (site,
        cause) is looked up once per batch and its metric series updated once, except
        the histogram, which takes one observation per operation."""
        by_site: dict[tuple[str, str], list[Operation]] = {}
        for op in ops:  # in order of completion within each (site, cause)
            key = (op.site, op.cause)
            same = by_site.get(key)
            if same is None:
                by_site[key] = [op]
            else:
                same.append(op)
        batch: dict[tuple[str, str], list[Operation]] = {}
        newly_dropped = 0
        rng = self._rng
        with self._lock:
            for (site, cause), same in by_site.items():
                label, dropped = self._bound.label(site)
                newly_dropped += dropped
                key = (label, cause)
                agg = self._sites.get(key)
                if agg is None:
                    file, line = (same[0].file, same[0].line) if label != OTHER_SITE else ("", 0)
                    agg = self._sites[key] = _SiteAggregate(file, line)
                for op in same:
                    agg.add(op, rng)
                batch.setdefault(key, []).extend(same)
            self.operations += len(ops)
        for key, same in batch.items():
            children = self._children.get(key)
            if children is None:  # labels() is a locked lookup: resolve each series once
                m = self._metrics
                children = self._children[key] = (
                    m.operations.labels(*key),
                    m.seconds.labels(*key),
                    m.self_seconds.labels(*key),
                    m.duration.labels(*key),
                )
            operations, seconds, self_seconds, duration = children
            operations.inc(len(same))
            seconds.inc(sum(op.dark_s for op in same))
            self_seconds.inc(sum(op.self_s for op in same))
            observe = duration.observe
            for op in same:
                observe(op.duration_s)
        if newly_dropped:
            self._metrics.sites_dropped.inc(newly_dropped)

    def add_ticks(
        self, now: float, ticks: int, in_scope_s: float, spanned_s: float, cpu_s: float
    ) -> None:
        """Account ``ticks`` sampler ticks up to ``now``: their coverage seconds and the
        sampler's own CPU."""
        with self._lock:
            self.samples += ticks
            self.sampler_cpu_s += cpu_s
            self.in_scope_s += in_scope_s
            self.spanned_s += spanned_s
            second = int(now)
            window = self._window
            if window and window[-1][0] == second:
                _, a, b = window[-1]
                window[-1] = (second, a + in_scope_s, b + spanned_s)
            else:
                window.append((second, in_scope_s, spanned_s))
            horizon = second - self._options.coverage_window_s
            while window and window[0][0] < horizon:
                window.popleft()

    def flush_tick_metrics(self) -> None:
        """Move what :meth:`add_ticks` accumulated into the Prometheus counters. Called
        about once a second and at stop: four counter updates per tick would be a
        sizeable share of a quiet tick's cost, and scrapes come seconds apart anyway."""
        with self._lock:
            totals = (self.samples, self.sampler_cpu_s, self.in_scope_s, self.spanned_s)
        pushed, self._pushed = self._pushed, totals
        m = self._metrics
        counters = (m.samples, m.sampler_cpu, m.in_scope_seconds, m.spanned_seconds)
        for counter, now_total, before in zip(counters, totals, pushed, strict=True):
            if now_total > before:
                counter.inc(now_total - before)

    def add_cpu(self, cpu_s: float) -> None:
        """Sampler work done on another thread (a flush before a read)."""
        with self._lock:
            self.sampler_cpu_s += cpu_s

    def window_coverage(self) -> float:
        """Coverage over the sliding window, NaN when nothing in scope was sampled."""
        with self._lock:
            total = sum(w[1] for w in self._window)
            spanned = sum(w[2] for w in self._window)
        return spanned / total if total > 0 else math.nan

    def count_error(self, kind: str = "sampler", n: int = 1) -> None:
        """``n`` errors of ``kind`` (see faults.py), caught inside the detector."""
        with self._lock:
            self.internal_errors += n
        self._metrics.internal_errors.labels(kind=kind).inc(n)

    def counts(self) -> dict[tuple[str, str], int]:
        """Operation counts per (site, cause) — the same numbers as the counter."""
        with self._lock:
            return {key: agg.count for key, agg in self._sites.items()}

    def snapshot(self, interval_ms: float) -> Snapshot:
        """A consistent, self-contained copy of everything found so far."""
        with self._lock:
            sites = [self._site_stats(key, agg) for key, agg in self._sites.items()]
            totals = Totals(
                samples=self.samples,
                operations=self.operations,
                dark_seconds=sum(s.self_seconds for s in sites),
                in_scope_seconds=self.in_scope_s,
                spanned_seconds=self.spanned_s,
                sampler_cpu_seconds=self.sampler_cpu_s,
                internal_errors=self.internal_errors,
                sites_dropped=self._bound.dropped,
            )
        sites.sort(key=lambda s: (-s.total_seconds, s.site, s.cause))
        return Snapshot(
            created_unix=time.time(),
            program=_program_info(),
            settings={
                "threshold_ms": self._options.threshold_ms,
                "interval_ms": interval_ms,
                "max_sites": self._options.max_sites,
            },
            totals=totals,
            sites=sites,
        )

    def _site_stats(self, key: tuple[str, str], agg: _SiteAggregate) -> SiteStats:
        durations = sorted(agg.durations)
        lost = None
        if agg.submitters or agg.lost_examples:
            lost = LostContext(
                submitters=_top(agg.submitters), examples=[dict(e) for e in agg.lost_examples]
            )
        return SiteStats(
            site=key[0],
            cause=key[1],
            file=agg.file,
            line=agg.line,
            count=agg.count,
            total_seconds=agg.total_s,
            self_seconds=agg.self_s,
            p50_seconds=_percentile(durations, 0.50),
            p95_seconds=_percentile(durations, 0.95),
            max_seconds=agg.max_s,
            last_seen_unix=agg.last_seen + self._wall_offset,
            callers=_top(agg.callers),
            waited_in=_top(agg.waits),
            threads=_top(agg.threads),
            example_stack=list(agg.example or ()),
            lost_context=lost,
        )


def _program_info() -> dict[str, Any]:
    """Who was measured; the process CPU puts the sampler's own cost in proportion."""
    info: dict[str, Any] = {
        "argv": list(sys.argv),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        process = psutil.Process()
        cpu = process.cpu_times()
        info["cpu_seconds"] = round(cpu.user + cpu.system, 3)
        info["started_unix"] = process.create_time()
    except (psutil.Error, OSError):
        pass  # the facts are optional; the snapshot is not
    return info
