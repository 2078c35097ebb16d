"""Memory soak: the RSS spangap adds to a process over a long run with many distinct
functions and threads that come and go.

    python benchmarks/memory_soak.py --minutes 30 --functions 100000

Two processes run the same workload side by side, one without the detector and one with
it at its defaults (or at ``--max-overhead``; 1 samples at full rate, so that every
function is seen and kept track of: the most memory). The workload: ``--functions``
distinct functions (generated into a module of their own), each a dark call of 11 ms,
called round-robin by ``--threads`` worker threads at a time; every worker makes
``--calls-per-thread`` calls and ends, and a new one takes its place. Every
``--every-s`` seconds the parent reads both processes' RSS; the table gives the
difference, which is what spangap adds (its sampler, its caches, its
findings and metrics). The last line is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from _common import format_table, prepare_child

MIB = 1024 * 1024


def child(args: dict[str, Any]) -> None:
    """The workload, forever (the parent kills it)."""
    prepare_child()
    module_dir = Path(args["dir"])
    source = "import time\n" + "".join(
        f"def call_{i}():\n    time.sleep(0.011)\n" for i in range(args["functions"])
    )
    (module_dir / "many_functions.py").write_text(source)
    sys.path.insert(0, str(module_dir))
    import many_functions

    calls = [getattr(many_functions, f"call_{i}") for i in range(args["functions"])]
    if args["detector"]:
        import spangap

        options = {} if args["max_overhead"] is None else {"max_overhead": args["max_overhead"]}
        spangap.enable_gap_detector(include=["many_functions"], **options)
    next_call = iter(range(1 << 62))
    lock = threading.Lock()
    started = [0]

    def worker() -> None:
        for _ in range(args["calls_per_thread"]):
            with lock:
                i = next(next_call)
            calls[i % len(calls)]()

    print("ready", flush=True)
    workers: list[threading.Thread] = []
    status, next_status = module_dir / "status.json", 0.0
    while True:
        workers = [t for t in workers if t.is_alive()]
        while len(workers) < args["threads"]:
            t = threading.Thread(target=worker)
            t.start()
            workers.append(t)
            started[0] += 1
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + 1.0
            status.write_text(json.dumps({"threads_started": started[0]}))
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--functions", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--calls-per-thread", type=int, default=100)
    parser.add_argument("--every-s", type=float, default=60.0)
    parser.add_argument(
        "--max-overhead", type=float, help="the detector's budget (default: its default)"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(json.loads(args.one))
        return
    if args.minutes <= 0 or args.functions < 1 or args.threads < 1 or args.every_s <= 0:
        parser.error("--minutes, --every-s > 0; --functions, --threads >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        procs = {}
        for name, on in (("off", False), ("on", True)):
            work = Path(tmp) / name
            work.mkdir()
            spec = {
                "dir": str(work),
                "functions": args.functions,
                "threads": args.threads,
                "calls_per_thread": args.calls_per_thread,
                "detector": on,
                "max_overhead": args.max_overhead,
            }
            procs[name] = subprocess.Popen(
                [sys.executable, __file__, "--one", json.dumps(spec)],
                stdout=subprocess.PIPE,
                text=True,
            )
        try:
            for proc in procs.values():  # both have built their functions
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            rows = watch(procs, args)
        finally:
            for proc in procs.values():
                proc.kill()
                proc.wait()
    table = [
        [f"{r['minute']:.1f}", f"{r['off']:.1f}", f"{r['on']:.1f}", f"{r['added']:+.1f}"]
        for r in rows
    ]
    header = ["minute", "RSS without (MiB)", "RSS with (MiB)", "spangap adds (MiB)"]
    print(format_table(header, table))
    added = [r["added"] for r in rows]
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "functions": args.functions,
                "threads_started": rows[-1]["threads_started"] if rows else 0,
                "added_mib_first": round(added[0], 1) if added else None,
                "added_mib_max": round(max(added), 1) if added else None,
                "added_mib_last": round(added[-1], 1) if added else None,
            }
        )
    )


def watch(
    procs: dict[str, subprocess.Popen[str]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """RSS of both processes every ``--every-s`` seconds until ``--minutes`` are up."""
    began = time.monotonic()
    rows: list[dict[str, Any]] = []
    handles = {name: psutil.Process(p.pid) for name, p in procs.items()}
    while True:
        time.sleep(args.every_s)
        minute = (time.monotonic() - began) / 60
        rss = {name: h.memory_info().rss / MIB for name, h in handles.items()}
        started = json.loads((args.work / "on" / "status.json").read_text())["threads_started"]
        rows.append(
            {"minute": minute, **rss, "added": rss["on"] - rss["off"], "threads_started": started}
        )
        added = rss["on"] - rss["off"]
        print(f"minute {minute:.1f}: {added:+.1f} MiB", file=sys.stderr, flush=True)
        if minute >= args.minutes:
            return rows


if __name__ == "__main__":
    main()
