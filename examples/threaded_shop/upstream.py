"""A stand-in for the shop's upstream services: exchange rates, payments, notifications.

    python upstream.py [--port 0]

Serves on 127.0.0.1 and prints ``listening on http://127.0.0.1:PORT``. Every handler
sleeps 20-40 ms to stand in for the network and the remote service's own work, so calls
to it cost what calls across a data centre cost.

    GET  /rates   -> {"base": "EUR", "rates": {"USD": 1.08, ...}}
    POST /pay     -> {"approved": true, "payment_id": "..."}
    POST /notify  -> {"delivered": true}
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

BASE_RATES = {"EUR": 1.0, "USD": 1.08, "GBP": 0.85, "CHF": 0.95, "SEK": 11.3, "JPY": 161.0}
LATENCY_S = (0.02, 0.04)


class Handler(BaseHTTPRequestHandler):
    server_version = "upstream/1.0"

    def do_GET(self) -> None:
        if self.path == "/rates":
            rates = {
                currency: rate if currency == "EUR" else round(rate * random.uniform(0.99, 1.01), 5)
                for currency, rate in BASE_RATES.items()
            }
            self._reply(200, {"base": "EUR", "rates": rates})
        elif self.path == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._reply(400, {"error": "invalid JSON"})
            return
        if self.path == "/pay":
            if int(body.get("amount_cents", 0)) <= 0:
                self._reply(200, {"approved": False, "reason": "nothing to charge"})
            else:
                self._reply(200, {"approved": True, "payment_id": uuid.uuid4().hex})
        elif self.path == "/notify":
            self._reply(200, {"delivered": True})
        else:
            self._reply(404, {"error": "not found"})

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
