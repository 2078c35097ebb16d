"""Calls followed from native stack samples: the readable reference of ``c/_chains.c``.

The native sampling thread runs the C code; this module does the same on the same
recorded walks, and the tests hold the two equal. Why the rules are sound is in
``c/_chains.h``: a run is a series of samples between which the thread's CPU clock
stood still (so every call on its stack is the one seen before); a frame followed
across samples of unknown identity is a chain, counted at most once, by its best run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Code addresses kept above a counted call, and frames kept from it to the innermost.
CALLERS = 16
CALLEES = 64

Frame = tuple[int, int, int]  # (frame address, code address, lasti)
#: (thread id, cpu_ns or -1, activations, span_none, stack innermost first or None)
ThreadSample = tuple[int, int, int, bool, "list[Frame] | None"]
#: As ``_stacks.Reader.take()`` gives them.
Record = tuple[
    int, int, int, int, float, float, float, float, float, int, tuple[int, ...],
    tuple[Frame, ...], bool,
]  # fmt: skip


@dataclass
class _Snapshot:
    base: int  # index from the root of frames[0]
    frames: list[Frame]


@dataclass
class _Link:
    frame: int
    code: int
    lasti: int
    began_after: float
    dark: bool = True
    samples: int = 0
    best: float = -1.0
    best_first: float = 0.0
    best_last: float = 0.0
    best_snap: _Snapshot | None = None


@dataclass
class _Thread:
    prev_time: float
    prev_cpu: int = 0
    prev_activations: int = 0
    force_ran: bool = True
    run_first: float = 0.0
    run_before: float = 0.0
    run_len: int = 0
    run_snap: _Snapshot | None = None
    stack: list[_Link] = field(default_factory=list)  # root -> leaf
    seen: int = 0


class Chains:
    """``_stacks.Chains`` in Python."""

    def __init__(self, threshold_s: float, max_correction_s: float) -> None:
        self._threshold = threshold_s
        self._max_correction = max_correction_s
        self._threads: dict[int, _Thread] = {}
        self._done: list[Record] = []
        self._walk = 0

    def observe(self, now: float, threads: list[ThreadSample], ended: dict[int, int]) -> None:
        """One walk at ``now``; a thread not listed has ended, ``ended`` holds its
        activations so far (see ``_stacks.Chains``)."""
        self._walk += 1
        for tid, cpu, activations, span_none, stack in threads:
            t = self._threads.get(tid)
            if stack is None:  # not read: its calls are kept, its next sample "ran"
                if t is not None:
                    t.seen, t.force_ran = self._walk, True
                continue
            if t is None:
                t = self._threads[tid] = _Thread(prev_time=now, run_first=now, run_before=now)
            self._observe(tid, t, now, cpu, activations, span_none, stack)
        for tid in [tid for tid, t in self._threads.items() if t.seen != self._walk]:
            t = self._threads.pop(tid)
            self._finish_run(t, now)
            self._end_calls(tid, t, 0, now, ended.get(tid, -1) != t.prev_activations)

    def take(self) -> list[Record]:
        done, self._done = self._done, []
        return done

    def _observe(
        self,
        tid: int,
        t: _Thread,
        now: float,
        cpu: int,
        activations: int,
        span_none: bool,
        stack: list[Frame],
    ) -> None:
        t.seen = self._walk
        activated = activations != t.prev_activations
        dark = span_none and not activated
        rooted = stack[::-1]
        ran = cpu < 0 or cpu != t.prev_cpu or t.force_ran or not _same(t.stack, rooted)
        t.force_ran, t.prev_cpu, t.prev_activations = False, cpu, activations
        keep = _common(t.stack, rooted, ran)
        if ran:
            self._finish_run(t, now)
        self._end_calls(tid, t, keep, now, activated)
        for i, (frame, code, lasti) in enumerate(rooted):
            if i >= keep:
                t.stack.append(_Link(frame, code, lasti, t.prev_time))
            link = t.stack[i]
            link.lasti = lasti
            link.samples += 1
            link.dark = link.dark and dark
        if ran:
            t.run_before, t.run_first, t.run_len = t.prev_time, now, 1
        else:
            t.run_len += 1
            if t.run_len == 2:
                base = max(0, len(t.stack) - CALLEES)
                t.run_snap = _Snapshot(base, [(k.frame, k.code, k.lasti) for k in t.stack[base:]])
        t.prev_time = now

    def _finish_run(self, t: _Thread, after: float) -> None:
        """The thread's current run ended before ``after``: each call on its stack keeps
        it if it is its best."""
        if t.run_len >= 2 and t.run_snap is not None:
            last = t.prev_time
            unseen = ((t.run_first - t.run_before) + (after - last)) / 2
            est = (last - t.run_first) + max(0.0, min(unseen, self._max_correction))
            for link in t.stack:
                if est > link.best:
                    link.best, link.best_first, link.best_last = est, t.run_first, last
                    link.best_snap = t.run_snap
        t.run_snap, t.run_len = None, 0

    def _end_calls(self, tid: int, t: _Thread, keep: int, gone: float, activated: bool) -> None:
        """The calls at ``keep`` and above are gone by ``gone``; ``activated``: a span was
        made current in the thread since its previous sample, maybe in them."""
        for pos in range(len(t.stack) - 1, keep - 1, -1):
            link, snap = t.stack[pos], t.stack[pos].best_snap
            link.dark = link.dark and not activated
            if link.dark and link.best >= self._threshold and snap is not None:
                callers = tuple(k.code for k in reversed(t.stack[max(0, pos - CALLERS) : pos]))
                start = max(0, pos - snap.base)
                self._done.append(
                    (
                        tid, link.frame, link.code, pos, link.best_first, link.best_last,
                        link.began_after, gone, link.best, link.samples, callers,
                        tuple(snap.frames[start:]), pos < snap.base,
                    )
                )  # fmt: skip
        del t.stack[keep:]


def _same(stack: list[_Link], rooted: list[Frame]) -> bool:
    return len(stack) == len(rooted) and all(
        (k.frame, k.code, k.lasti) == f for k, f in zip(stack, rooted, strict=True)
    )


def _common(stack: list[_Link], rooted: list[Frame], ran: bool) -> int:
    """How many calls from the root are the same as at the previous sample: a caller at
    another instruction ran, so what it called before has returned."""
    k = 0
    while k < len(stack) and k < len(rooted) and stack[k].frame == rooted[k][0]:
        if stack[k].code != rooted[k][1]:
            break
        if ran and k > 0 and stack[k - 1].lasti != rooted[k - 1][2]:
            break
        k += 1
    return k
