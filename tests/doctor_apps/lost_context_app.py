"""Planted: a thread pool without the threading instrumentation; its jobs lose the span."""

from concurrent.futures import ThreadPoolExecutor

import pipeline
import requests  # noqa: F401

pipeline.export_over_otlp("lost-context-app")
pipeline.correlate_logs()
pipeline.trace_requests()

pool = ThreadPoolExecutor(max_workers=4)
