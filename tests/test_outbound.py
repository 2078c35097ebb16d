"""``untraced_outbound_requests_total{host,reason}``: real requests to a real local
server with urllib.request, requests, httpx (sync and async) and aiohttp: counted when sent with
no active span (no_span) or from a span without a traceparent header (no_header), not
when the client's OpenTelemetry instrumentation propagates the span; the server sees
exactly the headers it would see without spangap."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

METRIC = "untraced_outbound_requests_total"


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP server; its base URL and the headers of each request it got."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/", seen
    httpd.shutdown()
    httpd.server_close()


def untraced(detector, reason: str) -> float:
    value = detector.options.registry.get_sample_value(
        METRIC, {"host": "127.0.0.1", "reason": reason}
    )
    return value or 0.0


def test_urllib_and_requests_with_and_without_a_span(start_detector, server) -> None:
    import requests

    url, seen = server
    detector = start_detector()
    tracer = trace.get_tracer("test")
    urllib.request.urlopen(url, timeout=10).read()  # no span anywhere
    requests.get(url, timeout=10)
    with tracer.start_as_current_span("checkout"):
        urllib.request.urlopen(url, timeout=10).read()  # a span, not propagated
        requests.get(url, timeout=10)
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (2, 2)
    assert all("traceparent" not in headers for headers in seen)  # nothing was added


def test_an_instrumented_client_that_propagates_is_not_counted(start_detector, server) -> None:
    import requests
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    url, seen = server
    detector = start_detector()
    RequestsInstrumentor().instrument()
    try:
        with trace.get_tracer("test").start_as_current_span("checkout"):
            requests.get(url, timeout=10)
    finally:
        RequestsInstrumentor().uninstrument()
    assert "traceparent" in seen[-1]
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (0, 0)


def test_httpx_sync_and_async(start_detector, server) -> None:
    import httpx

    url, _ = server
    detector = start_detector()  # httpx is imported: its pools are hooked at the start

    async def fetch() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url)

    with httpx.Client() as client:
        client.get(url)
    asyncio.run(fetch())
    with trace.get_tracer("test").start_as_current_span("checkout"), httpx.Client() as client:
        client.get(url)
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (2, 1)


def test_aiohttp_with_and_without_a_span_and_with_its_instrumentation(
    start_detector, server
) -> None:
    import aiohttp
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    url, seen = server
    detector = start_detector()  # aiohttp is imported: its requests are hooked at the start
    tracer = trace.get_tracer("test")

    async def fetch(times: int) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(times):
                async with session.get(url) as response:
                    await response.read()

    async def requests_of_a_service() -> None:
        await fetch(2)  # no span anywhere
        with tracer.start_as_current_span("checkout"):
            await fetch(1)  # a span, not propagated

    asyncio.run(requests_of_a_service())
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (2, 1)
    assert all("traceparent" not in headers for headers in seen)  # nothing was added

    AioHttpClientInstrumentor().instrument()
    try:

        async def propagated() -> None:
            with tracer.start_as_current_span("checkout"):
                await fetch(1)

        asyncio.run(propagated())
    finally:
        AioHttpClientInstrumentor().uninstrument()
    assert "traceparent" in seen[-1]
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (2, 1)


def test_an_exporters_own_requests_are_not_the_applications(start_detector, server) -> None:
    """The SDK's span processors suppress instrumentation around exports: a span
    exporter posting to a collector over http.client is not counted."""
    url, _ = server

    class PostingExporter(InMemorySpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            urllib.request.urlopen(url, timeout=10).read()
            return super().export(spans)

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PostingExporter()))
    detector = start_detector()
    with provider.get_tracer("test").start_as_current_span("exported"):
        pass
    assert (untraced(detector, "no_span"), untraced(detector, "no_header")) == (0, 0)


def test_stop_takes_the_hooks_away(start_detector, server) -> None:
    import http.client

    before = http.client.HTTPConnection.endheaders
    detector = start_detector()
    assert http.client.HTTPConnection.endheaders is not before
    detector.stop()
    assert http.client.HTTPConnection.endheaders is before


def test_the_option_turns_it_off(start_detector, server) -> None:
    url, _ = server
    detector = start_detector(outbound_requests=False)
    urllib.request.urlopen(url, timeout=10).read()
    assert untraced(detector, "no_span") == 0
