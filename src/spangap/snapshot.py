"""The snapshot document: what a detector saw, as a versioned JSON file for ``gapreport``.

The detector builds a :class:`Snapshot`; ``gapreport`` loads one, possibly written by
another version of spangap on another machine. Everything that crosses the file boundary
is validated here, so that renderers can trust every type they are handed and a damaged
or foreign file becomes one readable :class:`SnapshotError` instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

FORMAT = "spangap-snapshot"
VERSION = 1


class SnapshotError(Exception):
    """A snapshot could not be read or written; ``str(e)`` is one line meant for people."""


@dataclass
class Counted:
    """A name with how often it was seen (callers, waited-in functions, threads, submitters)."""

    name: str
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "count": self.count}


@dataclass
class LostContext:
    """Where the span went missing, for sites whose cause is ``context_lost``."""

    submitters: list[Counted]
    examples: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "submitters": [c.to_dict() for c in self.submitters],
            "examples": [dict(e) for e in self.examples],
        }


@dataclass
class SiteStats:
    """Everything known about the uninstrumented operations of one call site and cause."""

    site: str
    cause: str
    file: str
    line: int
    count: int
    total_seconds: float
    self_seconds: float
    p50_seconds: float
    p95_seconds: float
    max_seconds: float
    last_seen_unix: float
    callers: list[Counted]
    waited_in: list[Counted]
    threads: list[Counted]
    example_stack: list[str]
    lost_context: LostContext | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "cause": self.cause,
            "file": self.file,
            "line": self.line,
            "count": self.count,
            "total_seconds": self.total_seconds,
            "self_seconds": self.self_seconds,
            "p50_seconds": self.p50_seconds,
            "p95_seconds": self.p95_seconds,
            "max_seconds": self.max_seconds,
            "last_seen_unix": self.last_seen_unix,
            "callers": [c.to_dict() for c in self.callers],
            "waited_in": [c.to_dict() for c in self.waited_in],
            "threads": [c.to_dict() for c in self.threads],
            "example_stack": list(self.example_stack),
            "lost_context": None if self.lost_context is None else self.lost_context.to_dict(),
        }


@dataclass
class Totals:
    """Whole-run figures; ``dark_seconds`` is the sum of self time, so nothing counts twice."""

    samples: int
    operations: int
    dark_seconds: float
    in_scope_seconds: float
    spanned_seconds: float
    sampler_cpu_seconds: float
    internal_errors: int
    sites_dropped: int

    @property
    def coverage(self) -> float | None:
        """Share of sampled in-scope time that ran under a span; None when nothing was seen."""
        if self.in_scope_seconds <= 0:
            return None
        return self.spanned_seconds / self.in_scope_seconds

    def to_dict(self) -> dict[str, Any]:
        # coverage is derived, so it is not stored: a file cannot then contradict itself.
        return {
            "samples": self.samples,
            "operations": self.operations,
            "dark_seconds": self.dark_seconds,
            "in_scope_seconds": self.in_scope_seconds,
            "spanned_seconds": self.spanned_seconds,
            "sampler_cpu_seconds": self.sampler_cpu_seconds,
            "internal_errors": self.internal_errors,
            "sites_dropped": self.sites_dropped,
        }


@dataclass
class Snapshot:
    """One run's findings: program, settings, totals and per-site statistics."""

    created_unix: float
    program: dict[str, object]
    settings: dict[str, object]
    totals: Totals
    sites: list[SiteStats]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document, with the format marker and version first."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "created_unix": self.created_unix,
            "program": dict(self.program),
            "settings": dict(self.settings),
            "totals": self.totals.to_dict(),
            "sites": [s.to_dict() for s in self.sites],
        }

    def to_json(self) -> str:
        """The document as text; raises SnapshotError for values JSON cannot hold (NaN)."""
        try:
            return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot cannot be written as JSON: {exc}") from exc

    @classmethod
    def from_dict(cls, data: object, source: str = "snapshot") -> Snapshot:
        """Validate a decoded document; every problem becomes a SnapshotError naming its field."""
        try:
            return _parse_document(data)
        except _Invalid as exc:
            raise SnapshotError(f"{source}: {exc.where}: {exc.problem}") from None
        except _Unsupported as exc:
            raise SnapshotError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "snapshot") -> Snapshot:
        """Parse and validate a document's text."""
        return cls.from_dict(_decode_json(text, source), source)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the snapshot so that readers only ever see the old file or the new one.

        The document is checked by reading it back before anything touches the disk, so a
        snapshot this version writes is one it can load. Raises SnapshotError if it
        cannot be encoded and OSError if it cannot be written; the target is then untouched.
        """
        text = self.to_json()
        Snapshot.from_json(text, "snapshot to be saved")
        _write_atomically(os.fspath(path), text)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Snapshot:
        """Read and validate a snapshot file; any failure is a one-line SnapshotError."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise SnapshotError(f"{source}: no such file") from None
        except IsADirectoryError:
            raise SnapshotError(f"{source}: is a directory, not a snapshot file") from None
        except OSError as exc:
            raise SnapshotError(f"{source}: cannot read: {exc.strerror or exc}") from None
        return cls.from_json(raw, source)


