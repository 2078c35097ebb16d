"""Run the async shop: OpenTelemetry set up for real, FastAPI served by uvicorn.

    python run_async_shop.py --upstream http://127.0.0.1:PORT [--port 0] [--spans-file PATH]

Prints ``listening on http://127.0.0.1:PORT`` once the socket is bound and the catalogue
is loaded. Stops cleanly on SIGINT or SIGTERM: uvicorn finishes the requests in flight,
the lifespan stops the background task and the invoice pool, the batch span processor
flushes, and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import uvicorn
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from shop_async.app import Settings, create_app
from shop_async.seed import create_database


def configure_tracing(spans_file: Path) -> tuple[TracerProvider, IO[str]]:
    """A real SDK pipeline: batch processor, spans written as one JSON object a line.

    The SDK's own ConsoleSpanExporter does the writing, so exporting runs in SDK code on
    the processor's thread, as it would with an OTLP exporter. Only the server side is
    instrumented (FastAPIInstrumentor, applied to the app below); httpx is deliberately
    not, see ``shop_async.catalog``.
    """
    out = spans_file.open("w", encoding="utf-8")
    exporter = ConsoleSpanExporter(out=out, formatter=_json_line)
    provider = TracerProvider(resource=Resource.create({"service.name": "async-shop"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, out


def _json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the address it really bound (``--port 0`` picks one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"listening on http://127.0.0.1:{port}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="base URL of upstream.py")
    parser.add_argument(
        "--spans-file", type=Path, help="JSON-lines file for exported spans (default: a temp file)"
    )
    parser.add_argument(
        "--refresh-interval", type=float, default=0.3, help="seconds between catalogue refreshes"
    )
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored; install the default handler so that SIGINT always stops the server. While
    # it serves, uvicorn takes SIGINT and SIGTERM over, shuts down gracefully, and then
    # raises the signal again, which ends asyncio.run with KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)

    spans_file = args.spans_file
    if spans_file is None:
        fd, name = tempfile.mkstemp(prefix="async-shop-spans-", suffix=".jsonl")
        os.close(fd)
        spans_file = Path(name)
    provider, spans_out = configure_tracing(spans_file)
    data_dir = tempfile.mkdtemp(prefix="async-shop-")
    db_path = str(Path(data_dir) / "shop.sqlite3")
    try:
        create_database(db_path)
        app = create_app(Settings(db_path, args.upstream.rstrip("/"), args.refresh_interval))
        # One server span per request, from the instrumentation package. FastAPI releases
        # with built-in OpenTelemetry support see its middleware and leave tracing to it.
        FastAPIInstrumentor.instrument_app(app)
        config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
        print(f"spans are written to {spans_file}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(AnnouncingServer(config).serve())
    finally:
        provider.shutdown()  # flushes the spans still in the batch processor
        spans_out.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
