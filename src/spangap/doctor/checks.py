"""The checks ``gapreport doctor`` runs inside the app's process, after importing the app.

Each check is a function of a ``Probe`` that returns its findings, or raises
``NotApplicable`` when there is nothing for it to look at. Where the answer can be
observed, the check observes it (a record is logged, a request is sent, a job is
submitted) rather than trusting a flag: an app can be set up in more ways than one.
Whatever the SDK keeps private is read with ``getattr``, so a change in the SDK makes a
check say it could not look, not crash.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import CHECK_IDS, ERROR, OK, WARNING, Finding, describe, one_line

#: The name of the span sent by ``test-span``: search for it in the tracing backend.
TEST_SPAN_NAME = "spangap doctor test span"

#: Exporters that keep spans inside the process: fine in tests, not for a service.
LOCAL_EXPORTERS = frozenset({"ConsoleSpanExporter", "InMemorySpanExporter"})

_OTLP_HTTP = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


class NotApplicable(Exception):
    """Raised by a check that has nothing to look at; its message says why."""


@dataclass(frozen=True)
class Probe:
    """What the checks look at: the app, already imported into this process."""

    #: Modules in ``sys.modules`` right after the app was imported.
    modules: frozenset[str]
    #: Where ``test-span`` sends its span (the full /v1/traces URL), if the user said.
    otlp_endpoint: str | None
    #: ``time.monotonic()`` by which every check must be done.
    deadline: float

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()


Check = Callable[[Probe], list[Finding]]


# --- helpers ---------------------------------------------------------------------------


def _private_tracer(resource: Resource | None = None) -> trace.Tracer:
    """A tracer of no pipeline of the app's, sampling every span whatever the
    environment says: the checks need spans with real ids even where the app has no
    SDK provider, and must not send them to the app's backend."""
    provider = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
    return provider.get_tracer("spangap.doctor")


def _private_span(name: str) -> trace.Span:
    return _private_tracer().start_span(name)


def _sdk_provider() -> TracerProvider | None:
    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def _type_name(value: object) -> str:
    return type(value).__name__


def _optional_attribute(module: str, name: str) -> Any:
    """``module.name`` when that module can be imported, else None."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except Exception:
        return None


def _dig(value: object, *names: str) -> Any:
    for name in names:
        value = getattr(value, name, None)
        if value is None:
            return None
    return value


# --- tracer-provider -------------------------------------------------------------------


def check_tracer_provider(probe: Probe) -> list[Finding]:
    """Without the SDK's provider every span is a no-op: nothing is recorded or sent."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        service = provider.resource.attributes.get("service.name", "unknown_service")
        return [
            Finding(
                "tracer-provider",
                OK,
                f"the global tracer provider is the SDK's TracerProvider (service.name={service})",
            )
        ]
    fix = (
        "call trace.set_tracer_provider(TracerProvider()) from opentelemetry.sdk.trace where "
        "the app starts, or run it under opentelemetry-instrument"
    )
    name = _type_name(provider)
    if name in ("ProxyTracerProvider", "NoOpTracerProvider"):
        message = f"no SDK tracer provider is set (the API's {name}): spans record nothing"
        return [Finding("tracer-provider", ERROR, message, fix)]
    message = f"the global tracer provider is {name}, not the SDK's: the doctor cannot inspect it"
    return [Finding("tracer-provider", WARNING, message, "check its processors by hand")]


# --- span-processor --------------------------------------------------------------------


def _span_processors(provider: TracerProvider) -> list[Any] | None:
    """The provider's processors, nested multi-processors flattened; None if unreadable."""
    found = _dig(provider, "_active_span_processor", "_span_processors")
    if not isinstance(found, tuple | list):
        return None
    flat: list[Any] = []
    for processor in found:
        nested = getattr(processor, "_span_processors", None)
        if isinstance(nested, tuple | list):
            flat.extend(nested)
        else:
            flat.append(processor)
    return flat


def _exporter_of(processor: object) -> Any:
    """The exporter a processor hands spans to: ``span_exporter`` on most SDK versions,
    ``_batch_processor._exporter`` on recent BatchSpanProcessors."""
    for path in (("span_exporter",), ("_exporter",), ("_batch_processor", "_exporter")):
        exporter = _dig(processor, *path)
        if exporter is not None:
            return exporter
    return None


