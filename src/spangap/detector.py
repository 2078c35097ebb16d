"""The public entry point: ``enable_gap_detector()`` and the :class:`GapDetector` it returns."""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.exposition import start_http_server

from .activations import Activations
from .budget import OverheadBudget
from .celery_tasks import CeleryWatcher
from .faults import FAULTS, note
from .findings import Findings
from .handoff import HandoffWatcher
from .inferred import InferredSpans
from .liveness import make_watcher
from .metrics import metric_set
from .nativecalls import NativeCalls
from .operation import Operation
from .options import Options, resolve_options
from .otel_metrics import report_through_otel
from .outbound import OutboundWatcher
from .sampler import Sampler, SamplerProbe
from .scope import Scope, detect_entry_package
from .snapshot import Snapshot
from .spanstate import make_reader, runtime_context_var
from .stacks import open_reader
from .tasks import TaskSampler, tasks_supported
from .tracker import MAX_CORRECTION_OF_THRESHOLD, CallTracker, use_native_tracking

log = logging.getLogger("spangap")

_NO_SDK_GRACE_S = 2.0

_lock = threading.Lock()
_current: GapDetector | None = None


def enable_gap_detector(**options: Any) -> GapDetector:
    """Start the detector (once per process) and return it.

    Safe to call before or after the OpenTelemetry SDK is configured. A second call
    returns the detector that is already running. Options are described in the README;
    each has an environment twin ``SPANGAP_<OPTION>``. Raises
    :class:`~spangap.options.OptionError` for a bad value.
    """
    global _current
    with _lock:
        if _current is not None and _current.running:
            if options:
                log.debug("spangap: detector already running; new options ignored")
            return _current
        detector = GapDetector(resolve_options(options))
        detector.start()
        _current = detector
        return detector


def _before_fork() -> None:
    try:
        if _current is not None:
            _current._before_fork()
    except Exception as exc:  # an error here would be printed into the host's stderr
        note("fork", exc)


def _after_fork_in_parent() -> None:
    try:
        if _current is not None:
            _current._after_fork_in_parent()
    except Exception as exc:
        note("fork", exc)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # it may have been held by another thread at fork time
    FAULTS.forget()  # the parent's notes are the parent's to count
    try:
        if _current is not None:
            _current._after_fork_in_child()
    except Exception as exc:
        note("fork", exc)


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _thread_name(tid: int) -> str:
    thread = threading._active.get(tid)  # type: ignore[attr-defined]
    return thread.name if thread is not None else f"thread-{tid}"


