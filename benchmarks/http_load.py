"""Closed-loop HTTP load generator, run in a process of its own next to the server.

Each of N keep-alive connections sends a request, waits for the whole response, and sends
the next, for a warm-up and then a measured window. Only responses that arrive inside the
window count towards throughput and latency; every response counts towards ``total``,
which a run compares with the number of requests the server says it answered.

The generator must stay cheap, since it shares a small machine with the server: one
asyncio loop, request bytes built once, and minimal parsing of each response (status
line and headers up to the blank line, then Content-Length bytes of body).

For the alternating measurement (``http_alternating.py``) the plan instead fixes an
absolute start (``start_at``, a ``perf_counter`` time: CLOCK_MONOTONIC, the same clock
in every process on Linux) and cuts the measured time into windows of ``bin_s``; the
first ``settle_s`` of each window is left out, and each window's latencies are returned
on their own.

Usage (what :func:`run_load` runs)::

    python benchmarks/http_load.py --one '{"host": "127.0.0.1", "port": 8080,
        "connections": 32, "warmup_s": 1, "duration_s": 4, "paths": ["/"]}'
"""

from __future__ import annotations

import asyncio
import json
import math
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import run_child

CONNECT_BATCH = 100  # connections opened at once, so that the server's accept keeps up


@dataclass(frozen=True)
class Plan:
    """What the generator does: where to, how many connections, how long, which paths."""

    host: str
    port: int
    connections: int
    warmup_s: float
    duration_s: float
    paths: list[str]
    start_at: float = 0.0  # absolute start of the measured time; 0: warm-up after connecting
    bin_s: float = 0.0  # > 0: also count per window of this length ...
    settle_s: float = 0.0  # ... leaving out this much at the start of each window


@dataclass
class Window:
    """The measured window (perf_counter seconds), set once every connection is open."""

    start: float = math.inf
    end: float = math.inf


@dataclass
class Tally:
    """Shared by all connections of one run (one event loop, so no lock is needed)."""

    total: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    bin_s: float = 0.0
    settle_s: float = 0.0
    bins: list[list[int]] = field(default_factory=list)  # per window: latencies in µs

    def add(self, start: float, done: float, latency: float) -> None:
        """A 200 answered inside the measured time, ``done - start`` seconds into it."""
        self.latencies.append(latency)
        if self.bin_s > 0:
            index, offset = divmod(done - start, self.bin_s)
            if offset >= self.settle_s and int(index) < len(self.bins):
                self.bins[int(index)].append(round(latency * 1e6))


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard limit (1,000 connections need
    1,000 descriptors on each side); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ascending values (``q`` in (0, 1]); NaN when empty.

    Nearest rank returns a value that was really observed: the p99 of 100 values is the
    99th smallest."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(tally: Tally, window_s: float) -> dict[str, Any]:
    """Throughput and latency percentiles of the responses inside the measured window
    (and, when windows were asked for, each window's latencies)."""
    ordered = sorted(tally.latencies)
    windows = {"bins": tally.bins} if tally.bin_s > 0 else {}
    return {
        **windows,
        "requests": len(ordered),
        "total": tally.total,
        "errors": tally.errors,
        "window_s": window_s,
        "throughput": len(ordered) / window_s if window_s > 0 else float("nan"),
        "p50_s": percentile(ordered, 0.50),
        "p99_s": percentile(ordered, 0.99),
    }


def content_length(head: bytes) -> int:
    """The Content-Length of a response head, 0 when absent."""
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    end = lower.find(b"\r\n", start + 2)
    return int(lower[start + 17 : end])


