"""Sends N load_report tasks: `python producer.py N [--traced]`. With --traced the
sender has a span and Celery's OpenTelemetry instrumentation, which puts the span's
traceparent header on each message; without it, nothing upstream has a span."""

import sys
from contextlib import nullcontext

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tasks import load_report

traced = "--traced" in sys.argv
trace.set_tracer_provider(TracerProvider())
if traced:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument()
tracer = trace.get_tracer("producer")
with tracer.start_as_current_span("nightly-reports") if traced else nullcontext():
    for n in range(int(sys.argv[1])):
        load_report.delay(n)
