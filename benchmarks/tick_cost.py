"""Where a sampler tick's CPU goes: the parts of a tick, and the cost of one operation.

Two workloads, each under a detector with a thread-CPU timer around each part of the
tick, around the sampler's sleep (what waking up and getting the GIL back costs it) and
around the flush that hands counted operations on:

- ``gt-mix``: the ground-truth mix of ``gt_workloads.py`` (dark sleeps, socket
  round trips, nested and partly spanned calls beside spanned work) in N threads;
- ``asyncio-http``: the asyncio HTTP service of ``overhead.py`` under 1,000 keep-alive
  connections from a load generator in a second process, where every task moves
  between ticks and the event loop releases and retakes the GIL around every socket
  call;
- ``sleep-dark`` and ``sleep-spanned``: N threads, each calling the ground truth's
  ``dark_sleep`` (25 ms) over and over, with no span (every call is an operation) or
  inside one long span per thread (no call can be). The stacks change alike; the difference is
  what following and counting dark calls costs.

``--interval-ms`` holds the sampler at one interval for the whole run, the budget set
aside (even past half the threshold, which the option itself does not allow): what a
tick costs at the rate the budget would pick, or at the rate a detection target needs.

The sampler thread's voluntary context switches per tick (Linux) show how often it was
woken while it waited for the GIL. Timers add about a microsecond each, so the parts
are a little high; their ratios are what to read.

Usage::

    python benchmarks/tick_cost.py              # gt-mix, 16 threads, full rate, 6 s, 3 runs
    python benchmarks/tick_cost.py --threads 4 --seconds 3 --repeats 1
    python benchmarks/tick_cost.py --workload asyncio-http --max-overhead 0.01
    python benchmarks/tick_cost.py --interval-ms 12
    python benchmarks/tick_cost.py --workload sleep-spanned --interval-ms 12
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import (
    HARNESS,
    emit,
    format_table,
    median,
    prepare_child,
    run_child,
    run_in_threads,
    start_detector,
)
from http_service import CONNECTIONS
from overhead import serve_under_tool

PARTS = ("sleep", "tick", "current_frames", "span_reader", "tracker", "tasks", "add_ticks", "flush")
WORKLOADS = ("gt-mix", "asyncio-http", "sleep-dark", "sleep-spanned")
SLEEP_S = 0.025


def timed(totals: dict[str, int], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its thread CPU time added to ``totals[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0) + time.thread_time_ns() - start

    return wrapper


class PartTimes:
    """A sampler probe that adds each part's CPU time (ns) to ``totals``, under the part's
    name (the task sample and the task tracker both as ``tasks``); with ``interval_ms``
    the budget is pinned to that interval."""

    def __init__(self, totals: dict[str, int], interval_ms: float | None) -> None:
        self._totals = totals
        self._interval_ms = interval_ms

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if part == "budget":
            if self._interval_ms is None:
                return fn
            from spangap.budget import Setting

            fixed = Setting(self._interval_ms / 1000, 1)
            return lambda *_: fixed  # one interval throughout
        return timed(self._totals, "tasks" if part == "task_tracker" else part, fn)


def voluntary_switches(native_id: int | None) -> int:
    """How many times the kernel has put thread ``native_id`` to sleep on a wait (-1
    where /proc does not say)."""
    try:
        with open(f"/proc/self/task/{native_id}/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split(":")[1])
    except OSError:
        pass
    return -1


def measure(
    workload: str,
    threads: int,
    seconds: float,
    max_overhead: float,
    interval_ms: float | None = None,
) -> dict[str, Any]:
    """One run in this (fresh) process."""
    prepare_child()
    import prometheus_client

    totals: dict[str, int] = {}
    detector = start_detector(
        probe=PartTimes(totals, interval_ms),
        registry=prometheus_client.CollectorRegistry(),
        include=["gt_workloads", "http_app"],
        exclude=[*HARNESS, "http_server", "http_load"],
        max_overhead=max_overhead,
    )
    s = detector._sampler
    while s.ident is None:
        time.sleep(0.001)
    sampler = next(t for t in threading.enumerate() if t.ident == s.ident)
    switches = voluntary_switches(sampler.native_id)
    start = time.perf_counter()
    work = run_workload(workload, threads, seconds)
    wall = time.perf_counter() - start
    cpu = time.clock_gettime(time.pthread_getcpuclockid(s.ident))
    switches = voluntary_switches(sampler.native_id) - switches if switches >= 0 else -1
    detector.stop()
    snapshot = detector.snapshot()
    return {
        "samples": snapshot.totals.samples,
        "operations": snapshot.totals.operations,
        "wall_s": wall,
        "sampler_thread_cpu_s": cpu,
        "voluntary_switches": switches,
        "parts_ns": totals,
        "work_done": work,  # rounds of the mix, calls, or requests served
        "interval_s": s._setting.interval_s,  # the sampler's setting at the end
    }


def run_workload(workload: str, threads: int, seconds: float) -> int:
    """Run ``workload``; how much work it did (rounds, calls or requests)."""
    if workload == "gt-mix":
        return run_gt_mix(threads, seconds)
    if workload == "asyncio-http":
        return run_asyncio_http(seconds)
    return run_sleeps(threads, seconds, spanned=workload == "sleep-spanned")


def run_sleeps(threads: int, seconds: float, spanned: bool) -> int:
    """``threads`` threads calling the ground truth's ``dark_sleep`` (25 ms) over and
    over, each with no span or inside one long span; calls made."""
    from opentelemetry import trace

    import gt_workloads as gt

    tracer = trace.get_tracer("tick_cost")
    deadline = time.perf_counter() + seconds
    calls: list[int] = []

    def body() -> None:
        done = 0
        with tracer.start_as_current_span("all") if spanned else contextlib.nullcontext():
            while time.perf_counter() < deadline:
                gt.dark_sleep(SLEEP_S)
                done += 1
        calls.append(done)

    run_in_threads(body, threads)
    return sum(calls)


def run_gt_mix(threads: int, seconds: float) -> int:
    """The ground-truth mix in ``threads`` threads for ``seconds``; rounds done."""
    import gt_workloads as gt

    server = gt.DelayServer()
    deadline = time.perf_counter() + seconds
    rounds: list[int] = []

    def body() -> None:
        while time.perf_counter() < deadline:
            gt.dark_sleep()
            gt.dark_socket(server.address)
            gt.dark_outer(2)
            gt.partly_spanned()
            gt.spanned_cm()
            gt.spanned_carried_into_thread()
            rounds.append(1)

    run_in_threads(body, threads)
    server.close()
    return len(rounds)


def run_asyncio_http(seconds: float) -> int:
    """overhead.py's asyncio service under its 1,000-connection load, with no tool of
    its own (the detector is already running); requests served."""
    result = serve_under_tool("off", "asyncio", CONNECTIONS["asyncio"], 1.0, seconds)
    return int(result["requests"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="gt-mix")
    parser.add_argument("--threads", type=int, default=16, help="threads (gt-mix, sleep-*)")
    parser.add_argument(
        "--max-overhead", type=float, default=1.0, help="the detector's budget (1 = full rate)"
    )
    parser.add_argument(
        "--interval-ms", type=float, help="hold the sampler at this interval, budget aside"
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        setting = json.loads(args.one)
        emit(
            measure(
                setting.get("workload", "gt-mix"),
                setting["threads"],
                setting["seconds"],
                setting.get("max_overhead", 1.0),
                setting.get("interval_ms"),
            )
        )
        return
    if args.threads < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error("--threads and --repeats must be at least 1, --seconds above 0")
    if not 0.001 <= args.max_overhead <= 1.0:
        parser.error("--max-overhead must be between 0.001 and 1")
    if args.interval_ms is not None and not 0.5 <= args.interval_ms <= 1000:
        parser.error("--interval-ms must be between 0.5 and 1000")
    setting = {
        "workload": args.workload,
        "threads": args.threads,
        "seconds": args.seconds,
        "max_overhead": args.max_overhead,
        "interval_ms": args.interval_ms,
    }
    runs = [run_child(__file__, setting) for _ in range(args.repeats)]
    per_tick = {
        part: median([r["parts_ns"].get(part, 0) / 1e3 / r["samples"] for r in runs])
        for part in PARTS
    }
    whole = median([r["sampler_thread_cpu_s"] * 1e6 / r["samples"] for r in runs])
    share = median([r["sampler_thread_cpu_s"] / r["wall_s"] for r in runs])
    switches = median([r["voluntary_switches"] / r["samples"] for r in runs])
    counted = [r for r in runs if r["operations"]]
    per_op = median([r["parts_ns"].get("flush", 0) / 1e3 / r["operations"] for r in counted])
    load = {
        "gt-mix": f"{args.threads} threads, ground-truth mix",
        "asyncio-http": f"asyncio HTTP service, {CONNECTIONS['asyncio']:,} connections",
        "sleep-dark": f"{args.threads} threads, 25 ms calls, no span",
        "sleep-spanned": f"{args.threads} threads, 25 ms calls, each thread in one span",
    }[args.workload]
    rate = "full rate" if args.max_overhead >= 1 else f"max_overhead {args.max_overhead:g}"
    if args.interval_ms is not None:
        rate = f"interval held at {args.interval_ms:g} ms"
    print(
        f"spangap tick cost: {load}, {rate}, {args.seconds:g} s, median of {args.repeats} "
        f"run(s), Python {platform.python_version()}"
    )
    print(
        f"samples/s {median([r['samples'] / r['wall_s'] for r in runs]):.0f}, "
        f"operations/s {median([r['operations'] / r['wall_s'] for r in runs]):.0f}, "
        f"sampler thread CPU {100 * share:.2f}% of a core, {whole:.0f} µs per tick "
        f"(sleep, wake-up and loop included), {switches:.1f} voluntary context switches "
        "per tick"
    )
    rows = [[part, f"{per_tick[part]:.1f} µs"] for part in PARTS]
    rows.append(["flush, per operation", f"{per_op:.1f} µs" if counted else "-"])
    print(format_table(["part (per tick)", "thread CPU"], rows))


if __name__ == "__main__":
    main()
