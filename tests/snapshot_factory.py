"""Builds Snapshot objects for tests, with realistic defaults that each test overrides."""

from __future__ import annotations

from typing import Any

from spangap.snapshot import Counted, LostContext, SiteStats, Snapshot, Totals


def make_site(site: str = "shop.db:load_rows", **overrides: Any) -> SiteStats:
    """A no_span site; pass cause="context_lost" to get a lost_context filled in too."""
    values: dict[str, Any] = {
        "site": site,
        "cause": "no_span",
        "file": "/srv/shop/db.py",
        "line": 42,
        "count": 812,
        "total_seconds": 4.21,
        "self_seconds": 3.9,
        "p50_seconds": 0.012,
        "p95_seconds": 0.0152,
        "max_seconds": 0.2,
        "last_seen_unix": 1_700_000_100.5,
        "callers": [Counted("shop.api:save", 800), Counted("shop.jobs:nightly", 12)],
        "waited_in": [Counted("socket.socket.recv", 700)],
        "threads": [Counted("MainThread", 812)],
        "example_stack": [
            "shop.api:save (/srv/shop/api.py:10)",
            "shop.db:load_rows (/srv/shop/db.py:42)",
        ],
    }
    if overrides.get("cause") == "context_lost" and "lost_context" not in overrides:
        values["lost_context"] = LostContext(
            submitters=[Counted("shop.api:upload", 40)],
            examples=[{"trace_id": "ab" * 16, "span_id": "cd" * 8, "submitter": "shop.api:upload"}],
        )
    values.update(overrides)
    return SiteStats(**values)


def make_totals(**overrides: Any) -> Totals:
    values: dict[str, Any] = {
        "samples": 6010,
        "operations": 1234,
        "dark_seconds": 12.3,
        "in_scope_seconds": 30.1,
        "spanned_seconds": 12.341,
        "sampler_cpu_seconds": 0.08,
        "internal_errors": 0,
        "sites_dropped": 0,
    }
    values.update(overrides)
    return Totals(**values)


def make_snapshot(sites: list[SiteStats] | None = None, **totals: Any) -> Snapshot:
    return Snapshot(
        created_unix=1_700_000_000.25,
        program={
            "argv": ["app.py", "--port", "8000"],
            "pid": 4242,
            "python": "3.11.7",
            "host": "web-1",
        },
        settings={"threshold_ms": 10.0, "interval_ms": 5.0, "max_sites": 500},
        totals=make_totals(**totals),
        sites=[make_site()] if sites is None else sites,
    )


def varied_snapshot() -> Snapshot:
    """Several sites whose orders differ by every sort key, with one context_lost site."""
    return make_snapshot(
        [
            make_site(
                "shop.db:load_rows", count=10, total_seconds=5.0, self_seconds=1.0, p95_seconds=0.9
            ),
            make_site(
                "shop.api:save", count=300, total_seconds=4.0, self_seconds=4.0, p95_seconds=0.02
            ),
            make_site(
                "shop.render:page", count=20, total_seconds=3.0, self_seconds=3.0, p95_seconds=0.5
            ),
            make_site(
                "shop.jobs:resize",
                cause="context_lost",
                count=40,
                total_seconds=2.0,
                self_seconds=2.0,
                p95_seconds=0.1,
            ),
        ],
        dark_seconds=10.0,
    )
