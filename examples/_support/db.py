"""SQLite access both shops share: a connection per thread, and loading an order.

sqlite3 connections must stay on the thread that opened them, and both shops reach the
database from several threads (request threads, executor pools, background threads), so
each thread gets its own connection. A busy timeout lets concurrent writes queue up
instead of failing with "database is locked".

Both schemas have ``customers``, ``products``, ``orders`` and ``order_items`` with the
columns used here (see :mod:`_support.seed`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

_local = threading.local()

# Products that appear in other orders together with this order's products.
ALSO_BOUGHT = """
    SELECT p.sku, p.name, COUNT(*) AS together
    FROM order_items mine
    JOIN order_items peer ON peer.product_id = mine.product_id AND peer.order_id != mine.order_id
    JOIN order_items other
        ON other.order_id = peer.order_id AND other.product_id != mine.product_id
    JOIN products p ON p.id = other.product_id
    WHERE mine.order_id = ?
    GROUP BY other.product_id ORDER BY together DESC LIMIT 5
"""


def connection(db_path: str) -> sqlite3.Connection:
    """Return this thread's connection to ``db_path``, opening it on first use."""
    conns: dict[str, sqlite3.Connection] | None = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(db_path)
    if conn is None:
        conn = conns[db_path] = sqlite3.connect(db_path, timeout=5.0)
        conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def load_order(
    db_path: str, order_id: int, order_columns: Sequence[str] = ()
) -> dict[str, Any] | None:
    """An order with its items, the customer's history and "bought together" products.

    ``order_columns`` are further columns of ``orders`` to include, under their own names.
    Loading an order scans ``order_items`` and ``orders``, which have no index on
    ``order_id`` and ``customer_id``: about 20 ms of SQLite.
    """
    conn = connection(db_path)
    extra = "".join(f", o.{column}" for column in order_columns)
    row = conn.execute(
        f"SELECT o.id, o.customer_id, c.name, o.created_at, o.status{extra} "
        "FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        return None
    items = conn.execute(
        "SELECT p.sku, p.name, i.qty, i.unit_price_cents FROM order_items i "
        "JOIN products p ON p.id = i.product_id WHERE i.order_id = ? ORDER BY i.id",
        (order_id,),
    ).fetchall()
    history = conn.execute(
        "SELECT COUNT(DISTINCT o.id), COALESCE(SUM(i.qty * i.unit_price_cents), 0) "
        "FROM orders o JOIN order_items i ON i.order_id = o.id WHERE o.customer_id = ?",
        (row[1],),
    ).fetchone()
    also_bought = conn.execute(ALSO_BOUGHT, (order_id,)).fetchall()
    return {
        "id": row[0],
        "customer": {"id": row[1], "name": row[2]},
        "created_at": row[3],
        "status": row[4],
        **dict(zip(order_columns, row[5:], strict=True)),
        "items": [
            {"sku": sku, "name": name, "qty": qty, "unit_price_cents": price}
            for sku, name, qty, price in items
        ],
        "customer_history": {"orders": history[0], "spent_cents": history[1]},
        "also_bought": [{"sku": sku, "name": name} for sku, name, _ in also_bought],
    }
