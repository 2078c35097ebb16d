"""asyncio tasks as executors of their own: logical stacks and per-task span state.

For every task of every running loop the sampler builds its logical stack (the chain of
coroutine frames through ``cr_await``) and judges "dark" in the task's own context, also
while it is suspended; the running task's frames are cut from its thread's stack so no
frame counts twice. Tasks are found through asyncio's registry of all tasks. With more
tasks than a tick may examine, it follows a cohort of them for half a second at a time
(docs/how-it-works.md, "asyncio tasks").
"""

from __future__ import annotations

import asyncio
import asyncio.tasks as aio_tasks
import contextvars
import gc
import types
import weakref
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .activations import running_at
from .frames import back, suspended_frame
from .spanstate import span_is_active

if TYPE_CHECKING:
    from .activations import Activations, Mark

#: asyncio's registry of live tasks (a WeakSet): ``_scheduled_tasks`` from 3.12 on. (An
#: empty WeakSet is falsy, so no ``or`` here.)
_REGISTRY: Any = getattr(aio_tasks, "_scheduled_tasks", None)
if _REGISTRY is None:
    _REGISTRY = getattr(aio_tasks, "_all_tasks", None)
_CURRENT: Any = getattr(aio_tasks, "_current_tasks", None)
#: How long one cohort of tasks is followed before the next one's turn, in seconds.
COHORT_DWELL_S = 0.5


@dataclass(slots=True)
class TaskSample:
    """One task at one tick: its logical stack (root first) and whether it is spanned."""

    key: int
    frames: list[FrameType]
    spanned: bool
    name: str
    last_checked: float  # when it was checked before this tick (unchanged until then)
    #: frames of the task running when a span was made current in it since its last
    #: check (activations.py): not dark throughout, with every caller in its stack
    activated: tuple[FrameType, ...] = ()


@dataclass(slots=True)
class TaskEnd:
    """A task seen done: when it was last checked (negative if it was cancelled), and
    its frames that ran under a span made current since then."""

    last_checked: float
    activated: tuple[FrameType, ...] = ()


def tasks_supported() -> bool:
    return _REGISTRY is not None and _CURRENT is not None


