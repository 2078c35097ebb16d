"""Schema and seed data for the shop's SQLite database.

The seed is large enough (tens of thousands of rows) that the shop's queries take real
milliseconds, and deterministic so that runs are comparable. The load driver imports the
sizes below to pick order and product ids that exist.
"""

from __future__ import annotations

import random
import sqlite3

from _support import seed as seeding

CUSTOMERS = 500
PRODUCTS = 200
ORDERS = 5000
COUNTRIES = seeding.COUNTRIES
CATEGORIES = seeding.CATEGORIES

# VAT rates on top of the tables both shops have (see _support.seed). The missing indexes
# there make the order, invoice and stock queries scan order_items and orders, which is
# what makes them cost milliseconds.
_OWN_TABLES = """
CREATE TABLE vat_rates (
    country TEXT NOT NULL, category TEXT NOT NULL, rate REAL NOT NULL,
    PRIMARY KEY (country, category)
);
"""
SCHEMA = seeding.core_schema(price_column="price_cents") + _OWN_TABLES


def create_database(db_path: str, rng_seed: int = 11) -> None:
    """Create the schema and fill it with deterministic sample data."""
    rng = random.Random(rng_seed)
    conn = sqlite3.connect(db_path)
    try:
        conn.executescript(SCHEMA)
        seeding.insert_customers(conn, rng, CUSTOMERS)
        prices = seeding.insert_products(conn, rng, PRODUCTS)
        conn.executemany(
            "INSERT INTO vat_rates VALUES (?, ?, ?)",
            [
                (country, category, rng.choice((0.0, 0.05, 0.07, 0.19, 0.2, 0.25)))
                for country in COUNTRIES
                for category in CATEGORIES
            ],
        )
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)", seeding.orders(rng, ORDERS, CUSTOMERS)
        )
        conn.executemany(seeding.INSERT_ORDER_ITEMS, seeding.order_items(rng, prices, ORDERS))
        conn.commit()
    finally:
        conn.close()
