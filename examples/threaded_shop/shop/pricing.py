"""Background price refresher: a thread that keeps every product's price in every currency.

Every ``interval`` seconds it fetches exchange rates from the upstream service, recomputes
the prices and a basket price index, stores them in SQLite and publishes them to the
:class:`PriceBook` that request handlers read. Nothing here opens a span, and nothing
upstream of this thread has one: all of it is dark work (spangap's ``cause="no_span"``),
which is exactly how background jobs look in many traced services.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shop import db

log = logging.getLogger(__name__)

# How many past quotes the price index looks at. The window starts full of the first
# quote, so every round does the same amount of work.
INDEX_WINDOW = 40
_SMOOTHING = 0.2


@dataclass(frozen=True)
class PriceSnapshot:
    rates: Mapping[str, float]
    prices: Mapping[int, Mapping[str, int]]  # product id -> currency -> cents
    index: Mapping[str, float] = field(default_factory=dict)  # currency -> basket index


class PriceBook:
    """The latest published prices; read by request threads, written by the refresher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: PriceSnapshot | None = None
        self._ready = threading.Event()

    def publish(self, snapshot: PriceSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
        self._ready.set()

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def current(self) -> PriceSnapshot:
        with self._lock:
            if self._snapshot is None:
                raise LookupError("no prices published yet")
            return self._snapshot

    def price(self, product_id: int, currency: str) -> int | None:
        return self.current().prices.get(product_id, {}).get(currency)


def fetch_rates(upstream: str) -> dict[str, float]:
    """GET the upstream's exchange rates (EUR based).

    This uses urllib on purpose. The requests library is instrumented in this process,
    and RequestsInstrumentor opens a client span for every call, even one with no parent,
    so a requests call here would bring its own small span. Background jobs commonly go
    through some client nobody instrumented; the point of this thread is work with no
    span at all.
    """
    with urllib.request.urlopen(f"{upstream}/rates", timeout=2.0) as response:
        body = json.load(response)
    return {currency: float(rate) for currency, rate in body["rates"].items()}


def recompute_price_index(
    base_prices: Mapping[int, int], history: Sequence[Mapping[str, float]]
) -> tuple[dict[int, dict[str, int]], dict[str, float]]:
    """Prices in every currency from smoothed rates, and a chained basket index.

    Pure-Python CPU work: an exponentially smoothed rate per currency, then for each
    currency a chained Laspeyres index of the whole catalogue over the quote window.
    """
    currencies = sorted(history[-1])
    smoothed: dict[str, float] = {}
    for currency in currencies:
        rate = history[0][currency]
        for quote in history:
            rate += _SMOOTHING * (quote[currency] - rate)
        smoothed[currency] = rate

    prices = {
        product_id: {c: _charm_price(cents * smoothed[c]) for c in currencies}
        for product_id, cents in base_prices.items()
    }
    index: dict[str, float] = {}
    for currency in currencies:
        level = 100.0
        previous = history[0][currency]
        for quote in history:
            rate = quote[currency]
            then = now = 0.0
            for product_id, cents in base_prices.items():
                weight = 1 + product_id % 7
                then += weight * _charm_price(cents * previous)
                now += weight * _charm_price(cents * rate)
            level *= now / then
            previous = rate
        index[currency] = round(level, 4)
    return prices, index


def _charm_price(cents: float) -> int:
    """Round a price to end in 99 cents, as shops like to show it."""
    return max(99, int(cents) // 100 * 100 + 99)


def refresh_prices(
    db_path: str, upstream: str, book: PriceBook, history: deque[dict[str, float]]
) -> None:
    """One refresh round: fetch, recompute, store, publish."""
    rates = fetch_rates(upstream)
    if not history:
        history.extend([rates] * (history.maxlen or 1))
    history.append(rates)
    prices, index = recompute_price_index(db.base_prices(db_path), history)
    db.store_prices(db_path, rates, prices)
    book.publish(PriceSnapshot(rates=rates, prices=prices, index=index))


class PriceRefresher:
    """Runs :func:`refresh_prices` every ``interval`` seconds on a background thread."""

    def __init__(self, db_path: str, upstream: str, book: PriceBook, interval: float = 0.3):
        self._db_path = db_path
        self._upstream = upstream
        self._book = book
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="price-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        history: deque[dict[str, float]] = deque(maxlen=INDEX_WINDOW)
        while not self._stop.is_set():
            try:
                refresh_prices(self._db_path, self._upstream, self._book, history)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("price refresh failed, keeping the previous prices: %s", exc)
            # Idle: nothing to do until the next round (or until asked to stop).
            self._stop.wait(self._interval)
