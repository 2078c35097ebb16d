"""Receipts, sent after checkout on a thread pool so the customer does not wait for them.

``POST /checkout`` submits :func:`send_receipt` with the request's context:
``executor.submit(contextvars.copy_context().run, send_receipt, ...)``. The job then runs
under the checkout request's span on the pool thread, so it is spanned work even though
it takes tens of milliseconds; it is the counterpart of the report jobs in
``shop.reports``, which are submitted without their context.
"""

from __future__ import annotations

from typing import Any

from shop import db
from shop.upstream_client import notify_customer


def send_receipt(db_path: str, upstream: str, order_id: int) -> None:
    """Load the order, render its receipt and hand it to the notification service."""
    order = db.load_order(db_path, order_id)
    if order is None:
        return
    notify_customer(
        upstream, order["customer"]["id"], f"Your order #{order_id}", render_receipt(order)
    )


def render_receipt(order: dict[str, Any]) -> str:
    currency = order["currency"]
    lines = [f"Order #{order['id']} for {order['customer']['name']}", ""]
    for item in order["items"]:
        amount = item["qty"] * item["unit_price_cents"] / 100
        lines.append(f"{item['qty']:>3} x {item['name']:<30} {amount:>12,.2f} {currency}")
    lines.append(f"{'total':>36} {order['total_cents'] / 100:>12,.2f} {currency}")
    if order["also_bought"]:
        names = ", ".join(product["name"] for product in order["also_bought"])
        lines += ["", f"Customers who bought this also bought: {names}"]
    return "\n".join(lines)
