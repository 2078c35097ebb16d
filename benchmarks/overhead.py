"""Cost: what the detector's sampler uses, and how much it slows the application down.

(a) Sampler CPU: 16 threads do dark work that mixes pure-Python CPU, short sleeps and
    socket round trips for about 10 s under a detector at the default interval. The
    sampler's CPU is reported three ways that should agree: the snapshot totals, the
    ``spangap_sampler_cpu_seconds_total`` counter, and the kernel's CPU clock of the sampler
    thread read from outside it, which does not rely on spangap's own accounting.
(b) Slowdown: four workloads run with no tool, with spangap, and with the peers a user
    might pick instead (yappi with a span tag, pyinstrument, py-spy from outside),
    alternating in fresh child processes for several rounds; medians and their ratio to
    the no-tool run are reported. A peer whose package is missing shows "not installed".
    Two workloads are CPU-bound; two are HTTP services under load from a second process
    (a 16-thread HTTP/1.1 server with 32 keep-alive connections, and an asyncio server
    with 1,000), compared by throughput, with latency percentiles alongside.
(c) The same two HTTP services with the detector switched on and off in windows inside
    one server process (``http_alternating.py``): a fresh process per round moves the
    throughput by more than the cost being measured, so this part gives the loss with
    an interval that says how well it is known.

Usage::

    python benchmarks/overhead.py            # full run, about 17 minutes
    python benchmarks/overhead.py --quick    # small self-test, about 1.5 minutes

Peers: ``pip install yappi pyinstrument py-spy``.

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import http_alternating
from _common import (
    CHILD_TIMEOUT_S,
    HARNESS,
    SAMPLER_THREAD,
    emit,
    format_table,
    median,
    os_thread_cpu,
    pct,
    prepare_child,
    run_child,
    run_in_threads,
)
from http_service import APP_MODULE, CONNECTIONS, FLAVOURS, LABELS, OUT_OF_SCOPE

THREADS = 16
MODULE = "gt_workloads"
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
        registry=registry,
        include=[MODULE, APP_MODULE],
        exclude=[*HARNESS, *OUT_OF_SCOPE],
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


# Part (b) runs each workload under one "tool": nothing, spangap, or a peer that a user
# might pick instead. In-process tools start after the imports and stop after the
# measured window, like the detector; py-spy is started by the parent from outside.

PEER_SETTINGS = {
    "yappi": "wall clock, tag callback = is an OpenTelemetry span active?",
    "pyinstrument": "Profiler() defaults: 1 ms interval, wall clock",
    "py-spy": "record --rate 100 --nonblocking, from outside",
}
READY = "overhead-child-ready"  # a py-spy child waits after this line until py-spy attached


def span_tag() -> int:
    """yappi's tag callback: 1 when an OpenTelemetry span is active in the current context,
    so that per-function wall time splits into "under a span" and "no span"."""
    from opentelemetry import trace

    return 1 if trace.get_current_span().get_span_context().is_valid else 0


@dataclass
class Instrument:
    """A started tool: ``stop`` ends it after the measured window and returns its extra
    results; ``wrap`` adapts a worker thread's body (pyinstrument samples only the
    thread that started it, so the threaded workload starts one profiler per worker)."""

    stop: Callable[[], dict[str, Any]]
    wrap: Callable[[Callable[[], None]], Callable[[], None]]


def instrument(tool: str, threaded: bool) -> Instrument:
    """Start ``tool`` in this child. Every tool imports the same modules as the detector
    off/on comparison, so only the tool itself differs."""
    detector, _ = start_detector(on=tool == "spangap")

    def nothing() -> dict[str, Any]:
        return {}

    def same(body: Callable[[], None]) -> Callable[[], None]:
        return body

    if tool in ("off", "py-spy"):
        if tool == "py-spy":  # hold the workload until the parent says py-spy is attached
            print(READY, flush=True)
            if sys.stdin.readline().strip() != "go":
                raise SystemExit("py-spy did not attach")
        return Instrument(nothing, same)
    if tool == "spangap":

        def stop_detector() -> dict[str, Any]:
            detector.stop()
            totals = detector.snapshot().totals
            return {"own_cpu_s": totals.sampler_cpu_seconds, "operations": totals.operations}

        return Instrument(stop_detector, same)
    if tool == "yappi":
        import yappi

        yappi.set_clock_type("wall")
        yappi.set_tag_callback(span_tag)
        yappi.start()

        def stop_yappi() -> dict[str, Any]:
            yappi.stop()
            return {"tags": sorted({stat.tag for stat in yappi.get_func_stats()})}

        return Instrument(stop_yappi, same)
    if tool == "pyinstrument":
        from pyinstrument import Profiler

        samples: list[int] = []

        def finish(profiler: Any) -> None:
            session = profiler.stop()
            samples.append(session.sample_count)

        if not threaded:
            profiler = Profiler()
            profiler.start()

            def stop_main() -> dict[str, Any]:
                finish(profiler)
                return {"samples": sum(samples)}

            return Instrument(stop_main, same)

        def per_thread(body: Callable[[], None]) -> Callable[[], None]:
            def profiled() -> None:
                profiler = Profiler()
                profiler.start()
                try:
                    body()
                finally:
                    finish(profiler)

            return profiled

        return Instrument(lambda: {"samples": sum(samples)}, per_thread)
    raise SystemExit(f"unknown tool {tool!r}")


def cpu_single(tool: str, calls: int) -> dict[str, Any]:
    """Part (b)(i): fixed pure-Python work in one thread; the result is its wall time."""
    tool_run = instrument(tool, threaded=False)
    import gt_workloads as gt

    start = time.perf_counter()
    for _ in range(calls):
        gt.dark_cpu(200)  # about 25 ms each: every call is an operation the detector counts
    wall = time.perf_counter() - start
    return {"value": wall, "wall_s": wall, **tool_run.stop()}


def threads_mixed(tool: str, seconds: float) -> dict[str, Any]:
    """Part (b)(ii): 16 threads each doing ~2 ms of CPU then a 10 ms sleep, for a fixed
    time; the result is work units (loop iterations) per second over all threads, timed
    until the last thread leaves its loop (so a profiler's per-thread teardown is not
    counted as lost throughput).

    The CPU demand exceeds one GIL's worth, so this is the regime where an in-process
    sampler competes with the application for the interpreter."""
    tool_run = instrument(tool, threaded=True)
    import gt_workloads as gt

    done: list[int] = []
    ends: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds

    def loop() -> None:
        units = 0
        while time.perf_counter() < deadline:
            gt.dark_cpu(16)
            gt.dark_sleep(0.01)
            units += 1
        ends.append(time.perf_counter())
        done.append(units)

    run_in_threads(tool_run.wrap(loop), THREADS)
    wall = max(ends) - start
    return {"value": sum(done) / wall, "wall_s": wall, **tool_run.stop()}


def serve_under_tool(
    tool: str, flavour: str, connections: int, warmup_s: float, seconds: float
) -> dict[str, Any]:
    """Part (b)(iii, iv): an HTTP service in this child under ``tool``, loaded by a
    closed-loop generator in a second process; the result is its throughput.

    ``flavour`` "threaded" is an HTTP/1.1 server with a pool of 16 workers whose handlers
    query SQLite; "asyncio" is an ``asyncio.start_server`` service. A run whose generator
    and server disagree on the number of requests, or that saw an error response, stops
    the benchmark: then the throughput would not be what it claims to be."""
    tool_run = instrument(tool, threaded=True)
    import http_app
    import http_load
    from http_service import running_service

    http_load.raise_fd_limit()
    start = time.perf_counter()
    with running_service(flavour, tool_run.wrap) as server:
        plan = http_load.Plan(*server.address, connections, warmup_s, seconds, [*http_app.MIX])
        load = http_load.run_load(plan)
    wall = time.perf_counter() - start
    if load["errors"] or load["total"] != server.served:
        raise SystemExit(f"HTTP run inconsistent: {load}, server served {server.served}")
    return {
        "value": load["throughput"],
        "requests": load["total"],
        "wall_s": wall,
        "p50_s": load["p50_s"],
        "p99_s": load["p99_s"],
        "loadgen_cpu_s": load["cpu_s"],
        **tool_run.stop(),
    }


def run_one(args: dict[str, Any]) -> dict[str, Any]:
    """Child mode: dispatch one measurement described by the parent."""
    kind = args["kind"]
    if kind == "sampler_cpu":
        return measure_sampler_cpu(args["seconds"])
    if kind == "cpu_single":
        return cpu_single(args["tool"], args["calls"])
    if kind == "threads_mixed":
        return threads_mixed(args["tool"], args["seconds"])
    if kind in FLAVOURS:
        flavour = FLAVOURS[kind]
        return serve_under_tool(
            args["tool"], flavour, args["connections"], args["warmup_s"], args["seconds"]
        )
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
    """One workload of part (b): a child measurement and how to read its value.

    ``http`` workloads go to the second table (they add latency columns); their peers
    may run in fewer rounds (``peer_rounds``, None = the script's ``--peer-rounds``)."""

    name: str
    kind: str
    unit: str
    higher_is_better: bool
    args: dict[str, Any]
    http: bool = False
    peer_rounds: int | None = None

    def cell(self, value: float) -> str:
        if value != value:
            return "n/a"
        return f"{value:.3f} {self.unit}" if self.unit == "s" else f"{value:.0f} {self.unit}"


def workloads(quick: bool, http_peer_rounds: int) -> list[Workload]:
    """The part (b) workloads: the single-thread one shows the sampler's share of the
    GIL at its plainest, the threaded one the cost under contention, and the two HTTP
    services the cost as a service's users see it, in requests per second."""
    http_time = {"warmup_s": 0.5, "seconds": 1.5} if quick else {"warmup_s": 1.0, "seconds": 4.0}
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
        Workload(
            LABELS["threaded"],
            "http_threaded",
            "req/s",
            True,
            {"connections": CONNECTIONS["threaded"], **http_time},
            http=True,
            peer_rounds=http_peer_rounds,
        ),
        Workload(
            LABELS["asyncio"],
            "http_asyncio",
            "req/s",
            True,
            {"connections": CONNECTIONS["asyncio"], **http_time},
            http=True,
            peer_rounds=http_peer_rounds,
        ),
    ]


