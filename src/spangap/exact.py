"""The exact mode: every call of in-scope code seen, for test runs that gate on dark sites.

Sampling finds a dark site in one run and may miss it in the next; a gate built on it
would flake. This tracer sees every call instead: ``sys.monitoring`` on 3.12+ (out of
scope code is switched off after its first event, so it costs nothing after), a profile
hook on 3.11 (every call pays; test runs only). A call is an uninstrumented operation by
the SPEC's words: in scope, at least the threshold long, no active span at its start, at
each resume and suspension and at its end, no span made current in its thread or task
while it ran, and not idle throughout (time in an idle wait of its thread does not count
as dark, and a call must have been dark for at least one full-rate sampling interval).

It records what the sampler records (site, duration, dark and self time, caller,
thread, cause), never argument values. Known differences from sampling, all towards
fewer counts: on 3.11 threads that were already running when it started are not seen;
an asyncio task waiting for new work is not idle here.
"""

from __future__ import annotations

import asyncio
import dis
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import CodeType, FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from .idle import IDLE, IDLE_IF_DIRECT, WORK
from .operation import CONTEXT_LOST, NO_SPAN, Operation
from .scope import CodeInfo, Scope

_FLUSH_EVERY = 1000
_get_running_loop = asyncio.events._get_running_loop
_current_tasks: Mapping[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})


def _span_active() -> bool:
    """SPEC "active span", in the executing context."""
    return bool(trace.get_current_span().get_span_context().is_valid)


def _task_key() -> Any:
    """The running asyncio task, if any: activations are told apart by thread and task."""
    try:
        loop = _get_running_loop()
        return None if loop is None else _current_tasks.get(loop)
    except Exception:
        return None


class _Call:
    """A call in progress (a generator or coroutine across its suspensions)."""

    __slots__ = (
        "activations",
        "children_dark",
        "dark",
        "idle",
        "idle_mark",
        "info",
        "key",
        "start",
        "thread_id",
    )

    def __init__(self, info: CodeInfo, key: tuple[int, Any], activations: int) -> None:
        self.info = info
        self.key = key
        self.activations = activations
        self.start = time.perf_counter()
        self.dark = True
        self.idle = 0.0
        self.idle_mark = 0.0
        self.children_dark = 0.0
        self.thread_id = key[0]


class _Thread:
    """One thread's idle clock: idle waits it is in, and in-scope calls above them."""

    __slots__ = ("app_depth", "idle_since", "idle_stack", "idle_total", "work_depth")

    def __init__(self) -> None:
        self.app_depth = 0
        self.work_depth = 0
        self.idle_stack: list[int] = []  # app_depth when each idle wait began
        self.idle_since = 0.0
        self.idle_total = 0.0

    def idle_now(self) -> float:
        """Idle seconds so far, the current idle stretch included."""
        if self.idle_stack and self.app_depth == self.idle_stack[-1]:
            return self.idle_total + time.perf_counter() - self.idle_since
        return self.idle_total

    def pause(self) -> None:
        """An in-scope call starts or resumes: an idle wait below it is not idle now."""
        if self.idle_stack and self.app_depth == self.idle_stack[-1]:
            self.idle_total += time.perf_counter() - self.idle_since
        self.app_depth += 1

    def unpause(self) -> None:
        self.app_depth -= 1
        if self.idle_stack and self.app_depth == self.idle_stack[-1]:
            self.idle_since = time.perf_counter()


