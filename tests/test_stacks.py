"""The native stack reader (``spangap._stacks``): it reads every thread's stack as
``sys._current_frames()`` shows it, without the GIL, and a host that moves its stacks as
fast as it can neither crashes nor computes anything different while it reads."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import INVALID_SPAN

from spangap import _stacks
from spangap.spanstate import runtime_context_var
from spangap.stacks import open_reader, walks_like_getframe

STRESS = Path(__file__).parent / "stacks_stress.py"


def chains() -> dict[int, list[tuple[int, int]]]:
    """Every thread's (code address, f_lasti) from the innermost frame to the root."""
    out = {}
    for tid, frame in sys._current_frames().items():
        chain = []
        while frame is not None:
            chain.append((_stacks.code_address(frame.f_code), frame.f_lasti))
            frame = frame.f_back
        out[tid] = chain
    return out


def descend(n: int, ready: threading.Event, release: threading.Event) -> None:
    if n:
        descend(n - 1, ready, release)
        return
    ready.set()
    release.wait()


def in_generator(ready: threading.Event, release: threading.Event) -> None:
    def waiting() -> Iterator[None]:
        ready.set()
        yield release.wait()  # type: ignore[misc]

    next(waiting())


def in_task(ready: threading.Event, release: threading.Event) -> None:
    async def handler() -> None:
        await asyncio.to_thread(lambda: None)
        ready.set()
        release.wait()  # blocks the loop's thread inside a running task

    asyncio.run(handler())


@pytest.fixture
def parked() -> Iterator[Callable[..., int]]:
    """Start threads that wait at a known depth; they are let go after the test."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def park(target: Callable[..., None], *args: Any) -> int:
        ready = threading.Event()
        thread = threading.Thread(target=target, args=(*args, ready, release))
        thread.start()
        threads.append(thread)
        assert ready.wait(10)
        return thread.ident  # type: ignore[return-value]

    yield park
    release.set()
    for thread in threads:
        thread.join()


@pytest.mark.parametrize("release_gil", [False, True], ids=["gil-held", "gil-released"])
def test_every_thread_is_read_as_sys_current_frames_shows_it(parked, release_gil: bool) -> None:
    """Recursion, a generator's frame and a running task's frames are all on the chain;
    the parked threads do not move, so the walk made without the GIL equals too."""
    for depth in (0, 7, 300):
        parked(descend, depth)
    parked(in_generator)
    parked(in_task)
    time.sleep(0.05)  # every parked thread is inside release.wait() by now
    walked, _, counts = _stacks.Reader().walk(release_gil=release_gil)
    expected = chains()
    me = threading.get_ident()
    others = {tid: chain for tid, chain in expected.items() if tid != me}
    assert len(others) >= 5
    for tid, chain in others.items():
        assert walked[tid] == chain, tid
    assert counts["torn"] == counts["invalid"] == counts["unreadable"] == 0
    assert counts["max_depth"] >= 300


TRACER = TracerProvider().get_tracer("stacks")
SAMPLED_OUT = TracerProvider(sampler=ALWAYS_OFF).get_tracer("stacks-sampled-out")


def with_span(kind: str, ready: threading.Event, release: threading.Event) -> None:
    """Park inside a context that holds a span in one of the ways an application makes
    one current (or none), after noting what OpenTelemetry itself says is current."""
    expected: dict[int, int] = EXPECTED_SPANS

    def park() -> None:
        span = trace.get_current_span()
        expected[threading.get_ident()] = 0 if span is INVALID_SPAN else id(span)
        ready.set()
        release.wait()

    if kind == "none":
        park()
    elif kind == "sdk":
        with TRACER.start_as_current_span("parked"):
            park()
    elif kind == "sampled-out":
        with SAMPLED_OUT.start_as_current_span("parked"):
            park()
    elif kind == "ended-span":
        with TRACER.start_as_current_span("done"):
            pass
        park()
    elif kind == "many-vars":  # the context's mapping grows array nodes
        for var in [contextvars.ContextVar(f"filler_{i}") for i in range(100)]:
            var.set(1)
        with TRACER.start_as_current_span("parked"):
            park()
    elif kind == "set-directly":  # no attach(): the variable itself is set
        span = TRACER.start_span("direct")
        runtime_context_var().set(trace.set_span_in_context(span))
        park()
    elif kind == "carried":  # Context.run on another thread, as to_thread does
        with TRACER.start_as_current_span("carrier"):
            ctx = contextvars.copy_context()
        inner = threading.Thread(target=ctx.run, args=(park,))
        inner.start()
        inner.join()


EXPECTED_SPANS: dict[int, int] = {}
SPAN_KINDS = ["none", "sdk", "sampled-out", "ended-span", "many-vars", "set-directly", "carried"]


@pytest.mark.parametrize("release_gil", [False, True], ids=["gil-held", "gil-released"])
def test_the_span_in_each_threads_context_is_the_one_opentelemetry_returns(
    parked, release_gil: bool
) -> None:
    EXPECTED_SPANS.clear()
    for kind in SPAN_KINDS:
        parked(with_span, kind)
    reader, why = open_reader()
    assert reader is not None, why
    _, spans, _ = reader.walk(release_gil=release_gil)
    assert len(EXPECTED_SPANS) == len(SPAN_KINDS)
    assert {tid: spans.get(tid) for tid in EXPECTED_SPANS} == EXPECTED_SPANS
    assert sum(1 for span in EXPECTED_SPANS.values() if span) == 5  # all but two kinds
    assert reader.pin() > 0  # from now on each context's answer is kept with its mapping
    _, spans, _ = reader.walk(release_gil=release_gil)
    assert {tid: spans.get(tid) for tid in EXPECTED_SPANS} == EXPECTED_SPANS


def test_the_reader_is_checked_against_getframe_before_use() -> None:
    reader, why = open_reader()
    assert reader is not None, why
    assert why == "native"
    assert walks_like_getframe(reader)


def test_the_native_thread_walks_without_the_gil_while_python_holds_it(parked) -> None:
    """A thread that never lets the GIL go does not stop the native walks: they go on,
    and the latest one holds the parked threads' stacks."""
    tid = parked(descend, 20)
    time.sleep(0.05)
    reader = _stacks.Reader()
    reader.start(0.001)
    try:
        _, _, before = reader.latest()
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:  # pure Python: holds the GIL but at switches
            pass
        walked, _, after = reader.latest()
    finally:
        reader.stop()
    assert not reader.running
    assert after["walks"] - before["walks"] >= 50
    assert walked[tid] == chains()[tid]