def _app_exporters() -> list[Any]:
    provider = _sdk_provider()
    processors = _span_processors(provider) if provider is not None else None
    exporters = (_exporter_of(p) for p in processors or [])
    return [e for e in exporters if e is not None]


def _is_otlp(exporter: object) -> bool:
    return type(exporter).__module__.startswith("opentelemetry.exporter.otlp")


def _endpoint_of(exporter: object) -> str:
    endpoint = getattr(exporter, "_endpoint", None)
    return endpoint if isinstance(endpoint, str) else "its configured endpoint"


def _describe_pair(processor: object, exporter: object) -> str:
    if exporter is None:
        return _type_name(processor)
    where = f" ({_endpoint_of(exporter)})" if _is_otlp(exporter) else ""
    return f"{_type_name(processor)} -> {_type_name(exporter)}{where}"


_ADD_PROCESSOR = (
    "provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter())), with "
    "opentelemetry-exporter-otlp-proto-http installed"
)


def check_span_processor(probe: Probe) -> list[Finding]:
    """A provider without a processor, or with only a local exporter, sends nothing out."""
    provider = _sdk_provider()
    if provider is None:
        raise NotApplicable("there is no SDK TracerProvider to inspect")
    processors = _span_processors(provider)
    if processors is None:
        message = "could not inspect the TracerProvider's span processors"
        return [
            Finding("span-processor", WARNING, message, f"make sure the app calls {_ADD_PROCESSOR}")
        ]
    if not processors:
        message = "the SDK TracerProvider has no span processor: every span is dropped when it ends"
        return [Finding("span-processor", ERROR, message, _ADD_PROCESSOR)]
    pairs = [(p, _exporter_of(p)) for p in processors]
    shown = ", ".join(_describe_pair(p, e) for p, e in pairs)
    exporters = [e for _, e in pairs if e is not None]
    if not exporters:
        message = f"could not find an exporter behind {shown}"
        fix = "make sure one of these processors exports the spans, or " + _ADD_PROCESSOR
        return [Finding("span-processor", WARNING, message, fix)]
    if all(_type_name(e) in LOCAL_EXPORTERS for e in exporters):
        message = f"spans only go to {shown}: they never leave the process"
        return [Finding("span-processor", WARNING, message, _ADD_PROCESSOR)]
    return [Finding("span-processor", OK, f"span processors: {shown}")]


# --- test-span -------------------------------------------------------------------------


def _test_span() -> ReadableSpan:
    """A finished span under the app's resource, so it shows up under the app's name."""
    provider = _sdk_provider()
    resource = provider.resource if provider is not None else Resource.create()
    span = _private_tracer(resource).start_span(TEST_SPAN_NAME)
    span.end()
    assert isinstance(span, ReadableSpan)
    return span


@contextmanager
def _exporter_errors() -> Iterator[list[str]]:
    """The messages OpenTelemetry's exporters log while the block runs: their reason."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(one_line(record.getMessage()))

    exporters = logging.getLogger("opentelemetry.exporter")
    handler, saved_level = Collect(), exporters.level
    exporters.addHandler(handler)
    exporters.setLevel(logging.WARNING)
    try:
        yield messages
    finally:
        exporters.removeHandler(handler)
        exporters.setLevel(saved_level)


def _export(exporter: Any, span: ReadableSpan, seconds: float) -> str | None:
    """Export one span within ``seconds``; None on success, else the reason."""
    outcome: list[object] = []

    def send() -> None:
        try:
            outcome.append(exporter.export([span]))
        except Exception as exc:
            outcome.append(exc)

    with _exporter_errors() as logged:
        sender = threading.Thread(target=send, name="spangap-doctor-export", daemon=True)
        sender.start()
        sender.join(seconds)
    if not outcome:
        return f"no answer within {seconds:.0f} s"
    result = outcome[0]
    if isinstance(result, Exception):
        return describe(result)
    if getattr(result, "name", None) == "SUCCESS":
        return None
    if not logged:
        return f"the exporter returned {getattr(result, 'name', result)}"
    with_status = [message for message in logged if "code:" in message]
    return (with_status or logged)[0]


def _test_span_target(probe: Probe) -> tuple[Any, str, bool]:
    """The exporter to send with, where it sends, and whether it is ours to shut down."""
    if probe.otlp_endpoint is not None:
        exporter_class = _optional_attribute(_OTLP_HTTP, "OTLPSpanExporter")
        if exporter_class is None:
            raise ImportError("opentelemetry-exporter-otlp-proto-http is not installed")
        timeout = max(1.0, min(5.0, probe.seconds_left() - 3))
        exporter = exporter_class(endpoint=probe.otlp_endpoint, timeout=timeout)
        return exporter, probe.otlp_endpoint, True
    for exporter in _app_exporters():
        if _is_otlp(exporter):
            return exporter, _endpoint_of(exporter), False
    raise NotApplicable("give --otlp-endpoint URL: the app has no OTLP exporter to send through")


def _unreachable(url: str, seconds: float) -> str | None:
    """Why nothing can be sent to ``url`` at all, found in one connection attempt rather
    than in the exporter's retries; None when something listens there."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return describe(exc)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=seconds).close()
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port} ({exc.strerror or describe(exc)})"
    return None


