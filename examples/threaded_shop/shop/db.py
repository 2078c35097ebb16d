"""SQLite access: every query the shop runs.

The werkzeug request threads, the executor pools and the background threads all reach
the database, each through its own connection (``_support.db.connection``). WAL mode
plus a busy timeout lets their writes queue up instead of failing with "database is
locked".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from _support import db as shared
from _support.db import connection

REPORT_QUERIES: Mapping[str, str] = {
    "revenue-by-month": """
        SELECT substr(o.created_at, 1, 7) AS month, o.currency,
               COUNT(DISTINCT o.id), SUM(i.qty), SUM(i.qty * i.unit_price_cents)
        FROM orders o JOIN order_items i ON i.order_id = o.id
        WHERE o.status != 'refunded'
        GROUP BY month, o.currency ORDER BY month, o.currency
    """,
    "top-products": """
        SELECT p.sku, p.name, p.category, SUM(i.qty), SUM(i.qty * i.unit_price_cents),
               COUNT(DISTINCT i.order_id)
        FROM order_items i JOIN products p ON p.id = i.product_id
        GROUP BY p.id ORDER BY SUM(i.qty * i.unit_price_cents) DESC
    """,
    "customers": """
        SELECT c.name, c.country, COUNT(DISTINCT o.id), SUM(i.qty * i.unit_price_cents),
               MAX(o.created_at)
        FROM customers c JOIN orders o ON o.customer_id = c.id
        JOIN order_items i ON i.order_id = o.id
        GROUP BY c.id ORDER BY SUM(i.qty * i.unit_price_cents) DESC
    """,
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def load_order(db_path: str, order_id: int) -> dict[str, Any] | None:
    """An order with its items, the customer's history and "bought together" products."""
    return shared.load_order(db_path, order_id, ("currency", "total_cents"))


def create_order(
    db_path: str, customer_id: int, currency: str, lines: Iterable[tuple[int, int, int]]
) -> int:
    """Insert a paid order; ``lines`` are (product_id, qty, unit_price_cents)."""
    lines = list(lines)
    total = sum(qty * price for _, qty, price in lines)
    conn = connection(db_path)
    with conn:
        cur = conn.execute(
            "INSERT INTO orders (customer_id, created_at, status, currency, total_cents) "
            "VALUES (?, ?, 'paid', ?, ?)",
            (customer_id, now(), currency, total),
        )
        order_id = cur.lastrowid
        assert order_id is not None
        conn.executemany(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price_cents) "
            "VALUES (?, ?, ?, ?)",
            [(order_id, product_id, qty, price) for product_id, qty, price in lines],
        )
    return order_id


def base_prices(db_path: str) -> dict[int, int]:
    """Catalogue prices in EUR cents, by product id."""
    rows = connection(db_path).execute("SELECT id, base_price_cents FROM products")
    return dict(rows.fetchall())


def store_prices(
    db_path: str, rates: Mapping[str, float], prices: Mapping[int, Mapping[str, int]]
) -> None:
    """Persist the latest exchange rates and every product's price in every currency."""
    fetched_at = now()
    conn = connection(db_path)
    with conn:
        conn.executemany(
            "INSERT OR REPLACE INTO rates VALUES (?, ?, ?)",
            [(currency, rate, fetched_at) for currency, rate in rates.items()],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO product_prices VALUES (?, ?, ?)",
            [
                (product_id, currency, cents)
                for product_id, by_currency in prices.items()
                for currency, cents in by_currency.items()
            ],
        )


def report_rows(db_path: str, kind: str) -> list[tuple[Any, ...]]:
    """Run the aggregate query behind report ``kind`` (a key of REPORT_QUERIES)."""
    return connection(db_path).execute(REPORT_QUERIES[kind]).fetchall()


def line_values(db_path: str) -> list[tuple[str, int]]:
    """(currency, qty * unit price) of every order line ever sold."""
    return (
        connection(db_path)
        .execute(
            "SELECT o.currency, i.qty * i.unit_price_cents "
            "FROM orders o JOIN order_items i ON i.order_id = o.id"
        )
        .fetchall()
    )


def append_audit_rows(db_path: str, rows: Iterable[tuple[str, str, str, str]]) -> None:
    """Append (at, kind, subject, digest) rows to the audit log in one transaction."""
    conn = connection(db_path)
    with conn:
        conn.executemany(
            "INSERT INTO audit_log (at, kind, subject, digest) VALUES (?, ?, ?, ?)", rows
        )
