"""A bounded load driver for the threaded shop.

    python loadgen.py http://127.0.0.1:PORT [--requests 300] [--threads 4] [--time-limit 20]

Sends a fixed number of requests from a few client threads in a fixed mix (order
lookups, checkouts, reports, price lookups), stops at the time limit whatever happens,
and prints one summary line. Exits 1 if any request failed or was not sent. Only talks to
127.0.0.1.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.loadgen import Results, parse_args, summarize
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
            results.skip()
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], "threads", 4, argv)
    results = Results()
    started = time.monotonic()
    deadline = started + args.time_limit
    threads = [
        threading.Thread(
            target=worker,
            args=(
                args.url,
                range(t, args.requests, args.clients),
                deadline,
                results,
                random.Random(args.seed * 1000 + t),
            ),
            name=f"client-{t}",
            daemon=True,
        )
        for t in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request's timeout is capped by the deadline; the grace covers the last one.
        thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
    return summarize(results, args.requests, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
