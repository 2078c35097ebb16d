"""The call tracker: turns a series of stack samples into uninstrumented operations.

A call is followed by the identity of its frame object from the first sample whose stack
holds it to the last; each new stack is walked only from the leaf up to the first frame
already known. A call that ends counts when it is in scope, was dark at every sample,
was not idle throughout, and its estimated duration (with at most 0.48 of the threshold
credited for the unseen ends) reaches the threshold. Operations are buffered and passed
on in batches by :meth:`CallTracker.flush`. The thread path also exists in C
(``c/_tracking.c``); this module is the readable reference and follows task stacks.
Details: docs/how-it-works.md, "The call tracker".
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from types import CodeType, FrameType
from typing import TYPE_CHECKING

from . import limits as limits_module
from .callee import CalleeNames
from .frames import back
from .idle import IDLE, IDLE_IF_DIRECT, WORK, is_idle_stack
from .operation import CONTEXT_LOST, NO_SPAN, Operation
from .scope import CodeInfo, Scope
from .tasks import TaskEnd, TaskSample

if TYPE_CHECKING:
    from ._liveness import Watcher as LivenessWatcher
    from ._tracking import CompletedCall, ThreadTracker
    from .nativecalls import NativeCalls

# The most the two half-gaps may add to a call's estimate, as a share of the threshold:
# under one half, so that a call of at most half the threshold is never counted.
MAX_CORRECTION_OF_THRESHOLD = 0.48


def native_tracking_available() -> bool:
    try:
        from . import _tracking  # noqa: F401
    except ImportError:
        return False
    return True


def use_native_tracking(mode: str) -> bool:
    """``auto``: the C thread path if it is built; ``native``: it or an error;
    ``python``: the reference path."""
    if mode == "python":
        return False
    if native_tracking_available():
        return True
    if mode == "native":
        raise RuntimeError(
            "tracker='native' needs spangap's C extension _tracking, which is not built "
            "for this interpreter"
        )
    return False


class _Call:
    """A tracked in-scope call that has been dark at every sample so far."""

    __slots__ = (
        "cause",
        "child_s",
        "first_seen",
        "gap_before",
        "info",
        "lost_from",
        "nonidle_start",
        "sample_start",
        "slot",
        "wait_start",
    )

    def __init__(
        self,
        info: CodeInfo,
        first_seen: float,
        gap_before: float,
        sample_start: int,
        nonidle_start: int,
        wait_start: int,
        cause: str,
        lost_from: Mapping[str, str] | None,
    ) -> None:
        self.info = info
        self.first_seen = first_seen
        self.gap_before = gap_before
        self.sample_start = sample_start
        self.nonidle_start = nonidle_start
        self.wait_start = wait_start
        self.child_s = 0.0
        self.cause = cause
        self.lost_from = lost_from
        self.slot = -1  # the liveness watcher's slot, if it follows this call


_NO_ACTIVATION: frozenset[int] = frozenset()


class _ThreadTrack:
    """What the tracker remembers about one thread between samples."""

    __slots__ = (
        "activation",
        "calls",
        "idle",
        "index",
        "infos",
        "inscope",
        "leaf",
        "live",
        "name",
        "nonidle",
        "prev_time",
        "samples",
        "spanned",
        "stack",
        "tid",
        "wait",
        "wait_base",
        "waits",
    )

    def __init__(self, name: str, now: float, tid: int = 0) -> None:
        self.tid = tid  # 0 for a task
        self.stack: list[FrameType] = []  # root -> leaf, frames of the previous sample
        self.infos: list[CodeInfo] = []  # parallel to stack
        self.calls: list[_Call | None] = []  # parallel; None = not a countable dark call
        self.leaf: FrameType | None = None  # stack[-1], kept apart for the fast path
        self.live = 0  # number of non-None entries in calls
        self.spanned = False  # at the last sample (tasks reuse it while they do not move)
        self.index: dict[int, int] = {}  # id(frame) -> position in stack
        self.prev_time = now
        self.samples = 0
        self.nonidle = 0
        # During observe(): ids of the frames running when a span was first made current
        # since the previous sample (the frames themselves are held by the caller).
        self.activation: frozenset[int] = _NO_ACTIVATION
        self.inscope = 0  # number of in-scope frames on the stack
        self.idle = False
        self.wait: str | None = None
        self.waits: list[str | None] = []
        self.wait_base = 0
        self.name = name


class CallTracker:
    """Follows every thread's calls across samples and emits completed operations."""

    def __init__(
        self,
        scope: Scope,
        threshold_s: float,
        interval_s: float,
        emit: Callable[[list[Operation]], None],
        thread_name: Callable[[int], str],
        lost_context: Callable[[int], Mapping[str, str] | None] = lambda tid: None,
        watcher: LivenessWatcher | None = None,
        native: bool = False,
    ) -> None:
        self._scope = scope
        self._threshold = threshold_s
        self._interval = interval_s
        self._max_correction = threshold_s * MAX_CORRECTION_OF_THRESHOLD
        self._limits = limits_module.LIMITS
        self._emit = emit
        self._pending: deque[Operation] = deque()  # completed, not yet flushed
        self._flush_lock = threading.Lock()
        self._exampled: set[CodeInfo] = set()  # code whose operations had an example
        self._wait_names: dict[tuple[int, int], tuple[object, str | None]] = {}
        self._thread_name = thread_name
        self._lost_context = lost_context
        self._watcher = watcher
        self._callees = CalleeNames()
        self._tracks: dict[int, _ThreadTrack] = {}
        self._task_tracks: dict[int, _ThreadTrack] = {}
        # Coverage accumulated since the last call to take_coverage().
        self._in_scope_s = 0.0
        self._spanned_s = 0.0
        self._native: ThreadTracker | None = None
        self.native_calls: NativeCalls | None = None  # set by the detector when in use
        if native:
            from ._tracking import ThreadTracker

            self._native = ThreadTracker(
                scope.info_of,
                thread_name,
                lost_context,
                _example_of_pair,
                threshold_s,
                interval_s,
                self._max_correction,
                self._limits,
                (IDLE, WORK, IDLE_IF_DIRECT),
                watcher,
            )

    @property
    def native(self) -> bool:
        """Whether thread stacks are followed by the C path."""
        return self._native is not None

    # -- public ---------------------------------------------------------------------------

    def flush(self, final: bool = False) -> int:
        """Pass the operations completed since the last flush to ``emit``, in the order
        they completed, with those the native stack sampler counted (all of them when
        ``final``, else those it has held long enough); returns how many. Any thread
        may call it."""
        with self._flush_lock:
            pending = self._pending
            ops = [pending.popleft() for _ in range(len(pending))]
            if self._native is not None:
                ops.extend(self._from_native(record) for record in self._native.take())
            if self.native_calls is not None:
                ops = self.native_calls.merge(ops, time.perf_counter(), final)
            if ops:
                self._emit(ops)
            return len(ops)

    def observe(
        self,
        frames: Mapping[int, FrameType],
        spanned: set[int],
        now: float,
        alive: Mapping[int, object] | None = None,
        activated: dict[int, tuple[FrameType, ...]] | None = None,
        frozen: tuple[float, Mapping[int, float]] | None = None,
    ) -> None:
        """Take one sample: ``frames`` maps thread id -> innermost frame, for the threads
        examined this tick; ``alive`` holds every live thread id (default: those in
        ``frames``), so that a thread skipped this tick is not taken for ended.
        ``activated`` maps a thread to the frames that were running when a span was
        first made current in it since its previous sample (activations.py): those
        calls were not dark throughout, whether they ended since, are still on the
        stack, or began after the previous sample. ``frozen`` is ``(since, held)`` from
        ``Watcher.frozen_since``: every thread's stack is known not to have changed since
        ``since``, or since its value in ``held`` (it has not held the GIL since then):
        its new calls were already running then, and the calls it no longer runs had
        already returned.

        Written for the common case: most threads' leaf frame is the one seen last time
        (blocked, idle, or looping in one function), which costs two identity checks.
        """
        if self._native is not None:
            alive_ids = frames if alive is None else alive
            self._native.observe(frames, spanned, now, alive_ids, activated, frozen)
            return
        tracks = self._tracks
        interval = self._interval
        cap = 2 * interval
        in_scope_s = spanned_s = 0.0
        for tid, leaf in frames.items():
            track = tracks.get(tid)
            if track is None:
                track = tracks[tid] = _ThreadTrack(self._thread_name(tid), now, tid)
            weight = min(now - track.prev_time, cap) if track.samples else interval
            is_spanned = tid in spanned
            # before calls that returned are completed (and counted)
            self._take_activated(track, activated.get(tid) if activated else None)
            if track.leaf is not leaf:
                since = now
                if frozen is not None:  # not before its previous sample: it moved since
                    unchanged = frozen[1].get(tid, frozen[0])
                    since = min(max(unchanged, track.prev_time), now)
                self._restructure(tid, track, leaf, is_spanned, since, now)
            elif is_spanned and track.live:
                self._taint(track)
            track.activation = _NO_ACTIVATION
            coverage = self._account(track, leaf, is_spanned, now)
            if coverage:
                in_scope_s += weight
                if coverage > 1:
                    spanned_s += weight
        self._in_scope_s += in_scope_s
        self._spanned_s += spanned_s
        alive_ids = frames if alive is None else alive
        # Every tick (with a stride, live threads may have no track yet): an ended
        # thread's span activations are given at the tick that sees it gone.
        for tid in [t for t in tracks if t not in alive_ids]:
            track = tracks.pop(tid)  # the thread ended
            self._take_activated(track, activated.get(tid) if activated else None)
            self._end_calls(track, 0, now)

    def look_after_s(self, gap_before_s: float) -> float:
        """How long after the sample that first saw a call the call must still be running
        for its estimate to reach the threshold, when that sample came ``gap_before_s``
        after the thread's previous one (half that gap is credited to the call's unseen
        start). The sampler has the liveness watcher look once at that moment when the
        next sample would come later: then a call of twice the threshold is told from a
        short one even when samples are far apart."""
        return self._threshold - min(gap_before_s / 2, self._max_correction)

    def set_interval(self, interval_s: float) -> None:
        """How often each thread is now examined (the overhead budget changed it)."""
        self._interval = interval_s
        if self._native is not None:
            self._native.interval = interval_s

    def observe_tasks(
        self, moved: list[TaskSample], done: Mapping[int, TaskEnd], now: float
    ) -> None:
        """Take one sample of asyncio tasks.

        Only tasks that moved since they were last checked come in ``moved``; a task
        that did not move costs nothing here, and its unchanged stretch is accounted
        when it next moves or ends, and at :meth:`settle_tasks` when sampling stops.
        ``done`` maps tasks that ended to when they were last checked (negative when
        they were cancelled: their calls were interrupted, not completed). Both carry
        the task's frames that ran under a span made current since its last check:
        those calls, and their callers in the task's stack, were not dark throughout.
        """
        tracks = self._task_tracks
        interval = self._interval
        for sample in moved:
            track = tracks.get(sample.key)
            if track is None:
                track = tracks[sample.key] = _ThreadTrack(sample.name, now)
            else:
                self._settle(track, sample.last_checked)
            weight = min(now - track.prev_time, 2 * interval) if track.samples else interval
            track.spanned = sample.spanned
            marked = frozenset(map(id, sample.activated)) if sample.activated else None
            if marked is not None:
                self._untrack_under(track, marked)  # calls followed since its last check
                track.activation = marked  # new calls among them are not followed
            if sample.frames[-1] is not track.leaf:
                self._restructure_list(sample.key, track, sample.frames, now)
            elif sample.spanned and track.live:
                self._taint(track)
            if marked is not None:
                self._untrack_under(track, marked)  # new calls, callers of marked frames
                track.activation = _NO_ACTIVATION
            coverage = self._account(track, track.leaf, track.spanned, now)
            if coverage:
                self._in_scope_s += weight
                if coverage > 1:
                    self._spanned_s += weight
        for key, end in done.items():
            track = tracks.pop(key, None)
            if track is not None and end.last_checked >= 0:
                if end.activated:
                    self._untrack_under(track, frozenset(map(id, end.activated)))
                self._settle(track, end.last_checked)
                self._end_calls(track, 0, now)

    def settle_tasks(self, until: float) -> None:
        """Account every task's unchanged stretch up to ``until`` (a past tick)."""
        for track in self._task_tracks.values():
            self._settle(track, until)

    def _settle(self, track: _ThreadTrack, until: float) -> None:
        """A task that did not move from ``track.prev_time`` to ``until`` was, at every
        tick in between, exactly as last seen: count those samples in one go."""
        elapsed = until - track.prev_time
        if elapsed <= 0 or not track.samples:
            return
        ticks = max(1, round(elapsed / self._interval))
        track.samples += ticks
        track.prev_time = until
        if track.idle:
            return
        track.nonidle += ticks
        if track.live and track.wait is not None:
            track.waits.extend([track.wait] * min(ticks, self._limits.wait_log))
        if track.inscope:
            self._in_scope_s += elapsed
            if track.spanned:
                self._spanned_s += elapsed

    def forget(self) -> None:
        """Drop all state without emitting anything (after an internal error)."""
        self._tracks.clear()
        self._task_tracks.clear()
        if self._native is not None:
            self._native.clear()
        if self._watcher is not None:
            self._watcher.clear()

    def take_coverage(self) -> tuple[float, float]:
        """(in-scope seconds, spanned seconds) sampled since the previous call."""
        result = (self._in_scope_s, self._spanned_s)
        self._in_scope_s = self._spanned_s = 0.0
        if self._native is not None:
            in_scope, spanned = self._native.take_coverage()
            result = (result[0] + in_scope, result[1] + spanned)
        return result

    # -- one thread -----------------------------------------------------------------------

    def _restructure(
        self,
        tid: int,
        track: _ThreadTrack,
        leaf: FrameType,
        spanned: bool,
        since: float,
        now: float,
    ) -> None:
        """The leaf changed (at or before ``since``, when the stack was already as it is
        ``now``): end the calls that returned, push the new ones."""
        keep, new = self._walk(track, leaf)
        if keep < len(track.stack):
            self._end_calls(track, keep, since)
        if spanned and track.live:
            self._taint(track)
        if new:
            self._push(tid, track, new, spanned, since, now, watch=self._watcher is not None)
        track.leaf = leaf
        track.wait = None  # where it waits is worked out again for the new leaf
        track.idle = self._is_idle(track)

    def _restructure_list(
        self, key: int, track: _ThreadTrack, frames: list[FrameType], now: float
    ) -> None:
        """A task's stack is a list (suspended coroutine frames are not linked by
        f_back): keep the common prefix, end the rest, push what is new."""
        stack = track.stack
        keep, limit = 0, min(len(stack), len(frames))
        while keep < limit and stack[keep] is frames[keep]:
            keep += 1
        if keep < len(stack):
            self._end_calls(track, keep, now)
        if track.spanned and track.live:
            self._taint(track)
        if keep < len(frames):
            self._push(key, track, frames[keep:][::-1], track.spanned, now, now, watch=False)
        track.leaf = frames[-1]
        track.wait = None  # where it waits is worked out again for the new leaf
        track.idle = self._is_idle(track)

    def _account(
        self, track: _ThreadTrack, leaf: FrameType | None, spanned: bool, now: float
    ) -> int:
        """Per-sample counters; returns 0 (no coverage), 1 (in scope, dark) or 2 (in
        scope, spanned) for the coverage figures."""
        track.samples += 1
        track.prev_time = now
        if track.idle:
            return 0
        track.nonidle += 1
        if track.live and leaf is not None:  # dark (spanned leaves nothing live), tracked
            self._log_wait(track, leaf)
        if not track.inscope:
            return 0
        return 2 if spanned else 1

    def _log_wait(self, track: _ThreadTrack, leaf: FrameType) -> None:
        """Note where this dark, non-idle sample sits (one entry per such sample)."""
        if track.wait is None:
            track.wait = self._wait_name(track, leaf)
        waits = track.waits
        waits.append(track.wait)
        if len(waits) > self._limits.wait_log:
            drop = self._limits.wait_log // 2
            del waits[:drop]
            track.wait_base += drop

    def _walk(self, track: _ThreadTrack, leaf: FrameType) -> tuple[int, list[FrameType]]:
        """Frames new since the last sample (leaf first), and how many old ones remain."""
        stack, index = track.stack, track.index
        new: list[FrameType] = []
        frame: FrameType | None = leaf
        while frame is not None:
            pos = index.get(id(frame))
            # A generator's frame can be resumed by a different caller: only trust the
            # known part of the stack if the frame's parent is also the one we knew.
            if (
                pos is not None
                and stack[pos] is frame
                and (pos == 0 or back(frame) is stack[pos - 1])
            ):
                return pos + 1, new
            new.append(frame)
            frame = back(frame)
        return 0, new

    def _push(
        self,
        tid: int,
        track: _ThreadTrack,
        new: list[FrameType],
        spanned: bool,
        since: float,
        now: float,
        watch: bool,
    ) -> None:
        """Track the frames new since the last sample (leaf first in ``new``), running
        from ``since`` to ``now`` at least. With ``watch``, the liveness watcher follows
        each new countable call (thread stacks only: a task's frames are coroutines,
        which stay "running" while suspended)."""
        scope = self._scope
        watcher = self._watcher if watch else None
        stack, infos, calls, index = track.stack, track.infos, track.calls, track.index
        gap_before = since - track.prev_time if track.samples else self._interval
        cause, lost_from = NO_SPAN, None
        if not spanned:
            lost_from = self._lost_context(tid)
            if lost_from is not None:
                cause = CONTEXT_LOST
        for frame in reversed(new):
            info = scope.info_of(frame)
            call = None
            if info.countable and not spanned and id(frame) not in track.activation:
                call = _Call(
                    info,
                    since,
                    gap_before,
                    track.samples,
                    track.nonidle,
                    track.wait_base + len(track.waits),
                    cause,
                    lost_from,
                )
                if watcher is not None and not info.resumable:
                    call.slot = watcher.watch(frame, now)
                track.live += 1
            index[id(frame)] = len(stack)
            stack.append(frame)
            infos.append(info)
            calls.append(call)
            if info.in_scope:
                track.inscope += 1

    def _taint(self, track: _ThreadTrack) -> None:
        """A spanned sample: nothing on this stack can be an uninstrumented operation."""
        for i, call in enumerate(track.calls):
            if call is not None:
                self._untrack(track, i, call)

    def _take_activated(self, track: _ThreadTrack, running: Sequence[FrameType] | None) -> None:
        """Note the frames that ran under a span made current since the thread's previous
        sample, and stop following those calls."""
        if running:
            track.activation = frozenset(map(id, running))
            if track.live:
                self._untrack_activated(track)

    def _untrack_activated(self, track: _ThreadTrack) -> None:
        """A span was made current since the previous sample: the calls followed then
        that were running at that moment were not dark throughout, whether they are
        still running or have returned since."""
        running = track.activation
        for i, call in enumerate(track.calls):
            if call is not None and id(track.stack[i]) in running:
                self._untrack(track, i, call)

    def _untrack_under(self, track: _ThreadTrack, marked: frozenset[int]) -> None:
        """A task's calls that ran under a span made current: the marked frames in its
        stack and every frame above the deepest of them (a coroutine's callers in a
        task are fixed while it runs, and a suspended one has no ``f_back``)."""
        stack = track.stack
        deepest = next((i for i in range(len(stack) - 1, -1, -1) if id(stack[i]) in marked), -1)
        for i in range(deepest + 1):
            call = track.calls[i]
            if call is not None:
                self._untrack(track, i, call)

    def _untrack(self, track: _ThreadTrack, pos: int, call: _Call) -> None:
        """Stop following a call: it was not dark at some moment."""
        track.calls[pos] = None
        track.live -= 1
        if call.slot >= 0 and self._watcher is not None:
            self._watcher.ended(call.slot)

    def _is_idle(self, track: _ThreadTrack) -> bool:
        """SPEC "idle" for the thread's stack (idle.is_idle_stack)."""
        return is_idle_stack(track.infos)

    def _wait_name(self, track: _ThreadTrack, leaf: FrameType) -> str | None:
        """The out-of-scope function (or callee of the leaf) where this sample sits."""
        info = track.infos[-1] if track.infos else None
        if info is None:
            return None
        return self._wait_of(info if not info.in_scope else leaf.f_code, leaf.f_lasti)

    def _wait_of(self, where: CodeInfo | CodeType, lasti: int) -> str | None:
        """An out-of-scope function's name, or what in-scope code calls at ``lasti``."""
        if isinstance(where, CodeInfo):
            return where.display
        return self._callees.name_at(where, lasti) or None

    # -- ends -----------------------------------------------------------------------------

    def _end_calls(self, track: _ThreadTrack, keep: int, gone: float) -> None:
        """Calls at positions >= keep have returned since the previous sample, by
        ``gone``."""
        stack, infos, calls, index = track.stack, track.infos, track.calls, track.index
        for pos in range(len(stack) - 1, keep - 1, -1):
            call = calls[pos]
            if call is not None:
                track.live -= 1
                self._complete(track, pos, call, gone)
            index.pop(id(stack[pos]), None)
            if infos[pos].in_scope:
                track.inscope -= 1
        del stack[keep:], infos[keep:], calls[keep:]
        track.leaf = stack[-1] if stack else None

    def _complete(self, track: _ThreadTrack, pos: int, call: _Call, gone: float) -> None:
        last_seen = track.prev_time  # running at last_seen, returned by gone
        if call.slot >= 0 and self._watcher is not None:
            alive, ended = self._watcher.ended(call.slot)
            last_seen = max(last_seen, alive)
            if ended > 0.0:
                gone = min(gone, ended)
        unseen = (call.gap_before + max(gone - last_seen, 0.0)) / 2
        duration = (last_seen - call.first_seen) + min(unseen, self._max_correction)
        samples = track.samples - call.sample_start
        nonidle = track.nonidle - call.nonidle_start
        parent = _nearest_call(track.calls, pos)
        if nonidle <= 0 or samples <= 0 or duration < self._threshold:
            if parent is not None:
                parent.child_s += call.child_s  # pass counted descendants' time upward
            return
        dark = duration * nonidle / samples
        self_s = max(0.0, dark - call.child_s)
        if parent is not None:
            parent.child_s += dark
        example = None
        if call.info not in self._exampled:
            if len(self._exampled) >= self._limits.code_cache:
                self._exampled.clear()  # bounded like the code cache (the C one's too)
            self._exampled.add(call.info)
            start = max(0, pos + 1 - self._limits.example_depth)
            example = _example(track.stack[start : pos + 1], track.infos[start : pos + 1])
        self._pending.append(
            Operation(
                call.info.site,
                call.info.file,
                call.info.line,
                call.cause,
                duration,
                dark,
                self_s,
                _nearest_in_scope(track.infos, pos),
                track.name,
                _most_common(track, call.wait_start),
                last_seen,
                example,
                call.lost_from,
                track.tid,
            )
        )

    def _from_native(self, call: CompletedCall) -> Operation:
        """The operation for one call completed by the C thread path, whose figures were
        worked out as :meth:`_complete` does; ``call.waits`` counts the wait log by
        distinct place."""
        waits = call.waits
        waited_in: str | None = None
        if len(waits) == 1:  # the common case: one place, no counting
            waited_in = self._cached_wait_of(waits[0][0], waits[0][1])
        elif waits:
            counts: dict[str | None, int] = {}
            for where, lasti, count in waits:
                name = self._cached_wait_of(where, lasti)
                if name is not None:
                    counts[name] = counts.get(name, 0) + count
            waited_in = _top_name(counts)
        info, caller = call.info, call.caller
        return Operation(
            info.site,
            info.file,
            info.line,
            call.cause,
            call.duration,
            call.dark,
            call.self_s,
            None if caller is None else caller.site,
            call.thread,
            waited_in,
            call.end_time,
            call.example,
            call.lost_from,
            call.thread_id,
        )

    def wait_name(self, where: CodeInfo | CodeType, lasti: int) -> str | None:
        """Where a sample waited: an out-of-scope function's name, or what in-scope code
        calls at ``lasti`` (remembered per place)."""
        return self._cached_wait_of(where, lasti)

    def _cached_wait_of(self, where: CodeInfo | CodeType, lasti: int) -> str | None:
        """:meth:`_wait_of`, remembered per place (the entry holds ``where``, so its id
        is not reused while cached)."""
        key = (id(where), lasti)
        found = self._wait_names.get(key)
        if found is not None and found[0] is where:
            return found[1]
        if len(self._wait_names) >= self._limits.wait_names:
            self._wait_names.clear()
        name = self._wait_of(where, lasti)
        self._wait_names[key] = (where, name)
        return name


