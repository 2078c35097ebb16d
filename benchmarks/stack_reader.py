"""What the native stack reader (``spangap._stacks``) costs, and whether a host survives it.

    python benchmarks/stack_reader.py [--seconds S] [--repeats N] [--copy C] [--stress RUNS]

For each setting, a fresh process runs T threads at stack depth D and the reader's
native thread walks every thread every 5 ms, never taking the GIL, for S seconds. It
prints, per walk: the native thread's CPU (its own CPU clock), what that is per thread
and per frame read, how many frames were read and how many taken unchanged from the
previous walk, code objects read, and the stacks dropped because they moved under the
walk. Each walk also finds the span in every thread's executing context. ``parked``
threads wait in one call (their stacks never change); ``busy`` threads
call short functions at the leaf without pause (the leaf changes at every walk).
``pinned`` runs ``Reader.pin()`` every 0.2 s, as a drain under the GIL would: code
objects and context mappings it has pinned are known without a read.

``--copy`` picks how the walks copy memory (``c/_safecopy.h``): ``pipe`` (the default
path), ``readv`` (``process_vm_readv`` only), or ``both``, each setting measured with
both paths run by run, so that both see the same moments of a noisy machine.

``--stress RUNS`` runs the stress host of the test suite (``tests/stacks_stress.py``)
that many times in a row with the reader at its maximum rate, and stops at the first
crash, hang or changed result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import emit, format_table, median, run_child

STRESS_HOST = Path(__file__).resolve().parent.parent / "tests" / "stacks_stress.py"
SETTINGS = [
    {"threads": threads, "depth": depth, "load": load, "pinned": pinned}
    for load in ("parked", "busy")
    for threads, depth in ((1, 10), (16, 10), (16, 50), (64, 10))
    for pinned in (False, True)
]


def nest(depth: int, leaf: Any) -> Any:
    return nest(depth - 1, leaf) if depth > 1 else leaf()


def tiny(n: int) -> int:
    return n + 1


def measure(setting: dict[str, Any], seconds: float, copy: str) -> dict[str, Any]:
    """One setting, in this (fresh) process, its memory copied the ``copy`` way."""
    from spangap import _stacks
    from spangap.stacks import open_reader

    stop = threading.Event()

    def parked() -> None:
        stop.wait()

    def busy() -> None:
        n = 0
        while not stop.is_set():
            n = tiny(n)
            if n % 64 == 0:
                time.sleep(0)  # let the others run: a service, not a spin

    leaf = parked if setting["load"] == "parked" else busy
    threads = [
        threading.Thread(target=nest, args=(setting["depth"], leaf))
        for _ in range(setting["threads"])
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    reader, why = open_reader()
    if reader is None:
        raise SystemExit(f"no native reader: {why}")
    _stacks.copy_path(copy)
    if setting["pinned"]:
        reader.pin()
    reader.start(0.005)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        time.sleep(0.2)
        if setting["pinned"]:
            reader.pin()
    _, _, counts = reader.latest()
    reader.stop()
    stop.set()
    for thread in threads:
        thread.join()
    walks = max(counts["walks"], 1)
    read = counts["frames"] - counts["frames_reused"]
    cpu_us = counts["cpu_s"] * 1e6
    return {
        "walks_per_s": walks / seconds,
        "us_per_walk": cpu_us / walks,
        "us_per_thread": cpu_us / max(counts["threads"], 1),
        "us_per_frame_read": cpu_us / read if read else float("nan"),
        "read_per_walk": read / walks,
        "reused_per_walk": counts["frames_reused"] / walks,
        "code_reads_per_walk": counts["code_reads"] / walks,
        "dropped": (counts["torn"] + counts["invalid"] + counts["unreadable"])
        / max(counts["threads"] + counts["torn"] + counts["invalid"], 1),
        "cpu_share": counts["cpu_s"] / seconds,
    }


def wake_floor_us(wakes: int = 400) -> float:
    """What a bare timed wake-up costs a thread in CPU on this machine: the floor under
    any sampler that sleeps between samples (a Python loop of 5 ms sleeps)."""
    start = time.thread_time()
    for _ in range(wakes):
        time.sleep(0.005)
    return (time.thread_time() - start) / wakes * 1e6


def stress(runs: int) -> int:
    """Run the stress host ``runs`` times; 0 when every run survived unchanged."""
    expected = None
    for i in range(1, runs + 1):
        results = {}
        for mode in ("off", "on"):
            try:
                done = subprocess.run(
                    [sys.executable, "-X", "faulthandler", str(STRESS_HOST), mode],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            except subprocess.TimeoutExpired:
                print(f"run {i} ({mode}): hung")
                return 1
            if done.returncode != 0:
                print(f"run {i} ({mode}): exit {done.returncode}\n{done.stderr[-2000:]}")
                return 1
            results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        if expected is None:
            expected = results["off"]["results"]
        if results["on"]["results"] != expected or results["off"]["results"] != expected:
            print(f"run {i}: the host computed something else with the reader on")
            return 1
        counts = results["on"]["counts"]
        print(
            f"run {i}: ok, {counts['walks']} walks, {counts['threads']} stacks read, "
            f"{counts['torn']} torn, {counts['invalid']} invalid, "
            f"{counts['unreadable']} unreadable",
            flush=True,
        )
    print(f"{runs} runs in a row: no crash, no hang, the same results")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median)")
    parser.add_argument("--copy", choices=("pipe", "readv", "both"), default="pipe")
    parser.add_argument("--stress", type=int, default=0, metavar="RUNS")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one = json.loads(args.one)
        emit(measure(one["setting"], one["seconds"], one["copy"]))
        return 0
    if args.stress:
        return stress(args.stress)
    rows = []
    copies = ("pipe", "readv") if args.copy == "both" else (args.copy,)
    for setting in SETTINGS:
        runs: dict[str, list[dict[str, Any]]] = {copy: [] for copy in copies}
        for _ in range(args.repeats):
            for copy in copies:
                child = {"setting": setting, "seconds": args.seconds, "copy": copy}
                runs[copy].append(run_child(__file__, child))
        for copy in copies:
            m = {key: median([run[key] for run in runs[copy]]) for key in runs[copy][0]}
            print(f"{setting} {copy}: {m['us_per_walk']:.0f} µs a walk", file=sys.stderr)
            rows.append(
                [
                    copy,
                    setting["load"],
                    str(setting["threads"]),
                    str(setting["depth"]),
                    "yes" if setting["pinned"] else "no",
                    f"{m['walks_per_s']:.0f}",
                    f"{m['us_per_walk']:.1f}",
                    f"{m['us_per_thread']:.2f}",
                    f"{m['us_per_frame_read']:.2f}",
                    f"{m['read_per_walk']:.1f}",
                    f"{m['reused_per_walk']:.1f}",
                    f"{m['code_reads_per_walk']:.1f}",
                    f"{m['dropped'] * 100:.2f}%",
                    f"{m['cpu_share'] * 100:.2f}%",
                ]
            )
    print(
        f"python {sys.version.split()[0]}, a walk every 5 ms, {args.seconds:g} s a run, "
        f"median of {args.repeats} runs; a bare timed wake-up costs "
        f"{median([wake_floor_us() for _ in range(3)]):.1f} µs of CPU here"
    )
    print(
        format_table(
            [
                "copy",
                "load",
                "threads",
                "depth",
                "pinned",
                "walks/s",
                "µs/walk",
                "µs/thread",
                "µs/frame read",
                "frames read",
                "reused",
                "code reads",
                "dropped",
                "CPU",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
