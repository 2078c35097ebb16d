"""Bad input never gets a traceback: hypothesis throws random values at every option (as
a keyword and as its ``SPANGAP_*`` twin) and random documents at the snapshot loader.
The answer is a value, or one error naming what is wrong."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from snapshot_factory import make_snapshot
from spangap.options import OPTION_NAMES, OptionError, resolve_options
from spangap.snapshot import Snapshot, SnapshotError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
ENV_OPTIONS = [name for name in OPTION_NAMES if name != "registry"]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.binary(max_size=10),
)


def one_line_error(exc: Exception, name: str) -> None:
    message = str(exc)
    assert "\n" not in message and message.startswith(name), message


@FUZZ
@seed(25)
@given(name=st.sampled_from(OPTION_NAMES), value=values)
def test_any_value_of_any_option_is_taken_or_refused_with_one_line(name: str, value: Any) -> None:
    try:
        resolve_options({name: value}, environ={})
    except OptionError as exc:
        one_line_error(exc, "interval_ms" if "half of threshold" in str(exc) else name)


@FUZZ
@seed(25)
@given(name=st.sampled_from(ENV_OPTIONS), value=st.text(max_size=40))
def test_any_text_in_any_environment_variable_is_taken_or_refused_with_one_line(
    name: str, value: str
) -> None:
    env_name = "SPANGAP_" + name.upper()
    try:
        resolve_options({}, environ={env_name: value})
    except OptionError as exc:
        one_line_error(exc, "interval_ms" if "half of threshold" in str(exc) else env_name)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def mutated_snapshot() -> st.SearchStrategy[Any]:
    """A real snapshot with one field replaced by an arbitrary JSON value."""
    document = json.loads(make_snapshot().to_json())

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix]
        if isinstance(node, dict):
            for key, child in node.items():
                found += paths(child, (*prefix, key))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                found += paths(child, (*prefix, i))
        return found

    def replace(path: tuple[Any, ...], value: Any) -> Any:
        copy = json.loads(json.dumps(document))
        if not path:
            return value
        node = copy
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return copy

    return st.builds(replace, st.sampled_from(paths(document)), json_values)


@FUZZ
@seed(25)
@given(document=st.one_of(mutated_snapshot(), json_values))
def test_any_json_document_loads_or_is_refused_with_one_line(document: Any) -> None:
    text = json.dumps(document, allow_nan=True)
    try:
        snapshot = Snapshot.from_json(text, "fuzzed.json")
    except SnapshotError as exc:
        one_line_error(exc, "fuzzed.json")
    else:
        for site in snapshot.sites:  # what loads is usable
            assert site.count >= 0 and not math.isnan(site.total_seconds)


@FUZZ
@seed(25)
@given(raw=st.binary(max_size=200))
def test_any_bytes_load_or_are_refused_with_one_line(raw: bytes) -> None:
    try:
        Snapshot.from_json(raw, "fuzzed.json")
    except SnapshotError as exc:
        one_line_error(exc, "fuzzed.json")


words = st.sampled_from(
    ["show", "top", "dashboard", "run", "--top", "--sort", "--format", "--url", "-o", "--help"]
)
cli_words = st.lists(st.one_of(words, st.text(max_size=12)), max_size=6)


@FUZZ
@seed(25)
@given(args=cli_words, good=st.booleans())
def test_any_gapreport_show_arguments_exit_cleanly(args: list[str], good: bool) -> None:
    """``gapreport show`` with random arguments, on a real snapshot or on a missing one:
    a report, or exit code 2 and a last line that says what is wrong; never a traceback."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from spangap.cli import main

    args = [a for a in args if a not in ("run", "top", "dashboard", "--url", "-o")]  # no I/O
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snap.json"
        if good:
            make_snapshot().save(path)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(["show", str(path), *args])
            except SystemExit as exc:  # argparse: usage and one "error:" line
                code = exc.code if isinstance(exc.code, int) else 2
    message = err.getvalue()
    assert "Traceback" not in message
    assert code in (0, 2), (args, message)
    if code == 2:
        # the last line names the problem (an argument may hold a carriage return)
        assert message.rstrip("\n").split("\n")[-1].startswith("gapreport"), message


