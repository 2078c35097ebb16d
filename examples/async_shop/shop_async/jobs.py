"""Invoice rendering, handed to a thread pool so that SQLite does not block the event loop.

``GET /orders/{id}/invoice`` runs :func:`render_invoice` with
``await loop.run_in_executor(INVOICE_POOL, render_invoice, ...)``. Unlike
``asyncio.to_thread``, ``run_in_executor`` does not copy the caller's context into the
job, so the pool thread runs it in an empty context: the request's span stays behind on
the event loop, and the 25 ms or so of queries and formatting run with no span. This is
the lost-context gap (spangap's ``cause="context_lost"``); the trace shows only a
``GET /orders/{order_id}/invoice`` span with nothing under it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_HALF_EVEN, Decimal

from shop_async import db

#: Module-level, as such pools usually are; shut down by the application's lifespan.
INVOICE_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="invoices")

_CENT = Decimal("0.01")
_TIERS = ((0.05, "gold"), (0.25, "silver"), (1.0, "bronze"))


def render_invoice(db_path: str, order_id: int, customers: int) -> str | None:
    """The invoice for ``order_id`` as plain text, or None if there is no such order."""
    data = db.invoice_data(db_path, order_id)
    if data is None:
        return None
    customer = data["customer"]
    lines = [
        f"INVOICE {data['order_id']:08d}    {data['created_at'][:10]}",
        f"{customer['name']} <{customer['email']}>, {customer['country']}",
        "",
    ]
    net_total = vat_total = Decimal(0)
    for sku, name, category, qty, unit_cents, rate in data["lines"]:
        net = (Decimal(unit_cents) * qty / 100).quantize(_CENT)
        vat = (net * Decimal(str(rate))).quantize(_CENT, rounding=ROUND_HALF_EVEN)
        net_total += net
        vat_total += vat
        lines.append(f"{sku}  {name:<24} {category:<8} {qty:>3} {net:>10} +{rate:>5.0%} {vat:>8}")
    lines += [
        f"{'net':>52} {net_total:>10}",
        f"{'VAT':>52} {vat_total:>10}",
        f"{'total':>52} {net_total + vat_total:>10}",
        "",
        f"Loyalty tier: {loyalty_tier(data['customers_spending_more'], customers)}; "
        f"{len(data['other_orders'])} other orders on file.",
    ]
    if data["recommended"]:
        lines.append("You may also like: " + ", ".join(data["recommended"]))
    return "\n".join(lines)


def loyalty_tier(customers_spending_more: int, customers: int) -> str:
    share = customers_spending_more / max(customers, 1)
    return next(tier for limit, tier in _TIERS if share <= limit)
