"""Cost: what the detector's sampler uses, and how much it slows the application down.

(a) Sampler CPU: 16 threads do dark work that mixes pure-Python CPU, short sleeps and
    socket round trips for about 10 s under a detector at the default interval. The
    sampler's CPU is reported three ways that should agree: the snapshot totals, the
    ``spangap_sampler_cpu_seconds_total`` counter, and the kernel's CPU clock of the sampler
    thread read from outside it, which does not rely on spangap's own accounting.
(b) Slowdown: two workloads run with the detector off and on, alternating in fresh child
    processes for several rounds; medians and their ratio are reported.

Usage::

    python benchmarks/overhead.py            # full run, about 1.5 minutes
    python benchmarks/overhead.py --quick    # small self-test, well under a minute

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from _common import (
    HARNESS,
    emit,
    format_table,
    median,
    pct,
    prepare_child,
    run_child,
    run_in_threads,
)

THREADS = 16
MODULE = "gt_workloads"
SAMPLER_THREAD = "spangap-sampler"
COUNTER = "spangap_sampler_cpu_seconds_total"


# --- child: workloads ------------------------------------------------------------------


def start_detector(on: bool) -> tuple[Any, Any]:
    """A detector at default settings on its own registry, or (None, None) when off.

    Both sides import the same modules, so the comparison is only about sampling."""
    prepare_child()
    import prometheus_client

    import spangap

    if not on:
        return None, None
    registry = prometheus_client.CollectorRegistry()
    detector = spangap.enable_gap_detector(
        registry=registry, include=[MODULE], exclude=list(HARNESS)
    )
    return detector, registry


def busy_loop(gt: Any, address: tuple[str, int], deadline: float, done: list[int]) -> None:
    """One thread of the sampler-CPU workload: CPU, a short sleep, a socket round trip."""
    units = 0
    while time.perf_counter() < deadline:
        gt.dark_cpu(16)  # about 2 ms of pure-Python work
        gt.dark_sleep(0.005)
        gt.dark_socket(address)
        units += 1
    done.append(units)


def os_thread_cpu(name: str) -> float:
    """CPU seconds the kernel has charged to the live thread called ``name`` (NaN if
    absent), read from outside that thread through its CPU-time clock: a check on
    spangap's own accounting that does not depend on it."""
    thread = next((t for t in threading.enumerate() if t.name == name), None)
    if thread is None or thread.ident is None:
        return float("nan")
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def measure_sampler_cpu(seconds: float) -> dict[str, Any]:
    """Part (a): 16 busy threads under the detector; the sampler's CPU and tick rate.

    The wall clock runs from enabling the detector to stopping it, the same span its own
    CPU accounting covers."""
    prepare_child()
    import gt_workloads as gt

    server = gt.DelayServer(delay=0.005)
    done: list[int] = []
    start = time.perf_counter()
    detector, registry = start_detector(on=True)
    deadline = start + seconds
    run_in_threads(lambda: busy_loop(gt, server.address, deadline, done), THREADS)
    os_cpu = os_thread_cpu(SAMPLER_THREAD)  # read before stop(): the thread ends there
    detector.stop()
    wall = time.perf_counter() - start
    server.close()
    totals = detector.snapshot().totals
    return {
        "wall_s": wall,
        "reader": detector.context_reader,
        "units": sum(done),
        "samples": totals.samples,
        "operations": totals.operations,
        "snapshot_cpu_s": totals.sampler_cpu_seconds,
        "counter_cpu_s": registry.get_sample_value(COUNTER) or 0.0,
        "os_cpu_s": os_cpu,
    }


def cpu_single(on: bool, calls: int) -> dict[str, Any]:
    """Part (b)(i): fixed pure-Python work in one thread; the result is its wall time."""
    detector, _ = start_detector(on)
    import gt_workloads as gt

    start = time.perf_counter()
    for _ in range(calls):
        gt.dark_cpu(200)  # about 25 ms each: every call is an operation the detector counts
    wall = time.perf_counter() - start
    if detector is not None:
        detector.stop()
    return {"value": wall}


def threads_mixed(on: bool, seconds: float) -> dict[str, Any]:
    """Part (b)(ii): 16 threads each doing ~2 ms of CPU then a 10 ms sleep, for a fixed
    time; the result is work units (loop iterations) per second over all threads.

    The CPU demand exceeds one GIL's worth, so this is the regime where an in-process
    sampler competes with the application for the interpreter."""
    detector, _ = start_detector(on)
    import gt_workloads as gt

    done: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds

    def loop() -> None:
        units = 0
        while time.perf_counter() < deadline:
            gt.dark_cpu(16)
            gt.dark_sleep(0.01)
            units += 1
        done.append(units)

    run_in_threads(loop, THREADS)
    wall = time.perf_counter() - start
    if detector is not None:
        detector.stop()
    return {"value": sum(done) / wall}


