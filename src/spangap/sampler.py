"""The sampling thread: wakes every interval, samples all threads, feeds the tracker.

A tick only samples; cost, tick counts and coverage are accounted once per budget window.
Between ticks it sleeps in the liveness watcher, which takes one look without the GIL at
the calls the last tick saw first. Every error is caught, counted and logged once, the
tracker's state dropped, and sampling goes on; after too many in a row the sampler stops
itself. Benchmarks see its parts through a :class:`SamplerProbe`.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from .activations import Activations
from .budget import OverheadBudget
from .faults import note
from .findings import Findings
from .frames import current_frames
from .spanstate import SpanStateReader
from .tasks import TaskSampler
from .tracker import CallTracker

if TYPE_CHECKING:
    from ._liveness import Watcher as LivenessWatcher

log = logging.getLogger("spangap")

_MAX_CONSECUTIVE_ERRORS = 50
_PERIODIC_S = 1.0
_BUDGET_WINDOW_S = 0.5
# The first window is short: the sampler starts at full rate, and on a busy host that
# can cost several times the budget until the first update cuts it.
_FIRST_BUDGET_WINDOW_S = 0.1


class SamplerProbe(Protocol):
    """An injection point for benchmarks: ``wrap`` is given each part of the sampler
    once, when the sampler is made, and returns what the sampler calls instead (a timed
    wrapper, or a budget pinned to one setting). The parts, in the order of a tick:
    ``sleep`` (the watcher's sleep, or time.sleep), ``tick`` (one whole tick, holding the
    next five), ``current_frames``, ``tasks`` (the asyncio task sample), ``span_reader``,
    ``task_tracker`` and ``tracker`` (the call tracker's observe_tasks and observe);
    then ``flush``, ``add_ticks`` (a budget window's ticks, coverage and cost) and
    ``budget`` (the overhead budget's choice of interval and stride)."""

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]: ...


def _unwrapped(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


class _CpuClock(Protocol):
    @property
    def cpu_seconds(self) -> float: ...


class _NativeCpu:
    """The CPU a native thread of ours spent since it was last accounted, by name."""

    def __init__(self) -> None:
        self._accounted: dict[str, float] = {}

    def since_last(self, name: str, thread: _CpuClock | None) -> float:
        if thread is None:
            return 0.0
        total = thread.cpu_seconds
        spent = total - self._accounted.get(name, 0.0)
        self._accounted[name] = total
        return max(0.0, spent)


class Sampler:
    """Owns the sampling thread. ``periodic`` runs about once a second on that thread."""

    def __init__(
        self,
        tracker: CallTracker,
        reader: SpanStateReader,
        findings: Findings,
        budget: OverheadBudget,
        periodic: Callable[[float], None],
        tasks: TaskSampler | None = None,
        watcher: LivenessWatcher | None = None,
        activations: Activations | None = None,
        probe: SamplerProbe | None = None,
    ) -> None:
        self._tracker = tracker
        self._native_calls = tracker.native_calls
        self._activations = activations
        self._watcher = watcher
        self._native_cpu = _NativeCpu()  # the native threads' CPU already accounted
        self._tasks = tasks
        self._setting = budget.setting
        self._ticks = 0  # ticks not yet accounted
        self._tick_no = 0
        self._periodic = periodic
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the tracker is used by one thread at a time
        self._errors_in_a_row = 0
        self._rng = random.Random()
        wrap = probe.wrap if probe is not None else _unwrapped
        sleep = watcher.sleep if watcher is not None else time.sleep
        self._sleep: Callable[..., None] = wrap("sleep", sleep)
        self._tick = wrap("tick", self._tick_safely)
        self._current_frames = wrap("current_frames", current_frames)  # read safely (frames.py)
        self._sample_tasks = wrap("tasks", tasks.sample) if tasks is not None else None
        self._spanned_threads = wrap("span_reader", reader.spanned_threads)
        self._observe_tasks = wrap("task_tracker", tracker.observe_tasks)
        self._observe = wrap("tracker", tracker.observe)
        self._flush = wrap("flush", tracker.flush)
        self._add_ticks = wrap("add_ticks", findings.add_ticks)
        self._update_budget = wrap("budget", budget.update)
        self.effective_interval_s = budget.setting.interval_s
        self.ident: int | None = None

    def start(self) -> None:
        if self._native_calls is not None:
            self._native_calls.start()
        self._thread = threading.Thread(target=self._run, name="spangap-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then take one last sample so every call that ended before
        this moment is accounted for."""
        self._stopping = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        # Bounded: a stuck tick must not hang the host's shutdown; skip the last sample.
        if not self._lock.acquire(timeout=timeout):
            log.error("spangap: sampler did not stop within %.0f s; last sample skipped", timeout)
            note("stop")
            return
        try:
            cpu_start = time.thread_time()  # this thread's: the caller's, not the sampler's
            self._tick_safely(exclude=None)
            self._tracker.settle_tasks(time.perf_counter())  # coverage of unmoved tasks
            if self._watcher is not None:
                self._watcher.stop()
            if self._native_calls is not None:
                self._native_calls.stop()
            self._flush_safely(final=True)
            cpu, _ = self._cost_since(cpu_start)
            self._account_safely(time.perf_counter(), cpu + self._native_cpu_since_last())
            # What is still running did not complete: let go of its frames (and so of the
            # application's objects they hold) and of the tasks held until seen done.
            self._tracker.forget()
            if self._tasks is not None:
                self._tasks.forget()
        finally:
            self._lock.release()

    def hold(self) -> None:
        """Wait for the current tick to finish and keep the sampler from starting
        another (before ``fork()``: no lock of ours or of prometheus-client may be
        held by the sampler thread when the process is copied)."""
        self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def _run(self) -> None:
        self.ident = threading.get_ident()
        cpu_mark = time.thread_time()
        next_periodic = time.perf_counter() + _PERIODIC_S
        last_tick = deadline = window_start = time.perf_counter()
        look_at = last_tick
        window = _FIRST_BUDGET_WINDOW_S
        jitter = self._rng.uniform
        watcher, look_after = self._watcher, self._tracker.look_after_s
        try:
            while not self._stopping:
                interval = self._setting.interval_s
                # Fixed-rate deadlines: time spent waiting for the GIL (a CPU-bound thread
                # holds it up to the switch interval) comes off the next sleep, so ticks
                # stay close to the interval instead of interval + GIL wait. A little
                # jitter keeps the sampler from locking step with periodic work.
                deadline += interval * jitter(0.9, 1.1)
                delay = deadline - time.perf_counter()
                if delay < -interval:
                    deadline = time.perf_counter()  # fell far behind (a stall): no burst
                if watcher is not None:
                    # The calls the last tick saw first get one more look, without the
                    # GIL, at the moment that decides whether they reach the threshold
                    # (none when the next tick comes first).
                    self._sleep(look_at, deadline)
                else:
                    self._sleep(max(delay, 0.0))  # sleep(0) still lets the other threads run
                if self._stopping:
                    break
                with self._lock:
                    if self._stopping:
                        break
                    now = time.perf_counter()
                    gap = now - last_tick
                    self.effective_interval_s += (gap - self.effective_interval_s) / 64
                    # The tick gap is the least gap any examined thread had since its
                    # previous sample (with a stride, each thread's is longer), so the
                    # look is never earlier than its calls' estimates need.
                    look_at, last_tick = now + look_after(gap), now
                    self._tick(exclude=self.ident)
                if now - window_start >= window:
                    cpu, cpu_mark = self._cost_since(cpu_mark)
                    native = self._native_cpu_since_last()
                    with self._lock:
                        self._account_safely(now, cpu + native)
                    self._apply_budget(cpu, native, now - window_start)
                    window_start, window = now, _BUDGET_WINDOW_S
                if now >= next_periodic:
                    next_periodic = now + _PERIODIC_S
                    self._run_periodic(now)
                if self._errors_in_a_row >= _MAX_CONSECUTIVE_ERRORS:
                    log.error(
                        "spangap: sampler stopped after %d errors in a row",
                        self._errors_in_a_row,
                    )
                    return
        finally:  # what the last window's ticks cost, before stop() takes its last sample
            with self._lock:
                cpu, _ = self._cost_since(cpu_mark)
                self._account_safely(time.perf_counter(), cpu + self._native_cpu_since_last())

    def _apply_budget(self, cpu_s: float, native_s: float, window_s: float) -> None:
        """Let the budget pick the interval and stride for the next window: the native
        stack sampler's walks first, within their share, then the ticks with the rest."""
        reserved = 0.0
        if self._native_calls is not None:
            reserved = self._native_calls.apply_budget(native_s, window_s)
        setting = self._update_budget(cpu_s, window_s, reserved)
        if setting != self._setting:
            self._setting = setting
            self._tracker.set_interval(setting.per_thread_interval_s)
            if self._watcher is not None:
                self._watcher.interval = setting.interval_s

    def _tick_safely(self, exclude: int | None) -> None:
        """One sample of every thread (or of one in ``stride``) and of the tasks."""
        try:
            now = time.perf_counter()
            activations = self._activations
            # Span activations noted from here on may concern calls these stacks miss.
            before = activations.count() if activations is not None else 0
            frames = self._current_frames()
            # After the stacks are read: a thread that ran in between held the GIL.
            frozen = self._watcher.frozen_since(now) if self._watcher is not None else None
            if exclude is not None:
                frames.pop(exclude, None)
            stride = self._setting.stride if exclude is not None else 1  # stop(): all
            if self._sample_tasks is not None:
                tasks, done = self._sample_tasks(frames, now, stride, before)
                if tasks or done:
                    self._observe_tasks(tasks, done, now)
                del tasks, done
            visit = self._rotation(frames, stride)
            spanned = self._spanned_threads(visit, frames)
            activated = activations.since_last(visit, frames, before) if activations else None
            self._observe(visit, spanned, now, alive=frames, activated=activated, frozen=frozen)
            del frames, visit, activated
            self._ticks += 1
            self._errors_in_a_row = 0
        except Exception:
            self._on_error()

    def _account_safely(self, now: float, cpu_s: float) -> None:
        """Hand the ticks since the last call, their coverage and ``cpu_s`` (what they
        cost) on to the findings."""
        try:
            in_scope, spanned_s = self._tracker.take_coverage()
            ticks, self._ticks = self._ticks, 0
            self._add_ticks(now, ticks, in_scope, spanned_s, cpu_s)
        except Exception:
            self._on_error()

    def _rotation(self, frames: dict[int, FrameType], stride: int) -> dict[int, FrameType]:
        """The threads this tick examines: all of them, or one in ``stride`` in a rotation
        that gives every thread its turn every ``stride`` ticks."""
        self._tick_no += 1
        if stride <= 1:
            return frames
        turn = self._tick_no % stride
        return {tid: frames[tid] for i, tid in enumerate(sorted(frames)) if i % stride == turn}

    def _cost_since(self, mark: float) -> tuple[float, float]:
        """What sampling cost since ``mark`` (the calling thread's CPU clock then): that
        thread's CPU plus the watcher's not yet counted; and the clock now, the next
        mark."""
        now = time.thread_time()
        return now - mark + self._watcher_cpu_since_last(), now

    def _watcher_cpu_since_last(self) -> float:
        """The native watcher's CPU since the previous tick: part of the sampler's cost."""
        return self._native_cpu.since_last("watcher", self._watcher)

    def _native_cpu_since_last(self) -> float:
        """The native stack sampler's CPU since it was last accounted."""
        return self._native_cpu.since_last("walks", self._native_calls)

    def _run_periodic(self, now: float) -> None:
        try:
            with self._lock:  # hold() keeps a fork from copying a lock we hold
                self._flush_safely()
                self._periodic(now)
        except Exception:
            self._on_error()

    def _flush_safely(self, final: bool = False) -> None:
        """Pass the operations counted since the last flush on to the findings."""
        try:
            self._flush(final)
        except Exception:
            self._on_error()

    def _on_error(self) -> None:
        """Called in an ``except`` block: note the error (faults.py) and start afresh."""
        self._errors_in_a_row += 1
        note("sampler", sys.exc_info()[1])
        try:
            self._tracker.forget()
            if self._tasks is not None:
                self._tasks.forget()
        except Exception as exc:
            note("sampler", exc)
