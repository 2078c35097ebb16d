"""Calls counted from the native thread's samples, which never wait for the GIL.

The stack reader (``c/_stacks.c``) walks every thread each interval and follows calls
(``c/_chains.h``): a call is recorded only where samples prove it, i.e. the thread's CPU
clock stood still between them, so it is one call, not a run of short ones. That is how
waits (I/O, sleeps, locks) are seen at the walk's rate while the GIL-holding sampler
ticks far less often. Here, under the GIL, each record becomes an :class:`Operation`
with what the GIL sampler's tracker learned about its code objects, and a call both
paths counted (same thread and site, overlapping times) is kept once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import CodeType
from typing import TYPE_CHECKING, NamedTuple

from .budget import FLOOR_OF_THRESHOLD, next_factor
from .idle import is_idle_stack
from .operation import CONTEXT_LOST, NO_SPAN, Operation
from .scope import CodeInfo, Scope

if TYPE_CHECKING:
    from ._stacks import Reader, Record

#: How long after its last sample a recorded call waits for the GIL sampler to complete
#: the same call, and how long each path's operations are remembered to match the other's.
HOLD_S = 1.0
REMEMBER_S = 10.0
#: The share of the overhead budget the walks aim at; the ticks get the rest.
SHARE_OF_BUDGET = 0.6


class _Held(NamedTuple):
    ready_at: float
    op: Operation
    depth: int
    began_after: float  # the call lies between these two samples
    gone_by: float


class _Counted(NamedTuple):
    start: float
    end: float
    depth: int  # from the root; -1 when unknown (the GIL sampler's)
    dark_s: float


class NativeCalls:
    """Starts the reader's call following, and merges what it records with the GIL
    sampler's operations at each flush."""

    def __init__(
        self,
        reader: Reader,
        scope: Scope,
        threshold_s: float,
        max_correction_s: float,
        interval_s: float,
        max_overhead: float,
        thread_name: Callable[[int], str],
        lost_context_at: Callable[[int, float, float], Mapping[str, str] | None],
        wait_of: Callable[[CodeInfo | CodeType, int], str | None],
    ) -> None:
        self._reader = reader
        self._scope = scope
        self._threshold = threshold_s
        self._max_correction = max_correction_s
        self._interval = interval_s
        self._max_factor = max(interval_s, FLOOR_OF_THRESHOLD * threshold_s) / interval_s
        self._budget = SHARE_OF_BUDGET * max_overhead
        self._factor = 1.0
        self._thread_name = thread_name
        self._lost_context_at = lost_context_at
        self._wait_of = wait_of
        self._codes: dict[int, tuple[CodeType, CodeInfo]] = {}
        self._codes_seen = -1  # the scope cache's size when _codes was built
        self._held: list[_Held] = []
        # (thread id, site) -> operations counted, by each path: a call is counted once.
        self._gil: dict[tuple[int, str], list[_Counted]] = {}
        self._native: dict[tuple[int, str], list[_Counted]] = {}
        self._by_thread: dict[int, list[_Counted]] = {}  # native ops, for self time

    def start(self) -> None:
        self._reader.start(
            self._interval, threshold_s=self._threshold, max_correction_s=self._max_correction
        )

    def stop(self) -> None:
        self._reader.stop()

    @property
    def cpu_seconds(self) -> float:
        return self._reader.cpu_seconds

    @property
    def interval_s(self) -> float:
        return self._reader.interval_s

    def apply_budget(self, cpu_s: float, window_s: float) -> float:
        """Widen or narrow the walks' interval so that they spend their share of the
        budget, as budget.py does for the ticks; returns the share they spent."""
        if window_s <= 0:
            return 0.0
        share = cpu_s / window_s
        factor = next_factor(self._factor, share, self._budget, self._max_factor)
        if factor != self._factor:
            self._factor = factor
            self._reader.interval_s = self._interval * factor
        return share

    def merge(self, gil_ops: list[Operation], now: float, final: bool = False) -> list[Operation]:
        """The GIL sampler's operations ``gil_ops`` and the native ones now ready (all of
        them when ``final``), each call once."""
        self._known()  # new code objects are pinned for the walks as soon as they are met
        self._reader.pin()  # and those running now, with their threads' context mappings
        kept = [op for op in gil_ops if not self._overlaps(self._native, op, *_span_of(op))]
        for op in kept:
            self._remember(self._gil, op, _Counted(*_span_of(op), -1, op.dark_s))
        for record in self._reader.take():
            held = self._resolve(record)
            if held is not None:
                self._held.append(held)
        ready = [h for h in self._held if final or h.ready_at <= now]
        self._held = [h for h in self._held if not (final or h.ready_at <= now)]
        out = list(kept)
        for held in sorted(ready, key=lambda h: h.op.end_time):
            # The GIL sampler saw the same call if its operation overlaps the time the
            # call can have run, not only the run that proved it.
            if self._overlaps(self._gil, held.op, held.began_after, held.gone_by):
                continue
            op, depth = held.op, held.depth
            op = op._replace(self_s=max(0.0, op.dark_s - self._inner_dark(op, depth)))
            counted = _Counted(held.began_after, held.gone_by, depth, op.dark_s)
            self._remember(self._native, op, counted)
            self._by_thread.setdefault(op.thread_id, []).append(counted)
            out.append(op)
        self._forget_before(now - REMEMBER_S)
        return out

    # -- records to operations ------------------------------------------------------------

    def _resolve(self, record: Record) -> _Held | None:
        """The operation and when it may be passed on, or None when it is not counted:
        out of scope, idle, or code the GIL sampler has not classified yet."""
        tid, _, code, depth, first, last, after, gone, duration, _, callers, callees, cut = record
        known = self._known()
        found = known.get(code)
        infos = [known.get(c) for _, c, _ in callees]
        if found is None or any(i is None for i in infos):
            return None
        info = found[1]
        if not info.in_scope or not info.countable:
            return None
        stack = [i[1] for i in infos if i is not None]
        idle = _is_idle(stack, cut)
        if idle is not False:  # idle, or not known: not counted
            return None
        leaf_code, leaf_info = infos[-1]  # type: ignore[misc]
        waited_in = self._wait_of(
            leaf_info if not leaf_info.in_scope else leaf_code, callees[-1][2]
        )
        caller = next(
            (known[c][1].site for c in callers if c in known and known[c][1].in_scope), None
        )
        lost = self._lost_context_at(tid, first, last)
        op = Operation(
            info.site,
            info.file,
            info.line,
            CONTEXT_LOST if lost else NO_SPAN,
            duration,
            duration,
            duration,
            caller,
            self._thread_name(tid),
            waited_in,
            last,
            None,
            lost,
            tid,
        )
        return _Held(gone + HOLD_S, op, depth, after, gone)

    def _known(self) -> dict[int, tuple[CodeType, CodeInfo]]:
        """Code address -> (code, info) for every code object the scope has classified
        (it holds them, so their addresses are not reused while they are in it)."""
        cache = self._scope.cached
        if len(cache) != self._codes_seen:
            self._codes = {id(code): (code, info) for code, info in cache.items()}
            self._codes_seen = len(cache)
            self._reader.pin_codes(list(cache))  # then walks need not read them
        return self._codes

    # -- each call once -------------------------------------------------------------------

    @staticmethod
    def _remember(where: dict[tuple[int, str], list[_Counted]], op: Operation, c: _Counted) -> None:
        where.setdefault((op.thread_id, op.site), []).append(c)

    @staticmethod
    def _overlaps(
        where: dict[tuple[int, str], list[_Counted]], op: Operation, start: float, end: float
    ) -> bool:
        return any(
            c.start <= end and start <= c.end for c in where.get((op.thread_id, op.site), ())
        )

    def _inner_dark(self, op: Operation, depth: int) -> float:
        """Dark seconds of native operations counted inside ``op`` (deeper, within it)."""
        start, end = _span_of(op)
        return sum(
            c.dark_s
            for c in self._by_thread.get(op.thread_id, ())
            if c.depth > depth and start <= c.start and c.end <= end
        )

    def _forget_before(self, cutoff: float) -> None:
        for table in (self._gil, self._native):
            for key in [k for k, v in table.items() if v[-1].end < cutoff]:
                del table[key]
            for key, counted in table.items():
                if counted[0].end < cutoff:
                    table[key] = [c for c in counted if c.end >= cutoff]
        for tid in [t for t, v in self._by_thread.items() if v[-1].end < cutoff]:
            del self._by_thread[tid]


def _span_of(op: Operation) -> tuple[float, float]:
    return op.end_time - op.duration_s, op.end_time


def _is_idle(infos: Sequence[CodeInfo], cut: bool) -> bool | None:
    """SPEC "idle" for a stack from a call to the innermost frame; None when it cannot be
    told: the stack was cut and holds no in-scope frame."""
    if cut and not any(info.in_scope for info in infos):
        return None
    return is_idle_stack(infos)
