"""A real Prometheus scraping two real detector processes, for the dashboard and top tests.

The queries of the dashboard and of ``gapreport top --prometheus`` are only proven by a
server that runs them over data a detector exported, so this starts Debian's
``prometheus`` on a free loopback port with its own config and TSDB in a temporary
directory (never the packaged service's :9090), scraping every second two processes
running ``prom_workload`` (``B`` has one extra dark site). One fleet serves the whole
session: starting it is the slow part.

Without the binary the tests are skipped on a developer's machine and fail under
``CI=true``, where ``.ci/run`` installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

import prom_workload

TESTS_DIR = Path(__file__).resolve().parent
DEBIAN_BINARY = "/usr/bin/prometheus"
JOB = "spangap-test"
STARTUP_TIMEOUT_S = 20.0

T = TypeVar("T")
Vector = list[tuple[dict[str, str], float]]


def prometheus_binary() -> str | None:
    found = shutil.which("prometheus")
    if found:
        return found
    return DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None


def require_prometheus() -> str:
    """The binary's path; a skip locally and a failure in CI when it is missing."""
    binary = prometheus_binary()
    if binary is None:
        message = "prometheus is not installed (apt-get install prometheus)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def wait_for(what: str, check: Callable[[], T | None], timeout: float, poll: float = 0.2) -> T:
    """Poll ``check`` until it returns something other than None (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


# --- the detector processes --------------------------------------------------------------


class Detector:
    """A ``prom_workload`` process serving ``/metrics`` on a port it picked itself."""

    def __init__(self, name: str, extra: bool, *options: str) -> None:
        self.name = name
        self.sites = [prom_workload.site(s) for s in prom_workload.SITES]
        if extra:
            self.sites.append(prom_workload.site(prom_workload.EXTRA_SITE))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS_DIR), *sys.path]))
        code = "import prom_workload; prom_workload.main()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *(["--extra"] if extra else []), *options],
            cwd=TESTS_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = self._read_port()
        self.target = f"127.0.0.1:{self.port}"
        self.metrics_url = f"http://{self.target}/metrics"

    def _read_port(self) -> int:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], STARTUP_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("metrics on "):
            self.stop()
            raise RuntimeError(f"detector {self.name} did not start: {line!r}")
        return int(line.split()[-1])

    def start_work(self) -> None:
        """Let a process started with ``--wait`` begin its loop."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def scrape(self) -> str:
        return http_get(self.metrics_url).decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


# --- the Prometheus server ---------------------------------------------------------------


class PrometheusServer:
    """Debian's prometheus on 127.0.0.1:<free port>, scraping ``targets`` every second."""

    def __init__(self, binary: str, targets: list[str], directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "prometheus.yml"
        self.config.write_text(_config(targets))
        self.log = directory / "prometheus.log"
        for _attempt in range(3):  # another process may take the port between the checks
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with self.log.open("w") as log:
                self.proc = subprocess.Popen(
                    [
                        binary,
                        f"--config.file={self.config}",
                        f"--storage.tsdb.path={directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--storage.tsdb.retention.time=1h",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                return
        raise RuntimeError(f"prometheus did not start:\n{self.log.read_text()[-2000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                http_get(f"{self.url}/-/ready", timeout=1.0)
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def query(self, expr: str, at: float | None = None) -> Vector:
        """An instant query, as (labels, value) per series; fails the test on an API error."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = self._api("query", params)
        assert answer["data"]["resultType"] == "vector", (expr, answer)
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self._api(f"label/{label}/values", {"match[]": match})["data"]
        return values

    def _api(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            answer = json.loads(http_get(url))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{url}: {exc.code}: {exc.read().decode()}") from None
        assert answer["status"] == "success", answer
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _config(targets: list[str]) -> str:
    # JSON is YAML: no YAML library needed to write it.
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    return json.dumps(config, indent=2) + "\n"


# --- the fleet ---------------------------------------------------------------------------


@dataclass
class Fleet:
    """Two detector processes and the Prometheus that scrapes them."""

    prometheus: PrometheusServer
    a: Detector
    b: Detector

    @property
    def detectors(self) -> list[Detector]:
        return [self.a, self.b]

    @property
    def sites(self) -> set[str]:
        return set(self.a.sites) | set(self.b.sites)

    def stop(self) -> None:
        self.prometheus.stop()
        for detector in self.detectors:
            detector.stop()

    def start_work(self) -> None:
        """Once Prometheus has scraped both processes, so that it sees every site from 0."""
        expr = f'up{{job="{JOB}"}} == 1'

        def both_up() -> bool | None:
            return True if len(self.prometheus.query(expr)) == 2 else None

        wait_for("Prometheus to scrape both processes", both_up, STARTUP_TIMEOUT_S)
        for detector in self.detectors:
            detector.start_work()

    def wait_until_scraped(self, samples: int = 4, timeout: float = 30.0) -> None:
        """Until every site of both processes has ``samples`` scrapes in Prometheus."""
        expr = f'count_over_time(uninstrumented_operations_total{{job="{JOB}"}}[1m])'

        def ready() -> bool | None:
            seen = {
                (labels["instance"], labels["site"])
                for labels, value in self.prometheus.query(expr)
                if value >= samples
            }
            wanted = {(d.target, s) for d in self.detectors for s in d.sites}
            return True if wanted <= seen else None

        wait_for(f"{samples} scrapes of every site", ready, timeout)


_fleet: Fleet | None = None


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The session's fleet, started on first use; test modules import this fixture."""
    global _fleet
    binary = require_prometheus()
    if _fleet is None:
        a = Detector("a", False, "--wait")
        try:
            b = Detector("b", True, "--wait")
        except BaseException:
            a.stop()
            raise
        try:
            server = PrometheusServer(
                binary, [a.target, b.target], tmp_path_factory.mktemp("prometheus")
            )
        except BaseException:
            a.stop()
            b.stop()
            raise
        _fleet = Fleet(server, a, b)
        _fleet.start_work()
        _fleet.wait_until_scraped()
    yield _fleet
    # Each module that imported the fixture finalizes it at session end; stop is idempotent.
    _fleet.stop()
