"""Planted: spans are printed to stdout by a ConsoleSpanExporter and go nowhere else."""

import pipeline
import requests  # noqa: F401
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(provider)
pipeline.correlate_logs()
pipeline.trace_requests()
pipeline.carry_context_to_threads()
print("console_only_app imported")  # stdout of the app must not spoil the report
