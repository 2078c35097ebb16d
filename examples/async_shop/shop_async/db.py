"""SQLite access: every query the shop runs.

This shop reaches the database from three kinds of threads: Starlette's worker threads
(``def`` handlers), the event loop's default executor (``asyncio.to_thread``) and the
invoice pool, each through its own connection (``_support.db.connection``). The database
is only read while the shop serves.
"""

from __future__ import annotations

from typing import Any

from _support import db as shared
from _support.db import ALSO_BOUGHT, connection

# How many customers have spent more than this one: the invoice prints a loyalty tier.
_SPEND_RANK = """
    SELECT COUNT(*) FROM (
        SELECT SUM(i.qty * i.unit_price_cents) AS spent
        FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.customer_id
    )
    WHERE spent > (
        SELECT COALESCE(SUM(i.qty * i.unit_price_cents), 0)
        FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.customer_id = ?
    )
"""

# Units sold per product and week, and the week's revenue, over every order not refunded.
_STOCK_MOVEMENT = """
    SELECT p.id, p.sku, p.category, strftime('%Y-%W', o.created_at) AS week,
           SUM(i.qty), SUM(i.qty * i.unit_price_cents)
    FROM order_items i
    JOIN orders o ON o.id = i.order_id
    JOIN products p ON p.id = i.product_id
    WHERE o.status != 'refunded'
    GROUP BY p.id, week ORDER BY p.id, week
"""


def load_order(db_path: str, order_id: int) -> dict[str, Any] | None:
    """An order with its items, the customer's history and "bought together" products."""
    return shared.load_order(db_path, order_id)


def invoice_data(db_path: str, order_id: int) -> dict[str, Any] | None:
    """What an invoice prints: customer, lines with VAT rates, other orders, suggestions."""
    conn = connection(db_path)
    head = conn.execute(
        "SELECT o.id, o.created_at, c.id, c.name, c.email, c.country "
        "FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?",
        (order_id,),
    ).fetchone()
    if head is None:
        return None
    lines = conn.execute(
        "SELECT p.sku, p.name, p.category, i.qty, i.unit_price_cents, v.rate "
        "FROM order_items i JOIN products p ON p.id = i.product_id "
        "JOIN vat_rates v ON v.country = ? AND v.category = p.category "
        "WHERE i.order_id = ? ORDER BY i.id",
        (head[5], order_id),
    ).fetchall()
    others = conn.execute(
        "SELECT o.id, o.created_at, SUM(i.qty * i.unit_price_cents) "
        "FROM orders o JOIN order_items i ON i.order_id = o.id "
        "WHERE o.customer_id = ? AND o.id != ? GROUP BY o.id ORDER BY o.created_at",
        (head[2], order_id),
    ).fetchall()
    rank = conn.execute(_SPEND_RANK, (head[2],)).fetchone()
    recommended = conn.execute(ALSO_BOUGHT, (order_id,)).fetchall()
    return {
        "order_id": head[0],
        "created_at": head[1],
        "customer": {"id": head[2], "name": head[3], "email": head[4], "country": head[5]},
        "lines": lines,
        "other_orders": others,
        "customers_spending_more": rank[0],
        "recommended": [name for _, name, _ in recommended],
    }


def stock_movement(db_path: str) -> list[tuple[int, str, str, str, int, int]]:
    """(product id, sku, category, week, units, revenue) for every product and week."""
    return connection(db_path).execute(_STOCK_MOVEMENT).fetchall()
