"""Seeding helpers both shops' ``create_database`` use.

Both schemas start from the same four tables, each with the columns below first (a shop
may add its own after them):

    customers   (id, name, email, country)
    products    (id, sku, name, category, price in cents)
    orders      (id, customer_id, created_at, status, ...)
    order_items (id, order_id, product_id, qty, unit_price_cents)

The rows are drawn from the random generator the caller passes, in the order the caller
asks for them, so that a given seed always gives the same database.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

COUNTRIES = ("DE", "FR", "GB", "CH", "SE", "US", "JP", "NL")
CATEGORIES = ("books", "garden", "kitchen", "toys", "tools", "music", "sports", "office")
STATUSES = ("paid", "paid", "paid", "shipped", "refunded")

# order_items has no index on order_id or product_id and orders none on customer_id, as in
# many schemas that grew one feature at a time: looking up an order's lines or a
# customer's orders scans those tables, which is what makes such queries cost milliseconds.
_CORE_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, country TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY, sku TEXT NOT NULL, name TEXT NOT NULL, category TEXT NOT NULL,
    {price_column} INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, created_at TEXT NOT NULL,
    status TEXT NOT NULL{order_columns}
);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    qty INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL
);
"""

INSERT_ORDER_ITEMS = (
    "INSERT INTO order_items (order_id, product_id, qty, unit_price_cents) VALUES (?, ?, ?, ?)"
)


def core_schema(price_column: str, order_columns: Sequence[str] = ()) -> str:
    """The four tables above, in WAL mode; a shop appends its own tables to it.

    ``price_column`` names the products' price column; ``order_columns`` are further
    column definitions for ``orders``, e.g. ``"currency TEXT NOT NULL"``.
    """
    more = "".join(f", {column}" for column in order_columns)
    return _CORE_SCHEMA.format(price_column=price_column, order_columns=more)


def insert_customers(conn: sqlite3.Connection, rng: random.Random, count: int) -> None:
    """Customers 1 to ``count``, each in a random country."""
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [
            (i, f"Customer {i}", f"customer{i}@example.com", rng.choice(COUNTRIES))
            for i in range(1, count + 1)
        ],
    )


def insert_products(conn: sqlite3.Connection, rng: random.Random, count: int) -> dict[int, int]:
    """Products 1 to ``count``, each in a random category; returns their prices by id."""
    prices = {i: rng.randint(199, 19999) for i in range(1, count + 1)}
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
        [
            (i, f"SKU-{i:05d}", f"Product {i}", rng.choice(CATEGORIES), price)
            for i, price in prices.items()
        ],
    )
    return prices


def orders(
    rng: random.Random,
    count: int,
    customers: int,
    more: Callable[[int], tuple[Any, ...]] = lambda order_id: (),
) -> list[tuple[Any, ...]]:
    """Rows for orders 1 to ``count`` in 2024: id, customer, created_at, status, *more(id).

    ``more`` is called after the status is drawn, so it may draw from ``rng`` too.
    """
    start = datetime(2024, 1, 1)
    return [
        (
            i,
            rng.randint(1, customers),
            (start + timedelta(minutes=rng.randint(0, 60 * 24 * 365))).isoformat(),
            rng.choice(STATUSES),
            *more(i),
        )
        for i in range(1, count + 1)
    ]


def order_items(
    rng: random.Random, prices: dict[int, int], count: int
) -> list[tuple[int, int, int, int]]:
    """Rows for INSERT_ORDER_ITEMS: 1 to 8 lines for each of orders 1 to ``count``.

    ``prices`` are the products' prices by id (from :func:`insert_products`).
    """
    items = []
    for order_id in range(1, count + 1):
        for _ in range(rng.randint(1, 8)):
            product_id = rng.randint(1, len(prices))
            items.append((order_id, product_id, rng.randint(1, 4), prices[product_id]))
    return items
