"""How late a thread that needs the GIL runs again, beside K CPU-bound threads.

spangap's sampler reads stacks through ``sys._current_frames()``, which needs the GIL.
Behind threads that run pure Python, CPython hands the GIL over only at the switch
interval (``sys.getswitchinterval()``, 5 ms), and a thread that asks for it takes its
turn among the others: a sampler cannot tick more often than it gets the GIL, and a
call that starts and ends while it waits is seen by no tick at all. This script
measures that wait without spangap: the bound every in-process sampler shares.

Each row runs K threads that loop over pure-Python arithmetic, and one more thread that
does what the sampler does at its full rate: sleeps to deadlines 5 ms apart and, each
time, records how late it runs Python code again. With K = 0 that is the operating
system's wake-up alone. Each row runs in a fresh child process, ``--repeats`` times;
the table shows the medians of the runs' figures.

- ``late p50/p90/p99/max``: how long after its deadline the thread ran again;
- ``gap max``: the longest time between two consecutive runs of the thread, the
  longest a sampler would have seen nothing;
- ``gaps > 15 ms /s``: such gaps per second that exceed 15 ms. A call of twice the
  10 ms threshold needs a tick in its first 14.8 ms to be counted; a gap this long
  can hold such a call from start to end.

Usage::

    python benchmarks/gil_wait.py                  # K = 0, 1, 2, 4; 5 s a run, 3 runs
    python benchmarks/gil_wait.py --busy 4 --seconds 10 --repeats 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import threading
import time
from typing import Any

from _common import emit, format_table, medians, run_child
from http_load import percentile

INTERVAL_S = 0.005
LONG_GAP_S = 0.015
BUSY_COUNTS = (0, 1, 2, 4)
HEADERS = (
    "busy threads",
    "late p50",
    "late p90",
    "late p99",
    "late max",
    "gap max",
    "gaps > 15 ms /s",
)


# --- child ---------------------------------------------------------------------------


def spin(stop: threading.Event, loops: list[int], slot: int) -> None:
    """Pure-Python work that holds the GIL until CPython makes it let go."""
    while not stop.is_set():
        total = 0
        for i in range(20_000):
            total += i * i
        loops[slot] += 1


def measure(busy: int, seconds: float) -> dict[str, Any]:
    """Start ``busy`` spinning threads, then wake to 5 ms deadlines for ``seconds`` and
    record when this thread ran again after each (perf_counter seconds)."""
    stop = threading.Event()
    loops = [0] * busy
    threads = [threading.Thread(target=spin, args=(stop, loops, i)) for i in range(busy)]
    for thread in threads:
        thread.start()
    deadlines: list[float] = []
    woke: list[float] = []
    deadline = time.perf_counter()
    end = deadline + seconds
    while deadline < end:
        # Fixed-rate deadlines like the sampler's, but never one already past: each
        # wait is then measured from a deadline the thread really slept to.
        deadline = max(deadline + INTERVAL_S, time.perf_counter())
        time.sleep(max(0.0, deadline - time.perf_counter()))
        deadlines.append(deadline)
        woke.append(time.perf_counter())  # the GIL is ours again: Python runs
    stop.set()
    for thread in threads:
        thread.join()
    return {
        "busy": busy,
        "seconds": seconds,
        "deadlines": deadlines,
        "woke": woke,
        "busy_loops": loops,
        "python": platform.python_version(),
        "switch_interval_s": sys.getswitchinterval(),
    }


# --- parent ----------------------------------------------------------------------------


def run_figures(result: dict[str, Any]) -> dict[str, float]:
    """One run's lateness percentiles, longest gap and long gaps per second."""
    woke: list[float] = result["woke"]
    late = sorted(w - d for w, d in zip(woke, result["deadlines"], strict=True))
    gaps = [b - a for a, b in itertools.pairwise(woke)]
    span = woke[-1] - woke[0] if len(woke) > 1 else float("nan")
    return {
        "late_p50": percentile(late, 0.50),
        "late_p90": percentile(late, 0.90),
        "late_p99": percentile(late, 0.99),
        "late_max": late[-1] if late else float("nan"),
        "gap_max": max(gaps, default=float("nan")),
        "long_gaps_per_s": sum(g > LONG_GAP_S for g in gaps) / span,
    }


def ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.1f} ms"


def table_row(busy: int, runs: list[dict[str, float]]) -> list[str]:
    """The medians of ``runs`` for one busy-thread count."""
    mid = medians(runs)
    times = [ms(mid[k]) for k in ("late_p50", "late_p90", "late_p99", "late_max", "gap_max")]
    return [str(busy), *times, f"{mid['long_gaps_per_s']:.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--busy", type=int, action="append", help="busy thread count (repeatable)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row, medians shown")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one is not None:
        spec = json.loads(args.one)
        emit(measure(spec["busy"], spec["seconds"]))
        return
    counts = args.busy or list(BUSY_COUNTS)
    if any(n < 0 for n in counts) or args.seconds <= 0 or args.repeats < 1:
        parser.error("--busy must be >= 0, --seconds > 0 and --repeats >= 1")
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    switch = python = ""
    for repeat in range(args.repeats):
        for busy in counts:  # repeats outermost: a slow patch hits every row a little
            print(f"[{repeat + 1}/{args.repeats}] {busy} busy threads", file=sys.stderr)
            result = run_child(__file__, {"busy": busy, "seconds": args.seconds})
            runs[busy].append(run_figures(result))
            switch = f"{result['switch_interval_s'] * 1000:g} ms"
            python = result["python"]
    print(
        f"A thread waking every {INTERVAL_S * 1000:g} ms beside busy pure-Python threads "
        f"(CPython {python}, switch interval {switch}; medians of {args.repeats} runs "
        f"of {args.seconds:g} s)"
    )
    print(format_table(HEADERS, [table_row(n, runs[n]) for n in counts]))


if __name__ == "__main__":
    main()
