"""A WSGI app with the whole pipeline: the doctor finds nothing wrong. Run as a script,
it serves; imported, as a server (and the doctor) would, it does not."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pipeline
import requests  # noqa: F401  (the client the app calls other services with)

pipeline.export_over_otlp("good-app")
pipeline.correlate_logs()
pipeline.trace_requests()
pipeline.carry_context_to_threads()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


if __name__ == "__main__":
    from wsgiref.simple_server import make_server

    make_server("127.0.0.1", 8000, app).serve_forever()
