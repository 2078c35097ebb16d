"""Helpers shared by the benchmark scripts: child processes, ground-truth imports, tables.

Every measurement runs in a fresh child process: a detector is once per process and
leaves hooks and metrics behind, so two settings measured in one process would disturb
each other. The child prints one JSON line as its last line of output; the parent reads
only that line, so stray output from the workload cannot corrupt the result.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 600.0


#: The benchmark harness (the script run as ``__main__`` and this module) is not the
#: workload: excluded from the detector's scope so that only ground-truth sites count.
HARNESS = ("__main__", "_common")
SAMPLER_THREAD = "spangap-sampler"  # the detector's sampling thread, by name


def prepare_child() -> None:
    """Set a child process up like a traced service.

    The workloads (``gt_workloads.py`` beside the scripts) use tracer providers of their
    own; the global SDK provider is installed only because a real service has one, and
    without it the detector warns that every span is invalid.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())


def start_detector(probe: Any = None, **options: Any) -> Any:
    """A started detector with ``options``, its sampler seen through ``probe``
    (``spangap.sampler.SamplerProbe``): the benchmarks' injection point."""
    from spangap.detector import GapDetector
    from spangap.options import resolve_options

    given = {"probe": probe} if probe is not None else {}  # --against: older code has none
    detector = GapDetector(resolve_options(options), **given)
    detector.start()
    return detector


def run_child(
    script: str,
    args: dict[str, Any],
    timeout_s: float = CHILD_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``script --one <json>`` in a fresh interpreter and return its JSON result.

    A failing child stops the whole benchmark with its stderr: a silently missing
    measurement would make the table lie.
    """
    cmd = [sys.executable, script, "--one", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark child failed (exit {proc.returncode}): {args}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(result: dict[str, Any]) -> None:
    """The child's side of :func:`run_child`: print the result as the last line."""
    print(json.dumps(result), flush=True)


def run_in_threads(target: Callable[[], None], count: int) -> None:
    """Run ``target`` in ``count`` threads that start together, and re-raise any failure.

    The ground-truth module's own ``run_threads`` is not used because that module is in
    the detector's scope, so its ``join`` would show up as one more dark operation that
    is not part of the workload; this one belongs to the excluded harness.
    """
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body() -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, name=f"bench-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def os_thread_cpu(name: str) -> float:
    """CPU seconds the kernel has charged to the live thread called ``name`` (NaN if
    absent), read from outside that thread through its CPU-time clock: a check on
    spangap's own accounting that does not depend on it."""
    thread = next((t for t in threading.enumerate() if t.name == name), None)
    if thread is None or thread.ident is None:
        return float("nan")
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def median(values: Sequence[float]) -> float:
    """Median that tolerates an empty input (NaN), so one missing value shows as n/a."""
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def medians(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of each figure over ``runs`` (dicts with the keys of the first)."""
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def pct(value: float, digits: int = 1, signed: bool = False) -> str:
    """A ratio as a percentage, or "n/a" when it could not be measured."""
    if value != value:
        return "n/a"
    return f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: text columns left-aligned, numeric columns right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if right else cell.ljust(w)
            for cell, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def _is_number(cell: str) -> bool:
    return cell == "n/a" or (bool(cell) and (cell[0].isdigit() or cell[0] in "+-"))
