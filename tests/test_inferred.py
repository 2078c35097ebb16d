"""Inferred spans (``inferred_spans=True``): each counted operation goes out as a span
through the application's own TracerProvider, inside the right trace, and spangap's own
spans never reduce its counts. In memory with the SDK's exporter, and end to end over
OTLP/HTTP to a receiver that decodes the requests with OpenTelemetry's proto package."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gt_workloads as w
from conftest import counts_by_site

_EXPORTER = InMemorySpanExporter()
_ADDED: list[bool] = []


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The suite's global SDK provider, with an in-memory exporter (added once)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if not _ADDED:
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _ADDED.append(True)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def inferred(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if (s.attributes or {}).get("spangap.inferred")
    ]


def workload() -> int:
    """Four dark sleeps in this thread, four more handed to a pool from a span (their
    span is lost on the way); returns the span id of the span left behind."""
    for _ in range(4):
        w.dark_sleep()
    tracer = trace.get_tracer("test")
    with ThreadPoolExecutor(2) as pool, tracer.start_as_current_span("request") as request:
        for future in [pool.submit(w.dark_sleep) for _ in range(4)]:
            future.result()
    return request.get_span_context().span_id


def test_each_operation_is_a_span_in_the_right_trace(start_detector, exported, recorded) -> None:
    detector = start_detector(include=["gt_workloads"], inferred_spans=True)
    request_span_id = workload()
    detector.stop()
    request = next(s for s in exported.get_finished_spans() if s.name == "request")
    spans = [s for s in inferred(exported) if s.name == w.site("dark_sleep")]
    lost = [s for s in spans if s.attributes["spangap.cause"] == "context_lost"]
    dark = [s for s in spans if s.attributes["spangap.cause"] == "no_span"]
    assert (len(dark), len(lost)) == (4, 4)
    for span in lost:  # children of the request span, in its trace
        assert span.parent is not None and span.parent.span_id == request_span_id
        assert span.context.trace_id == request.context.trace_id
    for span in dark:  # roots of traces of their own
        assert span.parent is None
        assert span.context.trace_id != request.context.trace_id
    for span in spans:  # its time and its place in the code
        assert span.start_time < span.end_time  # the call's estimated start and end
        assert span.attributes["code.function"] == "dark_sleep"
        assert span.attributes["code.namespace"] == "gt_workloads"
        assert span.attributes["code.filepath"].endswith("gt_workloads.py")


def test_its_own_spans_never_reduce_its_counts(start_detector, exported, recorded) -> None:
    """The same workload with inferred spans off and on: the same counts."""
    counts = []
    for on in (False, True):
        detector = start_detector(include=["gt_workloads"], inferred_spans=on)
        workload()
        detector.stop()
        counts.append(counts_by_site(detector)[w.site("dark_sleep")])
    assert counts == [8, 8]
    assert len(inferred(exported)) == 8


def test_spans_are_rate_limited_per_site(start_detector, exported, recorded) -> None:
    detector = start_detector(
        include=["gt_workloads"], inferred_spans=True, inferred_spans_per_minute=2
    )
    for _ in range(5):
        w.dark_sleep()
    detector.stop()
    assert len(inferred(exported)) == 2
    assert counts_by_site(detector)[w.site("dark_sleep")] == 5
    registry = detector.options.registry
    assert registry.get_sample_value("spangap_inferred_spans_total", {"result": "sent"}) == 2
    limited = {"result": "rate_limited"}
    assert registry.get_sample_value("spangap_inferred_spans_total", limited) == 3


def test_an_exporter_that_blocks_holds_up_neither_the_sampler_nor_the_app(
    start_detector, recorded
) -> None:
    """A SimpleSpanProcessor over an exporter that never returns: the application's
    calls are still counted, and stop() comes back."""
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            release.wait(30)
            return SpanExportResult.SUCCESS

    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(Stuck()))
    try:
        detector = start_detector(include=["gt_workloads"], inferred_spans=True)
        for _ in range(5):
            w.dark_sleep()
        detector.stop()
        assert counts_by_site(detector)[w.site("dark_sleep")] == 5
    finally:
        release.set()


OTLP_APP = """
import sys, time
sys.path.insert(0, {benchmarks!r})
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from concurrent.futures import ThreadPoolExecutor
import spangap
import gt_workloads as w

provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint={endpoint!r})))
trace.set_tracer_provider(provider)
detector = spangap.enable_gap_detector(include=["gt_workloads"], inferred_spans=True,
                                       max_overhead=1)
with ThreadPoolExecutor(1) as pool, trace.get_tracer("app").start_as_current_span("checkout") as s:
    pool.submit(w.dark_sleep).result()
    print(format(s.get_span_context().span_id, "016x"), flush=True)
detector.stop()
provider.shutdown()
"""


def test_inferred_spans_reach_an_otlp_receiver_in_the_right_trace(tmp_path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[ExportTraceServiceRequest] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.append(request)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
    script = tmp_path / "app.py"
    script.write_text(
        OTLP_APP.format(benchmarks=str(w.__file__.rsplit("/", 1)[0]), endpoint=endpoint)
    )
    try:
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60)  # fmt: skip
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    checkout_span_id = bytes.fromhex(done.stdout.strip())
    spans = [span for request in received for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans]  # fmt: skip
    checkout = next(span for span in spans if span.name == "checkout")
    lost = [span for span in spans if span.name == "gt_workloads:dark_sleep"]
    assert len(lost) == 1
    attributes = {a.key: a.value for a in lost[0].attributes}
    assert attributes["spangap.inferred"].bool_value is True
    assert attributes["spangap.cause"].string_value == "context_lost"
    assert lost[0].parent_span_id == checkout_span_id == checkout.span_id
    assert lost[0].trace_id == checkout.trace_id