def _direct(url: str) -> bool:
    """Whether requests to ``url`` go straight to it, not through a proxy of the
    environment's (then a connection to the host itself proves nothing)."""
    parts = urlsplit(url)
    proxied = parts.scheme in urllib.request.getproxies()
    return not proxied or bool(urllib.request.proxy_bypass(parts.netloc))


def _send_test_span(exporter: Any, where: str, span: ReadableSpan, probe: Probe) -> str | None:
    """None when the span was accepted, else the reason."""
    if where.startswith(("http://", "https://")) and _direct(where):
        reason = _unreachable(where, max(1.0, min(3.0, probe.seconds_left() / 4)))
        if reason is not None:
            return reason
    return _export(exporter, span, max(1.0, probe.seconds_left() - 2))


def check_test_span(probe: Probe) -> list[Finding]:
    """The pipeline can be complete and still send nowhere: a wrong URL, a collector down."""
    try:
        exporter, where, ours = _test_span_target(probe)
    except ImportError as exc:
        fix = "pip install opentelemetry-exporter-otlp-proto-http in the app's environment"
        return [Finding("test-span", ERROR, f"cannot send a test span: {exc}", fix)]
    span = _test_span()
    try:
        reason = _send_test_span(exporter, where, span, probe)
    finally:
        if ours:
            exporter.shutdown()
    if reason is None:
        trace_id = format(span.context.trace_id, "032x") if span.context else "?"
        message = f"{where} accepted a test span ({TEST_SPAN_NAME!r}, trace {trace_id})"
        return [Finding("test-span", OK, message)]
    message = f"{where} did not accept a test span: {reason}"
    fix = (
        "check that an OTLP/HTTP collector listens there (usually port 4318, path /v1/traces) "
        "and that the app can reach it"
    )
    return [Finding("test-span", ERROR, message, fix)]


# --- propagators -----------------------------------------------------------------------


def _propagator_names(textmap: object) -> list[str]:
    inner = getattr(textmap, "_propagators", None)
    if isinstance(inner, list | tuple):
        return [_type_name(p) for p in inner]
    return [_type_name(textmap)]


def _injected_headers(context_span: trace.Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(context_span))
    return carrier


def _sends_traceparent() -> bool:
    span = _private_span("spangap doctor propagation check")
    try:
        return "traceparent" in _injected_headers(span)
    finally:
        span.end()


def check_propagators(probe: Probe) -> list[Finding]:
    """Without W3C tracecontext, outgoing calls carry no trace: the next service starts anew."""
    names = _propagator_names(propagate.get_global_textmap())
    if _sends_traceparent():
        return [Finding("propagators", OK, f"W3C traceparent is injected ({', '.join(names)})")]
    fix = (
        "leave OTEL_PROPAGATORS unset or include tracecontext in it "
        "(OTEL_PROPAGATORS=tracecontext,baggage)"
    )
    if names in ([], ["CompositePropagator"]):
        message = "no propagator is set: outgoing requests carry no trace context"
    else:
        message = f"the propagators ({', '.join(names)}) do not inject a W3C traceparent header"
    return [Finding("propagators", ERROR, message, fix)]


# --- log-correlation -------------------------------------------------------------------


class _Capture(logging.Handler):
    """Keeps the records it is given, after every other handler on the root logger has
    had them (and any filter of theirs has added its fields)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record_inside_span(span: trace.Span) -> logging.LogRecord | None:
    root = logging.getLogger()
    capture, saved_level = _Capture(), root.level
    root.addHandler(capture)
    root.setLevel(min(saved_level or logging.INFO, logging.INFO))
    try:
        with trace.use_span(span):
            root.info("spangap doctor: does this record carry the trace id?")
    finally:
        root.removeHandler(capture)
        root.setLevel(saved_level)
    return capture.records[-1] if capture.records else None


def _carries_trace_id(record: logging.LogRecord, trace_id: int) -> str | None:
    """The record's attribute that holds ``trace_id`` (as hex or as a number), if any."""
    wanted = format(trace_id, "032x")
    for name in ("otelTraceID", "trace_id"):
        value = getattr(record, name, None)
        if value == trace_id or (isinstance(value, str) and value.lower() == wanted):
            return name
    return None


