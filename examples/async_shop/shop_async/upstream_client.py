"""Calls from request handlers to the upstream shipping service, with httpx.AsyncClient.

httpx is not instrumented in this process (see ``shop_async.catalog`` for why), so these
calls get no client span of their own. They still run inside the handler's coroutine, in
the request's task, under the server span that the ASGI instrumentation opened: spanned
work, although the trace does not break it down.
"""

from __future__ import annotations

from typing import Any

import httpx


async def fetch_shipping_options(
    client: httpx.AsyncClient, upstream: str, country: str, weight_g: int
) -> list[dict[str, Any]]:
    """Every carrier's price (cents) and delivery time (days) for one parcel."""
    response = await client.get(
        f"{upstream}/shipping", params={"country": country, "weight_g": weight_g}
    )
    response.raise_for_status()
    options: list[dict[str, Any]] = response.json()["options"]
    return options


def best_options(options: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The cheapest and the fastest option (ties broken by the other criterion)."""
    return {
        "cheapest": min(options, key=lambda o: (o["cents"], o["days"])),
        "fastest": min(options, key=lambda o: (o["days"], o["cents"])),
    }
