"""The baseline: findings a team has accepted for now, so that a gate fails only on new ones.

A baseline holds the findings' keys, which name the kind, the file and the function but
no line numbers: moving code keeps its findings known, while a new function without a
span is new. Writing the baseline again after fixing findings drops their keys, so the
number of known findings can only go down (a ratchet).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .scan import Finding

FORMAT = "spangap-audit-baseline"
VERSION = 1


class BaselineError(ValueError):
    """The baseline file cannot be used; the message names it."""


@dataclass(frozen=True)
class Comparison:
    """The findings split by the baseline; ``gone`` are known keys no longer found."""

    new: tuple[Finding, ...]
    known: tuple[Finding, ...]
    gone: tuple[str, ...] = ()
    known_keys: frozenset[str] = frozenset()

    def is_new(self, finding: Finding) -> bool:
        return finding.key not in self.known_keys


def compare(findings: Iterable[Finding], known_keys: frozenset[str] | None) -> Comparison:
    """Split findings into new and known; without a baseline, every finding is new."""
    findings = tuple(findings)
    if known_keys is None:
        return Comparison(new=findings, known=())
    return Comparison(
        new=tuple(f for f in findings if f.key not in known_keys),
        known=tuple(f for f in findings if f.key in known_keys),
        gone=tuple(sorted(known_keys - {f.key for f in findings})),
        known_keys=known_keys,
    )


def load_baseline(path: Path) -> frozenset[str]:
    """The known keys in ``path``; a missing or malformed file is a BaselineError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such baseline; create it with --update-baseline") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BaselineError(f"{path}: not a spangap audit baseline (format {FORMAT!r})")
    if document.get("version") != VERSION:
        raise BaselineError(f"{path}: baseline version {document.get('version')!r} is unknown")
    keys = document.get("findings")
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise BaselineError(f"{path}: findings must be a list of strings")
    return frozenset(keys)


def write_baseline(path: Path, findings: Iterable[Finding]) -> int:
    """Write the findings' keys to ``path``, sorted and one per line so that the file's
    diffs are readable; returns how many it holds."""
    keys = sorted({f.key for f in findings})
    document = {"format": FORMAT, "version": VERSION, "findings": keys}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return len(keys)
