"""Ground-truth workloads: functions whose darkness is known and whose real durations are
recorded, so tests and benchmarks can compare what spangap counted with what happened.

Each workload function times its own body with ``perf_counter`` (no wrapper frame that
would itself be a call site) and appends ``(site, seconds)`` to ``RECORDED``, and
``(site, start, end)`` to ``CALL_TIMES`` (when each call ran, to set beside the ticks). Only the
functions named ``dark_*`` are dark; everything under ``spanned_*`` runs inside a span.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

# A provider of our own: these spans are real SDK spans, without touching the global one.
TRACER = TracerProvider().get_tracer("gt")
SAMPLED_OUT = TracerProvider(sampler=ALWAYS_OFF).get_tracer("gt-sampled-out")

MODULE = __name__
RECORDED: list[tuple[str, float]] = []
CALL_TIMES: list[tuple[str, float, float]] = []
_lock = threading.Lock()


def site(name: str) -> str:
    return f"{MODULE}:{name}"


@contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        _record(name, start)


def burn(units: int) -> int:
    """Fixed CPU work (pure Python); about 1 ms per 8 units on this machine."""
    total = 0
    for i in range(units * 2500):
        total += i * i
    return total


# --- dark work ----------------------------------------------------------------------------


def dark_cpu(units: int = 200) -> None:
    start = time.perf_counter()
    burn(units)
    _record("dark_cpu", start)


def dark_sleep(seconds: float = 0.025) -> None:
    start = time.perf_counter()
    time.sleep(seconds)
    _record("dark_sleep", start)


def dark_socket(address: tuple[str, int]) -> None:
    """A request/response round trip to a local server that answers after a delay."""
    start = time.perf_counter()
    with socket.create_connection(address) as conn:
        conn.sendall(b"ping\n")
        conn.recv(16)
    _record("dark_socket", start)


def dark_outer(inner_calls: int = 3) -> None:
    start = time.perf_counter()
    for _ in range(inner_calls):
        dark_inner()
    _record("dark_outer", start)


def dark_inner() -> None:
    start = time.perf_counter()
    time.sleep(0.022)
    _record("dark_inner", start)


def dark_short() -> None:
    """Well under half the default threshold: must never be counted."""
    start = time.perf_counter()
    time.sleep(0.002)
    _record("dark_short", start)


def partly_spanned() -> None:
    """Dark for a while, then opens a span: not dark at every moment, never counted.
    Its dark helper, which ended before the span opened, is counted."""
    start = time.perf_counter()
    dark_before_span()
    with TRACER.start_as_current_span("partly"):
        time.sleep(0.03)
    _record("partly_spanned", start)


def dark_before_span() -> None:
    start = time.perf_counter()
    time.sleep(0.025)
    _record("dark_before_span", start)


# --- spanned work -------------------------------------------------------------------------


def spanned_cm() -> None:
    with TRACER.start_as_current_span("cm"):
        spanned_body()


@TRACER.start_as_current_span("decorated")
def spanned_decorated() -> None:
    start = time.perf_counter()
    time.sleep(0.025)
    _record("spanned_decorated", start)


def spanned_sampled_out() -> None:
    with SAMPLED_OUT.start_as_current_span("dropped"):
        spanned_body()


#: Pure-Python CPU units inside each spanned body (40 ≈ 5 ms). Tests of I/O-bound threads
#: lower it: CPU in several threads at once is GIL contention, a separate test's subject.
SPANNED_CPU_UNITS = 40


def spanned_body() -> None:
    start = time.perf_counter()
    time.sleep(0.025)
    burn(SPANNED_CPU_UNITS)
    _record("spanned_body", start)


def spanned_carried_into_thread() -> None:
    """A span carried into a worker thread with Context.run: the worker is spanned."""
    with TRACER.start_as_current_span("parent"):
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(spanned_in_worker,))
        worker.start()
        worker.join()


def spanned_to_thread() -> None:
    """asyncio.to_thread carries the task's context (and span) into the pool thread."""

    async def main() -> None:
        with TRACER.start_as_current_span("async-parent"):
            await asyncio.to_thread(spanned_in_worker)

    asyncio.run(main())


def spanned_in_worker() -> None:
    start = time.perf_counter()
    time.sleep(0.025)
    _record("spanned_in_worker", start)


# --- idle ---------------------------------------------------------------------------------


def idle_consumer(q: queue.Queue[object | None]) -> None:
    """A worker blocked in queue.get most of the time; its jobs are dark."""
    while True:
        item = q.get()
        if item is None:
            return
        dark_job()


def dark_job() -> None:
    start = time.perf_counter()
    time.sleep(0.025)
    _record("dark_job", start)


def idle_waiter(event: threading.Event) -> None:
    """Waits on an event for its whole life: idle throughout, never counted."""
    event.wait()


def idle_workers(jobs: int) -> None:
    """Two consumers parked in queue.get run ``jobs`` dark jobs between them, beside a
    thread waiting on an event all along; returns when all three have ended."""
    queued: queue.Queue[object | None] = queue.Queue()
    stop_waiting = threading.Event()
    workers = [threading.Thread(target=idle_consumer, args=(queued,)) for _ in range(2)]
    waiter = threading.Thread(target=idle_waiter, args=(stop_waiting,))
    for t in [*workers, waiter]:
        t.start()
    for _ in range(jobs):
        queued.put("job")
    for _ in workers:
        queued.put(None)
    for t in workers:
        t.join()
    stop_waiting.set()
    waiter.join()


def reset() -> None:
    """Forget every recorded call (both records, which are read side by side)."""
    with _lock:
        RECORDED.clear()
        CALL_TIMES.clear()


def _record(name: str, start: float) -> None:
    end = time.perf_counter()
    key = site(name)
    with _lock:
        RECORDED.append((key, end - start))
        CALL_TIMES.append((key, start, end))


class DelayServer:
    """A local TCP server that answers each line after ``delay`` seconds."""

    def __init__(self, delay: float = 0.025) -> None:
        self.delay = delay
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="delay-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(16)
            time.sleep(self.delay)
            conn.sendall(b"pong\n")

    def close(self) -> None:
        self._sock.close()


def run_threads(target: Callable[[], None], count: int) -> None:
    """``target`` in ``count`` threads at once."""
    run_all([target] * count)


def run_all(targets: list[Callable[[], None]]) -> None:
    """Each target in its own thread, all at once; returns when all are done."""
    threads = [threading.Thread(target=t, name=f"gt-{i}") for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def call_library(client: object) -> None:
    """Dark: calls a client library that waits internally for the reply."""
    start = time.perf_counter()
    client.request()  # type: ignore[attr-defined]
    _record("call_library", start)
