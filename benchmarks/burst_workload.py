"""Bursts of asyncio handlers, half spanned from their first statement: rounds of 200
tasks created at once with ``create_task`` and awaited with ``gather``. Each handler
spins 1 ms, then awaits a 20 ms call and a 20-30 ms sleep; the spanned ones do all of it
inside ``start_as_current_span``. The test suite and ``benchmarks/burst.py`` run it."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from opentelemetry.sdk.trace import TracerProvider

TRACER = TracerProvider().get_tracer("burst")
TASKS_PER_ROUND = 200
calls: Counter[str] = Counter()


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def fetch_dark() -> None:
    calls["fetch_dark"] += 1
    await asyncio.sleep(0.020)


async def fetch_spanned() -> None:
    calls["fetch_spanned"] += 1
    await asyncio.sleep(0.020)


async def dark_handler(pause: float) -> None:
    calls["dark_handler"] += 1
    spin(0.001)
    await fetch_dark()
    await asyncio.sleep(pause)


async def spanned_handler(pause: float) -> None:
    with TRACER.start_as_current_span("handler"):
        calls["spanned_handler"] += 1
        spin(0.001)
        await fetch_spanned()
        await asyncio.sleep(pause)


async def rounds(count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    for _ in range(count):
        tasks = [
            loop.create_task((spanned_handler if i % 2 else dark_handler)(rng.uniform(0.02, 0.03)))
            for i in range(TASKS_PER_ROUND)
        ]
        await asyncio.gather(*tasks)


def run(count: int) -> Counter[str]:
    """Run ``count`` rounds in this thread; returns the calls made."""
    calls.clear()
    asyncio.run(rounds(count))
    return Counter(calls)
