"""What many asyncio tasks cost the sampler, and what the sampler costs the event loop.

For each task count, one fresh process per setting runs N live tasks (each awaits a
0.1-2 s sleep, like a connection between messages, and does a little CPU work, forever)
plus a probe that measures the loop's lag: how late ``asyncio.sleep(0.005)`` returns.
The wake-up rate keeps the loop well below saturation at 10,000 tasks (~10,000 wake-ups
a second); a loop that is already saturated without the detector turns any extra load
into unbounded queueing, which measures the workload rather than the detector.
Detector off and on run alternately, several rounds; the table shows medians.

    python benchmarks/tasks.py                 # 10, 1,000 and 10,000 tasks
    python benchmarks/tasks.py --quick         # a short self-check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path


async def _task(rng: random.Random) -> None:
    while True:
        await asyncio.sleep(rng.uniform(0.1, 2.0))
        sum(range(200))


async def _probe(seconds: float) -> list[float]:
    lags = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        await asyncio.sleep(0.005)
        lags.append(time.perf_counter() - start - 0.005)
    return lags


async def _run(tasks: int, seconds: float) -> list[float]:
    rng = random.Random(1)
    workers = [asyncio.create_task(_task(rng)) for _ in range(tasks)]
    await asyncio.sleep(0.5)  # let them all start
    lags = await _probe(seconds)
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    return lags


def one(tasks: int, on: bool, seconds: float) -> dict[str, float]:
    """One measurement in this process."""
    detector = None
    if on:
        from prometheus_client import CollectorRegistry

        import spangap

        detector = spangap.enable_gap_detector(registry=CollectorRegistry())
    wall = time.perf_counter()
    lags = asyncio.run(_run(tasks, seconds))
    wall = time.perf_counter() - wall
    result = {
        "lag_p50_ms": statistics.median(lags) * 1000,
        "lag_p99_ms": statistics.quantiles(lags, n=100)[98] * 1000,
        "cpu_per_s": 0.0,
        "samples_per_s": 0.0,
    }
    if detector is not None:
        detector.stop()
        totals = detector.snapshot().totals
        result["cpu_per_s"] = totals.sampler_cpu_seconds / wall
        result["samples_per_s"] = totals.samples / wall
    return result


def measure(tasks: int, on: bool, seconds: float) -> dict[str, float]:
    args = json.dumps({"tasks": tasks, "on": on, "seconds": seconds})
    proc = subprocess.run(
        [sys.executable, __file__, "--one", args],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="*", default=[10, 1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        params = json.loads(args.one)
        print(json.dumps(one(params["tasks"], params["on"], params["seconds"])))
        return
    if args.quick:
        args.tasks, args.rounds, args.seconds = [10, 1000], 1, 1.0
    print(
        f"{'tasks':>6}  {'sampler CPU':>11}  {'samples/s':>9}  "
        f"{'lag p50 off/on ms':>17}  {'lag p99 off/on ms':>17}"
    )
    for count in args.tasks:
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.rounds):  # alternate off and on, side by side
            for on in (False, True):
                runs[on].append(measure(count, on, args.seconds))

        def med(on: bool, key: str, runs: dict[bool, list[dict[str, float]]] = runs) -> float:
            return statistics.median(r[key] for r in runs[on])

        print(
            f"{count:>6}  {med(True, 'cpu_per_s'):>10.2%}  {med(True, 'samples_per_s'):>9.0f}  "
            f"{med(False, 'lag_p50_ms'):>7.2f}/{med(True, 'lag_p50_ms'):<7.2f}  "
            f"{med(False, 'lag_p99_ms'):>7.2f}/{med(True, 'lag_p99_ms'):<7.2f}"
        )


if __name__ == "__main__":
    main()