def check_log_correlation(probe: Probe) -> list[Finding]:
    """Logs without the trace id cannot be joined to the trace they happened in."""
    span = _private_span("spangap doctor log check")
    try:
        record = _record_inside_span(span)
    finally:
        span.end()
    fix = (
        "pip install opentelemetry-instrumentation-logging; call "
        "LoggingInstrumentor().instrument(set_logging_format=True) at start-up "
        "(or OTEL_PYTHON_LOG_CORRELATION=true under opentelemetry-instrument)"
    )
    if record is None:
        message = "could not log a test record through the root logger (is logging disabled?)"
        return [Finding("log-correlation", WARNING, message, fix)]
    field = _carries_trace_id(record, span.get_span_context().trace_id)
    if field is None:
        message = "records logged inside a span carry no trace id: logs cannot be tied to traces"
        return [Finding("log-correlation", WARNING, message, fix)]
    return [Finding("log-correlation", OK, f"records logged inside a span carry its id ({field})")]


# --- outbound-http ---------------------------------------------------------------------


@dataclass(frozen=True)
class HttpClient:
    """An HTTP client library, and the OpenTelemetry instrumentation that traces it."""

    module: str
    instrumentation: str
    instrumentor: str

    @property
    def package(self) -> str:
        return "opentelemetry-instrumentation-" + self.instrumentation.rpartition(".")[2].replace(
            "_", "-"
        )

    def fix(self) -> str:
        return f"pip install {self.package}; call {self.instrumentor}().instrument() at start-up"


