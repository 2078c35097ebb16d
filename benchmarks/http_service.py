"""The benchmark's HTTP service: the application of ``http_app`` on one of the servers of
``http_server``, with its SQLite database in a temporary directory.

Shared by the rounds of ``overhead.py`` (one service per process and tool) and by
``http_alternating.py`` (one service for a whole run, the detector switched on and off).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import http_app
import http_server

WORKERS = 16  # the threaded server's pool
#: The service's own code, in the detector's scope; the server stands for a framework
#: and the load generator for the outside world, so they and this module are not.
APP_MODULE = "http_app"
OUT_OF_SCOPE = ("http_server", "http_load", "http_service")
#: The two HTTP workloads by kind: the server flavour, its closed-loop connections, and
#: the row label every benchmark table uses.
FLAVOURS = {"http_threaded": "threaded", "http_asyncio": "asyncio"}
CONNECTIONS = {"threaded": 32, "asyncio": 1000}
LABELS = {
    "threaded": f"HTTP, {WORKERS} worker threads, {CONNECTIONS['threaded']} connections",
    "asyncio": f"HTTP, asyncio, {CONNECTIONS['asyncio']:,} connections",
}
Server = http_server.ThreadedServer | http_server.AsyncServer


@contextlib.contextmanager
def running_service(
    flavour: str, wrap: http_server.Wrap = http_server.unwrapped
) -> Iterator[Server]:
    """Serve until the block ends. ``flavour`` is "threaded" (16 workers whose handlers
    query SQLite) or "asyncio" (``asyncio.start_server``)."""
    with tempfile.TemporaryDirectory() as tmp:
        server: Server
        if flavour == "threaded":
            http_app.create_database(Path(tmp) / "catalogue.sqlite3")
            server = http_server.ThreadedServer(http_app.handle, WORKERS, wrap)
        elif flavour == "asyncio":
            server = http_server.AsyncServer(http_app.handle_async, wrap)
        else:
            raise ValueError(f"unknown HTTP flavour {flavour!r}")
        try:
            yield server
        finally:
            server.close()
