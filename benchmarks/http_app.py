"""The application served by the HTTP benchmark workloads: route handlers, nothing else.

This module plays the part of a service's own code, the only one in the detector's scope
(the server in ``http_server`` stands for a framework, the load generator in
``http_load`` for the outside world). Three routes, requested in a fixed mix:

- ``/items``: inside an OpenTelemetry span: a database call, then building a JSON page
  (the instrumented majority);
- ``/user``: dark but short (a few ms): real work the detector must not count;
- ``/report``: dark and slow (at least 10 ms): the call the detector is there to find.

The threaded flavour queries a real SQLite file and then sleeps a few ms, standing in for
the network round trip to a database server; the asyncio flavour awaits a sleep instead
(an async database driver would not block the loop).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

from opentelemetry import trace

#: The request paths of one cycle of the load mix: 6 spanned, 3 dark short, 1 dark slow.
MIX = (
    "/items?page=1",
    "/user?id=7",
    "/items?page=2",
    "/items?page=3",
    "/user?id=8",
    "/report",
    "/items?page=4",
    "/user?id=9",
    "/items?page=5",
    "/items?page=6",
)
DB_LATENCY_S = 0.003  # network round trip to a database server, on top of the real query
SLOW_EXTRA_S = 0.011  # the report's second, slow query: makes the call last >= 10 ms
ROWS = 400
PAGE = 40
CPU_PASSES = 8  # building an /items page: about 0.6 ms of pure-Python CPU
ASYNC_PASSES = 4  # the asyncio handlers' "little CPU": about 0.3 ms

_tracer = trace.get_tracer(__name__)  # resolved through the global provider at first use
_local = threading.local()
_db_path: Path | None = None


def catalogue_row(ident: int) -> tuple[int, str, float, int]:
    """One catalogue row: (id, name, price, stock)."""
    return ident, f"item-{ident}", round(1.07 * ident, 2), (ident * 37) % 101


def create_database(path: Path) -> None:
    """A small catalogue in a real SQLite file, queried by every threaded request."""
    global _db_path
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name, price, stock)")
        db.execute("DELETE FROM item")
        db.executemany("INSERT INTO item VALUES (?, ?, ?, ?)", map(catalogue_row, range(ROWS)))
    _db_path = path


def _connection() -> sqlite3.Connection:
    """One connection per worker thread, as a thread-pooled service would hold."""
    db: sqlite3.Connection | None = getattr(_local, "db", None)
    if db is None:
        if _db_path is None:
            raise RuntimeError("create_database() was not called")
        db = _local.db = sqlite3.connect(_db_path)
    return db


def query_page(page: int) -> list[tuple[int, str, float, int]]:
    """A real indexed query, then the wait a remote database would add."""
    start = (page * PAGE) % ROWS
    rows = _connection().execute(
        "SELECT id, name, price, stock FROM item WHERE id >= ? ORDER BY id LIMIT ?",
        (start, PAGE),
    )
    result = rows.fetchall()
    time.sleep(DB_LATENCY_S)
    return result


def fake_rows(page: int) -> list[tuple[int, str, float, int]]:
    """The rows an async driver would return, for the asyncio flavour (no SQLite there)."""
    first = (page * PAGE) % ROWS
    return [catalogue_row(i) for i in range(first, first + PAGE)]


def render(route: str, rows: list[tuple[int, str, float, int]], passes: int) -> bytes:
    """Pure-Python response building: derived fields, totals, then ``json.dumps``."""
    items = []
    total = 0.0
    for _ in range(passes):
        items = [
            {
                "id": ident,
                "name": name.upper(),
                "price": {"net": price, "gross": round(price * 1.19, 2)},
                "stock": stock,
                "tags": [t for t in ("new", "sale", "last") if (ident + len(t)) % 3 == 0],
            }
            for ident, name, price, stock in rows
        ]
        total = sum(item["price"]["gross"] * item["stock"] for item in items)
    return json.dumps({"route": route, "items": items[:10], "total": round(total, 2)}).encode()


def page_of(path: str) -> int:
    """The number after ``=`` in the query string (0 when there is none)."""
    _, _, value = path.partition("=")
    return int(value) if value.isdigit() else 0


# --- threaded flavour --------------------------------------------------------------------


def handle(path: str) -> tuple[int, bytes]:
    """Route one request of the threaded server: (status, JSON body)."""
    if path.startswith("/items"):
        return 200, list_items(page_of(path))
    if path.startswith("/user"):
        return 200, get_user(page_of(path))
    if path.startswith("/report"):
        return 200, build_report()
    return 404, b'{"error": "not found"}'


def list_items(page: int) -> bytes:
    """Instrumented: the whole handler runs inside a span."""
    with _tracer.start_as_current_span("GET /items"):
        return render("items", query_page(page), CPU_PASSES)


def get_user(user: int) -> bytes:
    """Dark but short: one query and a small response, well under the 10 ms threshold."""
    return render("user", query_page(user)[:2], 1)


def build_report() -> bytes:
    """Dark and slow: two queries, the second one slow; the call lasts at least 10 ms."""
    rows = query_page(0)
    time.sleep(SLOW_EXTRA_S)
    return render("report", rows, CPU_PASSES)


# --- asyncio flavour ---------------------------------------------------------------------


async def handle_async(path: str) -> tuple[int, bytes]:
    """Route one request of the asyncio server: (status, JSON body)."""
    if path.startswith("/items"):
        return 200, await list_items_async(page_of(path))
    if path.startswith("/user"):
        return 200, await get_user_async(page_of(path))
    if path.startswith("/report"):
        return 200, await build_report_async()
    return 404, b'{"error": "not found"}'


async def list_items_async(page: int) -> bytes:
    """Instrumented: the whole handler runs inside a span."""
    with _tracer.start_as_current_span("GET /items"):
        await asyncio.sleep(DB_LATENCY_S)
        return render("items", fake_rows(page), ASYNC_PASSES)


async def get_user_async(user: int) -> bytes:
    """Dark but short."""
    await asyncio.sleep(DB_LATENCY_S)
    return render("user", fake_rows(user)[:2], 1)


async def build_report_async() -> bytes:
    """Dark and slow: at least 10 ms from start to end."""
    await asyncio.sleep(DB_LATENCY_S)
    await asyncio.sleep(SLOW_EXTRA_S)
    return render("report", fake_rows(0), ASYNC_PASSES)
