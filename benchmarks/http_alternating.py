"""spangap's cost to an HTTP service, measured inside one server process: the detector is
switched on and off in windows while one closed-loop load runs throughout.

Rounds in fresh processes (``overhead.py``, part b) differ from one another by more than
the effect: a process's memory layout, the CPU's clock or a neighbour's load moves the
throughput of this 2-core VM by several percent from one process to the next, so a 1%
cost cannot be seen there. Here the server, its warm caches and the load generator stay
the same for the whole run and only the detector changes. Windows come in pairs in ABBA
order (off on, on off, off on, ...) so that a steady drift of the machine cancels out;
each pair gives one loss, 1 - on/off throughput, and the table gives the median loss
with a distribution-free 95% interval for it.

"Off" is no detector at all: ``stop()`` removes every hook the detector installed. "On"
is ``enable_gap_detector()`` at default settings on a fresh registry. The first
``settle_s`` of every window, on or off, is left out, so that switching is not what is
measured: the detector starts at full rate and the budget cuts it back at its first two
updates, 0.1 and 0.6 s in (with 1 s windows and 0.2 s left out, a 200-pair run measured
the sampler at 1.5-2.6% of a core over its "on" time). The sampler column is its thread's
CPU, by the kernel's clock, over the measured parts of the "on" windows.

Usage::

    python benchmarks/http_alternating.py                 # both services, ~7 min
    python benchmarks/http_alternating.py --quick         # self-test, ~30 s
    python benchmarks/http_alternating.py --only http_threaded --pairs 40

``overhead.py`` runs the same measurement as its part (c).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any

from _common import (
    HARNESS,
    SAMPLER_THREAD,
    emit,
    format_table,
    median,
    os_thread_cpu,
    pct,
    prepare_child,
    run_child,
)
from http_service import APP_MODULE, CONNECTIONS, FLAVOURS, LABELS, OUT_OF_SCOPE

LEAD_S = 4.0  # from the child's start to the first window: connecting and warming up


@dataclass(frozen=True)
class Timing:
    """How a run is cut into windows."""

    pairs: int
    window_s: float
    settle_s: float

    @property
    def measured_s(self) -> float:
        """The part of each window that counts."""
        return self.window_s - self.settle_s


FULL = Timing(pairs=60, window_s=1.5, settle_s=0.7)
QUICK = Timing(pairs=3, window_s=0.6, settle_s=0.2)


def abba(pairs: int) -> list[bool]:
    """Whether the detector is on in each window: off on, on off, off on, ..."""
    order: list[bool] = []
    for pair in range(pairs):
        order += [False, True] if pair % 2 == 0 else [True, False]
    return order


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the order statistics x(k) and
    x(n+1-k), with k the largest rank that leaves at most (1 - confidence)/2 of the
    binomial(n, 1/2) mass below it on each side. NaNs when n is too small for one."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1.0 - confidence) / 2
    k, below = 0, 0.0
    while k < n:
        below += math.comb(n, k) / 2**n  # P(fewer than k+1 values under the median)
        if below > tail:
            break
        k += 1
    if k == 0:
        return math.nan, math.nan
    return ordered[k - 1], ordered[n - k]


def pair_ratios(windows: list[dict[str, Any]], key: str) -> list[float]:
    """One ratio per pair of windows: ``key`` with the detector on / with it off."""
    ratios = []
    for first, second in zip(windows[::2], windows[1::2], strict=True):
        on, off = (first, second) if first["on"] else (second, first)
        if on["on"] == off["on"]:
            raise ValueError("a pair of windows must have one on and one off")
        ratios.append(on[key] / off[key])
    return ratios


# --- child: one server process, the detector switched by a thread --------------------------


class Switcher(threading.Thread):
    """Starts and stops the detector at the window boundaries, and takes, over the
    measured part of each window, the process's CPU time and the sampler thread's (by
    the kernel's clock of that thread, read from here)."""

    def __init__(self, schedule: list[bool], start_at: float, timing: Timing) -> None:
        super().__init__(name="switcher", daemon=True)
        self.schedule = schedule
        self.start_at = start_at
        self.timing = timing
        self.process_cpu_s: list[float] = []  # per window, over its measured part
        self.sampler_cpu_s: list[float] = []  # the same, the sampler thread's (0 off)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._switch()
        except BaseException as exc:  # reported by the child's main thread
            self.error = exc

    def _switch(self) -> None:
        import prometheus_client

        import spangap

        detector: Any = None
        window_s, settle_s = self.timing.window_s, self.timing.settle_s
        marks = (0.0, 0.0)
        for index, on in enumerate([*self.schedule, False]):  # off after the last
            start = self.start_at + index * window_s
            _sleep_until(start)
            if index > 0:
                self.process_cpu_s.append(time.process_time() - marks[0])
                self.sampler_cpu_s.append(_sampler_cpu() - marks[1])
            if on and detector is None:
                detector = spangap.enable_gap_detector(
                    registry=prometheus_client.CollectorRegistry(),
                    include=[APP_MODULE],
                    exclude=[*HARNESS, *OUT_OF_SCOPE],
                )
            elif not on and detector is not None:
                detector.stop()
                detector = None
            if index < len(self.schedule):
                _sleep_until(start + settle_s)
                marks = (time.process_time(), _sampler_cpu())


def _sampler_cpu() -> float:
    """The sampler thread's CPU so far; 0 when there is none."""
    cpu = os_thread_cpu(SAMPLER_THREAD)
    return 0.0 if math.isnan(cpu) else cpu


def _sleep_until(moment: float) -> None:
    time.sleep(max(moment - time.perf_counter(), 0.0))


def serve_alternating(flavour: str, timing: Timing) -> dict[str, Any]:
    """Serve one closed-loop load for the whole run while a :class:`Switcher` turns the
    detector on and off; the result is each window's throughput and the latencies."""
    prepare_child()
    import http_app
    import http_load
    from http_service import running_service

    http_load.raise_fd_limit()
    schedule = abba(timing.pairs)
    with running_service(flavour) as server:
        start_at = time.perf_counter() + LEAD_S
        plan = http_load.Plan(
            *server.address,
            CONNECTIONS[flavour],
            0.0,
            len(schedule) * timing.window_s,
            [*http_app.MIX],
            start_at=start_at,
            bin_s=timing.window_s,
            settle_s=timing.settle_s,
        )
        switcher = Switcher(schedule, start_at, timing)
        switcher.start()
        try:
            load = http_load.run_load(plan, timeout_s=LEAD_S + plan.duration_s + 60.0)
        finally:
            switcher.join()
    if switcher.error is not None:
        raise switcher.error
    if load["errors"] or load["total"] != server.served:
        raise SystemExit(f"HTTP run inconsistent: {load}, server served {server.served}")
    windows = list(zip(schedule, load["bins"], strict=True))
    latencies = {
        mode: sorted(v for on, bin_ in windows if on == mode for v in bin_)
        for mode in (False, True)
    }
    return {
        "windows": [
            {
                "on": on,
                "throughput": len(bin_) / timing.measured_s,
                "cpu_per_request_s": cpu_s / max(len(bin_), 1),
                "sampler_share": sampler_s / timing.measured_s,
            }
            for (on, bin_), cpu_s, sampler_s in zip(
                windows, switcher.process_cpu_s, switcher.sampler_cpu_s, strict=True
            )
        ],
        **{
            f"p{q}_{'on' if mode else 'off'}_s": http_load.percentile(latencies[mode], q / 100)
            / 1e6
            for mode in (False, True)
            for q in (50, 99)
        },
    }


# --- parent ----------------------------------------------------------------------------------


def measure(kind: str, timing: Timing) -> dict[str, Any]:
    """Run one service's alternating measurement in a fresh child process; add the
    throughput loss and the change in CPU per request, each a median over pairs with
    its interval."""
    args = {"flavour": FLAVOURS[kind], **timing.__dict__}
    timeout = LEAD_S + 2 * timing.pairs * timing.window_s + 120.0
    result = run_child(__file__, args, timeout)
    losses = [1.0 - r for r in pair_ratios(result["windows"], "throughput")]
    cpu_changes = [r - 1.0 for r in pair_ratios(result["windows"], "cpu_per_request_s")]
    return {
        **result,
        "kind": kind,
        "pairs": len(losses),
        "loss": (median(losses), *median_interval(losses)),
        "cpu_change": (median(cpu_changes), *median_interval(cpu_changes)),
    }


def table(results: list[dict[str, Any]]) -> str:
    """Part (c): one row per service."""

    def mode_median(result: dict[str, Any], on: bool) -> str:
        values = [w["throughput"] for w in result["windows"] if w["on"] == on]
        return f"{median(values):.0f} req/s"

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.1f} ms"

    def with_interval(figures: tuple[float, float, float]) -> str:
        value, low, high = figures
        return f"{pct(value, signed=True)} ({pct(low, signed=True)} .. {pct(high, signed=True)})"

    rows = [
        [
            LABELS[FLAVOURS[r["kind"]]],
            str(r["pairs"]),
            mode_median(r, False),
            mode_median(r, True),
            with_interval(r["loss"]),
            with_interval(r["cpu_change"]),
            f"{ms(r['p50_off_s'])} / {ms(r['p50_on_s'])}",
            f"{ms(r['p99_off_s'])} / {ms(r['p99_on_s'])}",
            pct(median([w["sampler_share"] for w in r["windows"] if w["on"]]), 2),
        ]
        for r in results
    ]
    headers = [
        "HTTP workload (c)",
        "pairs",
        "off",
        "on",
        "throughput loss (95%)",
        "CPU per request (95%)",
        "p50 off / on",
        "p99 off / on",
        "sampler CPU",
    ]
    return format_table(headers, rows)


