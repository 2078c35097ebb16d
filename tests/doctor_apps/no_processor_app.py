"""Planted: the SDK's provider with no span processor (spans end and are dropped)."""

import pipeline
import requests  # noqa: F401
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
pipeline.correlate_logs()
pipeline.trace_requests()
pipeline.carry_context_to_threads()
