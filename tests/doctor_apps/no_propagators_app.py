"""Planted: an empty composite propagator, as OTEL_PROPAGATORS=none gives."""

import pipeline
import requests  # noqa: F401
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator

pipeline.export_over_otlp("no-propagators-app")
set_global_textmap(CompositePropagator([]))
pipeline.correlate_logs()
pipeline.trace_requests()
pipeline.carry_context_to_threads()