def test_pinned_code_and_unmoved_stacks_are_not_read_again(parked) -> None:
    """After ``pin()`` a walk reads no code object of the running stacks; the native
    thread takes a parked thread's callers from its previous walk, and the result is
    still what ``sys._current_frames()`` shows."""
    tid = parked(descend, 200)
    time.sleep(0.05)
    reader = _stacks.Reader()
    assert reader.pin() > 0
    walked, _, counts = reader.walk(release_gil=False)
    assert counts["code_reads"] == 0 and walked[tid] == chains()[tid]
    reader.start(0.002)
    try:
        time.sleep(0.2)
        walked, _, counts = reader.latest()
    finally:
        reader.stop()
    assert walked[tid] == chains()[tid]
    assert counts["frames_reused"] >= 200 * (counts["walks"] - 1) > 0


def test_one_native_reader_runs_at_a_time() -> None:
    first, second = _stacks.Reader(), _stacks.Reader()
    first.start(0.01)
    try:
        with pytest.raises(RuntimeError, match="already running"):
            second.start(0.01)
    finally:
        first.stop()
    second.start(0.01)
    second.stop()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_fork_leaves_the_child_without_the_native_thread_and_the_parent_with_it() -> None:
    reader = _stacks.Reader()
    reader.walk()  # the parent's pipe exists before the fork: the child must not share it
    reader.start(0.001)
    try:
        pid = os.fork()
        if pid == 0:  # the child: no native thread, and a walk still reads right
            code = 0 if not reader.running and walks_like_getframe(reader) else 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        _, _, before = reader.latest()
        time.sleep(0.05)
        _, _, after = reader.latest()
    finally:
        reader.stop()
    assert os.waitstatus_to_exitcode(status) == 0
    assert after["walks"] > before["walks"]  # started again in the parent


def test_a_host_moving_its_stacks_at_full_speed_is_unharmed_by_the_reader() -> None:
    """Threads started and ended a thousand a second, recursion 1,000 deep, generators
    raising, full collections, with the reader walking every thread at its maximum rate:
    no crash, no hang, the same results, and the walks really happened (stacks that moved
    under a walk are counted as dropped, not returned)."""
    runs = {}
    for mode in ("off", "on"):
        done = subprocess.run(
            [sys.executable, "-X", "faulthandler", str(STRESS), mode],
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs["on"]["results"] == runs["off"]["results"]
    counts = runs["on"]["counts"]
    assert counts["walks"] >= 100 and counts["threads"] >= 100 and counts["frames"] >= 1000


@pytest.mark.parametrize("path", ["pipe", "readv"])
def test_both_ways_of_copying_read_the_same_stacks(parked, path: str) -> None:
    """The pipe and process_vm_readv copy the same bytes: every parked thread's stack
    equals what ``sys._current_frames()`` shows, whichever did the reads."""
    for depth in (3, 200):
        parked(descend, depth)
    time.sleep(0.05)
    key = {"pipe": "piped", "readv": "readv"}[path]
    before = _stacks.copy_path(path)[key]
    try:
        walked, _, counts = _stacks.Reader().walk(release_gil=True)
        used = _stacks.copy_path()[key] - before
    finally:
        _stacks.copy_path("pipe")
    me = threading.get_ident()
    for tid, chain in chains().items():
        if tid != me:
            assert walked[tid] == chain, tid
    assert counts["torn"] == counts["invalid"] == counts["unreadable"] == 0
    assert used >= 3  # the thread list, the innermost frames, deeper frames


HOST_TAKES_THE_PIPE = """
import os, sys, tempfile
from spangap import _stacks
from spangap.stacks import walks_like_getframe

reader = _stacks.Reader()
reader.walk()
read_fd, write_fd = _stacks.copy_path()["fds"]
assert write_fd >= 0
# A host that closes descriptors it does not own, and opens a file of its own that
# lands on the same numbers.
for fd in {read_fd, write_fd}:
    os.close(fd)
with tempfile.TemporaryFile() as own:
    for fd in {read_fd, write_fd}:
        os.dup2(own.fileno(), fd)
    right = all(walks_like_getframe(reader) for _ in range(20))
    os.fsync(write_fd)
    size = os.fstat(own.fileno()).st_size
state = _stacks.copy_path()
print(right, size, state["path"], state["lost"])
"""


def test_a_descriptor_the_host_reused_is_never_written_to() -> None:
    """If the host closes the pipe's descriptors and its own file takes their numbers,
    the walks never write there: they notice, give the pipe up for good, and read right
    with process_vm_readv."""
    done = subprocess.run([sys.executable, "-c", HOST_TAKES_THE_PIPE],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "0", "readv", "1"]