def run_one(args: dict[str, Any]) -> dict[str, Any]:
    """Child mode: dispatch one measurement described by the parent."""
    kind = args["kind"]
    if kind == "sampler_cpu":
        return measure_sampler_cpu(args["seconds"])
    if kind == "cpu_single":
        return cpu_single(args["on"], args["calls"])
    if kind == "threads_mixed":
        return threads_mixed(args["on"], args["seconds"])
    raise SystemExit(f"unknown measurement {kind!r}")


# --- parent: tables ----------------------------------------------------------------------


def sampler_table(result: dict[str, Any]) -> str:
    """Part (a) as a two-column table."""
    wall = result["wall_s"]

    def share(cpu_s: float) -> str:
        return pct(cpu_s / wall, digits=2)

    rows = [
        ["busy threads", str(THREADS)],
        ["span-state reader", result["reader"]],
        ["duration", f"{wall:.1f} s"],
        ["work units/s (all threads)", f"{result['units'] / wall:.0f}"],
        ["samples/s", f"{result['samples'] / wall:.0f}"],
        ["mean interval between samples", f"{1000 * wall / max(result['samples'], 1):.2f} ms"],
        ["operations counted", str(result["operations"])],
        ["sampler CPU, snapshot totals", share(result["snapshot_cpu_s"])],
        [f"sampler CPU, {COUNTER}", share(result["counter_cpu_s"])],
        ["sampler CPU, kernel thread CPU clock", share(result["os_cpu_s"])],
    ]
    return format_table(["measure (a)", "value"], rows)


@dataclass(frozen=True)
class Workload:
    """One row of part (b): a child measurement and how to read its value."""

    name: str
    kind: str
    unit: str
    higher_is_better: bool
    args: dict[str, Any]

    def cell(self, value: float) -> str:
        return f"{value:.3f} {self.unit}" if self.unit == "s" else f"{value:.0f} {self.unit}"


def workloads(quick: bool) -> list[Workload]:
    """The two part (b) workloads: the single-thread one shows the sampler's share of the
    GIL at its plainest, the threaded one the cost under contention."""
    return [
        Workload(
            "cpu-bound, 1 thread (wall time)",
            "cpu_single",
            "s",
            False,
            {"calls": 20 if quick else 120},
        ),
        Workload(
            f"{THREADS} threads CPU + sleep (throughput)",
            "threads_mixed",
            "units/s",
            True,
            {"seconds": 1.5 if quick else 5.0},
        ),
    ]


def compare(items: list[Workload], rounds: int) -> list[tuple[list[float], list[float]]]:
    """Off and on values per workload, alternating the order every round (off-on, then
    on-off) so that a drift in machine speed does not favour either side."""
    values: list[tuple[list[float], list[float]]] = [([], []) for _ in items]
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for item, (off, on) in zip(items, values, strict=True):
            for enabled in order:
                args = {"kind": item.kind, "on": enabled, **item.args}
                value = run_child(__file__, args)["value"]
                (on if enabled else off).append(value)
                state = "on" if enabled else "off"
                progress = f"[{r + 1}/{rounds}] {item.name}: {state} {item.cell(value)}"
                print(progress, file=sys.stderr, flush=True)
    return values


def overhead(item: Workload, off: float, on: float) -> float:
    """Extra cost with the detector on: more wall time, or less throughput, as a share."""
    return off / on - 1.0 if item.higher_is_better else on / off - 1.0


def comparison_table(
    items: list[Workload], values: list[tuple[list[float], list[float]]], rounds: int
) -> str:
    """Part (b): medians off and on, their ratio and the overhead."""
    rows = []
    for item, (off_values, on_values) in zip(items, values, strict=True):
        off, on = median(off_values), median(on_values)
        rows.append(
            [
                item.name,
                item.cell(off),
                item.cell(on),
                f"{on / off:.3f}",
                pct(overhead(item, off, on), signed=True),
            ]
        )
    headers = ["workload (b)", f"off (median of {rounds})", f"on (median of {rounds})"]
    return format_table([*headers, "on/off", "overhead"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="off/on pairs per workload (default 5)")
    parser.add_argument("--quick", action="store_true", help="small self-test: short runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one JSON measurement
    args = parser.parse_args(argv)
    if args.one:
        emit(run_one(json.loads(args.one)))
        return
    rounds = args.rounds or (2 if args.quick else 5)
    started = time.perf_counter()
    print("[a] sampler CPU", file=sys.stderr, flush=True)
    sampler = run_child(__file__, {"kind": "sampler_cpu", "seconds": 2.0 if args.quick else 10.0})
    items = workloads(args.quick)
    values = compare(items, rounds)
    print(
        f"spangap overhead: default settings (interval 5 ms, threshold 10 ms), "
        f"Python {platform.python_version()}"
    )
    print(sampler_table(sampler))
    print()
    print(comparison_table(items, values, rounds))
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
