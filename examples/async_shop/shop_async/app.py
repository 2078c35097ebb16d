"""The FastAPI application: its endpoints, and the lifespan that starts the background task.

The ASGI instrumentation (``FastAPIInstrumentor``, applied by ``run_async_shop.py``) opens
a server span around every HTTP request and makes it current in the request's task, so
whatever a handler awaits runs under it. Whether work a handler hands elsewhere is spanned
depends on how it is handed over:

=============================  =================================  =======================
endpoint                       hand-over                          the request's span
=============================  =================================  =======================
GET /products/{id}/shipping    none: awaits httpx in the task     current
GET /orders/{id}               ``def`` handler: Starlette's pool  current (anyio copies
                               (anyio ``to_thread.run_sync``)     the context)
GET /reports/stock             ``asyncio.to_thread``              current (copied)
GET /orders/{id}/invoice       ``loop.run_in_executor(pool, …)``  lost
POST /orders/{id}/ship         ``threading.Thread(…).start()``    lost
=============================  =================================  =======================

The catalogue refresh task, started by the lifespan before any request, has no span at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from shop_async import db, seed
from shop_async.catalog import CatalogStore, refresh_catalog_forever
from shop_async.jobs import INVOICE_POOL, render_invoice
from shop_async.reports import build_stock_report
from shop_async.upstream_client import best_options, fetch_shipping_options
from shop_async.webhooks import send_webhook

CATALOG_READY_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 2.0

router = APIRouter()


@dataclass(frozen=True)
class Settings:
    """What the shop is started with (``run_async_shop.py`` fills it from its arguments)."""

    db_path: str
    upstream: str
    refresh_interval: float = 0.3


@dataclass
class Shop:
    """What the handlers share; built by the lifespan and kept on ``app.state.shop``."""

    db_path: str
    upstream: str
    http: httpx.AsyncClient
    catalog: CatalogStore


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="async shop", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the catalogue refresh task and wait for the first catalogue; stop it all after."""
    settings: Settings = app.state.settings
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
        catalog = CatalogStore()
        # Started outside any request: the task's context has no span, and never will.
        refresher = asyncio.create_task(
            refresh_catalog_forever(http, settings.upstream, catalog, settings.refresh_interval),
            name="catalog-refresher",
        )
        try:
            if not await catalog.wait_ready(CATALOG_READY_TIMEOUT_S):
                raise RuntimeError("no catalogue from the upstream service; is it running?")
            app.state.shop = Shop(settings.db_path, settings.upstream, http, catalog)
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            INVOICE_POOL.shutdown(wait=True)


def _shop(request: Request) -> Shop:
    shop: Shop = request.app.state.shop
    return shop


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/search")
async def search(request: Request, q: str = Query(min_length=1)) -> dict[str, Any]:
    """Type-ahead search in the catalogue's in-memory index (fast, in the request's task)."""
    catalog = _shop(request).catalog.current()
    hits = catalog.search(q)
    return {"version": catalog.version, "hits": [{"id": p.id, "name": p.name} for p in hits]}


@router.get("/products/{product_id}/shipping")
async def shipping_quote(
    request: Request, product_id: int, country: str = "DE", qty: int = Query(1, ge=1, le=50)
) -> dict[str, Any]:
    """Spanned: the upstream call is awaited in the request's own task, under its span."""
    shop = _shop(request)
    product = shop.catalog.current().products.get(product_id)
    if product is None:
        raise HTTPException(404, "no such product")
    try:
        options = await fetch_shipping_options(
            shop.http, shop.upstream, country, product.weight_g * qty
        )
    except httpx.HTTPError as exc:
        raise HTTPException(502, "shipping service unavailable") from exc
    return {
        "product_id": product_id,
        "qty": qty,
        "in_stock": product.stock >= qty,
        **best_options(options),
    }


@router.get("/orders/{order_id}")
def get_order(request: Request, order_id: int) -> dict[str, Any]:
    """Spanned: a ``def`` handler runs on Starlette's thread pool in a copy of the context."""
    order = db.load_order(_shop(request).db_path, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return order


@router.get("/reports/stock")
async def stock_report(request: Request) -> dict[str, Any]:
    """Spanned: ``asyncio.to_thread`` runs the report in a copy of the request's context."""
    return await asyncio.to_thread(build_stock_report, _shop(request).db_path)


@router.get("/orders/{order_id}/invoice", response_class=PlainTextResponse)
async def get_invoice(request: Request, order_id: int) -> str:
    """Context lost: ``run_in_executor`` does not take the request's context to the pool."""
    loop = asyncio.get_running_loop()
    text = await loop.run_in_executor(
        INVOICE_POOL, render_invoice, _shop(request).db_path, order_id, seed.CUSTOMERS
    )
    if text is None:
        raise HTTPException(404, "no such order")
    return text


@router.post("/orders/{order_id}/ship", status_code=202)
async def ship_order(request: Request, order_id: int) -> dict[str, Any]:
    """Context lost: the webhook goes out on a new thread, which starts with no context.

    Fire and forget: the customer gets the answer without waiting for the merchant's
    system. The thread is not a daemon, so the interpreter waits for webhooks still in
    flight when the shop stops.
    """
    event = {"type": "order.ship_requested", "order_id": order_id}
    threading.Thread(
        target=send_webhook, args=(_shop(request).upstream, event), name=f"webhook-{order_id}"
    ).start()
    return {"order_id": order_id, "status": "shipping requested"}
