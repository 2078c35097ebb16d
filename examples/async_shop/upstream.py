"""A stand-in for the shop's upstream services: catalogue, shipping rates and webhooks.

    python upstream.py [--port 0]

Serves on 127.0.0.1 and prints ``listening on http://127.0.0.1:PORT``. Every handler
sleeps 20-40 ms to stand in for the network and the remote service's own work, so calls
to it cost what calls across a data centre cost.

    GET  /catalog                        -> {"products": [{"id": 1, "name": ..., ...}, ...]}
    GET  /shipping?country=DE&weight_g=N -> {"options": [{"carrier": ..., "cents": ...}, ...]}
    POST /webhook                        -> {"accepted": true}
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

LATENCY_S = (0.02, 0.04)
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


class Handler(BaseHTTPRequestHandler):
    server_version = "upstream/1.0"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/catalog":
            self._reply(200, {"products": catalogue()})
        elif url.path == "/shipping":
            try:
                weight_g = int(query.get("weight_g", ["1000"])[0])
            except ValueError:
                self._reply(400, {"error": "weight_g must be an integer"})
                return
            country = query.get("country", ["DE"])[0]
            self._reply(200, {"options": shipping_options(country, weight_g)})
        elif url.path == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/webhook":
            self._reply(404, {"error": "not found"})
        elif not self.headers.get("X-Signature"):
            self._reply(400, {"error": "unsigned webhook"})
        else:
            try:
                json.loads(body)
            except ValueError:
                self._reply(400, {"error": "invalid JSON"})
                return
            self._reply(200, {"accepted": True})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        time.sleep(random.uniform(*LATENCY_S))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the demo's output


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored; install the default handler so that SIGINT always stops the server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
