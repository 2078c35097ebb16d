"""Scaling: does the sampler hold its overhead budget as threads, stack depth and tasks grow?

Each row runs one workload in a fresh child process under a detector at default settings
(max_overhead 1% of a core), lets the budget settle, then measures the sampler's CPU
share over a steady window, from the snapshot totals (the sampler thread and the native
liveness watcher). The table shows that share against the budget, and the setting the
budget chose: the interval between ticks and the stride (1 = every thread examined each
tick).

Workloads:
- threads: N threads, each looping over dark work (about 1 ms of pure-Python CPU in a
  function, then a 5 ms sleep), 1 to 256 threads;
- depth: 16 such threads whose work runs at the bottom of a recursion D frames deep;
- tasks: one event loop with T tasks, each awaiting ``asyncio.sleep`` of 0.1-2 s in a
  loop (like idle connections), with a little CPU per wake-up.

Usage::

    python benchmarks/scaling.py            # about 2 minutes
    python benchmarks/scaling.py --quick    # small self-test

See benchmarks/README.md for the columns.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from _common import HARNESS, emit, format_table, median, pct, prepare_child, run_child

BUDGET = 0.01


@dataclass(frozen=True)
class Row:
    """One workload: ``kind`` is threads, depth or tasks; ``size`` its N, D or T."""

    kind: str
    size: int
    settle_s: float
    measure_s: float

    @property
    def label(self) -> str:
        if self.kind == "threads":
            return f"{self.size} busy threads"
        if self.kind == "depth":
            return f"16 threads, stack depth {self.size}"
        return f"{self.size} asyncio tasks"


# --- child -------------------------------------------------------------------------------


def burn(units: int) -> int:
    total = 0
    for i in range(units * 2500):
        total += i * i
    return total


def dark_work() -> None:
    burn(8)  # about 1 ms
    time.sleep(0.005)


def deep(levels: int) -> None:
    if levels <= 0:
        dark_work()
        return
    deep(levels - 1)


def thread_loop(depth: int, stop: threading.Event) -> None:
    while not stop.is_set():
        deep(depth)


async def connection(rng: random.Random) -> None:
    import asyncio

    while True:
        await asyncio.sleep(rng.uniform(0.1, 2.0))
        burn(1)


def start_tasks(count: int, stop: threading.Event) -> threading.Thread:
    """An event loop in its own thread with ``count`` long-lived tasks."""
    import asyncio

    async def main() -> None:
        rng = random.Random(7)
        tasks = [asyncio.ensure_future(connection(rng)) for _ in range(count)]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="loop")
    thread.start()
    return thread


def measure(row: Row) -> dict[str, Any]:
    prepare_child()
    import prometheus_client

    import spangap

    stop = threading.Event()
    if row.kind == "tasks":
        workers = [start_tasks(row.size, stop)]
    else:
        count, depth = (row.size, 0) if row.kind == "threads" else (16, row.size)
        workers = [
            threading.Thread(target=thread_loop, args=(depth, stop), daemon=True)
            for _ in range(count)
        ]
        for worker in workers:
            worker.start()
    detector = spangap.enable_gap_detector(
        registry=prometheus_client.CollectorRegistry(),
        include=["__main__"],
        exclude=[n for n in HARNESS if n != "__main__"],
        max_overhead=BUDGET,
    )
    time.sleep(row.settle_s)
    first = detector.snapshot().totals
    start = time.perf_counter()
    time.sleep(row.measure_s)
    last = detector.snapshot().totals
    wall = time.perf_counter() - start
    setting = detector._budget.setting
    stop.set()
    detector.stop()
    for worker in workers:
        worker.join(10)
    return {
        "share": (last.sampler_cpu_seconds - first.sampler_cpu_seconds) / wall,
        "ticks_per_s": (last.samples - first.samples) / wall,
        "operations_per_s": (last.operations - first.operations) / wall,
        "interval_s": setting.interval_s,
        "stride": setting.stride,
    }


# --- parent ------------------------------------------------------------------------------


def rows(quick: bool) -> list[Row]:
    settle, window = (2.0, 2.0) if quick else (6.0, 4.0)
    threads = (1, 16, 64) if quick else (1, 16, 64, 256)
    depths = (10, 200) if quick else (10, 50, 200)
    tasks = (10, 1000) if quick else (10, 1000, 10000)
    return [
        *(Row("threads", n, settle, window) for n in threads),
        *(Row("depth", d, settle, window) for d in depths),
        *(Row("tasks", t, settle, window) for t in tasks),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rows")
    parser.add_argument("--repeats", type=int, help="runs per row, medians shown (default 2)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        emit(measure(Row(**json.loads(args.one))))
        return
    repeats = args.repeats or (1 if args.quick else 2)
    table_rows = rows(args.quick)
    results: list[list[dict[str, Any]]] = [[] for _ in table_rows]
    started = time.perf_counter()
    for repeat in range(repeats):
        for i, row in enumerate(table_rows):
            print(f"[{repeat + 1}/{repeats}] {row.label}", file=sys.stderr, flush=True)
            results[i].append(run_child(__file__, asdict(row)))
    lines = []
    for row, runs in zip(table_rows, results, strict=True):
        share = median([r["share"] for r in runs])
        lines.append(
            [
                row.label,
                pct(share, digits=2),
                pct(share / BUDGET - 1, signed=True),
                f"{median([r['ticks_per_s'] for r in runs]):.0f}",
                f"{1000 * median([r['interval_s'] for r in runs]):.1f} ms",
                f"{median([r['stride'] for r in runs]):g}",
                f"{median([r['operations_per_s'] for r in runs]):.0f}",
            ]
        )
    print(
        f"spangap sampler cost vs scale at max_overhead {pct(BUDGET, digits=0)}: steady window "
        f"after settling, median of {repeats} run(s), Python {platform.python_version()}"
    )
    headers = ["workload", "sampler CPU", "vs budget", "ticks/s", "interval", "stride", "ops/s"]
    print(format_table(headers, lines))
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