class ClosedLoopClient(asyncio.Protocol):
    """One keep-alive connection in a closed loop: send a request, read the whole response,
    send the next, until the window ends.

    A protocol rather than streams: the next request goes out from ``data_received``
    itself, with no task switch per request, which keeps 1,000 connections cheap."""

    def __init__(self, requests: list[bytes], offset: int, window: Window, tally: Tally) -> None:
        self.requests = requests
        self.index = offset  # spreads the connections over the request mix
        self.window = window
        self.tally = tally
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.expected = 0  # full length of the response being read; 0 = head not seen
        self.ok = False
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send_next(self) -> None:
        """Send the next request, or close once the window has ended."""
        assert self.transport is not None
        self.sent = time.perf_counter()
        if self.sent >= self.window.end:
            self.transport.close()
            return
        self.transport.write(self.requests[self.index % len(self.requests)])
        self.index += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.expected:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 4])
            self.ok = head.startswith(b"HTTP/1.1 200 ")
            self.expected = end + 4 + content_length(head)
        if len(self.buffer) < self.expected:
            return
        self.record(time.perf_counter())
        del self.buffer[: self.expected]
        self.expected = 0
        self.send_next()

    def record(self, done: float) -> None:
        """Count a complete response; only a 200 inside the window gives a latency."""
        tally = self.tally
        tally.total += 1
        if not self.ok:
            tally.errors += 1
        elif self.window.start <= done < self.window.end:
            tally.add(self.window.start, done, done - self.sent)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.finished.done():
            return
        if exc is None and self.sent >= self.window.end:
            self.finished.set_result(None)
        else:
            self.finished.set_exception(exc or ConnectionError("server closed the connection"))


async def open_connections(
    plan: Plan, requests: list[bytes], window: Window, tally: Tally
) -> list[ClosedLoopClient]:
    """All connections, opened in batches (so that the server's accept keeps up)."""
    loop = asyncio.get_running_loop()
    clients: list[ClosedLoopClient] = []
    while len(clients) < plan.connections:
        batch = range(len(clients), min(len(clients) + CONNECT_BATCH, plan.connections))
        opening = [
            loop.create_connection(
                lambda i=i: ClosedLoopClient(requests, i, window, tally), plan.host, plan.port
            )
            for i in batch
        ]
        clients.extend(client for _, client in await asyncio.gather(*opening))
    return clients


async def generate(plan: Plan) -> dict[str, Any]:
    """Open every connection, then start the clock and run the plan; the generator's own
    CPU is reported too, to show that it stayed cheap."""
    requests = [f"GET {p} HTTP/1.1\r\nHost: {plan.host}\r\n\r\n".encode() for p in plan.paths]
    tally = Tally(bin_s=plan.bin_s, settle_s=plan.settle_s)
    if plan.bin_s > 0:
        tally.bins = [[] for _ in range(math.ceil(plan.duration_s / plan.bin_s - 1e-9))]
    window = Window()
    clients = await open_connections(plan, requests, window, tally)
    ready = time.perf_counter()
    if plan.start_at and ready > plan.start_at:
        raise SystemExit(f"connections were open {ready - plan.start_at:.2f} s after start_at")
    window.start = plan.start_at or ready + plan.warmup_s
    window.end = window.start + plan.duration_s
    for client in clients:
        client.send_next()
    await asyncio.gather(*(client.finished for client in clients))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**summarize(tally, plan.duration_s), "cpu_s": usage.ru_utime + usage.ru_stime}


def run_load(plan: Plan, timeout_s: float = 120.0) -> dict[str, Any]:
    """Run the generator in a second process and return its summary.

    A separate process keeps the generator's work off the server's GIL and out of reach
    of the tool under test (py-spy attaches to one process, in-process tools live in
    the server's)."""
    return run_child(__file__, asdict(plan), timeout_s)


def main(argv: list[str]) -> None:
    """Child mode, as every benchmark child: ``--one <json plan>``."""
    if len(argv) != 2 or argv[0] != "--one":
        raise SystemExit("usage: http_load.py --one <json plan>")
    raise_fd_limit()
    plan = Plan(**json.loads(argv[1]))
    print(json.dumps(asyncio.run(generate(plan))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
