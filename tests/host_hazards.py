"""Programs that put the sampler where CPython lets other code run in its middle.

Run as ``python host_hazards.py SCENARIO SECONDS [OPTIONS_JSON]``; it prints ``ok`` and
exits 0 when the host survived. ``"without_c": true`` in the options hides spangap's C
extensions, as on a machine where they could not be built. Every scenario makes the
collections that the *sampler* starts do what an application's finalizer may do:

- ``gil-threads``, ``gil-tasks``: let the GIL go (as sqlite3's statement finalizer
  does), while threads and asyncio tasks call, return and finish at every depth. A frame
  object the sampler was making for one of their frames is then tied to memory the
  thread reuses: a crash.
- ``lock``: wait for an application lock that a thread holds while it starts a thread,
  which needs the runtime's thread-list lock (CPython gh-106883 when the collection runs
  inside ``sys._current_frames()``, which holds that lock): a deadlock.

A gc callback stands in for the finalizer: it runs at the start of every collection, on
the thread whose allocation started it. A low threshold makes collections frequent.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
import threading
import time
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
stop = threading.Event()
app_lock = threading.Lock()


def in_sampler() -> bool:
    return threading.current_thread().name == "spangap-sampler"


def release_gil(phase: str, info: dict[str, Any]) -> None:
    if phase == "start" and in_sampler():
        time.sleep(0.0002)


def take_app_lock(phase: str, info: dict[str, Any]) -> None:
    if phase == "start" and in_sampler():
        with app_lock:
            pass


def descend(n: int) -> int:
    if n:
        return descend(n - 1) + 1
    return sum(range(30))


def churn(seed: int) -> int:
    rng, total = random.Random(seed), 0
    while not stop.is_set():
        total += descend(rng.randrange(1, 40))
    return total


def gen_churn() -> int:
    def numbers(n: int) -> Any:
        for i in range(n):
            yield descend(i % 7)

    total = 0
    while not stop.is_set():
        total += sum(numbers(20))
    return total


async def task_body(depth: int) -> int:
    await asyncio.sleep(0)
    value = descend(depth)
    await asyncio.sleep(0)
    return value


def loop_churn() -> None:
    async def main() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            await asyncio.gather(*(task_body(rng.randrange(1, 20)) for _ in range(50)))

    asyncio.run(main())


def starter() -> int:
    started = 0
    while not stop.is_set():
        with app_lock:
            time.sleep(0.0005)
            thread = threading.Thread(target=descend, args=(3,))
            thread.start()
        thread.join()
        started += 1
    return started


def main() -> None:
    scenario, seconds = sys.argv[1], float(sys.argv[2])
    options = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if options.pop("without_c", False):
        for name in ("_native", "_liveness", "_tracking"):
            sys.modules[f"spangap.{name}"] = None  # type: ignore[assignment]
    import spangap

    detector = spangap.enable_gap_detector(
        threshold_ms=1, interval_ms=0.5, max_overhead=1, **options
    )
    if scenario == "gil-threads":
        gc.callbacks.append(release_gil)
        gc.set_threshold(20)
        targets = [lambda: churn(1), lambda: churn(2), lambda: churn(3)]
    elif scenario == "gil-tasks":
        gc.callbacks.append(release_gil)
        gc.set_threshold(20)
        targets = [loop_churn, loop_churn, gen_churn]
    elif scenario == "lock":
        gc.callbacks.append(take_app_lock)
        gc.set_threshold(5)
        targets = [starter, starter, lambda: churn(3), lambda: churn(4)]
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    gc.callbacks.clear()
    detector.stop()
    print("ok")


if __name__ == "__main__":
    main()
