"""Run the threaded shop: OpenTelemetry set up for real, Flask on werkzeug's threaded server.

    python run_shop.py --upstream http://127.0.0.1:PORT [--port 0] [--spans-file PATH]

Prints ``listening on http://127.0.0.1:PORT`` once it accepts requests. Stops cleanly on
SIGINT or SIGTERM: the server closes, the background threads and pools finish their
queued work, the batch span processor flushes, and the process exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from werkzeug.serving import make_server

from shop.app import create_app
from shop.seed import create_database
from shop.services import Services

PRICES_READY_TIMEOUT_S = 5.0


def configure_tracing(spans_file: Path) -> tuple[TracerProvider, IO[str]]:
    """A real SDK pipeline: batch processor, spans written as one JSON object a line.

    The SDK's own ConsoleSpanExporter does the writing, so exporting runs in SDK code on
    the processor's thread, as it would with an OTLP exporter.
    """
    out = spans_file.open("w", encoding="utf-8")
    exporter = ConsoleSpanExporter(out=out, formatter=_json_line)
    provider = TracerProvider(resource=Resource.create({"service.name": "threaded-shop"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()
    return provider, out


def _json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


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
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored; install the default handler so that SIGINT always stops the server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    spans_file = args.spans_file
    if spans_file is None:
        fd, name = tempfile.mkstemp(prefix="threaded-shop-spans-", suffix=".jsonl")
        os.close(fd)
        spans_file = Path(name)
    provider, spans_out = configure_tracing(spans_file)
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
        provider.shutdown()  # flushes the spans still in the batch processor
        spans_out.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
