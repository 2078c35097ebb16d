"""What both fake upstream services share: a JSON handler that takes its time, and ``main``.

Each example's ``upstream.py`` subclasses :class:`JSONHandler` with its own routes and
calls :func:`main` with it. The server listens on 127.0.0.1, prints
``listening on http://127.0.0.1:PORT`` and stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _support.signals import stop_on_signals

#: Every reply waits this long (seconds, uniform) to stand in for the network and the
#: remote service's own work, so calls to it cost what calls across a data centre cost.
LATENCY_S = (0.02, 0.04)


class JSONHandler(BaseHTTPRequestHandler):
    server_version = "upstream/1.0"

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        time.sleep(random.uniform(*LATENCY_S))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would drown the demo's output


def main(
    handler: type[BaseHTTPRequestHandler], description: str, argv: Sequence[str] | None = None
) -> int:
    """Serve ``handler`` on 127.0.0.1 (``--port``, 0 picks a free port) until stopped."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    stop_on_signals()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
