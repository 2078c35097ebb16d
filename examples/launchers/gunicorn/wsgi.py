"""A WSGI app for gunicorn: per request, one helper outside any span and one inside a
span; /metrics adds up every worker's counters (prometheus-client multiprocess mode)."""

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer(__name__)


def load_report() -> None:
    time.sleep(0.03)  # dark: counted once per request


def render() -> None:
    with tracer.start_as_current_span("render"):
        time.sleep(0.03)  # spanned: never counted


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        load_report()
        render()
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
