"""``gapreport doctor``, run for real on apps that each plant one mistake in their tracing
setup (tests/doctor_apps), on one that has none, and on the project's own examples.

The test span goes to a small OTLP/HTTP receiver started here, which decodes what it is
sent as the collector would.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spangap.doctor import CHECK_IDS, otlp_traces_url
from spangap.doctor.checks import TEST_SPAN_NAME
from spangap.doctor.probe import parse_app

pytest.importorskip("requests")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="spangap[dev]")
pytest.importorskip("opentelemetry.instrumentation.requests", reason="spangap[examples]")
pytest.importorskip("opentelemetry.instrumentation.logging", reason="spangap[dev]")
pytest.importorskip("opentelemetry.instrumentation.threading", reason="spangap[dev]")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

APPS = Path(__file__).parent / "doctor_apps"
LAUNCHERS = Path(__file__).parents[1] / "examples" / "launchers"


# --- an OTLP/HTTP receiver -------------------------------------------------------------


@dataclass
class Collector:
    """What a collector was sent: one decoded request per POST to /v1/traces."""

    url: str
    requests: list[ExportTraceServiceRequest] = field(default_factory=list)

    def span(self, trace_id: str) -> tuple[str, dict[str, Any]] | None:
        """The span of that trace, and its resource's attributes, if it arrived."""
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        if span.trace_id.hex() == trace_id:
                            return span.name, attributes
        return None


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            collector.requests.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Receive


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    received = Collector(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- running the doctor ----------------------------------------------------------------


def doctor(
    *args: str, cwd: Path = APPS, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into the fixture directories
    return subprocess.run(
        [sys.executable, "-m", "spangap.cli", "doctor", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def app_env(collector: Collector) -> dict[str, str]:
    """The fixture apps' OTLP exporters send to the receiver."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stderr == "" or "Traceback" not in done.stderr, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def problems(document: dict[str, Any]) -> set[str]:
    return {f["id"] for f in document["findings"] if f["severity"] != "ok"}


def severities(document: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in document["findings"]}


def sent_trace_id(document: dict[str, Any]) -> str:
    (message,) = [f["message"] for f in document["findings"] if f["id"] == "test-span"]
    found = re.search(r"trace ([0-9a-f]{32})", message)
    assert found is not None, message
    return found.group(1)


# --- the fixture apps ------------------------------------------------------------------


def test_the_complete_setup_passes_every_check_and_its_test_span_arrives(collector) -> None:
    done = doctor("good_app:app", "--format", "json", env=app_env(collector))
    document = report(done)
    assert done.returncode == 0
    assert problems(document) == set()
    assert {f["id"] for f in document["findings"]} == set(CHECK_IDS)
    assert document["skipped"] == []
    # Sent through the app's own exporter, under the app's service name.
    arrived = collector.span(sent_trace_id(document))
    assert arrived is not None
    name, resource = arrived
    assert name == TEST_SPAN_NAME
    assert resource["service.name"] == "good-app"


@pytest.mark.parametrize(
    ("app", "planted", "exit_code"),
    [
        ("no_sdk_app", "tracer-provider", 1),
        ("no_processor_app", "span-processor", 1),
        ("console_only_app", "span-processor", 0),
        ("no_propagators_app", "propagators", 1),
        ("uncorrelated_logs_app", "log-correlation", 0),
        ("uninstrumented_requests_app", "outbound-http", 0),
        ("lost_context_app", "executors", 0),
    ],
)
def test_each_planted_mistake_is_the_one_problem_found(
    collector, app: str, planted: str, exit_code: int
) -> None:
    done = doctor(app, "--format", "json", env=app_env(collector))
    document = report(done)
    assert problems(document) == {planted}
    assert done.returncode == exit_code
    (finding,) = [f for f in document["findings"] if f["id"] == planted]
    assert finding["fix"]


def test_the_app_can_be_a_file_and_its_main_block_does_not_run(collector, tmp_path) -> None:
    # good_app.py serves forever under __main__: the doctor must import it, not run it.
    done = doctor(
        str(APPS / "good_app.py"), "--format", "json", cwd=tmp_path, env=app_env(collector)
    )
    assert done.returncode == 0
    assert problems(report(done)) == set()


def test_what_the_app_prints_does_not_spoil_the_report(collector) -> None:
    done = doctor("console_only_app", "--format", "json", env=app_env(collector))
    assert done.stdout.startswith("{")
    assert "console_only_app imported" not in done.stdout


def test_a_test_span_reaches_the_given_endpoint(collector) -> None:
    # An app with no exporter of its own: the doctor sends with its own, to /v1/traces.
    done = doctor("no_sdk_app", "--otlp-endpoint", collector.url, "--format", "json")
    document = report(done)
    assert severities(document)["test-span"] == "ok"
    assert collector.url + "/v1/traces" in str(document["findings"])
    arrived = collector.span(sent_trace_id(document))
    assert arrived is not None and arrived[0] == TEST_SPAN_NAME


def test_an_endpoint_nobody_listens_on_is_an_error_that_names_it(collector) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    done = doctor("good_app:app", "--otlp-endpoint", endpoint, "--format", "json")
    document = report(done)
    assert done.returncode == 1
    assert problems(document) == {"test-span"}
    (finding,) = [f for f in document["findings"] if f["id"] == "test-span"]
    assert finding["severity"] == "error"
    assert endpoint + "/v1/traces" in finding["message"]


def test_the_table_lists_every_check_with_the_fix_under_a_problem(collector) -> None:
    done = doctor("uncorrelated_logs_app", env=app_env(collector))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == "gapreport doctor uncorrelated_logs_app"
    for check in CHECK_IDS:
        assert any(check in line for line in lines), check
    warning = next(
        n for n, line in enumerate(lines) if line.split()[:2] == ["warning", "log-correlation"]
    )
    assert "LoggingInstrumentor().instrument(set_logging_format=True)" in lines[warning + 1]
    assert lines[-1] == "0 errors, 1 warning, 6 ok"


def test_checks_with_nothing_to_look_at_say_why_they_did_not_run() -> None:
    done = doctor("no_sdk_app")
    not_run = {line.split()[2] for line in done.stdout.splitlines() if line.startswith("  not run")}
    assert not_run == {"span-processor", "test-span"}
    assert "--otlp-endpoint" in done.stdout


# --- apps that cannot be checked -------------------------------------------------------


def test_an_app_that_fails_to_import_is_one_line_and_exit_2() -> None:
    done = doctor("broken_app")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "gapreport: doctor: cannot import broken_app: "
        "RuntimeError: DATABASE_URL is not set (see the README)\n"
    )


def test_an_app_that_serves_at_import_is_stopped_at_the_timeout() -> None:
    done = doctor("slow_app", "--timeout", "2")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("gapreport: doctor: importing slow_app did not finish within 2 s")


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module", "cannot import no_such_module: ModuleNotFoundError: No module named"),
        ("good_app:no_such_attribute", "has no attribute 'no_such_attribute'"),
        ("missing.py", "no such file: missing.py"),
        ("not a module", "not a module name"),
    ],
)
def test_wrong_apps_are_one_line_and_exit_2(app: str, message: str) -> None:
    done = doctor(app)
    assert done.returncode == 2
    assert done.stderr.startswith("gapreport: doctor: ")
    assert message in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_bad_endpoint_is_a_usage_error() -> None:
    done = doctor("good_app", "--otlp-endpoint", "localhost:4318")
    assert done.returncode == 2
    assert "expected an http:// or https:// URL" in done.stderr


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("app", (None, "app", None)),
        ("pkg.wsgi:application", (None, "pkg.wsgi", "application")),
        ("app.py", ("app.py", None, None)),
        ("src/app.py:app.server", ("src/app.py", None, "app.server")),
    ],
)
def test_app_forms(text: str, parsed: tuple[str | None, str | None, str | None]) -> None:
    assert parse_app(text) == parsed


def test_a_collector_base_url_gets_the_traces_path() -> None:
    assert otlp_traces_url("http://otel:4318") == "http://otel:4318/v1/traces"
    assert otlp_traces_url("http://otel:4318/") == "http://otel:4318/v1/traces"
    assert otlp_traces_url("https://otel/custom/traces") == "https://otel/custom/traces"


# --- the project's examples ------------------------------------------------------------

#: What each launcher example lacks, read from its code: a bare TracerProvider() (no
#: processor, so no exporter), no log correlation, and, for the two that hand work to
#: another thread without its context, the threading instrumentation.
EXAMPLES = [
    pytest.param(
        "gunicorn",
        "wsgi:app",
        {"tracer-provider": "ok", "span-processor": "error", "log-correlation": "warning"},
        id="gunicorn",
    ),
    pytest.param(
        "uvicorn",
        "app:app",  # run_in_executor(None, load_report) without the request's context
        {
            "tracer-provider": "ok",
            "span-processor": "error",
            "log-correlation": "warning",
            "executors": "warning",
        },
        id="uvicorn",
    ),
    pytest.param(
        "django",
        "mysite.wsgi:application",  # shop.views: threading.Thread(target=refresh_stock)
        {
            "tracer-provider": "ok",
            "span-processor": "error",
            "log-correlation": "warning",
            "executors": "warning",
        },
        id="django",
    ),
]


@pytest.mark.parametrize(("example", "app", "expected"), EXAMPLES)
def test_the_launcher_examples_lack_what_their_code_leaves_out(
    example: str, app: str, expected: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip(
        {"uvicorn": "fastapi", "django": "django"}.get(example, "prometheus_client")
    )
    copy = tmp_path / example
    shutil.copytree(LAUNCHERS / example, copy)
    done = doctor(app, "--format", "json", cwd=copy)
    found = severities(report(done))
    assert {k: found.get(k) for k in expected} == expected
    assert done.returncode == 1  # the missing processor
