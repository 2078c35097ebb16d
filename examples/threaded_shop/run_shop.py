"""Run the threaded shop: OpenTelemetry set up for real, Flask on werkzeug's threaded server.

    python run_shop.py --upstream http://127.0.0.1:PORT [--port 0] [--spans-file PATH]

Prints ``listening on http://127.0.0.1:PORT`` once it accepts requests. Stops cleanly on
SIGINT or SIGTERM: the server closes, the background threads and pools finish their
queued work, the batch span processor flushes, and the process exits 0.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.service import Runtime, parse_args
from shop.app import create_app
from shop.seed import create_database
from shop.services import Services

PRICES_READY_TIMEOUT_S = 5.0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], "price refreshes", argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # SIGINT and SIGTERM raise KeyboardInterrupt from here on; spans go to --spans-file.
    runtime = Runtime.start("threaded-shop", args.spans_file)
    # A client span for every ``requests`` call (the payment and notification calls).
    RequestsInstrumentor().instrument()
    create_database(runtime.db_path)

    services = Services.start(runtime.db_path, args.upstream, args.refresh_interval)
    try:
        if not services.prices.wait_ready(PRICES_READY_TIMEOUT_S):
            print("no prices from the upstream service; is it running?", file=sys.stderr)
            return 1
        app = create_app(services)
        FlaskInstrumentor().instrument_app(app)
        server = make_server("127.0.0.1", args.port, app, threaded=True)
        print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
        # werkzeug's serve_forever returns (and closes the socket) on KeyboardInterrupt,
        # which SIGINT and SIGTERM raise.
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # interrupted before the server started serving
    finally:
        services.close()
        runtime.provider.shutdown()  # flushes the spans still in the batch processor
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
