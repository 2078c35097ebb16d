"""The product catalogue, refreshed from the upstream catalogue service by a background task.

The application's lifespan starts :func:`refresh_catalog_forever` with
``asyncio.create_task`` at boot, before any request exists. Every round,
:func:`refresh_catalog` fetches the catalogue over HTTP (20-40 ms) and rebuilds the search
index in pure Python (about 30 ms, on the event loop), then the loop sleeps. Nothing here
opens a span and the task was created from a context that never had one, so all of it is
dark work with spangap's ``cause="no_span"``: the background-job gap that traces of async
services usually have.

httpx is deliberately not instrumented in this process (no ``HTTPXClientInstrumentor``).
Its instrumentation opens a client span for every request, even one without a parent,
so the catalogue fetch would bring its own small span and look covered. Background jobs
commonly go through a client nobody instrumented; the point of this task is work with no
span at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+")
_MAX_HITS = 20  # postings kept per search term


@dataclass(frozen=True)
class Product:
    id: int
    sku: str
    name: str
    description: str
    weight_g: int
    stock: int


@dataclass(frozen=True)
class Catalog:
    products: Mapping[int, Product]
    # search term (a word or a word prefix) -> product ids, best match first
    index: Mapping[str, tuple[int, ...]]
    version: int

    def search(self, query: str, limit: int = 10) -> list[Product]:
        """Products matching every word of ``query`` (prefixes count), best first."""
        words = _WORD.findall(query.lower())
        if not words:
            return []
        scores: Counter[int] = Counter()
        for word in words:
            hits = self.index.get(word, ())
            if not hits:
                return []
            for rank, product_id in enumerate(hits):
                scores[product_id] += _MAX_HITS - rank
        matches = [pid for pid, _ in scores.most_common() if _in_all(self.index, words, pid)]
        return [self.products[pid] for pid in matches[:limit]]


def _in_all(index: Mapping[str, tuple[int, ...]], words: list[str], product_id: int) -> bool:
    return all(product_id in index[word] for word in words)


class CatalogStore:
    """The latest catalogue; written by the refresh task, read by request handlers.

    Both run on the event loop thread, so a plain attribute is enough.
    """

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._ready = asyncio.Event()

    def publish(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._ready.set()

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def version(self) -> int:
        """The published catalogue's version, 0 before the first."""
        return 0 if self._catalog is None else self._catalog.version

    def current(self) -> Catalog:
        if self._catalog is None:
            raise LookupError("no catalogue published yet")
        return self._catalog


async def fetch_catalog(client: httpx.AsyncClient, upstream: str) -> list[Product]:
    """GET every product from the upstream catalogue service."""
    response = await client.get(f"{upstream}/catalog")
    response.raise_for_status()
    return [
        Product(
            id=int(item["id"]),
            sku=str(item["sku"]),
            name=str(item["name"]),
            description=str(item["description"]),
            weight_g=int(item["weight_g"]),
            stock=int(item["stock"]),
        )
        for item in response.json()["products"]
    ]


def rebuild_search_index(products: list[Product]) -> dict[str, tuple[int, ...]]:
    """A TF-IDF ranked index from every word, word prefix and trigram to its products.

    Prefixes serve type-ahead, trigrams (``~abc``) serve misspelt words.

    Pure-Python CPU work, redone from scratch each round because names, descriptions and
    stock can all change; in-stock products rank first for the same relevance.
    """
    postings: dict[str, dict[int, float]] = defaultdict(dict)
    for product in products:
        words = _WORD.findall(f"{product.name} {product.name} {product.description}".lower())
        counts: Counter[str] = Counter()
        for word in words:
            for end in range(2, len(word) + 1):
                counts[word[:end]] += 1 if end < len(word) else 2
            padded = f"_{word}_"
            for start in range(len(padded) - 2):
                counts["~" + padded[start : start + 3]] += 1
        total = sum(counts.values())
        for term, count in counts.items():
            postings[term][product.id] = count / total
    stock = {product.id: product.stock for product in products}
    index: dict[str, tuple[int, ...]] = {}
    for term, tfs in postings.items():
        idf = math.log(len(products) / len(tfs))
        keys = {pid: (stock[pid] > 0, tf * idf, -pid) for pid, tf in tfs.items()}
        index[term] = tuple(sorted(keys, key=keys.__getitem__, reverse=True)[:_MAX_HITS])
    return index


async def refresh_catalog(client: httpx.AsyncClient, upstream: str, store: CatalogStore) -> None:
    """One refresh round: fetch the catalogue, rebuild the search index, publish both."""
    products = await fetch_catalog(client, upstream)
    index = rebuild_search_index(products)
    store.publish(Catalog({p.id: p for p in products}, index, store.version + 1))


async def refresh_catalog_forever(
    client: httpx.AsyncClient, upstream: str, store: CatalogStore, interval: float = 0.3
) -> None:
    """Run :func:`refresh_catalog` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await refresh_catalog(client, upstream, store)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("catalogue refresh failed, keeping the previous one: %s", exc)
        await asyncio.sleep(interval)
