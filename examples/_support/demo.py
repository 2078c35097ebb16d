"""The orchestration behind each example's ``demo.py``.

:func:`main` runs one example end to end:

1. starts the example's ``upstream.py``, its fake upstream service;
2. starts ``gapreport run <run script>`` (``python -m spangap.cli run``), whose stderr,
   where the report is printed, goes straight to this terminal. It is a measurement
   run, so the overhead budget is lifted (``SPANGAP_MAX_OVERHEAD=1``, the README's
   advice for one) unless ``SPANGAP_MAX_OVERHEAD`` is set: at the default 1% a run
   this short would see a fraction of the calls;
3. runs the example's ``loadgen.py`` against the shop;
4. interrupts the shop with SIGINT, which makes it shut down and gapreport print the top
   dark call sites and write the snapshot; then stops the upstream.

Every child runs with the example's directory as its working directory. The whole run
takes well under 30 seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 15.0
LOAD_TIME_LIMIT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Example:
    """What differs from one example to the other."""

    directory: Path  # where upstream.py, loadgen.py and the run script are
    run_script: str  # the shop's entry point, e.g. "run_shop.py"
    snapshot: Path  # default snapshot path, relative to the current directory
    loadgen_args: tuple[str, ...] = ()  # e.g. ("--concurrency", "8")


def start(
    name: str,
    cmd: Sequence[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_S,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd`` (with ``env`` added to this environment) and wait for its
    ``listening on URL`` line; return the process and URL.

    The child gets its own session so that a Ctrl-C in this terminal reaches only the
    demo, which then stops the children in order. Its stdout is echoed, line by line.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    urls: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            print(f"[{name}] {line}", flush=True)
            if line.startswith("listening on "):
                urls.put(line.removeprefix("listening on ").strip())

    threading.Thread(target=pump, name=f"{name}-stdout", daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(queue.Empty):
                return proc, urls.get(timeout=0.1)
    except BaseException:  # Ctrl-C while waiting: do not leave the child behind
        stop(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with code {proc.returncode} before listening")
    stop(proc)
    raise RuntimeError(f"{name} did not start listening in {startup_timeout:.0f} s")


def stop(proc: subprocess.Popen[str], timeout: float = SHUTDOWN_TIMEOUT_S) -> int:
    """SIGINT, then wait; kill if it does not exit in time. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"pid {proc.pid} did not stop in {timeout:.0f} s; killing it", file=sys.stderr)
            proc.kill()
            proc.wait()
    return proc.returncode


def run_load(example: Example, shop_url: str, requests: int) -> None:
    cmd = [sys.executable, "loadgen.py", shop_url, "--requests", str(requests)]
    cmd += ["--time-limit", str(LOAD_TIME_LIMIT_S), *example.loadgen_args]
    try:
        load = subprocess.run(cmd, cwd=example.directory, timeout=LOAD_TIME_LIMIT_S + 5)
    except subprocess.TimeoutExpired:
        print("loadgen did not finish in time", file=sys.stderr)
        return
    if load.returncode != 0:
        print("loadgen reported failed or unsent requests", file=sys.stderr)


def main(example: Example, description: str, argv: Sequence[str] | None = None) -> int:
    """Run ``example`` as described above; returns the shop's exit code."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--requests", type=int, default=300, help="requests to send")
    parser.add_argument(
        "--snapshot",
        type=Path,
        default=example.snapshot,
        help=f"where gapreport writes the snapshot (default: ./{example.snapshot})",
    )
    # Runs the shop with plain python, without the detector: checks the example itself.
    parser.add_argument("--no-detector", action="store_true", help=argparse.SUPPRESS)
    # How long the shop gets to stop after SIGINT before it is killed; benchmarks/soak.py
    # sets it past its own stall timeout, so that a hung shop is examined, not killed.
    parser.add_argument(
        "--shutdown-timeout", type=float, default=SHUTDOWN_TIMEOUT_S, help=argparse.SUPPRESS
    )
    # How long a server gets to start listening; the soak gives more on a loaded machine.
    parser.add_argument(
        "--startup-timeout", type=float, default=STARTUP_TIMEOUT_S, help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    snapshot = args.snapshot.resolve()

    shop_cmd = [sys.executable, example.run_script, "--port", "0"]
    if not args.no_detector:
        shop_cmd[1:1] = ["-m", "spangap.cli", "run", "--snapshot", str(snapshot)]

    upstream_cmd = [sys.executable, "upstream.py", "--port", "0"]
    try:
        upstream, upstream_url = start(
            "upstream", upstream_cmd, example.directory, startup_timeout=args.startup_timeout
        )
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    shop: subprocess.Popen[str] | None = None
    try:
        measurement = {"SPANGAP_MAX_OVERHEAD": os.environ.get("SPANGAP_MAX_OVERHEAD", "1")}
        shop, shop_url = start(
            "shop",
            [*shop_cmd, "--upstream", upstream_url],
            example.directory,
            measurement,
            startup_timeout=args.startup_timeout,
        )
        run_load(example, shop_url, args.requests)
        code = stop(shop, args.shutdown_timeout)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        if shop is not None:
            stop(shop)
        stop(upstream)

    return code
