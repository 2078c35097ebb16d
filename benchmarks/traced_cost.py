"""What ``@spangap.traced`` costs per call, beside the hand-written span it replaces.

Versions of one trivial function, measured side by side in one process with the real
SDK (a ``TracerProvider`` set as the global one, a ``SimpleSpanProcessor`` over an
exporter that drops every span, so each span is started, made current, ended and
handed to a processor as in a service):

- ``plain``: no span;
- ``hand-written``: ``with tracer.start_as_current_span(name): ...`` in the body, the
  tracer obtained once after the SDK was set up (its cheapest form);
- ``hand-written, 2 attrs``: the same, given the two attributes ``@traced`` sets
  (``code.function``, ``code.namespace``) at the start;
- ``@traced``: the decorator, with its tracer looked up on each call;
- ``@traced, 2 args``: the same with ``record_args`` naming two of its parameters.

Each for a sync function (called in a loop) and an ``async def`` (awaited in a loop in
one coroutine). Within each round the versions take turns, batch by batch, in an order
that rotates from round to round; the table shows the median nanoseconds per call over
the rounds and each version's cost over ``plain``, and a last line the ratio of
``@traced`` to ``hand-written`` within each round (median, lowest and highest). The
detector is not running: its span-activation hook adds the same to every span made
current, hand-written or not (benchmarks/span_hook.py).

    python benchmarks/traced_cost.py                    # 7 rounds of 50,000 calls
    python benchmarks/traced_cost.py --rounds 3 --calls 5000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from _common import format_table
from spangap import traced

CODE_ATTRIBUTES = {"code.function": "decorated", "code.namespace": __name__}
FLAVOURS = ("sync", "async")
VERSIONS = ("plain", "hand-written", "hand-written, 2 attrs", "@traced", "@traced, 2 args")


class DropExporter(SpanExporter):
    """Takes every span and keeps none: the processor's work without any I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def set_up_sdk() -> Any:
    """The global SDK provider, and a tracer from it for the hand-written spans."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer(__name__)


def versions(tracer: Any) -> tuple[dict[str, Callable[..., int]], dict[str, Callable[..., Any]]]:
    """The sync and the async function of each version."""

    def plain(n: int, label: str = "x") -> int:
        return n + 1

    def hand_written(n: int, label: str = "x") -> int:
        with tracer.start_as_current_span("hand_written"):
            return n + 1

    def hand_attrs(n: int, label: str = "x") -> int:
        with tracer.start_as_current_span("hand_attrs", attributes=CODE_ATTRIBUTES):
            return n + 1

    @traced
    def decorated(n: int, label: str = "x") -> int:
        return n + 1

    @traced(record_args=("n", "label"))
    def decorated_args(n: int, label: str = "x") -> int:
        return n + 1

    async def aplain(n: int, label: str = "x") -> int:
        return n + 1

    async def ahand_written(n: int, label: str = "x") -> int:
        with tracer.start_as_current_span("ahand_written"):
            return n + 1

    async def ahand_attrs(n: int, label: str = "x") -> int:
        with tracer.start_as_current_span("ahand_attrs", attributes=CODE_ATTRIBUTES):
            return n + 1

    @traced
    async def adecorated(n: int, label: str = "x") -> int:
        return n + 1

    @traced(record_args=("n", "label"))
    async def adecorated_args(n: int, label: str = "x") -> int:
        return n + 1

    sync = (plain, hand_written, hand_attrs, decorated, decorated_args)
    coros = (aplain, ahand_written, ahand_attrs, adecorated, adecorated_args)
    return dict(zip(VERSIONS, sync, strict=True)), dict(zip(VERSIONS, coros, strict=True))


def time_sync(func: Callable[..., int], calls: int) -> int:
    """Nanoseconds for ``calls`` calls of ``func(i)``."""
    start = time.perf_counter_ns()
    for i in range(calls):
        func(i)
    return time.perf_counter_ns() - start


async def time_async(func: Callable[..., Awaitable[int]], calls: int) -> int:
    """Nanoseconds for ``calls`` of ``await func(i)``, one after the other."""
    start = time.perf_counter_ns()
    for i in range(calls):
        await func(i)
    return time.perf_counter_ns() - start


async def one_round(
    sync: dict[str, Callable[..., int]],
    coros: dict[str, Callable[..., Awaitable[int]]],
    calls: int,
    batch: int,
    shift: int,
) -> dict[str, dict[str, float]]:
    """Nanoseconds per call of each version, over ``calls`` calls made in batches that
    take turns: a slow patch of a shared machine falls on every version alike."""
    batch = min(batch, calls)
    order = VERSIONS[shift % len(VERSIONS) :] + VERSIONS[: shift % len(VERSIONS)]
    total = {flavour: dict.fromkeys(VERSIONS, 0) for flavour in FLAVOURS}
    for _ in range(calls // batch):
        for version in order:
            total["sync"][version] += time_sync(sync[version], batch)
            total["async"][version] += await time_async(coros[version], batch)
    done = calls // batch * batch
    return {f: {v: ns / done for v, ns in by_version.items()} for f, by_version in total.items()}


def measure(rounds: int, calls: int, batch: int = 500) -> dict[str, Any]:
    """Per-round nanoseconds per call, by flavour (sync, async) and version."""
    tracer = set_up_sdk()
    sync, coros = versions(tracer)

    async def run() -> list[dict[str, dict[str, float]]]:
        await one_round(sync, coros, calls // 10, batch, 0)  # warm up
        results = []
        for r in range(rounds):
            gc.collect()
            results.append(await one_round(sync, coros, calls, batch, r))
        return results

    results = asyncio.run(run())
    per_call = {f: {v: [r[f][v] for r in results] for v in VERSIONS} for f in FLAVOURS}
    ratios = {  # within a round: both measured in the same stretch of the machine's time
        f: [t / h for t, h in zip(per_call[f]["@traced"], per_call[f]["hand-written"], strict=True)]
        for f in FLAVOURS
    }
    return {
        "python": platform.python_version(),
        "rounds": rounds,
        "calls": calls,
        "ns_per_call": per_call,
        "traced_over_hand_written": {
            f: {"median": statistics.median(r), "min": min(r), "max": max(r)}
            for f, r in ratios.items()
        },
        "median_ns_per_call": {
            flavour: {v: statistics.median(runs) for v, runs in by_version.items()}
            for flavour, by_version in per_call.items()
        },
    }


def table(result: dict[str, Any]) -> str:
    rows = []
    for flavour, by_version in result["median_ns_per_call"].items():
        plain = by_version["plain"]
        for version, ns in by_version.items():
            extra = "" if version == "plain" else f"+{ns - plain:,.0f}"
            rows.append([flavour, version, f"{ns:,.0f}", extra])
    return format_table(["function", "version", "ns/call", "span cost ns"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50000, help="calls per version a round")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 100:
        parser.error("--rounds must be at least 1 and --calls at least 100")
    result = measure(args.rounds, args.calls)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"Cost per call, SDK with a SimpleSpanProcessor over a dropping exporter "
        f"(CPython {result['python']}; median of {args.rounds} rounds of {args.calls:,} calls)"
    )
    print(table(result))
    print(
        "@traced / hand-written, per round: "
        + ", ".join(
            f"{f} {r['median']:.3f} (rounds {r['min']:.3f}-{r['max']:.3f})"
            for f, r in result["traced_over_hand_written"].items()
        )
    )


if __name__ == "__main__":
    main()