class TaskSampler:
    """Samples the tasks of every running loop, at most ``max_tasks`` per tick."""

    def __init__(
        self,
        otel_var: Any,
        max_tasks: int = 256,
        max_moved: int = 128,
        max_moved_rotating: int = 32,
        dwell_s: float = COHORT_DWELL_S,
        activations: Activations | None = None,
    ) -> None:
        self._var = otel_var
        self._activations = activations
        self._max = max_tasks
        self._max_moved = max_moved
        # Once there are more tasks than one tick can check, the tick follows a cohort
        # of them and rebuilds fewer stacks, so that its cost (allocation, and so
        # garbage collections) stays bounded.
        self._max_moved_rotating = max_moved_rotating
        self._cursor = 0  # where the current cohort starts in the registry's order
        self._next_cursor = 0  # where the last tick stopped: the next cohort starts there
        self._dwell_s = dwell_s
        self._cohort_since: float | None = None  # when the current cohort's turn began
        self._contexts: weakref.WeakKeyDictionary[asyncio.Task[Any], contextvars.Context] = (
            weakref.WeakKeyDictionary()
        )
        self._last_waiter: dict[int, object] = {}  # key -> the future it waited on
        self._last_check: dict[int, float] = {}
        # Tasks being tracked, held until seen done: a task that finished and was freed
        # between two ticks would otherwise vanish with its last calls unaccounted, and
        # its id() (our key) could be reused.
        self._held: dict[int, asyncio.Task[Any]] = {}
        # The registry's weak references to tasks seen done (see sample()).
        self._finished: set[weakref.ref[asyncio.Task[Any]]] = set()

    def sample(
        self, frames: dict[int, FrameType], now: float, stride: int = 1, before: int = 0
    ) -> tuple[list[TaskSample], dict[int, TaskEnd]]:
        """Tasks that moved since their last check, and tasks that ended. A task whose
        coroutine has not run a step yet is not examined: it is no call in progress. A
        task that waits on the same future as at its last check has not moved, and
        costs one identity check. ``frames`` (thread id -> leaf) is changed in place: a
        loop thread running a task ends below that task, so no frame is counted twice.
        With ``stride`` > 1 (the overhead budget), a tick checks that many times fewer
        tasks. ``before`` is the span activations' count read before the thread stacks
        were (activations.py)."""
        if not _REGISTRY.data and not _CURRENT and not self._held:
            return [], {}  # no asyncio task anywhere (the common case for threaded code)
        try:
            # The WeakSet's own iterator is a Python generator; its underlying set of
            # weak references copies in C, and only this tick's window is dereferenced.
            registered = _REGISTRY.data.copy()
        except RuntimeError:  # the set changed while copied; try again next tick
            return [], {}
        # Tasks seen done stay registered while the application holds them (a list of
        # the last round's tasks): left out, so that they take no place in the window.
        finished = self._finished
        if len(finished) > 2 * len(registered) + 64:
            finished.intersection_update(registered)
        refs = list(registered.difference(finished) if finished else registered)
        current = [t for t in list(_CURRENT.values()) if t is not None]
        running = {id(t) for t in current}
        total = len(refs)
        window = max(1, self._max // stride)
        if self._cohort_since is None or now - self._cohort_since >= self._dwell_s:
            self._cursor, self._cohort_since = self._next_cursor, now  # the next cohort's turn
        start = self._cursor % total if total else 0
        moved: list[TaskSample] = []
        done: dict[int, TaskEnd] = {}
        for task in current:  # always: their frames must be cut from the loop's stack
            self._examine(task, True, frames, now, moved, done, before)
        examined = 0
        max_moved = self._max_moved if total <= window else self._max_moved_rotating
        max_moved = max(1, max_moved // stride)
        # Bounded work per tick: at most max_tasks checked and max_moved stacks rebuilt,
        # so a tick never holds the GIL long enough to stall the loop. The same cohort
        # (from the same place in the registry) is checked at every tick of its turn;
        # the next turn starts where the last tick stopped, so every task gets its turn.
        for i in range(min(total, window)):
            ref = refs[(start + i) % total]
            if len(moved) >= max_moved:
                break
            examined += 1
            task = ref()
            if task is not None and id(task) not in running:
                self._examine(task, False, frames, now, moved, done, before)
                if task.done():
                    finished.add(ref)
        self._next_cursor = start + examined
        activations = self._activations
        if activations is not None and activations.marked_tasks > 2 * total + 256:
            # Notes of tasks that ended unfollowed: no call of theirs can be counted. A
            # followed task's notes stay until it is seen done, whenever its turn comes:
            # they are what keeps its calls that ran under a span from being counted.
            followed = self._last_waiter
            activations.forget_tasks(lambda task: not task.done() or -id(task) in followed)
        if examined == total and len(self._last_waiter) > 2 * total + 64:
            # Held tasks stay registered until seen done; this only catches a task that
            # left asyncio's registry some other way, so its state cannot pile up.
            alive = {-id(t) for t in (r() for r in refs) if t is not None}
            for key in [k for k in self._last_waiter if k not in alive]:
                del self._last_waiter[key]
                self._last_check.pop(key, None)
                self._held.pop(key, None)
        return moved, done

    def _examine(
        self,
        task: asyncio.Task[Any],
        running: bool,
        frames: dict[int, FrameType],
        now: float,
        moved: list[TaskSample],
        done: dict[int, TaskEnd],
        before: int,
    ) -> None:
        """Check one task; append it to ``moved`` or ``done`` when that is what it did."""
        if not running and not_started(task.get_coro()):
            return  # SPEC: a call starts at its first step
        key = -id(task)
        waiter = task._fut_waiter  # type: ignore[attr-defined]
        last_waiter, last_check = self._last_waiter, self._last_check
        if waiter is not None and last_waiter.get(key) is waiter:
            last_check[key] = now
            return  # suspended on the same future as last time: did not move
        checked = last_check.get(key, now)
        if task.done():
            marks = self._marks(task, before, True)  # taken either way: nothing else will
            if key in last_waiter:
                ended = -1.0 if task.cancelled() else checked
                done[key] = TaskEnd(ended, running_at(*marks))
                del last_waiter[key], last_check[key]
                self._held.pop(key, None)
            return
        last_check[key] = now
        last_waiter[key] = waiter
        self._held[key] = task
        marks = self._marks(task, before)  # before the stack is read: see of_task
        stack = self._running_stack(task, frames) if running else _coroutine_chain(task.get_coro())
        if stack:
            spanned, name = self._spanned(task), task.get_name()
            activated = running_at(*marks, stack=stack)
            moved.append(TaskSample(key, stack, spanned, name, checked, activated))

    def _marks(
        self, task: asyncio.Task[Any], before: int, ended: bool = False
    ) -> tuple[Mark | None, Mark | None]:
        if self._activations is None:
            return None, None
        return self._activations.of_task(task, before, ended)

    def forget(self) -> None:
        """Drop all state (after an internal error the tracker starts over too)."""
        self._finished.clear()
        self._last_waiter.clear()
        self._last_check.clear()
        self._held.clear()

    def _running_stack(
        self, task: asyncio.Task[Any], frames: dict[int, FrameType]
    ) -> list[FrameType]:
        """The running task's frames, from its loop thread's stack; cut that stack."""
        root = suspended_frame(task.get_coro())
        thread_id = getattr(task.get_loop(), "_thread_id", None)
        leaf = frames.get(thread_id) if thread_id is not None else None
        stack: list[FrameType] = []
        frame = leaf
        while frame is not None and frame is not root:
            stack.append(frame)
            frame = back(frame)
        if frame is None or root is None or thread_id is None:
            return _coroutine_chain(task.get_coro())  # not on that stack after all
        stack.append(root)
        stack.reverse()
        caller = back(root)
        if caller is not None:
            frames[thread_id] = caller
        return stack

    def _spanned(self, task: asyncio.Task[Any]) -> bool:
        ctx = self._context(task)
        return ctx is not None and span_is_active(ctx.get(self._var))

    def _context(self, task: asyncio.Task[Any]) -> contextvars.Context | None:
        get_context = getattr(task, "get_context", None)
        if get_context is not None:  # 3.12+
            ctx: contextvars.Context = get_context()
            return ctx
        found = self._contexts.get(task)
        if found is None:  # 3.11: the C task keeps its context but does not expose it
            for ref in gc.get_referents(task):
                if isinstance(ref, contextvars.Context):
                    found = self._contexts[task] = ref
                    break
        return found


def not_started(coro: Any) -> bool:
    """Whether ``coro`` (a coroutine or generator) was made but has not run a step."""
    if isinstance(coro, types.CoroutineType):
        running, suspended = coro.cr_running, coro.cr_suspended
    elif isinstance(coro, types.GeneratorType):
        running, suspended = coro.gi_running, coro.gi_suspended
    else:
        return False  # another awaitable: its state is its own
    return not running and not suspended and suspended_frame(coro) is not None


def _coroutine_chain(coro: Any) -> list[FrameType]:
    """Frames of a suspended coroutine and of everything it awaits, root first."""
    stack: list[FrameType] = []
    seen = 0
    while coro is not None and seen < 256:
        frame = suspended_frame(coro)
        if frame is None:
            break
        stack.append(frame)
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
        seen += 1
    return stack