def sdk_configured() -> bool:
    """Whether a real tracer provider was installed (else every span is invalid)."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class GapDetector:
    """A running detector: a sampler thread, its findings, and their exporters."""

    def __init__(self, options: Options, probe: SamplerProbe | None = None) -> None:
        """``probe``: an injection point for benchmarks (``sampler.SamplerProbe``)."""
        self.options = options
        self._probe = probe
        self._metrics = metric_set(options.registry, options.metric_prefix)
        self._findings = Findings(options, self._metrics)
        entry = options.entry_module.split(".")[0] if options.entry_module else None
        self._scope = Scope(
            options.include,
            options.exclude,
            options.idle_functions,
            entry_package=entry or detect_entry_package(),
        )
        self._reader = make_reader(options.context_reader)
        self._activations: Activations | None = None
        try:
            self._activations = Activations()
        except RuntimeError:  # no OpenTelemetry runtime context to wrap: samples only
            log.warning("spangap: span activations between samples are not seen")
        self._handoff = HandoffWatcher(self._scope)
        self._celery = CeleryWatcher(self._handoff, on_process_exit=self.stop)
        self._outbound: OutboundWatcher | None = None
        if options.outbound_requests:
            self._outbound = OutboundWatcher(self._metrics.untraced_outbound)
        #: Whether the native walks count calls: "native", "off", or "off (why not)".
        self.stacks = "off"
        self._build_sampler()
        self._server: Any = None
        self._started = time.perf_counter()
        self._next_snapshot = self._started + options.snapshot_interval_s
        self._warned_no_sdk = False
        self._warned_snapshot = False
        self._running = False
        self._forked = False
        self._stop_lock = threading.Lock()

    def _build_sampler(self) -> None:
        """The per-process parts: findings, call tracker, task sampler, sampling thread."""
        options = self.options
        self._findings = Findings(options, self._metrics)
        self._inferred: InferredSpans | None = None
        if options.inferred_spans:
            counter = self._metrics.inferred_spans
            self._inferred = InferredSpans(
                options.inferred_spans_per_minute,
                lambda result, n: counter.labels(result).inc(n),
            )
        self._watcher = make_watcher(options.liveness, options.interval_s)
        self._tracker = CallTracker(
            self._scope,
            options.threshold_s,
            options.interval_s,
            emit=self._record,
            thread_name=_thread_name,
            lost_context=self._handoff.lost_context,
            watcher=self._watcher,
            native=use_native_tracking(options.tracker),
        )
        var = runtime_context_var()
        tasks = None
        if var is not None and tasks_supported():
            tasks = TaskSampler(var, activations=self._activations)
        self._tracker.native_calls = self._make_native_calls()
        self._budget = OverheadBudget(options.max_overhead, options.interval_s, options.threshold_s)
        self._sampler = Sampler(
            self._tracker,
            self._reader,
            self._findings,
            self._budget,
            self._periodic,
            tasks,
            self._watcher,
            self._activations,
            self._probe,
        )

    def _make_native_calls(self) -> NativeCalls | None:
        """The native stack sampler's call counting, where ``stacks`` asks for it and it
        can run: its reader passed its self-checks, and span activations are counted per
        thread in C (without them a span made current between walks would go unseen)."""
        mode = self.options.stacks
        if mode == "off":
            self.stacks = "off"
            return None
        reader, why = open_reader()
        if reader is not None and (self._activations is None or not self._activations.native):
            reader, why = None, "span activations are not counted in C (_tracking not built)"
        if reader is None:
            if mode == "native":
                raise RuntimeError(f"stacks='native': {why}")
            self.stacks = f"off ({why})"
            return None
        self.stacks = "native"
        options = self.options
        return NativeCalls(
            reader,
            self._scope,
            options.threshold_s,
            options.threshold_s * MAX_CORRECTION_OF_THRESHOLD,
            options.interval_s,
            options.max_overhead,
            _thread_name,
            self._handoff.lost_context_at,
            self._tracker.wait_name,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.options.metrics_port is not None:
            reg = self.options.registry or REGISTRY
            self._server, _ = start_http_server(
                self.options.metrics_port, addr=self.options.metrics_addr, registry=reg
            )
        self._metrics.interval.set(self.options.interval_s)
        self._metrics.max_overhead.set(self.options.max_overhead)
        self._metrics.stride.set(1)
        self._metrics.native_walks.set(1 if self._tracker.native_calls else 0)
        if self.stacks != "off":
            log.info("spangap: stacks %s", self.stacks)  # native, or off and why not
        self._running = True
        self._metrics.before_collect.add(self._flush_before_scrape)
        if self.options.otel_metrics:
            report_through_otel(self.snapshot, self.options.metric_prefix)
        self._handoff.install()
        self._celery.connect()
        if self._outbound is not None:
            self._outbound.install()
        self._sampler.start()
        atexit.register(self._at_exit)

    def stop(self) -> None:
        """Stop sampling and flush: afterwards the metrics and the snapshot hold every
        operation that completed before this call. Metrics stay registered. Never
        raises: a step that fails is counted (faults.py) and the next one still runs."""
        with self._stop_lock:
            if not self._running:
                return
            self._running = False
            activations = self._activations
            inferred = self._inferred
            for step in (
                self._sampler.stop,
                inferred.stop if inferred is not None else None,
                self._handoff.uninstall,
                self._celery.disconnect,
                self._outbound.uninstall if self._outbound is not None else None,
                # attach was wrapped after the reader's wrapper: undone first
                activations.close if activations is not None else None,
                self._reader.close,
                lambda: self._warn_if_no_sdk(force=True),
                self._update_gauges,
                self._write_final_snapshot,
                self._close_server,
                lambda: atexit.unregister(self._at_exit),
            ):
                if step is None:
                    continue
                try:
                    step()
                except Exception as exc:
                    note("stop", exc)
            self._drain_faults()

    def _write_final_snapshot(self) -> None:
        if self.options.snapshot_path:
            self._write_snapshot_quietly(self._configured_snapshot_path())

    def _close_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    @property
    def running(self) -> bool:
        return self._running

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` is served on (useful with ``metrics_port=0``)."""
        return None if self._server is None else int(self._server.server_port)

    @property
    def context_reader(self) -> str:
        """Which span-state reader is in use: "native" or "python"."""
        return self._reader.name

    @property
    def tracker(self) -> str:
        """Which call tracker follows thread stacks: "native" (C) or "python"."""
        return "native" if self._tracker.native else "python"

    @property
    def liveness(self) -> str:
        """How the end of a call is found: "native" (watcher thread) or "sampled"."""
        return "sampled" if self._watcher is None else "native"

    # -- results --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Everything found so far, as a snapshot document."""
        self._flush()
        return self._findings.snapshot(self.options.interval_ms)

    def write_snapshot(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the snapshot atomically; returns the path written."""
        target = os.fspath(path or self._configured_snapshot_path())
        self.snapshot().save(target)
        return target

    def _configured_snapshot_path(self) -> str:
        """``snapshot_path`` (or spangap-<pid>.json); a forked worker gets its own file."""
        target = self.options.snapshot_path or f"spangap-{os.getpid()}.json"
        if self._forked:
            stem, suffix = os.path.splitext(target)
            target = f"{stem}.{os.getpid()}{suffix}"
        return target

    def operation_counts(self) -> dict[tuple[str, str], int]:
        """Operation counts per (site, cause), as exported to Prometheus."""
        self._flush()
        return self._findings.counts()

    # -- internals ------------------------------------------------------------------------

    def _record(self, ops: list[Operation]) -> None:
        """Where the tracker's completed operations go: the findings, and the inferred
        spans when they are on."""
        self._findings.record(ops)
        if self._inferred is not None:
            self._inferred.offer(ops)

    def _flush(self) -> None:
        """Hand the tracker's completed operations to the findings and the metrics
        before someone reads them. The sampler does it once a second on its own thread;
        done on any other thread, the CPU it takes is still counted as the sampler's."""
        self._drain_faults()
        if threading.get_ident() == self._sampler.ident:
            self._tracker.flush()
            return
        start = time.thread_time()
        if self._tracker.flush():
            self._findings.add_cpu(time.thread_time() - start)

    def _flush_before_scrape(self) -> None:
        """The flush a scrape runs: a failure costs the scrape nothing (faults.py)."""
        try:
            self._flush()
        except Exception as exc:
            note("scrape", exc)

    def _drain_faults(self) -> None:
        """Count and log the errors noted since the last drain (faults.py)."""
        FAULTS.drain(self._findings.count_error)

    def _periodic(self, now: float) -> None:
        """Runs about once a second on the sampler thread, under its lock (hold())."""
        self._drain_faults()
        self._update_gauges()
        self._warn_if_no_sdk(force=now - self._started >= _NO_SDK_GRACE_S)
        self._celery.connect()  # if Celery was imported since; under the sampler's lock,
        # which fork waits for (Celery's signals hold a lock of theirs while connecting)
        if self._outbound is not None:
            self._outbound.connect()  # client libraries imported since
        if self.options.snapshot_path and now >= self._next_snapshot:
            self._next_snapshot = now + self.options.snapshot_interval_s
            self._write_snapshot_quietly(self._configured_snapshot_path())

    def _update_gauges(self) -> None:
        self._findings.flush_tick_metrics()
        coverage = self._findings.window_coverage()
        self._metrics.coverage_ratio.set(coverage if not math.isnan(coverage) else math.nan)
        self._metrics.interval.set(self._sampler.effective_interval_s)
        self._metrics.stride.set(self._budget.setting.stride)
        self._metrics.overhead.set(self._budget.share)
        self._metrics.over_budget.set(1 if self._budget.over_budget else 0)
        per_thread = self._sampler.effective_interval_s * self._budget.setting.stride
        self._metrics.rate.labels("ticks").set(1.0 / per_thread if per_thread > 0 else 0.0)
        walks = self._tracker.native_calls
        self._metrics.rate.labels("walks").set(1.0 / walks.interval_s if walks else 0.0)
        self._metrics.native_walks.set(1 if walks else 0)

    def _warn_if_no_sdk(self, force: bool) -> None:
        if self._warned_no_sdk or not force:
            return
        self._warned_no_sdk = True
        if not sdk_configured():
            log.warning(
                "spangap: no OpenTelemetry SDK tracer provider is configured, so every span "
                "is invalid and all work will look dark"
            )

    def _write_snapshot_quietly(self, path: str) -> None:
        try:
            self.write_snapshot(path)
        except OSError as exc:
            note("snapshot", exc)
            if not self._warned_snapshot:  # once: a full disk stays full
                self._warned_snapshot = True
                FAULTS.logged_elsewhere("snapshot")
                log.warning(
                    "spangap: could not write snapshot %s: %s (counted in "
                    'spangap_internal_errors_total{kind="snapshot"}, logged once)',
                    path,
                    exc.strerror or type(exc).__name__,
                )
        except Exception as exc:
            note("snapshot", exc)

    def _before_fork(self) -> None:
        if self._running:
            self._sampler.hold()

    def _after_fork_in_parent(self) -> None:
        if self._running:
            self._sampler.release()

    def _after_fork_in_child(self) -> None:
        """A forked worker starts its own sampler with fresh findings. Its counters add
        up with the other workers' in prometheus-client's multiprocess mode; /metrics
        stays with the parent, and the snapshot gets the worker's pid in its name."""
        if not self._running:
            return
        self._server = None
        self._stop_lock = threading.Lock()
        self._reader.reset()
        if self._activations is not None:
            self._activations.reset()
        self._handoff.reset()
        self._celery.reset()
        self._celery.connect()  # one thread here: no fork can come in between
        self._build_sampler()
        self._started = time.perf_counter()
        self._next_snapshot = self._started + self.options.snapshot_interval_s
        self._forked = True
        self._sampler.start()

    def _at_exit(self) -> None:
        try:
            self.stop()
        except Exception as exc:  # stop() does not raise; a last guard at exit all the same
            note("stop", exc)