@dataclass(frozen=True)
class Tool:
    """One row per workload in part (b): no tool, spangap, or a peer."""

    name: str
    label: str
    peer: bool
    missing: str  # why it cannot run here ("" when it can)
    knows: str  # what it can tell about un-spanned work


def tools() -> list[Tool]:
    """No tool, spangap and the three peers, each marked "not installed" when missing."""

    def missing_module(name: str) -> str:
        return "" if importlib.util.find_spec(name) else f"not installed (pip install {name})"

    no_spy = "" if shutil.which("py-spy") else "not installed (pip install py-spy)"
    return [
        Tool("off", "off (no tool)", False, "", "-"),
        Tool(
            "spangap",
            "spangap (defaults)",
            False,
            "",
            "counts calls >= threshold with no active span, by call site and cause",
        ),
        Tool(
            "yappi",
            "yappi wall + span tag",
            True,
            missing_module("yappi"),
            "per-function wall time split by tag (span / no span); no per-call operations",
        ),
        Tool(
            "pyinstrument",
            "pyinstrument (1 ms)",
            True,
            missing_module("pyinstrument"),
            "where time goes (call tree); nothing about spans",
        ),
        Tool(
            "py-spy",
            "py-spy 100 Hz (outside)",
            True,
            no_spy,
            "where time goes (sampled stacks); nothing about spans",
        ),
    ]


