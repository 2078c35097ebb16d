"""A host program for the fault tests: the same work with the detector off and on, with a
fault made to happen in one of the places spangap's code runs.

    python fault_host.py SCENARIO off|on OUT_DIR

It prints only what the application computes (stdout must be the same either way). With
the detector on, it writes what spangap counted to ``OUT_DIR/metrics.txt`` (the registry
after ``stop()``) or, for the scenarios that never call ``stop()``, leaves it to the
snapshot written at exit (``OUT_DIR/snapshot.json``). Scenarios:

Faults made to happen (an error inside spangap that must be counted, not felt):

- ``broken-span``: OpenTelemetry misconfigured: a span class whose ``get_span_context()``
  raises is made current while threads work, submit to an executor, start threads, and
  run asyncio tasks (the context read on the sampler, the attach hook, the hand-off
  hooks all meet it);
- ``attach-hook``, ``handoff-hooks``, ``context-read``, ``collector``, ``stop-step``,
  ``fork-hook``: the code behind that hook is replaced by one that raises;
- ``snapshot-readonly``, ``snapshot-full``: ``snapshot_path`` on a read-only or a full
  file system (the test mounts one);

Stress with no fault (nothing may be counted as an error either):

- ``provider-swap``: the global tracer provider replaced twice while the work runs;
- ``scrape-during-stop``: ``/metrics`` scraped in a loop while ``stop()`` runs;
- ``fork-mid-tick``: fork 40 times while the sampler ticks every millisecond;
- ``shutdown``: the interpreter exits while threads are still working, without
  ``stop()``; ``shutdown-exit-3`` does it through ``sys.exit(3)``;
- ``thread-churn``: threads started and ended at 1,000 a second for 2 seconds;
- ``task-churn``: 10,000 asyncio tasks created and cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY, generate_latest

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("fault_host")
OUT = Path(sys.argv[3])


# -- the application ----------------------------------------------------------------------


def digest(n: int) -> str:
    """CPU work whose result the output shows."""
    h = hashlib.sha256()
    for i in range(n):
        h.update(i.to_bytes(4, "little"))
    return h.hexdigest()[:12]


def dark_call(n: int) -> str:
    time.sleep(0.015)
    return digest(n)


def spanned_call(n: int) -> str:
    with tracer.start_as_current_span("spanned_call"):
        return dark_call(n)


class BrokenSpan(trace.NonRecordingSpan):
    """A span of a misconfigured tracing setup: reading its span context raises."""

    def get_span_context(self) -> trace.SpanContext:
        raise RuntimeError("broken span")


def hand_offs(label: str, i: int, pool: ThreadPoolExecutor) -> list[str]:
    """A job submitted to an executor, a thread started, an event loop run."""
    out: list[str] = []
    worker = threading.Thread(target=lambda: out.append(dark_call(40_000 + i)))
    worker.start()
    worker.join()

    async def handler(j: int) -> str:
        await asyncio.sleep(0.015)
        return digest(50_000 + j)

    async def handlers() -> list[str]:
        return list(await asyncio.gather(*(handler(i + j) for j in range(3))))

    return [
        f"{label} pool {i} {pool.submit(dark_call, 30_000 + i).result()}",
        f"{label} thread {i} {out[0]}",
        f"{label} tasks {i} {asyncio.run(handlers())}",
    ]


def mixed_work(label: str, rounds: int = 4) -> list[str]:
    """Dark and spanned calls, and hand-offs from a span."""
    lines = []
    with ThreadPoolExecutor(2) as pool:
        for i in range(rounds):
            lines.append(f"{label} dark {i} {dark_call(20_000 + i)}")
            lines.append(f"{label} spanned {i} {spanned_call(20_000 + i)}")
            with tracer.start_as_current_span("handler"):
                lines += hand_offs(label, i, pool)
    return lines


def in_threads(work: Callable[[str], list[str]], count: int = 3) -> list[str]:
    results: dict[int, list[str]] = {}

    def run(i: int) -> None:
        results[i] = work(f"t{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [line for i in sorted(results) for line in results[i]]


def broken_span_work(label: str) -> list[str]:
    """Under the broken span: no child spans (the SDK itself fails to start one under
    it), but dark calls and hand-offs."""
    lines = []
    with ThreadPoolExecutor(2) as pool:
        for i in range(3):
            with trace.use_span(BrokenSpan(trace.INVALID_SPAN_CONTEXT), end_on_exit=False):
                lines.append(f"{label} dark {i} {dark_call(20_000 + i)}")
                lines += hand_offs(label, i, pool)
    return lines


def provider_swap_work() -> list[str]:
    lines = mixed_work("before", rounds=2)
    swap_provider(TracerProvider(sampler=ALWAYS_OFF))  # spans sampled out: still active
    lines += mixed_work("sampled-out", rounds=2)
    swap_provider(trace.NoOpTracerProvider())  # every span invalid: all of it dark
    lines += mixed_work("no-op", rounds=2)
    return lines


def swap_provider(provider: trace.TracerProvider) -> None:
    global tracer
    trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("fault_host")


def fork_work() -> list[str]:
    lines = []
    for i in range(40):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            print(f"child {i} {dark_call(10_000 + i)}", flush=True)
            os._exit(i % 7)
        _, status = os.waitpid(pid, 0)
        lines.append(f"child {i} exited {os.waitstatus_to_exitcode(status)}")
    return lines


def thread_churn() -> list[str]:
    total = [0]
    lock = threading.Lock()

    def short(i: int) -> None:
        value = sum(range(i % 500))
        with lock:
            total[0] += value

    began = time.monotonic()
    started = 0
    while time.monotonic() - began < 2.0:
        batch = [threading.Thread(target=short, args=(started + k,)) for k in range(50)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
        started += len(batch)
        time.sleep(max(0.0, began + started / 1000 - time.monotonic()))
    return [f"threads {started >= 1500} checksum-ok {total[0] == expected_churn(started)}"]


def expected_churn(started: int) -> int:
    return sum(sum(range(i % 500)) for i in range(started))


def task_churn() -> list[str]:
    async def sleeper() -> None:
        await asyncio.sleep(10)

    async def main() -> list[str]:
        cancelled = 0
        for _ in range(10):
            tasks = [asyncio.create_task(sleeper()) for _ in range(1000)]
            await asyncio.sleep(0.005)
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                cancelled += isinstance(result, asyncio.CancelledError)
        return [f"cancelled {cancelled}"]

    return asyncio.run(main())


def shutdown_work(exit_code: int) -> None:
    """Leave threads working (daemon and not) when the main thread ends."""
    for _ in range(3):
        threading.Thread(
            target=lambda: [dark_call(5_000) for _ in range(1000)], daemon=True
        ).start()
    printed = threading.Event()

    def last() -> None:
        printed.wait()
        print(f"last {dark_call(60_000)}", flush=True)

    threading.Thread(target=last).start()  # still running when the main thread ends
    for line in mixed_work("main", rounds=2):
        print(line, flush=True)
    printed.set()
    if exit_code:
        sys.exit(exit_code)


# -- faults made to happen -----------------------------------------------------------------


def raising(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def inject(scenario: str) -> None:
    """Replace the code behind one hook with code that raises (before the detector
    starts, since the hooks bind their helpers when they are installed)."""
    import spangap.activations
    import spangap.detector
    import spangap.handoff
    import spangap.spanstate
    import spangap.tracker

    if scenario == "attach-hook":
        spangap.activations._note = raising
    elif scenario == "handoff-hooks":
        spangap.handoff.HandoffWatcher._capture = raising  # type: ignore[method-assign]
        spangap.handoff.HandoffWatcher._called_from_app = raising  # type: ignore[method-assign]
    elif scenario == "context-read":
        spangap.spanstate.NativeReader.spanned_threads = raising  # type: ignore[method-assign]
        spangap.spanstate.HookReader.spanned_threads = raising  # type: ignore[method-assign]
    elif scenario == "collector":
        spangap.tracker.CallTracker.flush = raising  # type: ignore[method-assign]
    elif scenario == "stop-step":
        spangap.handoff.HandoffWatcher.uninstall = raising  # type: ignore[method-assign]
    elif scenario == "fork-hook":
        spangap.detector.GapDetector._before_fork = raising  # type: ignore[method-assign]
        spangap.detector.GapDetector._after_fork_in_child = raising  # type: ignore[method-assign]


def scrape_while(port: int, running: threading.Event, statuses: list[str]) -> None:
    while running.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                statuses.append(str(r.status))
        except OSError as exc:  # refused once the server is closed
            statuses.append(type(exc).__name__)
            time.sleep(0.01)


# -- the run ------------------------------------------------------------------------------


def main() -> int:
    scenario, mode = sys.argv[1], sys.argv[2]
    detector = None
    if mode == "on":
        import spangap

        inject(scenario)
        options: dict[str, Any] = {
            "max_overhead": 1.0,
            "threshold_ms": 10,
            "snapshot_path": str(OUT / "snapshot.json"),
            "snapshot_interval_s": 0.2,
            "include": ["__main__"],
        }
        if scenario in ("collector", "scrape-during-stop"):
            options["metrics_port"] = 0
        if scenario == "fork-mid-tick":
            options["interval_ms"] = 1
        if scenario.startswith("snapshot-"):
            options["snapshot_path"] = str(OUT / "mount" / "snapshot.json")
        detector = spangap.enable_gap_detector(**options)

    if scenario.startswith("shutdown"):
        shutdown_work(3 if scenario == "shutdown-exit-3" else 0)
        return 0  # the detector is stopped by the interpreter's exit, not by us

    side: dict[str, Any] = {}
    if scenario == "broken-span":
        lines = in_threads(broken_span_work)
    elif scenario == "provider-swap":
        lines = provider_swap_work()
    elif scenario in ("fork-mid-tick", "fork-hook"):
        lines = fork_work()
    elif scenario == "thread-churn":
        lines = thread_churn()
    elif scenario == "task-churn":
        lines = task_churn()
    else:
        lines = in_threads(mixed_work)
    if detector is not None and scenario == "collector":
        port = detector.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            side["scrape"] = [r.status, "spangap_samples_total" in r.read().decode()]
    if detector is not None and scenario == "scrape-during-stop":
        running = threading.Event()
        running.set()
        statuses: list[str] = []
        scraper = threading.Thread(
            target=scrape_while, args=(detector.metrics_port, running, statuses)
        )
        scraper.start()
        time.sleep(0.2)
        detector.stop()
        time.sleep(0.1)
        running.clear()
        scraper.join()
        side["statuses"] = sorted(set(statuses))
    for line in lines:
        print(line)
    if detector is not None:
        detector.stop()
        (OUT / "metrics.txt").write_bytes(generate_latest(REGISTRY))
        (OUT / "side.json").write_text(json.dumps(side))
    return 0


if __name__ == "__main__":
    sys.exit(main())
