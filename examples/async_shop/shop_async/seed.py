"""Schema and seed data for the shop's SQLite database.

The seed is large enough (tens of thousands of rows) that the shop's queries take real
milliseconds, and deterministic so that runs are comparable. The load driver imports the
sizes below to pick order and product ids that exist.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta

CUSTOMERS = 500
PRODUCTS = 200
ORDERS = 5000
COUNTRIES = ("DE", "FR", "GB", "CH", "SE", "US", "JP", "NL")
CATEGORIES = ("books", "garden", "kitchen", "toys", "tools", "music", "sports", "office")

# order_items has no index on order_id or product_id and orders none on customer_id, as in
# many schemas that grew one feature at a time: the order, invoice and stock queries scan
# those tables, which is what makes them cost milliseconds.
SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, country TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY, sku TEXT NOT NULL, name TEXT NOT NULL, category TEXT NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, created_at TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    qty INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL
);
CREATE TABLE vat_rates (
    country TEXT NOT NULL, category TEXT NOT NULL, rate REAL NOT NULL,
    PRIMARY KEY (country, category)
);
"""


def create_database(db_path: str, rng_seed: int = 11) -> None:
    """Create the schema and fill it with deterministic sample data."""
    rng = random.Random(rng_seed)
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            [
                (i, f"Customer {i}", f"customer{i}@example.com", rng.choice(COUNTRIES))
                for i in range(1, CUSTOMERS + 1)
            ],
        )
        prices = {i: rng.randint(199, 19999) for i in range(1, PRODUCTS + 1)}
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            [
                (i, f"SKU-{i:05d}", f"Product {i}", rng.choice(CATEGORIES), price)
                for i, price in prices.items()
            ],
        )
        conn.executemany(
            "INSERT INTO vat_rates VALUES (?, ?, ?)",
            [
                (country, category, rng.choice((0.0, 0.05, 0.07, 0.19, 0.2, 0.25)))
                for country in COUNTRIES
                for category in CATEGORIES
            ],
        )
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", _orders(rng))
        conn.executemany(
            "INSERT INTO order_items (order_id, product_id, qty, unit_price_cents) "
            "VALUES (?, ?, ?, ?)",
            _order_items(rng, prices),
        )
        conn.commit()
    finally:
        conn.close()


def _orders(rng: random.Random) -> list[tuple[int, int, str, str]]:
    start = datetime(2024, 1, 1)
    return [
        (
            i,
            rng.randint(1, CUSTOMERS),
            (start + timedelta(minutes=rng.randint(0, 60 * 24 * 365))).isoformat(),
            rng.choice(("paid", "paid", "paid", "shipped", "refunded")),
        )
        for i in range(1, ORDERS + 1)
    ]


def _order_items(rng: random.Random, prices: dict[int, int]) -> list[tuple[int, int, int, int]]:
    items = []
    for order_id in range(1, ORDERS + 1):
        for _ in range(rng.randint(1, 8)):
            product_id = rng.randint(1, PRODUCTS)
            items.append((order_id, product_id, rng.randint(1, 4), prices[product_id]))
    return items
