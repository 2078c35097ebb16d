"""The snapshot file: round trips, atomic saves, and one-line errors for every bad input."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from snapshot_factory import make_site, make_snapshot, make_totals, varied_snapshot
from spangap.snapshot import FORMAT, VERSION, Snapshot, SnapshotError


def write_document(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def valid_document() -> dict[str, Any]:
    return varied_snapshot().to_dict()


def load_error(path: Path) -> str:
    with pytest.raises(SnapshotError) as info:
        Snapshot.load(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- round trip ------------------------------------------------------------------------


def test_save_then_load_gives_an_equal_snapshot(tmp_path: Path) -> None:
    snapshot = varied_snapshot()
    snapshot.save(tmp_path / "snap.json")
    assert Snapshot.load(tmp_path / "snap.json") == snapshot


def test_document_starts_with_format_and_version() -> None:
    document = make_snapshot().to_dict()
    assert list(document)[:2] == ["format", "version"]
    assert (document["format"], document["version"]) == (FORMAT, VERSION)


def test_lost_context_round_trips(tmp_path: Path) -> None:
    snapshot = make_snapshot([make_site("shop.jobs:resize", cause="context_lost")])
    snapshot.save(tmp_path / "snap.json")
    loaded = Snapshot.load(tmp_path / "snap.json")
    assert loaded.sites[0].lost_context is not None
    assert loaded.sites[0].lost_context.submitters[0].name == "shop.api:upload"


def test_integers_are_accepted_where_seconds_are_expected() -> None:
    document = valid_document()
    document["sites"][0]["total_seconds"] = 5
    assert Snapshot.from_dict(document).sites[0].total_seconds == 5.0


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    document = valid_document()
    document["written_by"] = "a later 1.x"
    document["totals"]["gc_seconds"] = 0.5
    document["sites"][0]["flame"] = {"anything": [1, 2]}
    assert Snapshot.from_dict(document) == varied_snapshot()


def test_coverage_is_spanned_share_of_in_scope_time() -> None:
    assert make_totals(in_scope_seconds=20.0, spanned_seconds=5.0).coverage == 0.25
    assert make_totals(in_scope_seconds=0.0, spanned_seconds=0.0).coverage is None


# --- atomic save -----------------------------------------------------------------------


def test_save_replaces_an_existing_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    target.write_text("old content")
    varied_snapshot().save(target)
    assert Snapshot.load(target) == varied_snapshot()
    assert os.listdir(tmp_path) == ["snap.json"]


def test_failed_save_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "snap.json"
    make_snapshot().save(target)
    before = target.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        varied_snapshot().save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["snap.json"]


def test_snapshot_that_json_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    with pytest.raises(SnapshotError, match="JSON"):
        make_snapshot([make_site(total_seconds=float("nan"))]).save(target)
    assert os.listdir(tmp_path) == []


def test_snapshot_that_could_not_be_loaded_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"sites\[0\]\.count"):
        make_snapshot([make_site(count=-1)]).save(tmp_path / "snap.json")
    assert os.listdir(tmp_path) == []


def test_new_file_is_owner_only_whatever_the_umask_and_existing_file_keeps_its_mode(
    tmp_path: Path,
) -> None:
    umask = os.umask(0o022)
    try:
        make_snapshot().save(tmp_path / "new.json")
        existing = tmp_path / "existing.json"
        existing.write_text("{}")
        existing.chmod(0o640)
        make_snapshot().save(existing)
        assert os.umask(0o022) == 0o022  # the process's umask was left alone
    finally:
        os.umask(umask)
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o600
    assert existing.stat().st_mode & 0o777 == 0o640


def test_save_into_a_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        make_snapshot().save(tmp_path / "missing" / "snap.json")


# --- load errors -----------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.json")
    assert "nope.json" in message and "no such file" in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "directory" in load_error(tmp_path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"hello", "not valid JSON"),
        (b'{"format": "spangap-snapshot", "version": 1,', "truncated"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b"[1, 2, 3]", "not a spangap snapshot"),
        (b'{"version": 1}', 'no "format" key'),
        (b'{"format": "speedscope", "version": 1}', "'speedscope'"),
        (b'{"format": "spangap-snapshot"}', "version: missing"),
        (b'{"format": "spangap-snapshot", "version": "1"}', "version: expected an integer"),
        (b'{"format": "spangap-snapshot", "version": 0}', "unknown format version 0"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "snap.json"
    path.write_bytes(content)
    message = load_error(path)
    assert expected in message
    assert message.startswith(str(path))


def test_newer_version_says_so(tmp_path: Path) -> None:
    document = valid_document()
    document["version"] = VERSION + 1
    message = load_error(write_document(tmp_path / "snap.json", document))
    assert message.endswith(
        f"written by a newer spangap (format version {VERSION + 1}); "
        f"this gapreport reads up to {VERSION}"
    )


def set_path(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("sites", 3, "count"), "many", "sites[3].count: expected an integer"),
        (("sites", 0, "count"), True, "sites[0].count: expected an integer"),
        (("sites", 0, "count"), 1.5, "sites[0].count: expected an integer"),
        (("sites", 0, "line"), -3, "sites[0].line: expected a non-negative integer"),
        (("sites", 1, "p95_seconds"), "fast", "sites[1].p95_seconds: expected a number"),
        (("sites", 1, "p95_seconds"), float("inf"), "expected a finite number"),
        (("sites", 0, "site"), 7, "sites[0].site: expected a string"),
        (("sites", 0, "callers"), {}, "sites[0].callers: expected a list"),
        (("sites", 0, "callers", 1), "x", "sites[0].callers[1]: expected an object"),
        (("sites", 0, "threads", 0, "count"), None, "sites[0].threads[0].count"),
        (("sites", 0, "example_stack", 1), 3, "sites[0].example_stack[1]: expected a string"),
        (("sites", 3, "lost_context", "submitters"), None, "lost_context.submitters: expected"),
        (("sites", 3, "lost_context", "examples", 0, "span_id"), 1, "examples[0].span_id"),
        (("sites", 2), [], "sites[2]: expected an object"),
        (("sites",), {}, "sites: expected a list"),
        (("totals",), [], "totals: expected an object"),
        (("totals", "samples"), "6010", "totals.samples: expected an integer"),
        (("settings", "threshold_ms"), "10ms", "settings.threshold_ms: expected a number"),
        (("program", "argv"), "app.py", "program.argv: expected a list"),
        (("created_unix",), None, "created_unix: expected a number"),
    ],
)
def test_wrong_types_name_the_field(
    tmp_path: Path, path: tuple[Any, ...], value: Any, expected: str
) -> None:
    document = valid_document()
    set_path(document, path, value)
    assert expected in load_error(write_document(tmp_path / "snap.json", document))


@pytest.mark.parametrize(
    "path",
    [
        ("created_unix",),
        ("totals",),
        ("totals", "dark_seconds"),
        ("sites", 2, "count"),
        ("settings", "max_sites"),
        ("sites", 0, "waited_in", 0, "name"),
    ],
)
def test_missing_fields_are_named(tmp_path: Path, path: tuple[Any, ...]) -> None:
    document = valid_document()
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    message = load_error(write_document(tmp_path / "snap.json", document))
    assert message.endswith(": missing")
    assert str(path[-1]) in message


# --- fuzz ------------------------------------------------------------------------------


def test_every_truncation_of_a_valid_file_is_a_snapshot_error(tmp_path: Path) -> None:
    full = varied_snapshot().to_json().encode()
    for length in range(len(full.rstrip())):
        with pytest.raises(SnapshotError):
            Snapshot.from_json(full[:length], "snap.json")
    assert Snapshot.from_json(full, "snap.json") == varied_snapshot()


_JUNK: list[object] = [None, True, -1, 2**70, 0.5, "", "x", [], [1, "a"], {}, {"k": None}]


def _mutations(node: object, rng: random.Random) -> object:
    """A copy of ``node`` with a few values swapped for junk of another type or deleted."""
    if isinstance(node, dict):
        copy = {}
        for key, value in node.items():
            roll = rng.random()
            if roll < 0.03:
                continue
            copy[key] = rng.choice(_JUNK) if roll < 0.08 else _mutations(value, rng)
        return copy
    if isinstance(node, list):
        return [rng.choice(_JUNK) if rng.random() < 0.05 else _mutations(v, rng) for v in node]
    return node


def test_random_damage_never_raises_anything_but_snapshot_error() -> None:
    rng = random.Random(1234)
    document = valid_document()
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(500):
        try:
            Snapshot.from_dict(_mutations(document, rng))
            outcomes["loaded"] += 1
        except SnapshotError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100


def test_random_byte_corruption_never_raises_anything_but_snapshot_error() -> None:
    rng = random.Random(99)
    full = bytearray(varied_snapshot().to_json().encode())
    for _ in range(500):
        damaged = bytearray(full)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            Snapshot.from_json(bytes(damaged), "snap.json")
        except SnapshotError as exc:
            assert "\n" not in str(exc)
