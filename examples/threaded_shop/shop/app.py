"""The Flask application: request handlers for orders, checkout, prices and reports.

Every handler body runs under the server span that FlaskInstrumentor opens for the
request, so the work done directly in them (``shop.db:load_order``, the payment call) is
spanned. What they hand to other threads is another matter: see ``shop.reports`` and
``shop.receipts``.
"""

from __future__ import annotations

import contextvars
from typing import Any

import requests
from flask import Blueprint, Flask, abort, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from shop import db
from shop.receipts import send_receipt
from shop.reports import REPORT_KINDS, build_report
from shop.services import Services
from shop.upstream_client import PaymentDeclined, authorize_payment

REPORT_TIMEOUT_S = 10.0

bp = Blueprint("shop", __name__)


def create_app(services: Services) -> Flask:
    app = Flask("shop")
    app.extensions["shop"] = services
    app.register_blueprint(bp)
    return app


def _services() -> Services:
    services: Services = current_app.extensions["shop"]
    return services


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return {"ok": True}


@bp.get("/products/<int:product_id>")
def get_product_prices(product_id: int) -> ResponseReturnValue:
    snapshot = _services().prices.current()
    prices = snapshot.prices.get(product_id)
    if prices is None:
        abort(404)
    return {"product_id": product_id, "prices_cents": prices, "index": snapshot.index}


@bp.get("/orders/<int:order_id>")
def get_order(order_id: int) -> ResponseReturnValue:
    services = _services()
    order = db.load_order(services.db_path, order_id)
    if order is None:
        abort(404)
    services.audit.record("order.viewed", f"order:{order_id}")
    return jsonify(order)


@bp.post("/checkout")
def checkout() -> ResponseReturnValue:
    services = _services()
    body: dict[str, Any] = request.get_json(force=True, silent=True) or {}
    try:
        customer_id = int(body["customer_id"])
        currency = str(body["currency"])
        wanted = [(int(item["product_id"]), int(item["qty"])) for item in body["items"]]
    except (KeyError, TypeError, ValueError):
        abort(400)
    lines = []
    for product_id, qty in wanted:
        price = services.prices.price(product_id, currency)
        if price is None or qty <= 0:
            abort(400)
        lines.append((product_id, qty, price))
    total = sum(qty * price for _, qty, price in lines)

    try:
        payment = authorize_payment(services.upstream, customer_id, total, currency)
    except PaymentDeclined:
        return {"error": "payment declined"}, 402
    except requests.RequestException:
        return {"error": "payment service unavailable"}, 502
    order_id = db.create_order(services.db_path, customer_id, currency, lines)
    services.audit.record("order.created", f"order:{order_id}")
    # The receipt job carries this request's context, so it runs under the request span.
    services.receipt_pool.submit(
        contextvars.copy_context().run,
        send_receipt,
        services.db_path,
        services.upstream,
        order_id,
    )
    return {
        "order_id": order_id,
        "total_cents": total,
        "currency": currency,
        "payment_id": payment.get("payment_id"),
    }


@bp.get("/reports/<kind>")
def get_report(kind: str) -> ResponseReturnValue:
    if kind not in REPORT_KINDS:
        abort(404)
    services = _services()
    # Submitted without its context: build_report runs with no span on the pool thread.
    future = services.report_pool.submit(build_report, services.db_path, kind)
    text = future.result(timeout=REPORT_TIMEOUT_S)
    return text, 200, {"Content-Type": "text/plain; charset=utf-8"}
