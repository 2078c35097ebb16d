"""A bounded load driver for the async shop.

    python loadgen.py http://127.0.0.1:PORT [--requests 300] [--concurrency 8] [--time-limit 20]

Sends a fixed number of requests from a few concurrent asyncio clients (httpx) in a fixed
mix (order lookups, invoices, shipping quotes, stock reports, searches, ship requests),
stops at the time limit whatever happens, and prints one summary line. Exits 1 if any
request failed or was not sent. Only talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.loadgen import Results, parse_args, summarize
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], "concurrency", 8, argv)
    started = time.monotonic()
    results = asyncio.run(run(args.url, args.requests, args.clients, args.time_limit, args.seed))
    return summarize(results, args.requests, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