def heading(timing: Timing) -> str:
    return (
        f"(c) HTTP services, detector switched on and off in one server process: "
        f"{timing.pairs} pairs of {timing.window_s:g} s windows (ABBA), the first "
        f"{timing.settle_s:g} s of each left out. Per pair: throughput loss 1 - on/off, "
        "and the server process's CPU per request on/off - 1; medians over pairs, with "
        "distribution-free 95% intervals"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, help=f"pairs of windows (default {FULL.pairs})")
    parser.add_argument("--quick", action="store_true", help="self-test: 2 short pairs")
    parser.add_argument("--only", help="comma-separated: http_threaded, http_asyncio")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        flavour = spec.pop("flavour")
        emit(serve_alternating(flavour, Timing(**spec)))
        return
    timing = QUICK if args.quick else FULL
    if args.pairs:
        if args.pairs < 1:
            parser.error("--pairs must be at least 1")
        timing = Timing(args.pairs, timing.window_s, timing.settle_s)
    kinds = args.only.split(",") if args.only else list(FLAVOURS)
    unknown = set(kinds) - set(FLAVOURS)
    if unknown:
        parser.error(f"--only: unknown workload kind(s) {', '.join(sorted(unknown))}")
    results = [measure(kind, timing) for kind in kinds]
    print(f"spangap HTTP overhead, alternating in one process, Python {platform.python_version()}")
    print(heading(timing))
    print(table(results))


if __name__ == "__main__":
    main()
