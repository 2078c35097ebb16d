"""Detection quality: does spangap count the dark calls that really happened, and only those?

Runs the ground-truth workloads of ``gt_workloads.py`` in N threads at once under a
detector, then compares the detector's per-site counts with the durations the workloads
recorded themselves. One row per setting (sampling interval, span-state reader, thread
count, load); each row is measured ``--repeats`` times in fresh child processes and the
medians are printed, because a single run on a small, shared machine is noisy.

Usage::

    python benchmarks/detection.py            # full run, a few minutes
    python benchmarks/detection.py --quick    # small self-test, well under a minute
    python benchmarks/detection.py --load cpu-contended --threads 4 --budget none --repeats 20
                                              # some rows only, each run more often
    python benchmarks/detection.py --load cpu-contended --threads 4 --budget none \
        --repeats 20 --against /path/to/other/checkout/src
                                              # this code and another, run by run
    python benchmarks/detection.py --load cpu-contended --threads 4 --budget none \
        --repeats 20 --why-missed                 # which missed calls no tick saw

``--against SRC`` measures every row a second time with the spangap package found in
SRC (another checkout's ``src/``, its C extension built in place), alternating with
this one run by run, so that both see the same moments of a noisy machine; each child
reports which package it imported, and a child that did not import the one asked for
stops the benchmark.

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from _common import (
    HARNESS,
    emit,
    format_table,
    median,
    medians,
    pct,
    prepare_child,
    run_child,
    run_in_threads,
    start_detector,
)

THRESHOLD_MS = 10.0
THRESHOLD_S = THRESHOLD_MS / 1000.0
DEFAULT_INTERVAL_MS = 5.0
DEFAULT_BUDGET = 0.01
NO_BUDGET = 1.0  # max_overhead=1: the sampler runs at its full rate whatever it costs
READERS = ("native", "python")
THREAD_COUNTS = (4, 16)
MODULE = "gt_workloads"

#: Sites whose every call is dark: each call >= the threshold should be counted once.
DARK_SITES = tuple(
    f"{MODULE}:{name}"
    for name in ("dark_sleep", "dark_socket", "dark_outer", "dark_inner", "dark_before_span")
)
DARK_CPU_SITE = f"{MODULE}:dark_cpu"
DARK_SLEEP_SITE = f"{MODULE}:dark_sleep"
DARK_SHORT_SITE = f"{MODULE}:dark_short"


def is_never_countable(site: str) -> bool:
    """Sites that must never be counted: spanned work, partly spanned work, short calls."""
    name = site.partition(":")[2]
    return site.startswith(f"{MODULE}:") and (
        name.startswith("spanned_") or name in ("partly_spanned", "dark_short")
    )


@dataclass(frozen=True)
class Setting:
    """One row of the table: what the child process runs and how the detector is set."""

    max_overhead: float
    liveness: str
    reader: str
    threads: int
    contended: bool
    rounds: int
    interval_ms: float = DEFAULT_INTERVAL_MS
    tracker: str = "native"
    stacks: str = "off"  # the native stack sampler's call counting (--stacks)
    why_missed: bool = False  # also record every tick's time (--why-missed)

    @property
    def load(self) -> str:
        return "cpu-contended" if self.contended else "mixed"


# --- child: one measurement ------------------------------------------------------------


def thread_body(gt: Any, address: tuple[str, int], setting: Setting) -> None:
    """The per-thread workload mix, repeated ``rounds`` times.

    The python reader only sees spans attached through OpenTelemetry's own attach (its
    documented blind spot is a span carried by ``Context.run``), so the carried-span
    workload runs only under the native reader.
    """
    for _ in range(setting.rounds):
        if setting.contended:
            gt.dark_cpu()
        gt.dark_sleep()
        gt.dark_socket(address)
        gt.dark_outer(2)
        gt.partly_spanned()  # its helper dark_before_span is dark; the rest is spanned
        gt.dark_short()
        gt.spanned_cm()
        gt.spanned_decorated()
        gt.spanned_sampled_out()
        if setting.reader == "native":
            gt.spanned_carried_into_thread()


def real_calls(recorded: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Recorded real durations grouped by site."""
    by_site: dict[str, list[float]] = {}
    for site, seconds in recorded:
        by_site.setdefault(site, []).append(seconds)
    return by_site


