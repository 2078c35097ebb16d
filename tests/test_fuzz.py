"""Bad input never gets a traceback: hypothesis throws random values at every option (as
a keyword and as its ``SPANGAP_*`` twin) and random documents at the snapshot loader.
The answer is a value, or one error naming what is wrong."""

from __future__ import annotations

import json
import math
from typing import Any

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
