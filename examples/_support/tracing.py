"""The OpenTelemetry SDK pipeline both shops run with: a batch processor, spans as JSON lines.

The SDK's own ConsoleSpanExporter does the writing, so exporting runs in SDK code on the
processor's thread, as it would with an OTLP exporter. Instrumentation libraries are each
shop's business: its run script applies the ones it wants.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


def configure_tracing(service_name: str, spans_file: Path) -> tuple[TracerProvider, IO[str]]:
    """Set the global tracer provider; spans go to ``spans_file``, one JSON object a line.

    Returns the provider, whose ``shutdown()`` flushes the spans still queued, and the open
    file, to close after that.
    """
    out = spans_file.open("w", encoding="utf-8")
    exporter = ConsoleSpanExporter(out=out, formatter=_json_line)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider, out


def _json_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"
