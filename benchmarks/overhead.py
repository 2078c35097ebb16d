"""Cost: what the detector's sampler uses, and how much it slows the application down.

(a) Sampler CPU: 16 threads do dark work that mixes pure-Python CPU, short sleeps and
    socket round trips for about 10 s under a detector at the default interval. The
    sampler's CPU is reported three ways that should agree: the snapshot totals, the
    ``spangap_sampler_cpu_seconds_total`` counter, and the kernel's CPU clock of the sampler
    thread read from outside it, which does not rely on spangap's own accounting.
(b) Slowdown: two workloads run with no tool, with spangap, and with the peers a user
    might pick instead (yappi with a span tag, pyinstrument, py-spy from outside),
    alternating in fresh child processes for several rounds; medians and their ratio to
    the no-tool run are reported. A peer whose package is missing shows "not installed".

Usage::

    python benchmarks/overhead.py            # full run, about 3 minutes
    python benchmarks/overhead.py --quick    # small self-test, well under a minute

Peers: ``pip install yappi pyinstrument py-spy``.

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _common import (
    CHILD_TIMEOUT_S,
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
            return {"own_cpu_s": detector.snapshot().totals.sampler_cpu_seconds}

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


def run_one(args: dict[str, Any]) -> dict[str, Any]:
    """Child mode: dispatch one measurement described by the parent."""
    kind = args["kind"]
    if kind == "sampler_cpu":
        return measure_sampler_cpu(args["seconds"])
    if kind == "cpu_single":
        return cpu_single(args["tool"], args["calls"])
    if kind == "threads_mixed":
        return threads_mixed(args["tool"], args["seconds"])
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
    """One workload of part (b): a child measurement and how to read its value."""

    name: str
    kind: str
    unit: str
    higher_is_better: bool
    args: dict[str, Any]

    def cell(self, value: float) -> str:
        if value != value:
            return "n/a"
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


def compare(
    items: list[Workload], kit: list[Tool], rounds: int, peer_rounds: int
) -> dict[tuple[str, str], Cell]:
    """Values per (workload, tool). Every round runs every tool once per workload, in an
    order that reverses every round (off first, then off last) so that a drift in machine
    speed favours no tool. Peers take part in the first ``peer_rounds`` rounds only."""
    cells = {(item.kind, tool.name): Cell([], []) for item in items for tool in kit}
    for r in range(rounds):
        active = [t for t in kit if not t.missing and (not t.peer or r < peer_rounds)]
        order = active if r % 2 == 0 else active[::-1]
        for item in items:
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
                cell.values.append(result["value"])
                if "own_cpu_s" in result:
                    cell.own_cpu.append(result["own_cpu_s"] / result["wall_s"])
                shown = item.cell(result["value"])
                progress = f"[{r + 1}/{rounds}] {item.name}: {tool.name} {shown}"
                print(progress, file=sys.stderr, flush=True)
    return cells


def overhead(item: Workload, off: float, on: float) -> float:
    """Extra cost with a tool on: more wall time, or less throughput, as a share."""
    return off / on - 1.0 if item.higher_is_better else on / off - 1.0


def own_cpu_cell(tool: Tool, cell: Cell) -> str:
    if tool.name == "off":
        return "-"
    if tool.name in ("yappi", "pyinstrument"):
        return "in-process"
    return pct(median(cell.own_cpu), digits=2)


def comparison_table(
    items: list[Workload], kit: list[Tool], cells: dict[tuple[str, str], Cell]
) -> str:
    """Part (b): per workload, one row per tool with its median, ratio and overhead."""
    rows = []
    for item in items:
        off = median(cells[(item.kind, "off")].values)
        for i, tool in enumerate(kit):
            cell = cells[(item.kind, tool.name)]
            first = item.name if i == 0 else ""
            reason = tool.missing or (f"n/a ({cell.error})" if cell.error else "")
            if reason:
                rows.append([first, tool.label, reason, "0", "n/a", "n/a", "n/a"])
                continue
            value = median(cell.values)
            ratio = "-" if tool.name == "off" else f"{value / off:.3f}"
            extra = "-" if tool.name == "off" else pct(overhead(item, off, value), signed=True)
            runs = str(len(cell.values))
            rows.append(
                [first, tool.label, item.cell(value), runs, ratio, extra, own_cpu_cell(tool, cell)]
            )
    headers = ["workload (b)", "tool", "median", "runs", "vs off", "overhead", "own CPU (1 core)"]
    return format_table(headers, rows)


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
    parser.add_argument("--quick", action="store_true", help="small self-test: short runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one JSON measurement
    args = parser.parse_args(argv)
    if args.one:
        emit(run_one(json.loads(args.one)))
        return
    rounds = args.rounds or (2 if args.quick else 5)
    peer_rounds = min(rounds, args.peer_rounds or (2 if args.quick else 3))
    started = time.perf_counter()
    print("[a] sampler CPU", file=sys.stderr, flush=True)
    sampler = run_child(__file__, {"kind": "sampler_cpu", "seconds": 2.0 if args.quick else 10.0})
    items = workloads(args.quick)
    kit = tools()
    cells = compare(items, kit, rounds, peer_rounds)
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
    print(knows_table(kit))
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