HTTP_CLIENTS = (
    HttpClient("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
    HttpClient("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    HttpClient("urllib3", "opentelemetry.instrumentation.urllib3", "URLLib3Instrumentor"),
    HttpClient(
        "aiohttp", "opentelemetry.instrumentation.aiohttp_client", "AioHttpClientInstrumentor"
    ),
)


def _instrumented(client: HttpClient) -> bool | None:
    """The instrumentor's own flag (instrumentors are singletons); None if not installed."""
    instrumentor = _optional_attribute(client.instrumentation, client.instrumentor)
    if instrumentor is None:
        return None
    try:
        return bool(instrumentor().is_instrumented_by_opentelemetry)
    except Exception:
        return None


def _clients_in_use(modules: frozenset[str]) -> list[HttpClient]:
    """The clients the app imported; urllib3 only when requests (which imports it) is not
    there, since requests' instrumentation covers the calls made through it."""
    used = [c for c in HTTP_CLIENTS if c.module in modules]
    if "requests" in modules:
        used = [c for c in used if c.module != "urllib3"]
    return used


class _HeaderRecorder(BaseHTTPRequestHandler):
    """Answers 200 and keeps the ``traceparent`` header of each request."""

    seen: list[str | None]

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("traceparent"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the probe's stderr is for the app."""


@contextmanager
def _header_server() -> Iterator[tuple[str, list[str | None]]]:
    seen: list[str | None] = []
    handler = type("Recorder", (_HeaderRecorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="spangap-doctor-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/doctor", seen
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _tracecontext_on() -> Iterator[None]:
    """W3C propagation for the duration, so that a missing propagator (its own check)
    does not read as a missing instrumentation."""
    saved = propagate.get_global_textmap()
    if not _sends_traceparent():
        propagate.set_global_textmap(TraceContextTextMapPropagator())
    try:
        yield
    finally:
        propagate.set_global_textmap(saved)


def _requests_sends_traceparent(seconds: float) -> bool:
    """Send a real request inside a span and see whether the server got its trace."""
    requests: Any = importlib.import_module("requests")
    span = _private_span("spangap doctor outbound check")
    wanted = format(span.get_span_context().trace_id, "032x")
    with _header_server() as (url, seen), _tracecontext_on(), requests.Session() as session:
        session.trust_env = False  # no proxy between us and 127.0.0.1
        try:
            with trace.use_span(span, end_on_exit=True):
                session.get(url, timeout=seconds)
        except requests.RequestException:
            pass
    return any(header is not None and wanted in header for header in seen)


def _not_traced_because(client: HttpClient, flag: bool | None) -> str:
    if flag is None:
        return f"{client.package} is not installed"
    if flag:
        return f"{client.instrumentor} is on, yet no header arrived"
    return f"{client.instrumentor}().instrument() was not called"


def _check_requests(probe: Probe, client: HttpClient) -> Finding:
    flag = _instrumented(client)
    try:
        injects = _requests_sends_traceparent(max(1.0, min(5.0, probe.seconds_left() / 4)))
    except Exception:
        injects = bool(flag)  # could not send; go by the instrumentor's flag
    if injects:
        return Finding("outbound-http", OK, "requests: calls carry the caller's traceparent")
    message = f"requests: calls carry no traceparent ({_not_traced_because(client, flag)})"
    return Finding("outbound-http", WARNING, message, client.fix())


def _check_client(client: HttpClient) -> Finding:
    flag = _instrumented(client)
    if flag:
        return Finding("outbound-http", OK, f"{client.module}: {client.instrumentor} is on")
    why = _not_traced_because(client, flag)
    message = f"{client.module}: calls are not traced and carry no traceparent ({why})"
    return Finding("outbound-http", WARNING, message, client.fix())


def check_outbound_http(probe: Probe) -> list[Finding]:
    """An uninstrumented client sends no traceparent: the service it calls starts a new
    trace, and the call is invisible in this one."""
    used = _clients_in_use(probe.modules)
    if not used:
        raise NotApplicable("the app imports none of requests, httpx, urllib3, aiohttp")
    return [_check_requests(probe, c) if c.module == "requests" else _check_client(c) for c in used]


# --- executors -------------------------------------------------------------------------


def _span_seen_in_threads(span: trace.Span) -> tuple[bool, bool]:
    """Whether ``span`` is current in a pool job and in a new Thread started under it."""
    wanted = span.get_span_context().span_id
    in_thread: list[int] = []

    def record() -> None:
        in_thread.append(trace.get_current_span().get_span_context().span_id)

    with trace.use_span(span), ThreadPoolExecutor(max_workers=1) as pool:
        in_pool = pool.submit(lambda: trace.get_current_span().get_span_context().span_id)
        thread = threading.Thread(target=record, name="spangap-doctor-thread", daemon=True)
        thread.start()
        thread.join(5)
        pool_id = in_pool.result(timeout=5)
    return pool_id == wanted, in_thread == [wanted]


def check_executors(probe: Probe) -> list[Finding]:
    """Work handed to another thread runs outside the caller's span unless the context
    is carried over: spangap counts it as ``context_lost``."""
    used = [m for m in ("concurrent.futures", "threading") if m in probe.modules]
    if not used:
        raise NotApplicable("the app imports neither threading nor concurrent.futures")
    span = _private_span("spangap doctor executor check")
    try:
        pool, thread = _span_seen_in_threads(span)
    finally:
        span.end()
    if pool and thread:
        message = "work handed to a ThreadPoolExecutor or a Thread keeps the caller's span"
        return [Finding("executors", OK, message)]
    lost = " and ".join(
        name
        for name, kept in (("a ThreadPoolExecutor", pool), ("a new Thread", thread))
        if not kept
    )
    message = (
        f"work handed to {lost} runs without the caller's span (spangap reports it as context_lost)"
    )
    fix = (
        "pip install opentelemetry-instrumentation-threading and call "
        "ThreadingInstrumentor().instrument(), or submit contextvars.copy_context().run, fn, ..."
    )
    return [Finding("executors", WARNING, message, fix)]


#: Every check, in the order of ``CHECK_IDS``.
CHECKS: tuple[tuple[str, Check], ...] = tuple(
    zip(
        CHECK_IDS,
        (
            check_tracer_provider,
            check_span_processor,
            check_test_span,
            check_propagators,
            check_log_correlation,
            check_outbound_http,
            check_executors,
        ),
        strict=True,
    )
)


def run_check(name: str, check: Check, probe: Probe) -> list[Finding]:
    """A check that fails in an unexpected way says so as a warning; the others still run."""
    try:
        return check(probe)
    except NotApplicable:
        raise
    except Exception as exc:
        message = f"could not run this check: {describe(exc)}"
        return [Finding(name, WARNING, message, "check this part of the setup by hand")]