PYSPY_ATTACHED = "Sampling process"


def pyspy_command(pid: int) -> list[str]:
    """py-spy at 100 Hz without pausing the target, its output discarded."""
    rate = ["--rate", "100", "--nonblocking"]
    return ["py-spy", "record", *rate, "--pid", str(pid), "-o", os.devnull, "--format", "raw"]


def run_under_pyspy(args: dict[str, Any]) -> dict[str, Any]:
    """Run one child measurement while py-spy samples it from outside.

    The child sets up, prints READY and waits; py-spy attaches to it; once py-spy says it
    is sampling, the child is told to start its workload. py-spy stops by itself when the
    child exits, and its own CPU comes from its rusage. Returns ``{"error": ...}`` when
    py-spy cannot attach, so that the table can say why."""
    cmd = [sys.executable, __file__, "--one", json.dumps(args)]
    pipe = subprocess.PIPE
    child = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=pipe, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != READY:
        _, err = child.communicate()
        sys.stderr.write(err)
        raise SystemExit(f"benchmark child failed before its workload: {args}")
    spy = subprocess.Popen(
        pyspy_command(child.pid), stdout=pipe, stderr=subprocess.STDOUT, text=True
    )
    assert spy.stdout is not None
    log: list[str] = []
    attached = False
    for line in spy.stdout:
        log.append(line.rstrip())
        if PYSPY_ATTACHED in line:
            attached = True
            break
    if not attached:
        child.kill()
        child.communicate()
        spy.wait()
        errors = [line for line in log if line.startswith("Error")] or log[-1:] or ["no output"]
        return {"error": f"py-spy: {errors[0].removeprefix('Error: ')}"}
    out, err = child.communicate(input="go\n", timeout=CHILD_TIMEOUT_S)
    spy.stdout.read()  # py-spy's closing lines; it exits with the child
    _, status, usage = os.wait4(spy.pid, 0)
    spy.returncode = os.waitstatus_to_exitcode(status)
    lines = out.strip().splitlines()
    if child.returncode != 0 or not lines:
        sys.stderr.write(err)
        raise SystemExit(f"benchmark child failed (exit {child.returncode}): {args}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["own_cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


@dataclass
class Cell:
    """Measurements of one tool on one workload."""

    values: list[float]
    own_cpu: list[float]  # the tool's own CPU as a share of one core over the workload
    error: str = ""
    p50: list[float] = field(default_factory=list)  # HTTP workloads: latency, seconds
    p99: list[float] = field(default_factory=list)


def compare(
    items: list[Workload], kit: list[Tool], rounds: int, peer_rounds: int
) -> dict[tuple[str, str], Cell]:
    """Values per (workload, tool). Every round runs every tool once per workload, in an
    order that reverses every round (off first, then off last) so that a drift in machine
    speed favours no tool. Peers take part in the first ``peer_rounds`` rounds only (or
    the workload's own, smaller, ``peer_rounds``)."""
    cells = {(item.kind, tool.name): Cell([], []) for item in items for tool in kit}
    for r in range(rounds):
        for item in items:
            limit = peer_rounds if item.peer_rounds is None else item.peer_rounds
            active = [t for t in kit if not t.missing and (not t.peer or r < limit)]
            order = active if r % 2 == 0 else active[::-1]
            for tool in order:
                cell = cells[(item.kind, tool.name)]
                if cell.error:
                    continue
                args = {"kind": item.kind, "tool": tool.name, **item.args}
                if tool.name == "py-spy":
                    result = run_under_pyspy(args)
                else:
                    result = run_child(__file__, args)
                if "error" in result:
                    cell.error = result["error"]
                    print(f"[{r + 1}/{rounds}] {item.name}: {cell.error}", file=sys.stderr)
                    continue
                record(cell, result)
                print(progress_line(item, tool, result, r, rounds), file=sys.stderr, flush=True)
    return cells


def record(cell: Cell, result: dict[str, Any]) -> None:
    """Add one child's result to its cell."""
    cell.values.append(result["value"])
    if "own_cpu_s" in result:
        cell.own_cpu.append(result["own_cpu_s"] / result["wall_s"])
    if "p50_s" in result:
        cell.p50.append(result["p50_s"])
        cell.p99.append(result["p99_s"])


def progress_line(item: Workload, tool: Tool, result: dict[str, Any], r: int, rounds: int) -> str:
    """One line on stderr per child, with the per-run details the tables leave out."""
    line = f"[{r + 1}/{rounds}] {item.name}: {tool.name} {item.cell(result['value'])}"
    if "p50_s" in result:
        line += f", p50 {ms(result['p50_s'])}, p99 {ms(result['p99_s'])}"
        line += f", load generator CPU {result['loadgen_cpu_s'] / result['wall_s']:.0%}"
    if "operations" in result:
        line += f", operations counted {result['operations']}"
    return line


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell, or "n/a"."""
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def overhead(item: Workload, off: float, on: float) -> float:
    """Extra cost with a tool on: more wall time, or less throughput, as a share."""
    return off / on - 1.0 if item.higher_is_better else on / off - 1.0


def paired_overhead(item: Workload, off: Cell, cell: Cell) -> float:
    """The median over rounds of each round's overhead, the tool's run against the "off"
    run next to it in the same round: a slow patch of the machine hits both runs of a
    pair, so this moves less than the ratio of the two medians."""
    pairs = list(zip(off.values, cell.values, strict=False))  # a peer's first rounds
    return median([overhead(item, o, v) for o, v in pairs]) if pairs else math.nan


def own_cpu_cell(tool: Tool, cell: Cell) -> str:
    if tool.name == "off":
        return "-"
    if tool.name in ("yappi", "pyinstrument"):
        return "in-process"
    return pct(median(cell.own_cpu), digits=2)


def tool_cells(item: Workload, tool: Tool, cell: Cell, off: Cell) -> list[str] | None:
    """Median, runs, ratio to off, overhead and paired overhead of one tool on one
    workload; None when the tool did not run (not installed, or it failed)."""
    if tool.missing or cell.error:
        return None
    value, off_value = median(cell.values), median(off.values)
    if tool.name == "off":
        return [item.cell(value), str(len(cell.values)), "-", "-", "-"]
    return [
        item.cell(value),
        str(len(cell.values)),
        f"{value / off_value:.3f}",
        pct(overhead(item, off_value, value), signed=True),
        pct(paired_overhead(item, off, cell), signed=True),
    ]


def why_missing(tool: Tool, cell: Cell) -> str:
    """The text shown instead of a median: "not installed", or the tool's error."""
    return tool.missing or f"n/a ({cell.error})"


def tool_rows(
    items: list[Workload], kit: list[Tool], cells: dict[tuple[str, str], Cell], http: bool
) -> list[list[str]]:
    """Part (b): per workload, one row per tool with its median, ratio and overheads;
    the HTTP workloads add the median over rounds of each run's latency percentiles, as
    the load generator saw them."""
    rows = []
    for item in (i for i in items if i.http == http):
        off = cells[(item.kind, "off")]
        for i, tool in enumerate(kit):
            cell = cells[(item.kind, tool.name)]
            first = item.name if i == 0 else ""
            shown = tool_cells(item, tool, cell, off)
            if shown is None:
                blanks = ["n/a"] * (6 if http else 4)
                rows.append([first, tool.label, why_missing(tool, cell), "0", *blanks])
                continue
            latency = [ms(median(cell.p50)), ms(median(cell.p99))] if http else []
            rows.append([first, tool.label, *shown, *latency, own_cpu_cell(tool, cell)])
    return rows


def comparison_table(
    items: list[Workload], kit: list[Tool], cells: dict[tuple[str, str], Cell]
) -> str:
    """Part (b), the CPU-bound workloads."""
    headers = ["workload (b)", "tool", "median", "runs", "vs off", "overhead", "paired"]
    return format_table([*headers, "own CPU (1 core)"], tool_rows(items, kit, cells, False))


def http_table(items: list[Workload], kit: list[Tool], cells: dict[tuple[str, str], Cell]) -> str:
    """Part (b), the HTTP services: throughput compared like the other workloads, and
    latency."""
    headers = ["HTTP workload (b)", "tool", "throughput", "runs", "vs off", "overhead", "paired"]
    rows = tool_rows(items, kit, cells, True)
    return format_table([*headers, "p50", "p99", "own CPU (1 core)"], rows)


def knows_table(kit: list[Tool]) -> str:
    """Footnote: the setting of each tool and what it can tell about un-spanned work."""
    rows = [
        [
            tool.label,
            PEER_SETTINGS.get(tool.name, "max_overhead 1% (interval from 5 ms), threshold 10 ms"),
            tool.knows,
        ]
        for tool in kit
        if tool.name != "off"
    ]
    return format_table(["tool", "setting", "what it can tell about un-spanned work"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 5)")
    parser.add_argument(
        "--peer-rounds", type=int, help="rounds in which the peers also run (default 3)"
    )
    parser.add_argument(
        "--http-peer-rounds",
        type=int,
        help="rounds in which the peers also run the HTTP workloads (default: as "
        "--peer-rounds; 1 with --quick, to keep the self-test near a minute)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small self-test: 2 rounds, short workloads, HTTP peers in 1 round",
    )
    parser.add_argument(
        "--only",
        help="comma-separated workload kinds to run in part (b) (default: all of "
        "cpu_single, threads_mixed, http_threaded, http_asyncio)",
    )
    parser.add_argument(
        "--alternating-pairs",
        type=int,
        help=f"pairs of windows in part (c) (default {http_alternating.FULL.pairs}; "
        f"{http_alternating.QUICK.pairs} with --quick; 0 skips part (c))",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one JSON measurement
    args = parser.parse_args(argv)
    if args.one:
        emit(run_one(json.loads(args.one)))
        return
    rounds = args.rounds or (2 if args.quick else 5)
    peer_rounds = min(rounds, args.peer_rounds or (2 if args.quick else 3))
    http_peer_rounds = min(rounds, args.http_peer_rounds or (1 if args.quick else peer_rounds))
    started = time.perf_counter()
    print("[a] sampler CPU", file=sys.stderr, flush=True)
    sampler = run_child(__file__, {"kind": "sampler_cpu", "seconds": 2.0 if args.quick else 10.0})
    items = workloads(args.quick, http_peer_rounds)
    if args.only:
        kinds = set(args.only.split(","))
        unknown = kinds - {item.kind for item in items}
        if unknown:
            parser.error(f"--only: unknown workload kind(s) {', '.join(sorted(unknown))}")
        items = [item for item in items if item.kind in kinds]
    kit = tools()
    cells = compare(items, kit, rounds, peer_rounds)
    timing = http_alternating.QUICK if args.quick else http_alternating.FULL
    if args.alternating_pairs is not None:
        if args.alternating_pairs < 0:
            parser.error("--alternating-pairs must be 0 or more")
        timing = replace(timing, pairs=args.alternating_pairs)
    alternating = []
    for item in items:
        if item.http and timing.pairs > 0:
            print(f"[c] {item.name}: {timing.pairs} pairs", file=sys.stderr, flush=True)
            alternating.append(http_alternating.measure(item.kind, timing))
    print(
        f"spangap overhead: default settings (max_overhead 1%, interval from 5 ms, "
        "threshold 10 ms), "
        f"Python {platform.python_version()}"
    )
    print(sampler_table(sampler))
    print()
    print(
        f"(b) alternating rounds in fresh processes; off and spangap: median of {rounds} "
        f"round(s), peers: median of {peer_rounds} (fewer, to keep the run short)"
    )
    print(comparison_table(items, kit, cells))
    print()
    print(
        f"(b) HTTP services, same rounds (peers: median of {http_peer_rounds}); throughput "
        "and latency as measured by the load generator in a second process"
    )
    print(http_table(items, kit, cells))
    print()
    if alternating:
        print(http_alternating.heading(timing))
        print(http_alternating.table(alternating))
        print()
    print(knows_table(kit))
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
