"""Soak: both examples, round after round, under CPU hogs, with the load generator stopped
and continued at random moments. Counts crashes and stalls and keeps the evidence.

    python benchmarks/soak.py --rounds 300 --hogs 4 --out soak-out

Each round runs ``examples/threaded_shop/demo.py`` and ``examples/async_shop/demo.py``
(the shop under ``gapreport run``, its upstream, its load generator) with
``PYTHONFAULTHANDLER=1``. A run is

- a **crash** when the shop died of a signal or printed "Fatal Python error"; its log,
  with the faulthandler's stacks, is kept in ``--out``;
- a **stall** when it has not finished after ``--stall-s``; every process of the run is
  then examined (``py-spy dump --native``, or gdb's ``thread apply all bt`` where py-spy
  is missing) into ``--out`` before it is killed;
- **failed** when it exited non-zero otherwise (the shop did not start, say).

The last line printed is a JSON summary; the exit code is 1 if any run crashed, stalled
or failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "threaded": ROOT / "examples" / "threaded_shop" / "demo.py",
    "async": ROOT / "examples" / "async_shop" / "demo.py",
}
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


@dataclass
class Tally:
    runs: int = 0
    crashes: list[str] = field(default_factory=list)
    stalls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def start_hogs(count: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def tree(pid: int) -> list[psutil.Process]:
    """The process and everything under it (children start sessions of their own)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def disturb_loadgen(pid: int, done: threading.Event, rng: random.Random) -> None:
    """SIGSTOP the run's load generator for 50-500 ms, now and then, while it runs."""
    while not done.wait(rng.uniform(0.5, 2.0)):
        for proc in tree(pid):
            try:
                if any("loadgen.py" in part for part in proc.cmdline()):
                    proc.send_signal(signal.SIGSTOP)
                    time.sleep(rng.uniform(0.05, 0.5))
                    proc.send_signal(signal.SIGCONT)
            except psutil.Error:
                continue


def dump_stacks(procs: list[psutil.Process], out: Path) -> None:
    """Every thread's Python and native stack, for each process, into ``out``."""
    with out.open("w") as sink:
        for proc in procs:
            try:
                cmdline = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            sink.write(f"===== pid {proc.pid}: {cmdline}\n")
            sink.flush()
            if shutil.which("py-spy"):
                cmd = ["py-spy", "dump", "--native", "--pid", str(proc.pid)]
            else:
                cmd = ["gdb", "-p", str(proc.pid), "-batch", "-ex", "thread apply all bt"]
            try:
                subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                sink.write(f"could not examine it: {exc}\n")


def crashed(code: int, log: str) -> bool:
    died_of = -code if code < 0 else 256 - code if code > 128 else 0
    return "Fatal Python error" in log or died_of in {int(s) for s in CRASH_SIGNALS}


def run_once(name: str, label: str, args: argparse.Namespace, tally: Tally) -> None:
    out: Path = args.out
    log_path = out / f"{label}.log"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            str(EXAMPLES[name]),
            "--requests",
            str(args.requests),
            "--snapshot",
            str(Path(tmp) / "snapshot.json"),
            "--shutdown-timeout",
            str(args.stall_s * 2),
            "--startup-timeout",
            str(args.stall_s / 2),
        ]
        env = dict(os.environ, PYTHONFAULTHANDLER="1")
        start = time.monotonic()
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            done = threading.Event()
            rng = random.Random(label)
            disturber = threading.Thread(target=disturb_loadgen, args=(proc.pid, done, rng))
            if args.stop_loadgen:
                disturber.start()
            try:
                code = proc.wait(args.stall_s)
            except subprocess.TimeoutExpired:
                procs = tree(proc.pid)
                dump_stacks(procs, out / f"{label}-stall.txt")
                for each in procs:
                    each.kill()
                proc.wait()
                code = None
            finally:
                done.set()
                if disturber.is_alive():
                    disturber.join()
        tally.runs += 1
        tally.seconds.append(time.monotonic() - start)
    text = log_path.read_text(errors="replace")
    if code is None:
        tally.stalls.append(label)
    elif crashed(code, text):
        tally.crashes.append(label)
    elif code != 0:
        tally.failed.append(label)
    else:
        log_path.unlink()  # nothing to keep
        return
    print(f"{label}: {'stall' if code is None else f'exit {code}'} (see {log_path})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=4, help="CPU-bound processes beside")
    parser.add_argument("--examples", default="threaded,async")
    parser.add_argument("--requests", type=int, default=300, help="per run (demo default)")
    parser.add_argument("--stall-s", type=float, default=120.0, help="a run longer is a stall")
    parser.add_argument("--no-stop-loadgen", dest="stop_loadgen", action="store_false")
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    args = parser.parse_args(argv)
    names = [n for n in args.examples.split(",") if n]
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown or args.rounds < 1 or args.hogs < 0:
        parser.error(f"--examples takes {', '.join(EXAMPLES)}; --rounds >= 1; --hogs >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    tallies = {name: Tally() for name in names}
    hogs = start_hogs(args.hogs)
    began = time.monotonic()
    rounds_done = 0
    try:
        for round_no in range(1, args.rounds + 1):
            for name in names:
                run_once(name, f"{name}-{round_no:04d}", args, tallies[name])
            rounds_done = round_no
            progress = summarise(args, tallies, rounds_done, began)
            (args.out / "progress.json").write_text(json.dumps(progress) + "\n")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    summary = summarise(args, tallies, rounds_done, began)
    bad = sum(len(t.crashes) + len(t.stalls) + len(t.failed) for t in tallies.values())
    print(json.dumps(summary))
    return 1 if bad else 0


def summarise(
    args: argparse.Namespace, tallies: dict[str, Tally], rounds_done: int, began: float
) -> dict[str, object]:
    """The JSON summary, also written to ``progress.json`` after every round."""
    return {
        "python": sys.version.split()[0],
        "rounds": rounds_done,
        "hogs": args.hogs,
        "stop_loadgen": args.stop_loadgen,
        "minutes": round((time.monotonic() - began) / 60, 1),
        "examples": {
            name: {
                "runs": t.runs,
                "crashes": len(t.crashes),
                "stalls": len(t.stalls),
                "failed": len(t.failed),
                "median_s": round(sorted(t.seconds)[len(t.seconds) // 2], 1) if t.seconds else None,
            }
            for name, t in tallies.items()
        },
    }


if __name__ == "__main__":
    sys.exit(main())
