"""``[tool.spangap.audit]``: which files the audit reads and what else counts as a span.

The table lives in the project's ``pyproject.toml``, found by walking up from the first
path audited, so that the audit run by hand, in CI and by pre-commit agrees. Every
mistake in it is reported with the file and the key, because a silently ignored key
would make a gate pass or fail for a reason nobody can see.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TABLE = "[tool.spangap.audit]"

#: Tests exercise the code; they are not the code whose work needs spans.
DEFAULT_EXCLUDES = ("tests", "test_*.py", "*_test.py", "conftest.py")

#: Directories that hold someone else's code, copies or tool state: never walked into.
SKIPPED_DIRECTORIES = frozenset({"__pycache__", "node_modules", "site-packages"})
#: Build output, skipped unless it is a package of the project (has an ``__init__.py``).
BUILD_DIRECTORIES = frozenset({"build", "dist"})

_LIST_KEYS = ("include", "exclude", "decorators", "helpers")
_KNOWN_KEYS = (*_LIST_KEYS, "min-coverage")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class AuditConfig:
    """The audit's settings; ``base`` is the directory that the globs are relative to."""

    base: Path
    source: Path | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    decorators: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()
    min_coverage: float | None = None
    _include: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)
    _exclude: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", tuple(_compile(p) for p in self.include))
        excludes = (*DEFAULT_EXCLUDES, *self.exclude)
        object.__setattr__(self, "_exclude", tuple(_compile(p) for p in excludes))

    def relative(self, path: Path) -> str:
        """``path`` as the globs see it: posix, relative to ``base`` when it is inside."""
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(self.base).as_posix()
        except ValueError:
            return absolute.as_posix()

    def excludes_directory(self, path: Path) -> bool:
        """Whether a directory is left out, so that a walk need not enter it."""
        if path.name.startswith(".") or path.name in SKIPPED_DIRECTORIES:
            return True
        if (path / "pyvenv.cfg").is_file():  # a virtual environment, whatever its name
            return True
        if path.name in BUILD_DIRECTORIES and not (path / "__init__.py").is_file():
            return True
        return _matches_any(self.relative(path), self._exclude)

    def selects_file(self, path: Path) -> bool:
        """Whether a Python file is audited: included (or no include list) and not excluded."""
        relative = self.relative(path)
        if self._include and not _matches_any(relative, self._include):
            return False
        return not _matches_any(relative, self._exclude)


def find_config(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` at or above ``start`` (a file or a directory)."""
    directory = Path(os.path.abspath(start))
    if not directory.is_dir():
        directory = directory.parent
    for candidate in (directory, *directory.parents):
        path = candidate / "pyproject.toml"
        if path.is_file():
            return path
    return None


def load_config(path: Path | None, default_base: Path) -> AuditConfig:
    """The settings in ``path``; defaults relative to ``default_base`` when there is none."""
    if path is None:
        return AuditConfig(base=Path(os.path.abspath(default_base)))
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {_one_line(str(exc))}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    table = _audit_table(document, path)
    return AuditConfig(
        base=Path(os.path.abspath(path)).parent,
        source=path,
        include=_string_list(table, "include", path),
        exclude=_string_list(table, "exclude", path),
        decorators=_string_list(table, "decorators", path),
        helpers=_string_list(table, "helpers", path),
        min_coverage=_percent(table, path),
    )


def _audit_table(document: dict[str, object], path: Path) -> dict[str, object]:
    table: object = document
    for key in ("tool", "spangap", "audit"):
        if not isinstance(table, dict):
            break
        table = table.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {TABLE} must be a table")
    unknown = sorted(set(table) - set(_KNOWN_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: {TABLE}: unknown key {unknown[0]!r} (known: {', '.join(_KNOWN_KEYS)})"
        )
    return table


def _string_list(table: dict[str, object], key: str, path: Path) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{path}: {TABLE}: {key} must be a list of non-empty strings")
    return tuple(value)


def _percent(table: dict[str, object], path: Path) -> float | None:
    value = table.get("min-coverage")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise ConfigError(f"{path}: {TABLE}: min-coverage must be a number from 0 to 100")
    return float(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- globs -----------------------------------------------------------------------------


def _compile(pattern: str) -> re.Pattern[str]:
    """A glob as a regular expression over posix paths.

    ``*`` and ``?`` stay within one path part and ``**`` spans parts. A pattern without a
    slash names a file or directory at any depth (``conftest.py``, ``migrations``); one
    with a slash is anchored at the base directory. Either way, matching a directory
    matches everything under it.
    """
    text = pattern.strip().removeprefix("./").strip("/")
    body = _translate(text)
    if "/" not in text:
        return re.compile(rf"(?:.*/)?{body}(?:/.*)?\Z")
    return re.compile(rf"{body}(?:/.*)?\Z")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2 :]:
            end = pattern.index("]", i + 2)
            inner = pattern[i + 1 : end]
            negate = inner.startswith("!")
            inner = inner.removeprefix("!").replace("\\", "\\\\")
            out.append(f"[{'^' if negate else ''}{inner}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _matches_any(path: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    return any(pattern.match(path) for pattern in patterns)
