"""Everything the request handlers share: database, prices, audit log and thread pools.

Started once at boot, before the server accepts requests, and closed on shutdown in the
reverse order so that queued work (receipts, audit events) is not lost.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shop.audit import AuditLog
from shop.pricing import PriceBook, PriceRefresher


@dataclass
class Services:
    db_path: str
    upstream: str
    prices: PriceBook
    audit: AuditLog
    refresher: PriceRefresher
    report_pool: ThreadPoolExecutor
    receipt_pool: ThreadPoolExecutor

    @classmethod
    def start(cls, db_path: str, upstream: str, refresh_interval: float = 0.3) -> Services:
        prices = PriceBook()
        services = cls(
            db_path=db_path,
            upstream=upstream,
            prices=prices,
            audit=AuditLog(db_path),
            refresher=PriceRefresher(db_path, upstream, prices, interval=refresh_interval),
            report_pool=ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports"),
            receipt_pool=ThreadPoolExecutor(max_workers=2, thread_name_prefix="receipts"),
        )
        services.audit.start()
        services.refresher.start()
        return services

    def close(self) -> None:
        self.refresher.stop()
        self.report_pool.shutdown(wait=True, cancel_futures=True)
        self.receipt_pool.shutdown(wait=True)
        self.audit.stop()