def snapshot_p50(snapshot: Any, site: str) -> float:
    """The snapshot's median duration for ``site`` (its most frequent cause), or NaN."""
    stats = [s for s in snapshot.sites if s.site == site]
    if not stats:
        return float("nan")
    return float(max(stats, key=lambda s: s.count).p50_seconds)


def measure(setting: Setting) -> dict[str, Any]:
    """Run the workload under a detector in this (fresh) process and summarise it."""
    prepare_child()
    import prometheus_client

    import gt_workloads as gt
    import spangap

    server = gt.DelayServer()
    gt.reset()
    ticks = TickTimes()
    start = time.perf_counter()
    detector = start_detector(
        probe=ticks if setting.why_missed else None,
        registry=prometheus_client.CollectorRegistry(),
        include=[MODULE],
        exclude=list(HARNESS),
        interval_ms=setting.interval_ms,
        threshold_ms=THRESHOLD_MS,
        context_reader=setting.reader,
        liveness=setting.liveness,
        max_overhead=setting.max_overhead,
        tracker=setting.tracker,
        # only when asked: a checkout without the switch (--against) runs the rest
        **({"stacks": setting.stacks} if setting.stacks != "off" else {}),
    )
    run_in_threads(lambda: thread_body(gt, server.address, setting), setting.threads)
    detector.stop()
    wall = time.perf_counter() - start
    server.close()

    counted: dict[str, int] = {}
    for (site, _cause), count in detector.operation_counts().items():
        counted[site] = counted.get(site, 0) + count
    real = real_calls(list(gt.RECORDED))
    snapshot = detector.snapshot()
    return {
        "counted": counted,
        "real": {
            site: {
                "calls": len(durations),
                "over_half_threshold": sum(d > THRESHOLD_S / 2 for d in durations),
                "ge_threshold": sum(d >= THRESHOLD_S for d in durations),
                "ge_2x_threshold": sum(d >= 2 * THRESHOLD_S for d in durations),
            }
            for site, durations in real.items()
        },
        "dark_sleep_real_median_s": median(real.get(DARK_SLEEP_SITE, [])),
        "dark_sleep_p50_s": snapshot_p50(snapshot, DARK_SLEEP_SITE),
        "samples": snapshot.totals.samples,
        "sampler_cpu_s": snapshot.totals.sampler_cpu_seconds,
        "wall_s": wall,
        "spangap_file": spangap.__file__,
        **({"why_missed": explain(list(gt.CALL_TIMES), ticks)} if setting.why_missed else {}),
    }


def explain(calls: list[tuple[str, float, float]], ticks: list[float]) -> dict[str, int]:
    """why_missed() with the credit cap of the spangap this child imported."""
    from spangap.tracker import MAX_CORRECTION_OF_THRESHOLD

    return why_missed(calls, ticks, MAX_CORRECTION_OF_THRESHOLD)


