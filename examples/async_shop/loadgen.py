"""A bounded load driver for the async shop.

    python loadgen.py http://127.0.0.1:PORT [--requests 300] [--concurrency 8] [--time-limit 20]

Sends a fixed number of requests from a few concurrent asyncio clients (httpx) in a fixed
mix (order lookups, invoices, shipping quotes, stock reports, searches, ship requests),
stops at the time limit whatever happens, and prints one summary line. Exits 1 if any
request failed or was not sent. Only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from shop_async import seed

# One slot per request, repeated: a fifth invoices, a tenth ship requests (webhooks).
MIX = (
    "order",
    "invoice",
    "shipping",
    "report",
    "order",
    "ship",
    "invoice",
    "shipping",
    "search",
    "order",
)
SEARCHES = ("wireless", "lamp", "tent", "rugged kettle", "easy clean", "warranty", "spea")


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def add(self, latency_ms: float, error: str | None) -> None:
        self.latencies_ms.append(latency_ms)
        if error is not None:
            self.errors += 1
            self.first_error = self.first_error or error


def build_request(client: httpx.AsyncClient, kind: str, rng: random.Random) -> httpx.Request:
    order_id = rng.randint(1, seed.ORDERS)
    if kind == "order":
        return client.build_request("GET", f"/orders/{order_id}")
    if kind == "invoice":
        return client.build_request("GET", f"/orders/{order_id}/invoice")
    if kind == "ship":
        return client.build_request("POST", f"/orders/{order_id}/ship")
    if kind == "report":
        return client.build_request("GET", "/reports/stock")
    if kind == "search":
        return client.build_request("GET", "/search", params={"q": rng.choice(SEARCHES)})
    return client.build_request(
        "GET",
        f"/products/{rng.randint(1, seed.PRODUCTS)}/shipping",
        params={"country": rng.choice(seed.COUNTRIES), "qty": rng.randint(1, 4)},
    )


async def client_loop(
    client: httpx.AsyncClient, numbers: range, results: Results, rng: random.Random
) -> None:
    for number in numbers:
        request = build_request(client, MIX[number % len(MIX)], rng)
        start = time.perf_counter()
        error = None
        try:
            response = await client.send(request)
            if response.is_error:
                error = f"{request.method} {request.url.path}: HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{request.method} {request.url.path}: {exc!r}"
        results.add((time.perf_counter() - start) * 1000, error)


async def run(base: str, requests: int, concurrency: int, time_limit: float, seed_: int) -> Results:
    """Send the requests; whatever is still running at the time limit is abandoned."""
    results = Results()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=5.0, limits=limits) as client:
        clients = [
            asyncio.create_task(
                client_loop(
                    client,
                    range(c, requests, concurrency),
                    results,
                    random.Random(seed_ * 1000 + c),
                )
            )
            for c in range(concurrency)
        ]
        _, pending = await asyncio.wait(clients, timeout=time_limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return results


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
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=20.0, help="seconds, hard limit")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        parser.error("the target must be http://127.0.0.1:PORT")
    if args.requests < 1 or args.concurrency < 1 or args.time_limit <= 0:
        parser.error("--requests, --concurrency and --time-limit must be positive")

    started = time.monotonic()
    results = asyncio.run(
        run(args.url.rstrip("/"), args.requests, args.concurrency, args.time_limit, args.seed)
    )
    elapsed = time.monotonic() - started

    latencies = sorted(results.latencies_ms)
    done, errors = len(latencies), results.errors
    unsent = args.requests - done
    print(
        f"loadgen: requests={done} errors={errors} unsent={unsent} "
        f"p50={percentile(latencies, 50):.1f}ms p99={percentile(latencies, 99):.1f}ms "
        f"elapsed={elapsed:.1f}s",
        flush=True,
    )
    if results.first_error:
        print(f"loadgen: first error: {results.first_error}", file=sys.stderr)
    return 1 if errors or unsent else 0


if __name__ == "__main__":
    sys.exit(main())
