"""Planted: no SDK tracer provider, so the API's proxy makes spans that record nothing."""

import pipeline
import requests  # noqa: F401

pipeline.correlate_logs()
pipeline.trace_requests()
pipeline.carry_context_to_threads()
