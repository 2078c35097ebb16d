"""A Celery app for a prefork worker: the detector starts in each pool process, and the
worker's main process serves one /metrics for all of them (prometheus-client
multiprocess mode: PROMETHEUS_MULTIPROC_DIR set for the worker). TRACE_TASKS=1 turns on
Celery's OpenTelemetry instrumentation, which gives every task body a span."""

import os
import time

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

import spangap

# A broker that needs no server: messages are files in BROKER_DIR.
app = Celery("tasks", broker="filesystem://")
app.conf.broker_transport_options = {
    "data_folder_in": os.environ["BROKER_DIR"],
    "data_folder_out": os.environ["BROKER_DIR"],
    "polling_interval": 0.1,
}


@worker_init.connect
def serve_metrics(**_):
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(int(os.environ["METRICS_PORT"]), addr="127.0.0.1", registry=registry)


@worker_process_init.connect
def start_tracing(**_):
    trace.set_tracer_provider(TracerProvider())
    if os.environ.get("TRACE_TASKS") == "1":
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()
    spangap.enable_gap_detector()  # options from SPANGAP_* as well


@worker_process_shutdown.connect
def forget_process(pid, **_):
    multiprocess.mark_process_dead(pid)


@app.task
def load_report(n):
    time.sleep(0.03)  # the task body: dark unless TRACE_TASKS=1
    return n
