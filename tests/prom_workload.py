"""A detector process with known dark sites, for the Prometheus and ``gapreport top`` tests.

    python -c "import prom_workload; prom_workload.main()" [--extra] [--seconds N] [--linger N]

Prints ``metrics on PORT`` once ``/metrics`` is served, then loops until killed or until
``--seconds`` have passed; with ``--linger`` it then keeps serving the final figures that
long, so a test can compare two reads of them exactly.

Every loop calls, outside any span, ``slow_query`` (60 ms) and ``render_page`` (30 ms),
with ``--extra`` also ``nightly_export`` (25 ms); then, inside a span, it hands
``resize_image`` (22 ms) to a thread pool without the span (a ``context_lost`` gap). Per
second, the fleet's dark seconds rank slow_query > render_page > resize_image >
nightly_export, each well apart from the next, so rankings are stable between two reads.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import spangap

SITES = ("slow_query", "render_page", "resize_image")
EXTRA_SITE = "nightly_export"


def site(name: str) -> str:
    return f"{__name__}:{name}"


def slow_query() -> None:
    time.sleep(0.060)


def render_page() -> None:
    time.sleep(0.030)


def nightly_export() -> None:
    time.sleep(0.025)


def resize_image() -> None:
    time.sleep(0.022)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extra", action="store_true", help="also run nightly_export")
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after this long")
    parser.add_argument("--linger", type=float, default=0.0, help="then serve this long")
    args = parser.parse_args()

    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer(__name__)
    detector = spangap.enable_gap_detector(metrics_port=0, include=[__name__])
    print(f"metrics on {detector.metrics_port}", flush=True)

    deadline = time.monotonic() + args.seconds
    with ThreadPoolExecutor(max_workers=1) as pool:
        while time.monotonic() < deadline:
            slow_query()
            render_page()
            if args.extra:
                nightly_export()
            with tracer.start_as_current_span("handle"):
                pool.submit(resize_image).result()
    time.sleep(args.linger)
    detector.stop()
