"""Run the async shop under spangap, put load on it, and show what the traces miss.

    python examples/async_shop/demo.py [--requests 300] [--snapshot PATH]

1. starts upstream.py, the fake catalogue / shipping / webhook service;
2. starts ``gapreport run run_async_shop.py`` (``python -m spangap.cli run``), whose stderr,
   where the report is printed, goes straight to this terminal;
3. runs loadgen.py against the shop;
4. interrupts the shop with SIGINT, which makes it shut down and gapreport print the top
   dark call sites and write the snapshot.

Exits with the shop's exit code. The whole run takes well under 30 seconds.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 15.0
LOAD_TIME_LIMIT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
CONCURRENCY = 8


def start(name: str, cmd: Sequence[str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd`` and wait for its ``listening on URL`` line; return the process and URL.

    The child gets its own session so that a Ctrl-C in this terminal reaches only the
    demo, which then stops the children in order. Its stdout is echoed, line by line.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        cmd, cwd=HERE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
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
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
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
    raise RuntimeError(f"{name} did not start listening in {STARTUP_TIMEOUT_S:.0f} s")


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


def run_load(shop_url: str, requests: int) -> None:
    cmd = [sys.executable, "loadgen.py", shop_url, "--requests", str(requests)]
    cmd += ["--concurrency", str(CONCURRENCY)]
    cmd += ["--time-limit", str(LOAD_TIME_LIMIT_S)]
    try:
        load = subprocess.run(cmd, cwd=HERE, timeout=LOAD_TIME_LIMIT_S + 5)
    except subprocess.TimeoutExpired:
        print("loadgen did not finish in time", file=sys.stderr)
        return
    if load.returncode != 0:
        print("loadgen reported failed or unsent requests", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests to send")
    parser.add_argument(
        "--snapshot",
        type=Path,
        default=Path("spangap-async-shop.json"),
        help="where gapreport writes the snapshot (default: ./spangap-async-shop.json)",
    )
    # Runs the shop with plain python, without the detector: checks the example itself.
    parser.add_argument("--no-detector", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    snapshot = args.snapshot.resolve()

    shop_cmd = [sys.executable, "run_async_shop.py", "--port", "0"]
    if not args.no_detector:
        shop_cmd[1:1] = ["-m", "spangap.cli", "run", "--snapshot", str(snapshot)]

    try:
        upstream, upstream_url = start("upstream", [sys.executable, "upstream.py", "--port", "0"])
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    shop: subprocess.Popen[str] | None = None
    try:
        shop, shop_url = start("shop", [*shop_cmd, "--upstream", upstream_url])
        run_load(shop_url, args.requests)
        code = stop(shop)
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


if __name__ == "__main__":
    sys.exit(main())
