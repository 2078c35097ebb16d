"""Sales reports, built on a thread pool so a slow report cannot pin a request thread.

``GET /reports/<kind>`` submits :func:`build_report` to the report pool with a plain
``executor.submit(build_report, ...)``. The pool thread starts from an empty context, so
the report runs with no span even though the request that asked for it had one: the
classic lost-context gap (spangap's ``cause="context_lost"``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from shop import db

REPORT_KINDS = tuple(db.REPORT_QUERIES)

_HEADERS: dict[str, Sequence[str]] = {
    "revenue-by-month": ("month", "currency", "orders", "units", "revenue"),
    "top-products": ("sku", "name", "category", "units", "revenue", "orders"),
    "customers": ("customer", "country", "orders", "spent", "last order"),
}
_MONEY_COLUMNS = {"revenue", "spent"}


def build_report(db_path: str, kind: str) -> str:
    """Aggregate ``kind`` in SQLite and render it with a distribution footer."""
    rows = db.report_rows(db_path, kind)
    by_currency: dict[str, list[int]] = defaultdict(list)
    for currency, value in db.line_values(db_path):
        by_currency[currency].append(value)
    return format_table(_HEADERS[kind], rows) + "\n\n" + format_distribution(by_currency)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(headers)]
    for row in rows:
        cells.append(
            [
                _money(value) if header in _MONEY_COLUMNS else str(value)
                for header, value in zip(headers, row, strict=True)
            ]
        )
    widths = [max(len(line[col]) for line in cells) for col in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def format_distribution(values_by_currency: dict[str, list[int]]) -> str:
    lines = ["order line value percentiles (p50 / p90 / p99)"]
    for currency in sorted(values_by_currency):
        values = sorted(values_by_currency[currency])
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        lines.append(
            f"  {currency}: {_money(cuts[49])} / {_money(cuts[89])} / {_money(cuts[98])}"
            f"  ({len(values)} lines)"
        )
    return "\n".join(lines)


def _money(cents: float) -> str:
    return f"{cents / 100:,.2f}"
