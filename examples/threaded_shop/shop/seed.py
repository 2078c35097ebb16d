"""Schema and seed data for the shop's SQLite database.

The seed is large enough (tens of thousands of rows) that the shop's queries take real
milliseconds, and deterministic so that runs are comparable. The load driver imports the
sizes below to pick order, product and customer ids that exist.
"""

from __future__ import annotations

import random
import sqlite3

from _support import seed as seeding

CUSTOMERS = 500
PRODUCTS = 200
ORDERS = 5000
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "SEK", "JPY")

# Prices by currency, and the audit trail, on top of the tables both shops have (see
# _support.seed). The missing indexes there make loading an order scan order_items and
# orders: shop.db:load_order costs milliseconds.
_OWN_TABLES = """
CREATE TABLE rates (currency TEXT PRIMARY KEY, rate REAL NOT NULL, fetched_at TEXT NOT NULL);
CREATE TABLE product_prices (
    product_id INTEGER NOT NULL, currency TEXT NOT NULL, price_cents INTEGER NOT NULL,
    PRIMARY KEY (product_id, currency)
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
    digest TEXT NOT NULL
);
"""
SCHEMA = (
    seeding.core_schema(
        price_column="base_price_cents",
        order_columns=("currency TEXT NOT NULL", "total_cents INTEGER NOT NULL"),
    )
    + _OWN_TABLES
)


def create_database(db_path: str, rng_seed: int = 7) -> None:
    """Create the schema and fill it with deterministic sample data."""
    rng = random.Random(rng_seed)
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(SCHEMA)
        seeding.insert_customers(conn, rng, CUSTOMERS)
        base_prices = seeding.insert_products(conn, rng, PRODUCTS)
        items = seeding.order_items(rng, base_prices, ORDERS)
        totals: dict[int, int] = {}
        for order_id, _, qty, price in items:
            totals[order_id] = totals.get(order_id, 0) + qty * price
        # Each order also gets a currency, drawn after its status, and its total.
        orders = seeding.orders(
            rng, ORDERS, CUSTOMERS, lambda order_id: (rng.choice(CURRENCIES), totals[order_id])
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", orders)
        conn.executemany(seeding.INSERT_ORDER_ITEMS, items)
        conn.commit()
    finally:
        conn.close()
