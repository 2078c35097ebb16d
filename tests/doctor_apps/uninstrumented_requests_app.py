"""Planted: the app calls other services with requests, which is not instrumented."""

import pipeline
import requests  # noqa: F401

pipeline.export_over_otlp("uninstrumented-requests-app")
pipeline.correlate_logs()
pipeline.carry_context_to_threads()
