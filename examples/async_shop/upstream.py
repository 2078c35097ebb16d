"""A stand-in for the shop's upstream services: catalogue, shipping rates and webhooks.

    python upstream.py [--port 0]

The routes are below; ``_support.upstream`` serves them on 127.0.0.1 and holds every
reply back 20-40 ms, the cost of a call across a data centre.

    GET  /catalog                        -> {"products": [{"id": 1, "name": ..., ...}, ...]}
    GET  /shipping?country=DE&weight_g=N -> {"options": [{"carrier": ..., "cents": ...}, ...]}
    POST /webhook                        -> {"accepted": true}
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.upstream import JSONHandler, main

PRODUCTS = 200  # the same products as the shop's database (shop_async.seed.PRODUCTS)
# carrier -> (base price, price per 100 g), in cents
CARRIERS = {"parcelpost": (490, 8), "swiftship": (790, 5), "cargo-eco": (290, 11)}

_ADJECTIVES = ("compact", "deluxe", "rugged", "classic", "foldable", "wireless", "smart")
_NOUNS = ("lamp", "kettle", "backpack", "notebook", "drill", "planter", "speaker", "tent")
_PHRASES = (
    "built to last",
    "easy to clean",
    "ships flat",
    "two-year warranty",
    "recycled materials",
    "fits in a drawer",
    "award winning design",
    "for beginners and pros",
    "quiet operation",
    "made in small batches",
    "replaceable parts",
    "gift ready packaging",
)


def catalogue() -> list[dict[str, Any]]:
    """Every product with a name, a description, its weight and today's stock level."""
    products = []
    for product_id in range(1, PRODUCTS + 1):
        rng = random.Random(product_id)  # names and descriptions are stable
        name = f"{rng.choice(_ADJECTIVES).title()} {rng.choice(_NOUNS)} {product_id}"
        description = ". ".join(rng.sample(_PHRASES, 6)) + f". Model {rng.randint(100, 999)}."
        products.append(
            {
                "id": product_id,
                "sku": f"SKU-{product_id:05d}",
                "name": name,
                "description": description,
                "weight_g": rng.randint(50, 5000),
                "stock": random.randint(0, 250),
            }
        )
    return products


def shipping_options(country: str, weight_g: int) -> list[dict[str, Any]]:
    abroad = 1.0 if country == "DE" else 1.6
    return [
        {
            "carrier": carrier,
            "cents": round((base + per_100g * weight_g / 100) * abroad),
            "days": random.randint(1, 3) if carrier == "swiftship" else random.randint(2, 7),
        }
        for carrier, (base, per_100g) in CARRIERS.items()
    ]


class Handler(JSONHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/catalog":
            self.reply(200, {"products": catalogue()})
        elif url.path == "/shipping":
            try:
                weight_g = int(query.get("weight_g", ["1000"])[0])
            except ValueError:
                self.reply(400, {"error": "weight_g must be an integer"})
                return
            country = query.get("country", ["DE"])[0]
            self.reply(200, {"options": shipping_options(country, weight_g)})
        elif url.path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.read_body()
        if self.path != "/webhook":
            self.reply(404, {"error": "not found"})
        elif not self.headers.get("X-Signature"):
            self.reply(400, {"error": "unsigned webhook"})
        else:
            try:
                json.loads(body)
            except ValueError:
                self.reply(400, {"error": "invalid JSON"})
                return
            self.reply(200, {"accepted": True})


if __name__ == "__main__":
    sys.exit(main(Handler, __doc__.splitlines()[0]))