class ExactTracer:
    """Sees every in-scope call; hands the dark ones to ``emit`` as operations."""

    def __init__(
        self,
        scope: Scope,
        threshold_s: float,
        emit: Callable[[list[Operation]], None],
        lost_context: Callable[[int], Mapping[str, str] | None] = lambda tid: None,
        min_dark_s: float = 0.005,
    ) -> None:
        """``min_dark_s``: "not idle throughout" at the sampler's resolution (its full
        rate's interval): a call idle but for a few instructions around its wait is idle
        throughout, as every sample of it would be."""
        self._scope = scope
        self._threshold = threshold_s
        self._min_dark = min_dark_s
        self._emit = emit
        self._lost_context = lost_context
        self._calls: dict[int, _Call] = {}  # id(frame) -> call
        self._idle_calls: dict[int, bool] = {}  # id(frame) -> counted as an idle wait
        self._threads: dict[int, _Thread] = {}
        self._activations: dict[tuple[int, Any], int] = {}
        self._examples: set[CodeType] = set()
        self._pending: list[Operation] = []
        self._lock = threading.Lock()
        self._installed: Callable[[], None] | None = None
        self._runtime: Any = None
        self._attach: Any = None
        self._previous: Any = None

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        self._wrap_attach()
        if sys.version_info >= (3, 12):
            self._installed = self._start_monitoring()
        else:
            self._installed = self._start_profile()

    def stop(self) -> None:
        """Stop seeing calls and hand over what was found; calls still running are not
        counted (they have not ended)."""
        if self._installed is not None:
            self._installed()
            self._installed = None
        self._unwrap_attach()
        self.flush()

    def flush(self) -> None:
        with self._lock:
            ops, self._pending = self._pending, []
        if ops:
            self._emit(ops)

    # -- span activations ---------------------------------------------------------------

    def _wrap_attach(self) -> None:
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        if runtime is None:
            return
        original, counts = runtime.attach, self._activations

        def attach(ctx: Any) -> Any:
            token = original(ctx)
            try:
                span = trace.get_current_span(ctx)
                if span.get_span_context().is_valid:
                    key = (threading.get_ident(), _task_key())
                    counts[key] = counts.get(key, 0) + 1
            except Exception:  # never fail the application's attach
                pass
            return token

        self._runtime, self._attach = runtime, attach
        self._previous = runtime.__dict__.get("attach")  # another wrapper, if any
        runtime.attach = attach

    def _unwrap_attach(self) -> None:
        """Put back what was there, unless someone wrapped it after us."""
        runtime, self._runtime = self._runtime, None
        if runtime is None or runtime.__dict__.get("attach") is not self._attach:
            return
        if self._previous is None:
            del runtime.attach  # the class's method again
        else:
            runtime.attach = self._previous

    # -- events -------------------------------------------------------------------------

    def _info(self, frame: FrameType) -> CodeInfo:
        return self._scope.info_of(frame)

    def _thread(self, tid: int) -> _Thread:
        state = self._threads.get(tid)
        if state is None:
            state = self._threads[tid] = _Thread()
        return state

    def _started(self, frame: FrameType, info: CodeInfo) -> None:
        tid = threading.get_ident()
        state = self._thread(tid)
        if info.in_scope:
            key = (tid, _task_key())
            call = _Call(info, key, self._activations.get(key, 0))
            call.dark = not _span_active()
            call.idle_mark = state.idle_now()
            state.pause()
            self._calls[id(frame)] = call
        elif info.idle and not info.resumable:  # a thread's waits; a task's are not idle
            self._idle_started(frame, info, state)

    def _resumed(self, frame: FrameType, info: CodeInfo) -> None:
        call = self._calls.get(id(frame))
        if call is None or call.info is not info:
            return
        state = self._thread(threading.get_ident())
        if call.dark and _span_active():
            call.dark = False
        call.idle_mark = state.idle_now()
        state.pause()

    def _suspended(self, frame: FrameType, info: CodeInfo) -> None:
        call = self._calls.get(id(frame))
        if call is None or call.info is not info:
            return
        state = self._thread(threading.get_ident())
        state.unpause()
        call.idle += state.idle_now() - call.idle_mark
        if call.dark and _span_active():
            call.dark = False

    def _ended(self, frame: FrameType, info: CodeInfo) -> None:
        if not info.in_scope:
            if info.idle:
                self._idle_ended(frame)
            return
        call = self._calls.pop(id(frame), None)
        if call is None or call.info is not info:
            return
        state = self._thread(threading.get_ident())
        state.unpause()
        call.idle += state.idle_now() - call.idle_mark
        end = time.perf_counter()
        if not call.dark or _span_active() or not info.countable:
            return
        if self._activations.get(call.key, 0) != call.activations:
            return  # a span was made current in its thread or task while it ran
        duration = end - call.start
        dark = duration - call.idle
        if duration < self._threshold or dark < min(self._min_dark, duration):
            return
        self._count(frame, call, duration, dark, end)

    def _idle_started(self, frame: FrameType, info: CodeInfo, state: _Thread) -> None:
        if info.idle == WORK:
            state.work_depth += 1
            self._idle_calls[id(frame)] = False
            return
        direct = info.idle == IDLE_IF_DIRECT
        caller = frame.f_back
        if direct and (caller is None or not self._info(caller).in_scope):
            return  # the same wait inside a library is waiting for a reply: work
        if info.idle not in (IDLE, IDLE_IF_DIRECT) or state.work_depth:
            return
        if not state.idle_stack or state.app_depth != state.idle_stack[-1]:
            state.idle_since = time.perf_counter()
            state.idle_stack.append(state.app_depth)
            self._idle_calls[id(frame)] = True

    def _idle_ended(self, frame: FrameType) -> None:
        counted = self._idle_calls.pop(id(frame), None)
        if counted is None:
            return
        state = self._thread(threading.get_ident())
        if not counted:
            state.work_depth -= 1
            return
        if state.idle_stack:
            if state.app_depth == state.idle_stack[-1]:
                state.idle_total += time.perf_counter() - state.idle_since
            state.idle_stack.pop()

    # -- counting -----------------------------------------------------------------------

    def _count(
        self, frame: FrameType, call: _Call, duration: float, dark: float, end: float
    ) -> None:
        info = call.info
        caller_frame = frame.f_back
        caller: str | None = None
        while caller_frame is not None:
            caller_info = self._info(caller_frame)
            if caller_info.in_scope:
                caller = caller_info.site
                parent = self._calls.get(id(caller_frame))
                if parent is not None:
                    parent.children_dark += dark
                break
            caller_frame = caller_frame.f_back
        code = frame.f_code
        example = None
        if code not in self._examples:
            self._examples.add(code)
            example = self._example(frame)
        lost = self._lost_context(call.thread_id) if call.key[1] is None else None
        op = Operation(
            site=info.site,
            file=info.file,
            line=info.line,
            cause=CONTEXT_LOST if lost is not None else NO_SPAN,
            duration_s=duration,
            dark_s=dark,
            self_s=max(dark - call.children_dark, 0.0),
            caller=caller,
            thread=threading.current_thread().name,
            waited_in=None,
            end_time=end,
            example_stack=example,
            lost_from=lost,
            thread_id=call.thread_id,
        )
        with self._lock:
            self._pending.append(op)
            full = len(self._pending) >= _FLUSH_EVERY
        if full:
            self.flush()

    def _example(self, frame: FrameType) -> tuple[str, ...]:
        """Root-to-leaf in-scope locations of the call (names and lines, never values)."""
        found: list[str] = []
        current: FrameType | None = frame
        while current is not None:
            info = self._info(current)
            if info.in_scope:
                found.append(f"{info.site} ({current.f_code.co_filename}:{current.f_lineno})")
            current = current.f_back
        return tuple(reversed(found))

    # -- 3.12+: sys.monitoring ------------------------------------------------------------

    def _start_monitoring(self) -> Callable[[], None]:
        monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 (3.12+ only)
        events = monitoring.events
        tool = _free_tool(monitoring)
        monitoring.use_tool_id(tool, "spangap-exact")
        disable = monitoring.DISABLE
        info_of, get_frame = self._info, sys._getframe

        def interesting(frame: FrameType) -> CodeInfo | None:
            info = info_of(frame)
            return info if info.in_scope or info.idle else None

        def on_start(code: CodeType, offset: int) -> Any:
            frame = get_frame(1)
            info = interesting(frame)
            if info is None:
                return disable
            self._started(frame, info)
            return None

        def on_resume(code: CodeType, offset: int) -> Any:
            frame = get_frame(1)
            info = interesting(frame)
            if info is None:
                return disable
            if info.in_scope:
                self._resumed(frame, info)
            return None

        def on_yield(code: CodeType, offset: int, value: object) -> Any:
            frame = get_frame(1)
            info = interesting(frame)
            if info is None:
                return disable
            if info.in_scope:
                self._suspended(frame, info)
            return None

        def on_return(code: CodeType, offset: int, value: object) -> Any:
            frame = get_frame(1)
            info = interesting(frame)
            if info is None:
                return disable
            self._ended(frame, info)
            return None

        def on_unwind(code: CodeType, offset: int, exception: BaseException) -> None:
            frame = get_frame(1)
            info = interesting(frame)
            if info is not None:  # an exception ends the call too; no DISABLE here
                self._ended(frame, info)

        handlers = {
            events.PY_START: on_start,
            events.PY_RESUME: on_resume,
            events.PY_YIELD: on_yield,
            events.PY_RETURN: on_return,
            events.PY_UNWIND: on_unwind,
        }
        for event, handler in handlers.items():
            monitoring.register_callback(tool, event, handler)
        wanted = 0
        for event in handlers:
            wanted |= event
        monitoring.set_events(tool, wanted)

        def uninstall() -> None:
            monitoring.set_events(tool, 0)
            for event in handlers:
                monitoring.register_callback(tool, event, None)
            monitoring.free_tool_id(tool)

        return uninstall

    # -- 3.11: a profile hook -------------------------------------------------------------

    def _start_profile(self) -> Callable[[], None]:
        info_of = self._info
        codes = self._scope.cached

        def profile(frame: FrameType, event: str, arg: object) -> None:
            if event != "call" and event != "return":
                return
            code = frame.f_code
            info = codes.get(code)
            if info is None:
                info = info_of(frame)
            if not info.in_scope and not info.idle:
                return
            try:
                if event == "call":
                    if info.resumable and _resumed_after_yield(frame):
                        self._resumed(frame, info)
                    else:
                        self._started(frame, info)
                elif info.resumable and _suspended_at_yield(frame):
                    self._suspended(frame, info)
                else:
                    self._ended(frame, info)
            except Exception:
                pass  # the exact mode must not fail the test run it watches

        previous = sys.getprofile()
        sys.setprofile(profile)
        threading.setprofile(profile)

        def uninstall() -> None:
            threading.setprofile(None)
            if sys.getprofile() is profile:
                sys.setprofile(previous)

        return uninstall


def _free_tool(monitoring: Any) -> int:
    """A sys.monitoring tool id nobody uses (3 and 4 are unassigned; 2 is profilers')."""
    for tool in (3, 4, 2, 5):
        if monitoring.get_tool(tool) is None:
            return tool
    raise RuntimeError("every sys.monitoring tool id is in use")


_RESUME = dis.opmap.get("RESUME", -1)  # its argument is 0 at a function's start
_YIELD_VALUE = dis.opmap.get("YIELD_VALUE", -1)


def _resumed_after_yield(frame: FrameType) -> bool:
    """3.11: the ``call`` event of a generator or coroutine that resumes (not starts)."""
    code = frame.f_code.co_code
    lasti = frame.f_lasti
    return 0 <= lasti < len(code) - 1 and code[lasti] == _RESUME and code[lasti + 1] != 0


def _suspended_at_yield(frame: FrameType) -> bool:
    """3.11: the ``return`` event of a generator or coroutine that yields (not ends)."""
    code = frame.f_code.co_code
    lasti = frame.f_lasti
    return 0 <= lasti < len(code) and code[lasti] == _YIELD_VALUE
