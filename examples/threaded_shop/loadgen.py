"""A bounded load driver for the threaded shop.

    python loadgen.py http://127.0.0.1:PORT [--requests 300] [--threads 4] [--time-limit 20]

Sends a fixed number of requests from a few client threads in a fixed mix (order
lookups, checkouts, reports, price lookups), stops at the time limit whatever happens,
and prints one summary line. Exits 1 if any request failed or was not sent. Only talks to
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shop import seed
from shop.reports import REPORT_KINDS

# One slot per request, repeated: half reads, a fifth checkouts, a fifth reports.
MIX = (
    "order",
    "checkout",
    "order",
    "report",
    "product",
    "order",
    "checkout",
    "order",
    "report",
    "order",
)


@dataclass
class Results:
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


def build_request(base: str, kind: str, rng: random.Random) -> urllib.request.Request:
    if kind == "order":
        return urllib.request.Request(f"{base}/orders/{rng.randint(1, seed.ORDERS)}")
    if kind == "product":
        return urllib.request.Request(f"{base}/products/{rng.randint(1, seed.PRODUCTS)}")
    if kind == "report":
        return urllib.request.Request(f"{base}/reports/{rng.choice(REPORT_KINDS)}")
    body = {
        "customer_id": rng.randint(1, seed.CUSTOMERS),
        "currency": rng.choice(seed.CURRENCIES),
        "items": [
            {"product_id": rng.randint(1, seed.PRODUCTS), "qty": rng.randint(1, 3)}
            for _ in range(rng.randint(1, 4))
        ],
    }
    return urllib.request.Request(
        f"{base}/checkout",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


def worker(
    base: str, numbers: range, deadline: float, results: Results, rng: random.Random
) -> None:
    for number in numbers:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with results.lock:
                results.unsent += 1
            continue
        req = build_request(base, MIX[number % len(MIX)], rng)
        start = time.perf_counter()
        error = None
        try:
            with urllib.request.urlopen(req, timeout=min(5.0, remaining)) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            error = f"{req.get_method()} {req.selector}: HTTP {exc.code}"
        except OSError as exc:
            error = f"{req.get_method()} {req.selector}: {exc}"
        results.add((time.perf_counter() - start) * 1000, error)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the shop's base URL, http://127.0.0.1:PORT")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds, hard limit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        parser.error("the target must be http://127.0.0.1:PORT")
    if args.requests < 1 or args.threads < 1 or args.time_limit <= 0:
        parser.error("--requests, --threads and --time-limit must be positive")
    base = args.url.rstrip("/")

    results = Results()
    started = time.monotonic()
    deadline = started + args.time_limit
    threads = [
        threading.Thread(
            target=worker,
            args=(
                base,
                range(t, args.requests, args.threads),
                deadline,
                results,
                random.Random(args.seed * 1000 + t),
            ),
            name=f"client-{t}",
            daemon=True,
        )
        for t in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request's timeout is capped by the deadline; the grace covers the last one.
        thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
    elapsed = time.monotonic() - started

    with results.lock:
        latencies = sorted(results.latencies_ms)
        done, errors, unsent = len(latencies), results.errors, results.unsent
        first_error = results.first_error
    unsent = max(unsent, args.requests - done)
    print(
        f"loadgen: requests={done} errors={errors} unsent={unsent} "
        f"p50={percentile(latencies, 50):.1f}ms p99={percentile(latencies, 99):.1f}ms "
        f"elapsed={elapsed:.1f}s",
        flush=True,
    )
    if first_error:
        print(f"loadgen: first error: {first_error}", file=sys.stderr)
    return 1 if errors or unsent else 0


if __name__ == "__main__":
    sys.exit(main())