def run_cli(argv: list[str]) -> tuple[int, str]:
    """``gapreport argv`` in this process: (exit code, stderr)."""
    import contextlib
    import io

    from spangap.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage and one "error:" line
            code = exc.code if isinstance(exc.code, int) else 2
    return code, err.getvalue()


def assert_clean_exit(argv: list[str], code: int, message: str) -> None:
    assert "Traceback" not in message, message
    assert code in (0, 2), (argv, code, message)
    if code == 2:  # the last line names the problem
        assert message.rstrip("\n").split("\n")[-1].startswith("gapreport"), message


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    """A real /metrics page with a detector's metrics on it."""
    from prometheus_client import CollectorRegistry, start_http_server

    from spangap.metrics import metric_set

    registry = CollectorRegistry()
    metric_set(registry, "").operations.labels("app:handler", "no_span").inc(3)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{server.server_port}/metrics"
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TOP_FLAGS = [
    "--range",
    "--selector",
    "--watch",
    "--timeout",
    "--top",
    "--sort",
    "--format",
    "--prefix",
    "--url",
]
RUN_FLAGS = [
    "--threshold-ms",
    "--interval-ms",
    "--include",
    "--exclude",
    "--metrics-port",
    "--snapshot",
    "--top",
    "--sort",
    "--format",
]
text_or_number = st.one_of(
    st.text(max_size=12), st.floats().map(str), st.integers(-5, 100).map(str)
)


@FUZZ
@seed(25)
@given(data=st.data())
def test_any_gapreport_top_arguments_exit_cleanly(metrics_url: str, data: st.DataObject) -> None:
    """``gapreport top`` on a live page, a closed port, a bad URL or a Prometheus that is
    not there, with random options: a report, or exit code 2 and one line."""
    url = data.draw(
        st.sampled_from(
            [metrics_url, f"http://127.0.0.1:{closed_port()}/metrics", "nonsense", "ftp://x/"]
        )
    )
    argv = ["top", data.draw(st.sampled_from(["--url", "--prometheus"])), url]
    for _ in range(data.draw(st.integers(0, 4))):
        flag = data.draw(st.sampled_from(TOP_FLAGS))
        value = data.draw(text_or_number)
        if flag == "--watch":  # a valid interval would redraw until interrupted
            with contextlib.suppress(ValueError):
                if float(value) > 0:
                    continue
        argv += [flag, value]
    argv += ["--timeout", "2"]
    code, message = run_cli(argv)
    assert_clean_exit(argv, code, message)


@FUZZ
@seed(25)
@given(data=st.data())
def test_any_gapreport_dashboard_arguments_exit_cleanly(data: st.DataObject) -> None:
    """``gapreport dashboard`` with random titles, data sources, prefixes and outputs (a
    file, a directory, a path under a missing directory)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["dashboard"]
        for _ in range(data.draw(st.integers(0, 4))):
            flag = data.draw(st.sampled_from(["--title", "--datasource", "--prefix", "-o"]))
            if flag == "-o":
                value = data.draw(
                    st.sampled_from([f"{tmp}/d.json", tmp, f"{tmp}/missing/d.json", ""])
                )
            else:
                value = data.draw(st.text(max_size=20))
            argv += [flag, value]
        code, message = run_cli(argv)
    assert_clean_exit(argv, code, message)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@seed(25)
@given(data=st.data())
def test_any_gapreport_run_options_exit_cleanly(tmp_path_factory, data: st.DataObject) -> None:
    """``gapreport run`` with random options before a real (empty) script, in a process
    of its own: the script runs and the report is printed, or exit code 2 and one line."""
    import subprocess
    import sys

    work = tmp_path_factory.mktemp("run")
    (work / "app.py").write_text("print('app ran')\n")
    argv: list[str] = []
    for _ in range(data.draw(st.integers(1, 4))):
        flag = data.draw(st.sampled_from(RUN_FLAGS))
        value = data.draw(text_or_number.filter(lambda v: "\x00" not in v))
        argv += [flag, str(work / "s" / value) if flag == "--snapshot" else value]
    done = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "run", *argv, "app.py"],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=60,
    )
    assert_clean_exit(argv, done.returncode, done.stderr)
    if done.returncode == 0:
        assert "app ran" in done.stdout