def _nearest_call(calls: list[_Call | None], pos: int) -> _Call | None:
    for i in range(pos - 1, -1, -1):
        call = calls[i]
        if call is not None:
            return call
    return None


def _nearest_in_scope(infos: list[CodeInfo], pos: int) -> str | None:
    for i in range(pos - 1, -1, -1):
        if infos[i].in_scope:
            return infos[i].site
    return None


def _most_common(track: _ThreadTrack, wait_start: int) -> str | None:
    start = max(0, wait_start - track.wait_base)
    counts = Counter(track.waits[start:])  # counted in C; None marks "no wait"
    counts.pop(None, None)
    return _top_name(counts)


def _top_name(counts: dict[str | None, int]) -> str | None:
    """The most frequent name (the first met, on a tie), or None if there is none."""
    return max(counts, key=counts.__getitem__) if counts else None


def _example_of_pair(pair: tuple[tuple[FrameType, ...], tuple[CodeInfo, ...]]) -> tuple[str, ...]:
    """:func:`_example` for the C path, which passes (frames, infos)."""
    return _example(*pair)


def _example(stack: Sequence[FrameType], infos: Sequence[CodeInfo]) -> tuple[str, ...]:
    """Root-to-leaf code locations of a call, the call last (names and lines, never
    values). Built when an operation is counted and its code has no example yet: the
    stack is still intact while ended calls are completed."""
    pairs = zip(stack, infos, strict=True)
    return tuple(f"{i.site} ({f.f_code.co_filename}:{f.f_lineno})" for f, i in pairs)
