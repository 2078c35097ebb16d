"""HTTP/1.1 servers for the benchmark: a thread-pooled one and an asyncio one.

Both stand for the framework a service runs on, so the benchmark keeps them out of the
detector's scope; the application they serve is a routing function from ``http_app``.
Each counts the requests it answered (``served``), so that a run can check that the load
generator's tally and the server's agree.

``wrap`` adapts every server thread's body before it starts: pyinstrument samples only
the thread that started it, so the benchmark starts one profiler per server thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import selectors
import socket
import threading
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler

Body = Callable[[], None]
Wrap = Callable[[Body], Body]
SyncApp = Callable[[str], tuple[int, bytes]]
AsyncApp = Callable[[str], Awaitable[tuple[int, bytes]]]
HOST = "127.0.0.1"


def unwrapped(body: Body) -> Body:
    """The default ``wrap``: run the thread body as it is."""
    return body


# --- threaded: a dispatcher thread and a fixed pool of workers ----------------------------


class _Request(BaseHTTPRequestHandler):
    """One keep-alive connection, served with http.server's parsing one request at a time.

    ``BaseHTTPRequestHandler.__init__`` would serve the whole connection in one go, which
    ties a worker to a connection for its life; here a worker serves a single request
    and the connection goes back to the dispatcher, so 16 workers can serve any number
    of keep-alive connections (as waitress or a servlet container do)."""

    protocol_version = "HTTP/1.1"

    def __init__(self, conn: socket.socket, service: ThreadedServer) -> None:
        self.request = self.connection = conn
        self.client_address = conn.getpeername()
        self.service = service
        self.rfile = conn.makefile("rb")
        self.wfile = conn.makefile("wb")  # buffered: handle_one_request flushes once
        self.close_connection = True

    def do_GET(self) -> None:
        status, body = self.service.app(self.path)
        self.service.count_served()  # before sending: the client's tally can never lead
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a line on stderr per request would be the most expensive thing here."""

    def close(self) -> None:
        for stream in (self.rfile, self.wfile, self.connection):
            with contextlib.suppress(OSError):
                stream.close()


class ThreadedServer:
    """HTTP/1.1 server with keep-alive: one dispatcher thread waits for readable
    connections and hands each request to a fixed pool of ``workers`` threads."""

    def __init__(self, app: SyncApp, workers: int = 16, wrap: Wrap = unwrapped) -> None:
        self.app = app
        self.served = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0), backlog=1024)
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._jobs: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._returned: collections.deque[_Request] = collections.deque()
        self._open: set[_Request] = set()
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = False
        self._dispatcher = threading.Thread(target=wrap(self._dispatch), name="http-dispatch")
        self._workers = [
            threading.Thread(target=wrap(self._work), name=f"http-worker-{i}")
            for i in range(workers)
        ]
        for thread in (self._dispatcher, *self._workers):
            thread.start()

    def count_served(self) -> None:
        with self._lock:
            self.served += 1

    def close(self) -> None:
        """Stop the dispatcher and the workers, then close every connection."""
        self._closing = True
        self._wake_w.send(b"\0")
        self._dispatcher.join()
        for _ in self._workers:
            self._jobs.put(None)
        for thread in self._workers:
            thread.join()
        for request in list(self._open):
            request.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def _dispatch(self) -> None:
        """Accept connections and pass each readable one to the pool, one request each."""
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        while not self._closing:
            for key, _ in selector.select():
                if key.fileobj is self._listener:
                    self._accept(selector)
                elif key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    while self._returned:
                        request = self._returned.popleft()
                        selector.register(request.connection, selectors.EVENT_READ, request)
                else:
                    selector.unregister(key.fileobj)
                    self._jobs.put(key.data)
        selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        conn, _ = self._listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = _Request(conn, self)
        self._open.add(request)
        selector.register(conn, selectors.EVENT_READ, request)

    def _work(self) -> None:
        """A pool thread: serve one request, then return the connection to the dispatcher."""
        while (request := self._jobs.get()) is not None:
            try:
                request.handle_one_request()
                keep = not request.close_connection
            except OSError:
                keep = False
            if keep:
                self._returned.append(request)
                self._wake_w.send(b"\0")
            else:
                self._open.discard(request)
                request.close()


# --- asyncio: start_server with a minimal HTTP/1.1 keep-alive handler ---------------------

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


def parse_head(head: bytes) -> tuple[str, bool]:
    """Request target and keep-alive from a request head (request line + headers)."""
    line, _, headers = head.partition(b"\r\n")
    parts = line.split(b" ")
    target = parts[1].decode("latin-1") if len(parts) == 3 else ""
    lower = headers.lower()
    if parts[-1] == b"HTTP/1.0":
        return target, b"connection: keep-alive" in lower
    return target, b"connection: close" not in lower


def response_bytes(status: int, body: bytes) -> bytes:
    """A complete HTTP/1.1 response with Content-Length."""
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % (status, _REASONS.get(status, b"Unknown"), len(body)) + body


class AsyncServer:
    """``asyncio.start_server`` serving HTTP/1.1 keep-alive connections, with its event
    loop in one thread of its own (so the caller's thread stays free)."""

    def __init__(self, app: AsyncApp, wrap: Wrap = unwrapped) -> None:
        self.app = app
        self.served = 0
        self.address: tuple[str, int] = (HOST, 0)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=wrap(self._run), name="http-loop")
        self._thread.start()
        self._ready.wait()
        if not self.address[1]:
            raise RuntimeError("the asyncio server did not start (see the thread's error)")

    def close(self) -> None:
        """Stop the loop (closing every connection) and wait for its thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        finally:
            self._ready.set()  # never leave the constructor waiting if start-up failed

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, HOST, 0, backlog=4096)
        self.address = server.sockets[0].getsockname()[:2]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until the client closes it."""
        self._writers.add(writer)
        try:
            while True:
                target, keep = parse_head(await reader.readuntil(b"\r\n\r\n"))
                status, body = await self.app(target) if target else (400, b"")
                self.served += 1  # before sending, as in the threaded server
                writer.write(response_bytes(status, body))
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
