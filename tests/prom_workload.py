"""A detector process with known dark sites, for the Prometheus and ``gapreport top`` tests.

    python -c "import prom_workload; prom_workload.main()" [--extra] [--wait] [--seconds N]
        [--linger N]

Prints ``metrics on PORT`` once ``/metrics`` is served, then (with ``--wait``, after a line
on stdin) loops until killed or until ``--seconds`` have passed; with ``--linger`` it then
keeps serving the final figures that long, so a test can compare two reads exactly.

Every loop calls, outside any span, ``slow_query`` (75 ms) and ``render_page`` (35 ms),
with ``--extra`` also ``nightly_export`` (15 ms); then, inside a span, it hands
``resize_image`` (45 ms) to a thread pool without the span (a ``context_lost`` gap). Per
second, the fleet's dark seconds rank slow_query > resize_image > render_page >
nightly_export, each well apart from the next, so rankings are stable between two reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import spangap

SITES = ("slow_query", "render_page", "resize_image")
EXTRA_SITE = "nightly_export"


def site(name: str) -> str:
    return f"{__name__}:{name}"


# Durations sit well inside one histogram bucket each (0.01/0.025/0.05/0.1 s), so that a
# p95 does not hop between two buckets from one read to the next.


def slow_query() -> None:
    time.sleep(0.075)


def render_page() -> None:
    time.sleep(0.035)


def nightly_export() -> None:
    time.sleep(0.015)


def resize_image() -> None:
    time.sleep(0.045)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--extra", action="store_true", help="also run nightly_export")
    parser.add_argument("--seconds", type=float, default=120.0, help="stop after this long")
    # Prometheus's increase() cannot see what a series counted before its first scrape, so
    # a test starts the work only once Prometheus is scraping.
    parser.add_argument("--wait", action="store_true", help="start on a line from stdin")
    parser.add_argument("--linger", type=float, default=0.0, help="then serve this long")
    args = parser.parse_args()

    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer(__name__)
    # Full sampling rate: the tests check the dashboard's arithmetic against what was
    # counted, and nightly_export (1.5x the threshold) is the kind of short operation
    # that the default overhead budget may thin out on a busy 2-core machine.
    detector = spangap.enable_gap_detector(metrics_port=0, include=[__name__], max_overhead=1.0)
    print(f"metrics on {detector.metrics_port}", flush=True)
    if args.wait:
        sys.stdin.readline()

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
