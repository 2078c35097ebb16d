"""Run the threaded shop: OpenTelemetry set up for real, Flask on werkzeug's threaded server.

    python run_shop.py --upstream http://127.0.0.1:PORT [--port 0] [--spans-file PATH]

Prints ``listening on http://127.0.0.1:PORT`` once it accepts requests. Stops cleanly on
SIGINT or SIGTERM: the server closes, the background threads and pools finish their
queued work, the batch span processor flushes, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from werkzeug.serving import make_server

from shop.app import create_app
from shop.seed import create_database
from shop.services import Services

PRICES_READY_TIMEOUT_S = 5.0


class JsonLinesSpanExporter(SpanExporter):
    """Writes each finished span as one JSON object per line."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            for span in spans:
                self._out.write(span.to_json(indent=None) + "\n")
            self._out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._out.close()


def configure_tracing(spans_file: Path) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "threaded-shop"}))
    exporter = JsonLinesSpanExporter(spans_file.open("a", encoding="utf-8"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()
    return provider


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="base URL of upstream.py")
    parser.add_argument(
        "--spans-file", type=Path, help="JSON-lines file for exported spans (default: a temp file)"
    )
    parser.add_argument(
        "--refresh-interval", type=float, default=0.3, help="seconds between price refreshes"
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    signal.signal(signal.SIGTERM, _interrupt)

    spans_file = args.spans_file
    if spans_file is None:
        spans_file = Path(tempfile.mkstemp(prefix="threaded-shop-spans-", suffix=".jsonl")[1])
    provider = configure_tracing(spans_file)
    data_dir = tempfile.mkdtemp(prefix="threaded-shop-")
    db_path = str(Path(data_dir) / "shop.sqlite3")
    create_database(db_path)

    services = Services.start(db_path, args.upstream.rstrip("/"), args.refresh_interval)
    try:
        if not services.prices.wait_ready(PRICES_READY_TIMEOUT_S):
            print("no prices from the upstream service; is it running?", file=sys.stderr)
            return 1
        app = create_app(services)
        FlaskInstrumentor().instrument_app(app)
        server = make_server("127.0.0.1", args.port, app, threaded=True)
        print(f"spans are written to {spans_file}", flush=True)
        print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
        # werkzeug's serve_forever returns (and closes the socket) on KeyboardInterrupt,
        # which SIGINT raises by default and _interrupt raises for SIGTERM.
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # interrupted before the server started serving
    finally:
        services.close()
        provider.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
