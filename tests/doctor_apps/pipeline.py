"""The pieces of a complete tracing setup, for the doctor's fixture apps: each app puts
together all of them but the one it leaves out on purpose."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.logging import LoggingInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def export_over_otlp(service: str) -> None:
    """The SDK provider, batching spans to the collector at OTEL_EXPORTER_OTLP_ENDPOINT."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def correlate_logs() -> None:
    LoggingInstrumentor().instrument(set_logging_format=True)


def trace_requests() -> None:
    RequestsInstrumentor().instrument()


def carry_context_to_threads() -> None:
    ThreadingInstrumentor().instrument()
