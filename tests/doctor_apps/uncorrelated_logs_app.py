"""Planted: logging without the trace id (no LoggingInstrumentor)."""

import logging

import pipeline
import requests  # noqa: F401

pipeline.export_over_otlp("uncorrelated-logs-app")
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
pipeline.trace_requests()
pipeline.carry_context_to_threads()