# --- writing ---------------------------------------------------------------------------


def _write_atomically(target: str, text: str) -> None:
    """Write to a temporary file beside the target, then rename it over the target.

    A rename within one directory is atomic, and fsync before it means a crash cannot
    leave a renamed but empty file behind.
    """
    directory = os.path.dirname(os.path.abspath(target))
    fd, temp = tempfile.mkstemp(
        prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _file_mode(target))
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_directory(directory)


def _file_mode(target: str) -> int:
    """Owner read/write (0600) for a new snapshot: it names the application's code,
    threads and trace ids. An existing file keeps the mode its owner gave it."""
    with contextlib.suppress(OSError):
        return os.stat(target).st_mode & 0o777
    return 0o600


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; not possible on every platform, so best effort."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- reading ---------------------------------------------------------------------------


class _Invalid(Exception):
    """A field has the wrong type or is missing."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where = where
        self.problem = problem


class _Unsupported(Exception):
    """The document is not a snapshot this version can read."""


def _decode_json(text: str | bytes, source: str) -> object:
    if not text.strip():
        raise SnapshotError(f"{source}: file is empty, not a snapshot")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc.rstrip()):
            raise SnapshotError(f"{source}: not valid JSON: it ends early (truncated?)") from None
        raise SnapshotError(
            f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except UnicodeDecodeError:
        raise SnapshotError(f"{source}: not valid JSON: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        # Numbers with thousands of digits and absurdly deep nesting land here.
        raise SnapshotError(f"{source}: not valid JSON: {type(exc).__name__}") from None


def _parse_document(data: object) -> Snapshot:
    if not isinstance(data, dict):
        raise _Unsupported("not a spangap snapshot (the document is not a JSON object)")
    _check_format(data)
    doc = _Fields(data, "")
    return Snapshot(
        created_unix=doc.number("created_unix"),
        program=_parse_program(doc.fields("program")),
        settings=_parse_settings(doc.fields("settings")),
        totals=_parse_totals(doc.fields("totals")),
        sites=[_parse_site(item) for item in doc.list_of_fields("sites")],
    )


def _check_format(data: dict[str, object]) -> None:
    marker = data.get("format")
    if marker is None:
        raise _Unsupported('not a spangap snapshot (no "format" key)')
    if marker != FORMAT:
        raise _Unsupported(
            f'not a spangap snapshot (format is {_short_repr(marker)}, expected "{FORMAT}")'
        )
    version = _Fields(data, "").integer("version", minimum=None)
    if version > VERSION:
        raise _Unsupported(
            f"written by a newer spangap (format version {version}); "
            f"this gapreport reads up to {VERSION}"
        )
    if version < 1:
        raise _Unsupported(f"unknown format version {version}")


def _parse_program(program: _Fields) -> dict[str, object]:
    # Only descriptive, so each key is optional; a present key must have its type.
    if "argv" in program.data:
        program.string_list("argv")
    for key in ("python", "host"):
        if key in program.data:
            program.string(key)
    if "pid" in program.data:
        program.integer("pid")
    return dict(program.data)


def _parse_settings(settings: _Fields) -> dict[str, object]:
    settings.number("threshold_ms")
    settings.number("interval_ms")
    settings.integer("max_sites")
    return dict(settings.data)


def _parse_totals(totals: _Fields) -> Totals:
    return Totals(
        samples=totals.integer("samples"),
        operations=totals.integer("operations"),
        dark_seconds=totals.number("dark_seconds"),
        in_scope_seconds=totals.number("in_scope_seconds"),
        spanned_seconds=totals.number("spanned_seconds"),
        sampler_cpu_seconds=totals.number("sampler_cpu_seconds"),
        internal_errors=totals.integer("internal_errors"),
        sites_dropped=totals.integer("sites_dropped"),
    )


def _parse_site(site: _Fields) -> SiteStats:
    lost = site.optional_fields("lost_context")
    return SiteStats(
        site=site.string("site"),
        cause=site.string("cause"),
        file=site.string("file"),
        line=site.integer("line"),
        count=site.integer("count"),
        total_seconds=site.number("total_seconds"),
        self_seconds=site.number("self_seconds"),
        p50_seconds=site.number("p50_seconds"),
        p95_seconds=site.number("p95_seconds"),
        max_seconds=site.number("max_seconds"),
        last_seen_unix=site.number("last_seen_unix"),
        callers=_parse_counted_list(site, "callers"),
        waited_in=_parse_counted_list(site, "waited_in"),
        threads=_parse_counted_list(site, "threads"),
        example_stack=site.string_list("example_stack"),
        lost_context=None if lost is None else _parse_lost_context(lost),
    )


def _parse_lost_context(lost: _Fields) -> LostContext:
    examples = [
        {key: example.string(key) for key in example.data}
        for example in lost.list_of_fields("examples")
    ]
    return LostContext(submitters=_parse_counted_list(lost, "submitters"), examples=examples)


def _parse_counted_list(parent: _Fields, key: str) -> list[Counted]:
    return [
        Counted(name=item.string("name"), count=item.integer("count"))
        for item in parent.list_of_fields(key)
    ]


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


class _Fields:
    """Typed access to one decoded JSON object; every error names the field's full path."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise _Invalid(where or "document", "expected an object")
        self.data: dict[str, object] = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str) -> object:
        if key not in self.data:
            raise _Invalid(self.path(key), "missing")
        return self.data[key]

    def integer(self, key: str, minimum: int | None = 0) -> int:
        value = self.get(key)
        # bool is an int to Python but not to a reader of the file.
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(self.path(key), "expected an integer")
        if minimum is not None and value < minimum:
            raise _Invalid(self.path(key), "expected a non-negative integer")
        return value

    def number(self, key: str) -> float:
        value = self.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _Invalid(self.path(key), "expected a number")
        if not math.isfinite(value):
            raise _Invalid(self.path(key), "expected a finite number")
        return float(value)

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise _Invalid(self.path(key), "expected a string")
        return value

    def string_list(self, key: str) -> list[str]:
        items = self._list(key)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise _Invalid(f"{self.path(key)}[{index}]", "expected a string")
        return [str(item) for item in items]

    def fields(self, key: str) -> _Fields:
        return _Fields(self.get(key), self.path(key))

    def optional_fields(self, key: str) -> _Fields | None:
        value = self.data.get(key)
        return None if value is None else _Fields(value, self.path(key))

    def list_of_fields(self, key: str) -> list[_Fields]:
        where = self.path(key)
        return [_Fields(item, f"{where}[{i}]") for i, item in enumerate(self._list(key))]

    def _list(self, key: str) -> list[object]:
        value = self.get(key)
        if not isinstance(value, list):
            raise _Invalid(self.path(key), "expected a list")
        return value
