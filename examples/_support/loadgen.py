"""What both load drivers share: their arguments, their results and their summary line.

Each example's ``loadgen.py`` sends its own mix of requests, with its own kind of client
(threads or asyncio tasks), and reports through :class:`Results` and :func:`summarize`.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def parse_args(
    description: str, clients: str, default_clients: int, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """``url --requests --<clients> --time-limit --seed``, checked; ``url`` loses its slash.

    ``clients`` names the option for the number of concurrent clients ("threads",
    "concurrency"); its value is in ``args.clients``.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("url", help="the shop's base URL, http://127.0.0.1:PORT")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        f"--{clients}", dest="clients", metavar=clients.upper(), type=int, default=default_clients
    )
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds, hard limit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        parser.error("the target must be http://127.0.0.1:PORT")
    if args.requests < 1 or args.clients < 1 or args.time_limit <= 0:
        parser.error(f"--requests, --{clients} and --time-limit must be positive")
    args.url = args.url.rstrip("/")
    return args


@dataclass
class Results:
    """Latencies and errors; safe to add to from several threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    unsent: int = 0
    first_error: str | None = None

    def add(self, latency_ms: float, error: str | None) -> None:
        with self.lock:
            self.latencies_ms.append(latency_ms)
            if error is not None:
                self.errors += 1
                self.first_error = self.first_error or error

    def skip(self) -> None:
        """Count a request not sent because the time limit had passed."""
        with self.lock:
            self.unsent += 1


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(results: Results, requests: int, elapsed: float) -> int:
    """Print the summary line; return 1 if any request failed or was not sent, else 0.

    A request counts as unsent if it was skipped or never finished (abandoned at the time
    limit).
    """
    with results.lock:
        latencies = sorted(results.latencies_ms)
        done, errors, unsent = len(latencies), results.errors, results.unsent
        first_error = results.first_error
    unsent = max(unsent, requests - done)
    print(
        f"loadgen: requests={done} errors={errors} unsent={unsent} "
        f"p50={percentile(latencies, 50):.1f}ms p99={percentile(latencies, 99):.1f}ms "
        f"elapsed={elapsed:.1f}s",
        flush=True,
    )
    if first_error:
        print(f"loadgen: first error: {first_error}", file=sys.stderr)
    return 1 if errors or unsent else 0
