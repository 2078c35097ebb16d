"""The stock report: which products sell faster than before, and how many to reorder.

``GET /reports/stock`` runs :func:`build_stock_report` with ``asyncio.to_thread``, which
copies the caller's context into the worker thread (``contextvars.copy_context().run``).
The request's span is current there, so the 30 ms or so of SQLite and arithmetic are
spanned work, although they run on another thread.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from shop_async import db

REORDER_WEEKS = 3  # keep this many weeks of the recent sales rate in stock


def build_stock_report(db_path: str, top: int = 10) -> dict[str, Any]:
    """Weekly sales per product, a least-squares trend each, and reorder suggestions."""
    weekly: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    revenue: dict[str, int] = defaultdict(int)
    for product_id, sku, category, _week, sold, cents in db.stock_movement(db_path):
        weekly[(product_id, sku, category)].append(sold)
        revenue[category] += cents
    rows: list[dict[str, Any]] = []
    for (product_id, sku, category), units in weekly.items():
        slope = trend(units)
        recent = sum(units[-3:]) / min(3, len(units))
        rows.append(
            {
                "product_id": product_id,
                "sku": sku,
                "category": category,
                "trend_units_per_week": round(slope, 3),
                "reorder": max(0, round((recent + slope) * REORDER_WEEKS)),
            }
        )
    rows.sort(key=lambda row: row["trend_units_per_week"], reverse=True)
    return {
        "rising": rows[:top],
        "falling": rows[-top:][::-1],
        "revenue_cents_by_category": dict(sorted(revenue.items())),
    }


def trend(values: list[int]) -> float:
    """Slope of the least-squares line through ``values`` (0.0 for fewer than two)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den