class TickTimes(list[float]):
    """A sampler probe that notes the time of every tick (for --why-missed only, never
    in the table's rows)."""

    def wrap(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if part != "tick":
            return fn

        def tick(*args: Any, **kwargs: Any) -> Any:
            self.append(time.perf_counter())
            return fn(*args, **kwargs)

        return tick


def why_missed(
    calls: list[tuple[str, float, float]], ticks: list[float], credit_cap: float
) -> dict[str, int]:
    """Of the dark calls of at least twice the threshold, those no tick fell inside
    (``unseen``: nothing can count them), and those whose first tick came too late for
    the detector's estimate (what it saw, plus half the gap before, at most
    ``credit_cap`` of the threshold) to reach the threshold (``late``), by the ticks'
    times alone: a first sighting the watcher's GIL log dated back (``frozen_since``)
    is not known here, so some ``late`` calls were counted."""
    unseen = late = 0
    dark = (*DARK_SITES, DARK_CPU_SITE)
    for site, start, end in calls:
        if site not in dark or end - start < 2 * THRESHOLD_S:
            continue
        i = bisect.bisect_left(ticks, start)
        if i == len(ticks) or ticks[i] > end:
            unseen += 1
            continue
        gap_before = ticks[i] - ticks[i - 1] if i else 0.0
        if end - ticks[i] + min(gap_before / 2, credit_cap * THRESHOLD_S) < THRESHOLD_S:
            late += 1
    return {"unseen": unseen, "late": late}


# --- parent: metrics and the table -----------------------------------------------------


def row_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The table's figures for one measurement (see README for the definitions)."""
    counted: dict[str, int] = result["counted"]
    real: dict[str, dict[str, int]] = result["real"]
    dark_sites = [s for s in (*DARK_SITES, DARK_CPU_SITE) if s in real]
    long_calls = sum(real[s]["ge_2x_threshold"] for s in dark_sites)
    # Capped per site, so an over-count at one site cannot hide misses at another.
    found = sum(min(counted.get(s, 0), real[s]["ge_2x_threshold"]) for s in dark_sites)
    countable = sum(real[s]["ge_threshold"] for s in dark_sites)
    excess = sum(max(0, counted.get(s, 0) - real[s]["ge_threshold"]) for s in dark_sites)
    wall = result["wall_s"]
    why = result.get("why_missed", {})
    return {
        **{f"missed_{k}": float(v) for k, v in why.items()},
        "dark_calls": float(long_calls),
        "missed": float(long_calls - found),
        "recall": found / long_calls if long_calls else float("nan"),
        "over_count": excess / countable if countable else float("nan"),
        "false_pos": float(sum(n for s, n in counted.items() if is_never_countable(s))),
        "fp_short": float(counted.get(DARK_SHORT_SITE, 0)),
        "short_slow": float(real.get(DARK_SHORT_SITE, {}).get("ge_threshold", 0)),
        # The counts cannot be matched to calls one by one, but every count beyond the
        # dark_short calls that really took over half the threshold was a call of at most
        # half of it, which must never be counted: a lower bound, to be 0.
        "half_short": float(
            max(
                0,
                counted.get(DARK_SHORT_SITE, 0)
                - real.get(DARK_SHORT_SITE, {}).get("over_half_threshold", 0),
            )
        ),
        "dur_err": result["dark_sleep_p50_s"] / result["dark_sleep_real_median_s"] - 1.0,
        "samples_per_s": result["samples"] / wall,
        "sampler_cpu": result["sampler_cpu_s"] / wall,
    }


def settings(rounds: int) -> list[Setting]:
    """The definition at full rate (both readers, and with no C extension at all), then
    the default budget (with the C and the reference tracker: what a cheaper tick buys
    at the same budget), then the CPU-contended load (where the sampler waits for the
    GIL behind CPU-bound threads) with and without the liveness watcher, at full rate
    and at the default budget, and with none of the C extension at full rate."""
    rows = [
        Setting(NO_BUDGET, "native", reader, threads, False, rounds)
        for reader in READERS
        for threads in THREAD_COUNTS
    ]
    # Without any of the C extension: the Python reader, tracker and sampled liveness.
    rows += [
        Setting(NO_BUDGET, "sampled", "python", n, False, rounds, tracker="python")
        for n in THREAD_COUNTS
    ]
    rows += [
        Setting(DEFAULT_BUDGET, "native", "native", n, False, rounds, tracker=tracker)
        for tracker in ("native", "python")
        for n in THREAD_COUNTS
    ]
    rows += [
        Setting(NO_BUDGET, liveness, "native", threads, True, rounds)
        for liveness in ("native", "sampled")
        for threads in THREAD_COUNTS
    ]
    rows += [  # and with none of the C extension
        Setting(NO_BUDGET, "sampled", "python", n, True, rounds, tracker="python")
        for n in THREAD_COUNTS
    ]
    rows += [Setting(DEFAULT_BUDGET, "native", "native", n, True, rounds) for n in THREAD_COUNTS]
    return rows


def selected(
    rows: list[Setting], threads: int | None, load: str | None, budget: str | None
) -> list[Setting]:
    """The rows that match every filter given (``budget`` is "none" or "default")."""
    wanted = {"none": NO_BUDGET, "default": DEFAULT_BUDGET}.get(budget or "")
    return [
        row
        for row in rows
        if (threads is None or row.threads == threads)
        and (load is None or row.load == load)
        and (wanted is None or row.max_overhead == wanted)
    ]


def budget_label(max_overhead: float) -> str:
    return "none" if max_overhead >= NO_BUDGET else pct(max_overhead, digits=0)


def child_env(src: str | None) -> dict[str, str] | None:
    """The environment of a child that imports spangap from ``src`` (None: this one)."""
    if src is None:
        return None
    path = [src, os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def check_source(result: dict[str, Any], src: str | None) -> None:
    """Stop if a child measuring ``src`` imported spangap from somewhere else (an
    installed copy would win if SRC held no package): the comparison would be false."""
    if src is None:
        return
    where = os.path.realpath(result["spangap_file"])
    if not where.startswith(os.path.realpath(src) + os.sep):
        raise SystemExit(f"--against {src}: the child imported spangap from {where}")


def measure_all(
    rows: list[Setting], repeats: int, sources: tuple[str | None, ...] = (None,)
) -> list[list[list[dict[str, float]]]]:
    """Measure every row ``repeats`` times with each of ``sources`` (None: the spangap
    this script imports), one child process each; results[source][row] is a list of
    runs.

    Repeats are the outer loop, so a slow patch of the machine hits every row a little
    instead of one row entirely; the sources alternate innermost, run by run.
    """
    results: list[list[list[dict[str, float]]]] = [[[] for _ in rows] for _ in sources]
    for repeat in range(repeats):
        for i, setting in enumerate(rows):
            for k, src in enumerate(sources):
                label = (
                    f"budget {budget_label(setting.max_overhead)} liveness "
                    f"{setting.liveness} {setting.reader} N={setting.threads} {setting.load}"
                    + ("" if src is None else f" ({src})")
                )
                print(f"[{repeat + 1}/{repeats}] {label}", file=sys.stderr, flush=True)
                result = run_child(__file__, asdict(setting), env=child_env(src))
                check_source(result, src)
                results[k][i].append(row_metrics(result))
    return results


#: The columns that name a row's setting, first in every table.
LABEL_HEADERS = ("budget", "tracker", "liveness", "reader", "stacks", "threads", "load")


def row_label(setting: Setting) -> list[str]:
    """The cells under LABEL_HEADERS for ``setting``."""
    return [
        budget_label(setting.max_overhead),
        setting.tracker,
        setting.liveness,
        setting.reader,
        setting.stacks,
        str(setting.threads),
        setting.load,
    ]


def comparison_row(setting: Setting, code: str, runs: list[dict[str, float]]) -> list[str]:
    """One row of the side-by-side summary: recall as median, mean and worst run, and
    the calls missed over all runs."""
    recalls = [r["recall"] for r in runs]
    return [
        *row_label(setting),
        code,
        str(len(runs)),
        pct(median(recalls), digits=2),
        pct(sum(recalls) / len(recalls), digits=2),
        pct(min(recalls), digits=2),
        f"{sum(r['missed'] for r in runs):.0f}",
        f"{sum(r['half_short'] for r in runs):.0f}",
    ]


WHY_HEADERS = (
    *LABEL_HEADERS,
    "runs",
    "missed",
    "unseen",
    "late",
)


def why_row(setting: Setting, runs: list[dict[str, float]]) -> list[str]:
    """Calls missed over all runs of a row, beside those no tick fell inside and those
    first seen too late (see why_missed); unseen + late short of missed is what the
    ticks' times cannot explain."""
    keys = ("missed", "missed_unseen", "missed_late")
    total = {k: sum(r.get(k, 0.0) for r in runs) for k in keys}
    return [
        *row_label(setting),
        str(len(runs)),
        *(f"{total[k]:.0f}" for k in keys),
    ]


COMPARISON_HEADERS = (
    *LABEL_HEADERS,
    "code",
    "runs",
    "recall p50",
    "mean",
    "worst",
    "missed",
    "<=thr/2",
)


HEADERS = (
    *LABEL_HEADERS,
    "dark calls",
    "recall",
    "over-count",
    "false pos",
    "fp short",
    "short>=thr",
    "<=thr/2",
    "dur err",
    "samples/s",
    "sampler CPU",
)


def format_row(setting: Setting, runs: list[dict[str, float]]) -> list[str]:
    """One table row: the median of each figure over the repeats."""
    m = medians(runs)
    return [
        *row_label(setting),
        f"{m['dark_calls']:.0f}",
        pct(m["recall"]),
        pct(m["over_count"]),
        f"{m['false_pos']:g}",
        f"{m['fp_short']:g}",
        f"{m['short_slow']:g}",
        f"{m['half_short']:g}",
        pct(m["dur_err"], signed=True),
        f"{m['samples_per_s']:.0f}",
        pct(m["sampler_cpu"]),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="workload rounds per thread (default 15)")
    parser.add_argument("--repeats", type=int, help="runs per row, medians shown (default 3)")
    parser.add_argument("--quick", action="store_true", help="small self-test: 3 rounds, 1 run")
    parser.add_argument("--threads", type=int, choices=THREAD_COUNTS, help="only these rows")
    parser.add_argument("--load", choices=("mixed", "cpu-contended"), help="only these rows")
    parser.add_argument(
        "--budget", choices=("none", "default"), help="only rows at full rate or at the budget"
    )
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="also measure every row with the spangap package in SRC, run by run",
    )
    parser.add_argument(
        "--why-missed",
        action="store_true",
        help="also record every tick's time and say, of the calls missed, how many no "
        "tick saw and how many were first seen too late",
    )
    parser.add_argument(
        "--stacks",
        choices=("off", "native"),
        help="the native stack sampler's call counting in every row (default off)",
    )
    parser.add_argument(
        "--max-overhead", type=float, help="this budget in every row instead of its own"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one JSON setting
    args = parser.parse_args(argv)
    if args.one:
        emit(measure(Setting(**json.loads(args.one))))
        return
    rounds = args.rounds or (3 if args.quick else 15)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = selected(settings(rounds), args.threads, args.load, args.budget)
    if args.why_missed:
        rows = [replace(row, why_missed=True) for row in rows]
    if args.stacks:
        rows = [replace(row, stacks=args.stacks) for row in rows]
    if args.max_overhead:
        rows = [replace(row, max_overhead=args.max_overhead) for row in rows]
    if args.against is not None and not os.path.isdir(os.path.join(args.against, "spangap")):
        parser.error(f"--against: {args.against} holds no spangap package")
    sources = (None,) if args.against is None else (None, args.against)
    started = time.perf_counter()
    results = measure_all(rows, repeats, sources)
    print(
        f"spangap detection quality: threshold {THRESHOLD_MS:g} ms, interval "
        f"{DEFAULT_INTERVAL_MS:g} ms (widened by the budget), {rounds} rounds per "
        f"thread, median of {repeats} run(s) per row, Python {platform.python_version()}"
    )
    for src, by_row in zip(sources, results, strict=True):
        if args.against is not None:
            print(f"\nspangap from {src or 'this checkout'}:")
        print(format_table(HEADERS, [format_row(s, r) for s, r in zip(rows, by_row, strict=True)]))
    if args.against is not None:
        summary = [
            comparison_row(setting, code, by_row[i])
            for i, setting in enumerate(rows)
            for code, by_row in zip(("this", "against"), results, strict=True)
        ]
        print(f"\nside by side, run by run (against: {args.against}):")
        print(format_table(COMPARISON_HEADERS, summary))
    if args.why_missed:
        print("\nwhy this checkout missed calls of at least twice the threshold, all runs:")
        why = [why_row(s, r) for s, r in zip(rows, results[0], strict=True)]
        print(format_table(WHY_HEADERS, why))
    print(f"total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
