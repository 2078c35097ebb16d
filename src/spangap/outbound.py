"""Outbound HTTP requests that leave the trace: sent with no active span, or without a
``traceparent`` header, so that the service downstream starts a trace of its own.

Counted in ``untraced_outbound_requests_total{host,reason}`` (reason ``no_span`` or
``no_header``). The hooks sit where the request's headers are final, below every
client library's own instrumentation, so that a header added by an instrumentation is
seen whatever order things were wrapped in:

- ``http.client.HTTPConnection`` (``putrequest`` / ``putheader`` / ``endheaders``), which
  carries ``urllib.request``, ``urllib3`` and so ``requests``;
- ``httpcore``'s connection pools, which carry ``httpx``;
- ``aiohttp``'s ``ClientRequest.send``, where its trace hooks (and so its
  instrumentation) have already run.

httpcore and aiohttp are hooked once the application has imported them (or httpx):
spangap brings in no client library of its own.

The hooks only look: they never add, change or remove a header, never raise into the
request, and cost a span lookup and a header scan per request.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import Counter

from .faults import note
from .metrics import SiteBound

_HEADER = "traceparent"
_HEADER_BYTES = _HEADER.encode()
_MAX_HOSTS = 100
_FLAG = "_spangap_traceparent"
#: Set by OpenTelemetry's exporters around their own requests (spans, metrics, logs on
#: their way to a collector): those are the pipeline's, not the application's.
_SUPPRESSED = tuple(
    getattr(otel_context, name)
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY")
    if hasattr(otel_context, name)
)


class OutboundWatcher:
    """Installs the hooks and counts the untraced requests by host."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._hosts = SiteBound(_MAX_HOSTS)
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        self._hooked: set[str] = set()  # the modules of _CLIENTS hooked so far

    def install(self) -> None:
        self._hook_http_client()
        self.connect()

    def connect(self) -> None:
        """Hook the client libraries imported since the last call (cheap when none is).
        httpx imports httpcore only when its first client is made: once the application
        has imported httpx, httpcore (its own dependency) is imported here, so that the
        first requests are seen too."""
        for module, imported_as, hook in _CLIENTS:
            if module in self._hooked or not any(name in sys.modules for name in imported_as):
                continue
            self._hooked.add(module)
            try:
                getattr(self, hook)(importlib.import_module(module))
            except Exception as exc:
                note("outbound_hook", exc)

    def uninstall(self) -> None:
        """Restore the originals, unless someone wrapped them after us."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._hooked.clear()

    # -- the count --------------------------------------------------------------------------

    def sent(self, host: object, has_header: bool) -> None:
        """One request is on its way: count it if it leaves the trace."""
        try:
            if any(otel_context.get_value(key) for key in _SUPPRESSED):
                return
            if trace.get_current_span().get_span_context().is_valid:
                if has_header:
                    return
                reason = "no_header"
            else:
                reason = "no_span"
            name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
            with self._lock:
                label, _ = self._hosts.label(name or "?")
            self._counter.labels(label, reason).inc()
        except Exception as exc:
            note("outbound_hook", exc)

    # -- hooks --------------------------------------------------------------------------

    def _patch(self, owner: type, name: str, replacement: Callable[..., Any]) -> None:
        original = owner.__dict__[name]
        replacement.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, name, replacement)

        def undo() -> None:
            if owner.__dict__.get(name) is replacement:
                setattr(owner, name, original)

        self._undo.append(undo)

    def _hook_http_client(self) -> None:
        connection = http.client.HTTPConnection
        putrequest, putheader = connection.putrequest, connection.putheader
        endheaders = connection.endheaders
        watcher = self

        def spangap_putrequest(self: Any, *args: Any, **kwargs: Any) -> Any:
            with contextlib.suppress(Exception):
                setattr(self, _FLAG, False)
            return putrequest(self, *args, **kwargs)

        def spangap_putheader(self: Any, header: Any, *values: Any) -> Any:
            try:
                name = header.decode("latin-1") if isinstance(header, bytes) else str(header)
                if name.lower() == _HEADER:
                    setattr(self, _FLAG, True)
            except Exception:
                pass
            return putheader(self, header, *values)

        def spangap_endheaders(self: Any, *args: Any, **kwargs: Any) -> Any:
            flag = getattr(self, _FLAG, None)
            if flag is not None:  # a request begun while the hooks were in
                watcher.sent(getattr(self, "host", "?"), bool(flag))
            return endheaders(self, *args, **kwargs)

        self._patch(connection, "putrequest", spangap_putrequest)
        self._patch(connection, "putheader", spangap_putheader)
        self._patch(connection, "endheaders", spangap_endheaders)

    def _looked_at(self, request: Any, has_header: Callable[[Any], bool]) -> None:
        """An httpcore or aiohttp request (both have ``url.host`` and ``headers``) is on
        its way; reading it must not fail the request either."""
        try:
            self.sent(request.url.host, has_header(request.headers))
        except Exception as exc:
            note("outbound_hook", exc)

    def _hook_httpcore(self, httpcore: Any) -> None:
        looked_at = self._looked_at
        sync_pool, async_pool = httpcore.ConnectionPool, httpcore.AsyncConnectionPool
        handle, handle_async = sync_pool.handle_request, async_pool.handle_async_request

        def handle_request(self: Any, request: Any) -> Any:
            looked_at(request, _has_header)
            return handle(self, request)

        async def handle_async_request(self: Any, request: Any) -> Any:
            looked_at(request, _has_header)
            return await handle_async(self, request)

        self._patch(sync_pool, "handle_request", handle_request)
        self._patch(async_pool, "handle_async_request", handle_async_request)

    def _hook_aiohttp(self, client_reqrep: Any) -> None:
        looked_at = self._looked_at
        request_type = client_reqrep.ClientRequest
        send = request_type.send  # a coroutine function in every aiohttp for Python 3.11+

        async def spangap_send(self: Any, *args: Any, **kwargs: Any) -> Any:
            looked_at(self, _has_header_named)
            return await send(self, *args, **kwargs)

        self._patch(request_type, "send", spangap_send)


#: (module hooked, names whose import means the application uses it, hook method)
_CLIENTS = (
    ("httpcore", ("httpcore", "httpx"), "_hook_httpcore"),
    ("aiohttp.client_reqrep", ("aiohttp",), "_hook_aiohttp"),
)


def _has_header(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """httpcore's headers: (name, value) byte pairs."""
    return any(name.lower() == _HEADER_BYTES for name, _ in headers)


def _has_header_named(headers: Any) -> bool:
    """aiohttp's headers: a case-insensitive mapping."""
    return _HEADER in headers
