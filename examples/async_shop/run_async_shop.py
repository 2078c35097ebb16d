"""Run the async shop: OpenTelemetry set up for real, FastAPI served by uvicorn.

    python run_async_shop.py --upstream http://127.0.0.1:PORT [--port 0] [--spans-file PATH]

Prints ``listening on http://127.0.0.1:PORT`` once the socket is bound and the catalogue
is loaded. Stops cleanly on SIGINT or SIGTERM: uvicorn finishes the requests in flight,
the lifespan stops the background task and the invoice pool, the batch span processor
flushes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for _support

from _support.service import Runtime, parse_args
from shop_async.app import Settings, create_app
from shop_async.seed import create_database


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the address it really bound (``--port 0`` picks one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"listening on http://127.0.0.1:{port}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], "catalogue refreshes", argv)
    # SIGINT and SIGTERM raise KeyboardInterrupt from here on. While it serves, uvicorn
    # takes them over, shuts down gracefully, and then raises the signal again, which ends
    # asyncio.run with KeyboardInterrupt. Spans go to --spans-file. Only the server side is
    # instrumented (FastAPIInstrumentor, applied to the app below); httpx is deliberately
    # not, see ``shop_async.catalog``.
    runtime = Runtime.start("async-shop", args.spans_file)
    try:
        create_database(runtime.db_path)
        app = create_app(Settings(runtime.db_path, args.upstream, args.refresh_interval))
        # One server span per request, from the instrumentation package. FastAPI releases
        # with built-in OpenTelemetry support see its middleware and leave tracing to it.
        FastAPIInstrumentor.instrument_app(app)
        config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(AnnouncingServer(config).serve())
    finally:
        runtime.provider.shutdown()  # flushes the spans still in the batch processor
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
