"""Where a sampler tick's CPU goes: the parts of a tick, and the cost of one operation.

Runs the ground-truth mix of ``tests/gt_workloads.py`` (dark sleeps, socket round trips,
nested and partly spanned calls beside spanned work) in N threads under a detector at
full rate, with a thread-CPU timer around each part of the tick and around the flush
that hands counted operations on. Timers add about a microsecond each, so the parts are
a little high; their ratios are what to read.

Usage::

    python benchmarks/tick_cost.py              # 16 threads, 6 s, 3 runs
    python benchmarks/tick_cost.py --threads 4 --seconds 3 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import HARNESS, emit, format_table, median, prepare_child, run_child, run_in_threads

PARTS = ("tick", "current_frames", "span_reader", "tracker", "add_tick", "flush")


def timed(totals: dict[str, int], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its thread CPU time added to ``totals[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] = totals.get(name, 0) + time.thread_time_ns() - start

    return wrapper


def measure(threads: int, seconds: float) -> dict[str, Any]:
    """One run in this (fresh) process."""
    prepare_child()
    import prometheus_client

    import gt_workloads as gt
    import spangap
    from spangap import sampler as sampler_module
    from spangap.tracker import CallTracker

    totals: dict[str, int] = {}
    CallTracker.flush = timed(totals, "flush", CallTracker.flush)  # type: ignore[method-assign]
    server = gt.DelayServer()
    detector = spangap.enable_gap_detector(
        registry=prometheus_client.CollectorRegistry(),
        include=["gt_workloads"],
        exclude=list(HARNESS),
        max_overhead=1.0,
    )
    s = detector._sampler
    s._tracker.observe = timed(totals, "tracker", s._tracker.observe)  # type: ignore[method-assign]
    s._reader.spanned_threads = timed(totals, "span_reader", s._reader.spanned_threads)  # type: ignore[method-assign]
    s._aggregate.add_tick = timed(totals, "add_tick", s._aggregate.add_tick)  # type: ignore[method-assign]
    s._tick_safely = timed(totals, "tick", s._tick_safely)  # type: ignore[method-assign]
    frames = timed(totals, "current_frames", sys._current_frames)
    sampler_module.sys = type("Sys", (), {"_current_frames": staticmethod(frames)})  # type: ignore[assignment]
    deadline = time.perf_counter() + seconds

    def body() -> None:
        while time.perf_counter() < deadline:
            gt.dark_sleep()
            gt.dark_socket(server.address)
            gt.dark_outer(2)
            gt.partly_spanned()
            gt.spanned_cm()
            gt.spanned_carried_into_thread()

    start = time.perf_counter()
    run_in_threads(body, threads)
    wall = time.perf_counter() - start
    assert s.ident is not None
    cpu = time.clock_gettime(time.pthread_getcpuclockid(s.ident))
    detector.stop()
    server.close()
    snapshot = detector.snapshot()
    return {
        "samples": snapshot.totals.samples,
        "operations": snapshot.totals.operations,
        "wall_s": wall,
        "sampler_thread_cpu_s": cpu,
        "parts_ns": totals,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        setting = json.loads(args.one)
        emit(measure(setting["threads"], setting["seconds"]))
        return
    if args.threads < 1 or args.seconds <= 0 or args.repeats < 1:
        parser.error("--threads and --repeats must be at least 1, --seconds above 0")
    runs = [
        run_child(__file__, {"threads": args.threads, "seconds": args.seconds})
        for _ in range(args.repeats)
    ]
    per_tick = {
        part: median([r["parts_ns"].get(part, 0) / 1e3 / r["samples"] for r in runs])
        for part in PARTS
    }
    whole = median([r["sampler_thread_cpu_s"] * 1e6 / r["samples"] for r in runs])
    per_op = median([r["parts_ns"].get("flush", 0) / 1e3 / r["operations"] for r in runs])
    print(
        f"spangap tick cost: {args.threads} threads, ground-truth mix, full rate, "
        f"{args.seconds:g} s, median of {args.repeats} run(s), Python {platform.python_version()}"
    )
    print(
        f"samples/s {median([r['samples'] / r['wall_s'] for r in runs]):.0f}, "
        f"operations/s {median([r['operations'] / r['wall_s'] for r in runs]):.0f}, "
        f"sampler thread CPU per tick {whole:.0f} µs (sleep, wake-up and loop included)"
    )
    rows = [[part, f"{per_tick[part]:.1f} µs"] for part in PARTS]
    rows.append(["flush, per operation", f"{per_op:.1f} µs"])
    print(format_table(["part (per tick)", "thread CPU"], rows))


if __name__ == "__main__":
    main()
