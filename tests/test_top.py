"""``gapreport top``: a live process's /metrics, a fleet in Prometheus, and every way an
endpoint can disappoint (each one line on stderr and exit code 2, never a traceback)."""

from __future__ import annotations

import json
import math
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prometheus_server import JOB, Detector, Fleet, fleet, free_port, wait_for  # noqa: F401
from spangap import cli
from spangap.report.top import bucket_quantile
from test_prometheus import expr_of, keyed, substitute

# --- one live process --------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished() -> Iterator[Detector]:
    """A detector process whose work is over: its /metrics no longer change."""
    detector = Detector("finished", True, "--seconds", "1.2", "--linger", "60")

    def settled() -> str | None:
        before = detector.scrape()
        time.sleep(0.3)
        after = detector.scrape()
        work = [line for line in after.splitlines() if line.startswith("uninstrumented")]
        return after if work and work == _work_lines(before) else None

    try:
        wait_for("the finished process's figures to settle", settled, 15.0, poll=0.1)
        yield detector
    finally:
        detector.stop()


def _work_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("uninstrumented")]


def top(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["top", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sites_of(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["site"], s["cause"]): s for s in document["sites"]}


def test_url_reports_exactly_what_the_process_exports(
    finished: Detector, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = top(capsys, "--url", finished.metrics_url, "--format", "json", "--top", "50")
    assert (code, err) == (0, "")
    report = json.loads(out)
    values: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(finished.scrape()):
        for s in family.samples:
            key = (s.labels.get("site", ""), s.labels.get("cause", ""))
            if s.name.endswith("_bucket"):
                buckets[key].append((float(s.labels["le"]), s.value))
            else:
                values[s.name][key] = s.value
    sites = sites_of(report)
    assert {site for site, _ in sites} == set(finished.sites)
    assert sites.keys() == values["uninstrumented_operations_total"].keys()
    for key, site in sites.items():
        assert site["count"] == values["uninstrumented_operations_total"][key]
        assert site["total_seconds"] == values["uninstrumented_operation_seconds_total"][key]
        assert site["self_seconds"] == values["uninstrumented_operation_self_seconds_total"][key]
        assert site["p95_seconds"] == bucket_quantile(0.95, buckets[key])
    assert report["totals"]["operations"] == sum(s["count"] for s in report["sites"])
    totals = [s["total_seconds"] for s in report["sites"]]
    assert totals == sorted(totals, reverse=True)
    assert report["program"]["source"] == finished.metrics_url


def test_url_prints_the_same_table_as_show(
    finished: Detector, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = top(capsys, "--url", finished.metrics_url, "--top", "2")
    assert code == 0
    heading, header, *rest = out.splitlines()
    assert heading == f"{finished.metrics_url}: since the process started"
    assert header.startswith("spangap: ") and "uninstrumented operations at 4 sites" in header
    table = "\n".join(rest)
    assert "top 2 of 4 sites" in table
    assert "#  site" in table and "prom_workload:slow_query" in table
    assert "prom_workload:nightly_export" not in table


def test_bucket_quantile_interpolates_as_prometheus_does() -> None:
    buckets = [(0.01, 0.0), (0.025, 10.0), (0.05, 30.0), (math.inf, 40.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.025 + 0.025 * 10 / 20)
    assert bucket_quantile(0.95, buckets) == 0.05  # in +Inf: the highest finite bound
    assert bucket_quantile(0.1, buckets) == pytest.approx(0.01 + 0.015 * 4 / 10)
    assert math.isnan(bucket_quantile(0.95, [(0.01, 0.0), (math.inf, 0.0)]))


# --- a fleet in Prometheus ---------------------------------------------------------------


def test_prometheus_ranking_is_the_dashboard_tables(
    fleet: Fleet,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fleet.prometheus.url
    code, out, err = top(capsys, "--prometheus", url, "--range", "60s", "--format", "json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    table = keyed(
        fleet.prometheus.query(substitute(expr_of("Where the dark time goes", "A"))),
        "site",
        "cause",
    )
    dashboard_ranking = sorted(table, key=lambda key: -table[key])
    assert [(s["site"], s["cause"]) for s in report["sites"]] == dashboard_ranking
    assert {s["site"] for s in report["sites"]} == fleet.sites
    for site in report["sites"]:
        dark = table[(site["site"], site["cause"])]
        assert site["total_seconds"] == pytest.approx(dark, rel=0.1)
    p95 = keyed(
        fleet.prometheus.query(substitute(expr_of("Where the dark time goes", "D"))),
        "site",
        "cause",
    )
    for site in report["sites"]:
        assert site["p95_seconds"] == pytest.approx(p95[(site["site"], site["cause"])], rel=0.1)
    assert report["program"]["instances"] == 2


def test_prometheus_selector_narrows_the_fleet(
    fleet: Fleet,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = fleet.prometheus.url
    selector = f'{{job="{JOB}", instance="{fleet.a.target}"}}'
    argv = ["--prometheus", url, "--range", "60s", "--selector", selector]
    code, out, _ = top(capsys, *argv, "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert {s["site"] for s in report["sites"]} == set(fleet.a.sites)
    assert report["program"]["instances"] == 1
    code, out, _ = top(capsys, *argv)
    assert code == 0
    assert out.splitlines()[0] == f"{url}: 1 instance, last 60s, {selector}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--selector", '{job=~"("}'], "bad_data"),
        (["--selector", '{job="nothing-here"}'], "has no spangap metrics"),
        (["--selector", 'job="api"'], "selector must look like"),
        (["--range", "an hour"], "range must be a Prometheus duration"),
        (["--prefix", "other_"], "other_spangap_samples_total"),
    ],
)
def test_prometheus_mistakes_are_one_line(
    fleet: Fleet,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    code, out, err = top(capsys, "--prometheus", fleet.prometheus.url, *argv)
    assert (code, out) == (2, "")
    assert_one_line(err, message)


# --- endpoints that are not what they should be ------------------------------------------


def assert_one_line(err: str, *fragments: str) -> None:
    assert err.startswith("gapreport: top: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


Responder = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture(scope="module")
def web() -> Iterator[dict[str, Any]]:
    """A local HTTP server; ``web["respond"]`` decides each answer."""
    state: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["respond"](self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def answer(status: int, content_type: str, body: bytes) -> Responder:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


HTML = b"<!DOCTYPE html><html><head><title>Login</title></head><body>hi</body></html>"


def plain_metrics() -> bytes:
    registry = CollectorRegistry()
    Counter("http_requests", "Requests.", registry=registry).inc()
    return generate_latest(registry)


@pytest.mark.parametrize(
    ("responder", "url_message", "prometheus_message"),
    [
        (answer(500, "text/plain", b"boom"), "HTTP 500", "HTTP 500"),
        (answer(404, "text/html", HTML), "HTTP 404", "HTTP 404"),
        (answer(200, "text/html", HTML), "not a Prometheus /metrics page", "not JSON"),
        (answer(200, "text/plain", b"<html>\n<p>hello</p>"), "not a Prometheus", "not JSON"),
        (answer(200, "text/plain", plain_metrics()), "no spangap metrics", "not JSON"),
        (answer(200, "application/json", b'{"hello": 1}'), "not a Prometheus", "a query result"),
    ],
)
def test_wrong_answers(
    web: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    responder: Responder,
    url_message: str,
    prometheus_message: str,
) -> None:
    web["respond"] = responder
    code, out, err = top(capsys, "--url", web["url"] + "/metrics")
    assert (code, out) == (2, "")
    assert_one_line(err, url_message)
    code, out, err = top(capsys, "--prometheus", web["url"])
    assert (code, out) == (2, "")
    assert_one_line(err, prometheus_message)


@pytest.mark.parametrize("option", ["--url", "--prometheus"])
def test_closed_port(capsys: pytest.CaptureFixture[str], option: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    code, out, err = top(capsys, option, url)
    assert (code, out) == (2, "")
    assert_one_line(err, "cannot reach", "connection refused")


@pytest.mark.parametrize("option", ["--url", "--prometheus"])
def test_silent_server_times_out(capsys: pytest.CaptureFixture[str], option: str) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/metrics"
        started = time.monotonic()
        code, out, err = top(capsys, option, url, "--timeout", "0.3")
    assert time.monotonic() - started < 3
    assert (code, out) == (2, "")
    assert_one_line(err, "no answer within 0.3 s")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "127.0.0.1:9464/metrics"], "expected an http:// URL"),
        (["--prometheus", "ftp://example/"], "expected an http:// URL"),
        (["--url", "http://127.0.0.1:1/metrics", "--selector", "{}"], "go with --prometheus"),
        (["--url", "http://127.0.0.1:1/metrics", "--range", "1h"], "go with --prometheus"),
    ],
)
def test_usage_mistakes(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = top(capsys, *argv)
    assert (code, out) == (2, "")
    assert_one_line(err, message)


# --- --watch -----------------------------------------------------------------------------


@contextmanager
def ctrl_c_exits_0(proc: subprocess.Popen[Any]) -> Iterator[None]:
    """Run the body against a live ``--watch``, then press Ctrl-C: it must exit 0.
    Whatever fails, the process does not outlive the test."""
    try:
        yield
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def watch_command(url: str) -> list[str]:
    return [sys.executable, "-m", "spangap.cli", "top", "--url", url, "--watch", "0.2"]


def ctrl_c_as_at_a_terminal() -> None:
    """In the child before exec: Ctrl-C does what it does at a terminal. A test run
    started in the background by a shell inherits SIGINT ignored, and Python keeps an
    ignored SIGINT ignored, which would make the exit on Ctrl-C untestable there."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_into_a_pipe_appends_frames_and_ctrl_c_exits_0(finished: Detector) -> None:
    proc = subprocess.Popen(
        watch_command(finished.metrics_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    heading = f"{finished.metrics_url}: since the process started"
    with ctrl_c_exits_0(proc):
        wait_for("two frames", lambda: True if _count(lines, heading) >= 2 else None, 15.0)
    reader.join(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    output = "".join(lines)
    assert "\x1b[" not in output
    assert "Traceback" not in stderr


def _count(lines: list[str], heading: str) -> int:
    return sum(1 for line in list(lines) if line.startswith(heading))


def test_watch_on_a_terminal_redraws_in_place(finished: Detector) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        watch_command(finished.metrics_url),
        stdout=follower,
        stderr=follower,
        close_fds=True,
        preexec_fn=ctrl_c_as_at_a_terminal,
    )
    os.close(follower)
    seen = b""
    try:
        with ctrl_c_exits_0(proc):
            deadline = time.monotonic() + 15
            while seen.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    seen += os.read(leader, 65536)
            assert seen.count(b"\x1b[H\x1b[2J") >= 2, seen[-500:]
    finally:
        os.close(leader)
    assert b"Traceback" not in seen
