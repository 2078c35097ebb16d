"""``gapreport diff``: what changed between two snapshots, for CI and pull requests.

Sites are matched by (site, cause): the same function losing its context is a different
problem from it having no span at all. A site in both runs has grown or shrunk when its
total dark seconds changed by at least the threshold percentage *and* by at least the
minimum seconds; the second rule keeps small sites from flapping on noise. Totals are
compared directly, since a CI job runs the same workload each time.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from ..snapshot import SiteStats, Snapshot

Kind = Literal["new", "gone", "grown", "shrunk", "unchanged"]
KINDS: tuple[Kind, ...] = get_args(Kind)
#: Kinds that ``--fail-on`` can name, in the order the report shows them.
CHANGE_KINDS: tuple[Kind, ...] = ("new", "gone", "grown", "shrunk")
DEFAULT_FAIL_ON: frozenset[Kind] = frozenset({"new", "grown"})
JSON_VERSION = 1

# Float sums make 4.0 -> 4.8 a 19.999...% change; a rule at exactly 20% should still apply.
_EPSILON = 1e-9

_SiteKey = tuple[str, str]


@dataclass(frozen=True)
class Rules:
    """When a site in both runs counts as grown or shrunk rather than unchanged."""

    threshold_percent: float = 20.0
    min_seconds: float = 0.05


@dataclass(frozen=True)
class SiteChange:
    """One (site, cause) and how it compares; ``old`` or ``new`` is None when absent."""

    site: str
    cause: str
    kind: Kind
    old: SiteStats | None
    new: SiteStats | None

    @property
    def old_seconds(self) -> float:
        return self.old.total_seconds if self.old is not None else 0.0

    @property
    def new_seconds(self) -> float:
        return self.new.total_seconds if self.new is not None else 0.0

    @property
    def change_seconds(self) -> float:
        return self.new_seconds - self.old_seconds

    @property
    def change_percent(self) -> float | None:
        """None when there was nothing before: growth from zero has no percentage."""
        if self.old_seconds <= 0:
            return None
        return 100 * self.change_seconds / self.old_seconds


@dataclass(frozen=True)
class Diff:
    """Every site of two runs, classified; the renderers and the exit code read this."""

    old: Snapshot
    new: Snapshot
    rules: Rules
    changes: tuple[SiteChange, ...]

    def of_kind(self, kind: Kind) -> list[SiteChange]:
        """The sites of one kind, the largest change first (ties by name, for stable output)."""
        chosen = [c for c in self.changes if c.kind == kind]
        return sorted(chosen, key=_ORDER[kind])

    def count(self, kind: Kind) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def failing(self, fail_on: Iterable[Kind]) -> list[Kind]:
        """The kinds in ``fail_on`` that have at least one site, in report order."""
        wanted = set(fail_on)
        return [kind for kind in CHANGE_KINDS if kind in wanted and self.count(kind)]

    @property
    def changed(self) -> bool:
        return any(self.count(kind) for kind in CHANGE_KINDS)


_ORDER: dict[Kind, Callable[[SiteChange], tuple[float, str, str]]] = {
    "new": lambda c: (-c.new_seconds, c.site, c.cause),
    "gone": lambda c: (-c.old_seconds, c.site, c.cause),
    "grown": lambda c: (-c.change_seconds, c.site, c.cause),
    "shrunk": lambda c: (c.change_seconds, c.site, c.cause),
    "unchanged": lambda c: (-c.new_seconds, c.site, c.cause),
}


# --- comparing -------------------------------------------------------------------------


def compare(old: Snapshot, new: Snapshot, rules: Rules | None = None) -> Diff:
    """Classify every (site, cause) of either snapshot."""
    rules = rules or Rules()
    before, after = _by_key(old.sites), _by_key(new.sites)
    changes = [
        _change(key, before.get(key), after.get(key), rules)
        for key in sorted(before.keys() | after.keys())
    ]
    return Diff(old=old, new=new, rules=rules, changes=tuple(changes))


def _by_key(sites: list[SiteStats]) -> dict[_SiteKey, SiteStats]:
    """Sites by (site, cause); a key listed twice is summed rather than half dropped."""
    keyed: dict[_SiteKey, SiteStats] = {}
    for site in sites:
        key = (site.site, site.cause)
        keyed[key] = site if key not in keyed else _merge(keyed[key], site)
    return keyed


def _merge(a: SiteStats, b: SiteStats) -> SiteStats:
    return replace(
        a,
        count=a.count + b.count,
        total_seconds=a.total_seconds + b.total_seconds,
        self_seconds=a.self_seconds + b.self_seconds,
        max_seconds=max(a.max_seconds, b.max_seconds),
    )


def _change(
    key: _SiteKey, old: SiteStats | None, new: SiteStats | None, rules: Rules
) -> SiteChange:
    site, cause = key
    return SiteChange(site, cause, _kind(old, new, rules), old, new)


def _kind(old: SiteStats | None, new: SiteStats | None, rules: Rules) -> Kind:
    if old is None:
        return "new"
    if new is None:
        return "gone"
    delta = new.total_seconds - old.total_seconds
    if delta == 0 or abs(delta) < rules.min_seconds - _EPSILON:
        return "unchanged"
    if old.total_seconds > 0:
        percent = 100 * abs(delta) / old.total_seconds
        if percent < rules.threshold_percent - _EPSILON:
            return "unchanged"
    return "grown" if delta > 0 else "shrunk"


# --- option values ---------------------------------------------------------------------


def fail_on_kinds(text: str) -> frozenset[Kind]:
    """``--fail-on``: a comma list of kinds, or ``none`` to never fail."""
    names = [name.strip() for name in text.split(",")]
    if "none" in names:
        if len(names) > 1:
            raise argparse.ArgumentTypeError("none cannot be combined with other kinds")
        return frozenset()
    unknown = [name for name in names if name not in CHANGE_KINDS]
    if unknown:
        choices = ", ".join(CHANGE_KINDS)
        raise argparse.ArgumentTypeError(
            f"unknown kind {unknown[0]!r}: give a comma list of {choices}, or none"
        )
    return frozenset(kind for kind in CHANGE_KINDS if kind in names)


# --- words and numbers -----------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def summary_line(diff: Diff) -> str:
    """The totals, e.g. ``spangap: 2 new dark sites, 1 gone, 1 grown, 0 shrunk``."""
    new = _plural(diff.count("new"), "new dark site")
    rest = ", ".join(f"{diff.count(kind)} {kind}" for kind in CHANGE_KINDS[1:])
    return f"spangap: {new}, {rest}"


def _runs_line(diff: Diff) -> str:
    old, new = diff.old.totals, diff.new.totals
    dark = f"{old.dark_seconds:,.2f} s → {new.dark_seconds:,.2f} s"
    if old.dark_seconds > 0:
        dark += f" ({_percent(100 * (new.dark_seconds - old.dark_seconds) / old.dark_seconds)})"
    return (
        f"dark time (self) {dark}; operations {old.operations:,} → {new.operations:,}; "
        f"sites {len(diff.old.sites):,} → {len(diff.new.sites):,}"
    )


def _rules_line(diff: Diff) -> str:
    rules = diff.rules
    return (
        f"grown or shrunk: total dark seconds changed by at least "
        f"{rules.threshold_percent:g}% and {rules.min_seconds:g} s; "
        f"{_plural(diff.count('unchanged'), 'site')} unchanged"
    )


def _no_changes_line(diff: Diff) -> str:
    if not diff.changes:
        return "no changes: no dark sites in either run"
    return f"no changes: {_plural(len(diff.changes), 'dark site')}, none new, gone, grown or shrunk"


def _settings_note(diff: Diff) -> str | None:
    """Runs with different detector settings count different calls; say so."""
    keys = ("threshold_ms", "interval_ms")
    differing = [k for k in keys if diff.old.settings.get(k) != diff.new.settings.get(k)]
    if not differing:
        return None
    what = ", ".join(
        f"{k} {diff.old.settings.get(k)} → {diff.new.settings.get(k)}" for k in differing
    )
    return f"note: the runs used different settings ({what}); counts may not compare"


def _failing_line(diff: Diff, fail_on: frozenset[Kind]) -> str | None:
    failing = diff.failing(fail_on)
    if not failing:
        return None
    found = ", ".join(f"{diff.count(kind)} {kind}" for kind in failing)
    chosen = ",".join(kind for kind in CHANGE_KINDS if kind in fail_on)
    return f"failing: {found} (--fail-on {chosen})"


def _percent(value: float) -> str:
    return f"{value:+.0f}%" if abs(value) >= 1 or value == 0 else f"{value:+.1f}%"


def _seconds(value: float) -> str:
    return f"{value:,.2f}"


def _cause(cause: str) -> str:
    return "lost" if cause == "context_lost" else cause


# --- rows ------------------------------------------------------------------------------

_TITLES = ("site", "cause", "old count", "new count", "old dark s", "new dark s", "change")
_TEXT_COLUMNS = 2  # site and cause are left-aligned, the figures right-aligned


def _change_cell(change: SiteChange) -> str:
    if change.kind in ("new", "gone"):
        return change.kind
    percent = change.change_percent
    if percent is None:
        return f"{change.change_seconds:+,.2f} s"
    return _percent(percent)


def _cells(change: SiteChange) -> list[str]:
    old, new = change.old, change.new
    return [
        change.site,
        _cause(change.cause),
        "-" if old is None else f"{old.count:,}",
        "-" if new is None else f"{new.count:,}",
        "-" if old is None else _seconds(old.total_seconds),
        "-" if new is None else _seconds(new.total_seconds),
        _change_cell(change),
    ]


def _shown(diff: Diff, kind: Kind, top: int) -> tuple[list[SiteChange], str | None]:
    """The first ``top`` sites of a kind, and a note when some are left out."""
    changes = diff.of_kind(kind)
    if len(changes) <= top:
        return changes, None
    return changes[:top], f"top {top} of {len(changes)}"


# --- table -----------------------------------------------------------------------------


def render_table(diff: Diff, top: int, fail_on: frozenset[Kind]) -> str:
    """For a terminal or a CI log; names are never shortened, so rows may be long."""
    lines = [summary_line(diff), _runs_line(diff)]
    note = _settings_note(diff)
    lines += [note] if note else []
    if not diff.changed:
        return "\n".join([*lines, "", _no_changes_line(diff)]) + "\n"
    lines.append(_rules_line(diff))
    for kind in CHANGE_KINDS:
        lines += _table_section(diff, kind, top)
    failing = _failing_line(diff, fail_on)
    lines += ["", failing] if failing else []
    return "\n".join(lines) + "\n"


def _table_section(diff: Diff, kind: Kind, top: int) -> list[str]:
    changes, cut = _shown(diff, kind, top)
    if not changes:
        return []
    title = f"{kind} ({diff.count(kind)}{', ' + cut if cut else ''})"
    rows = [list(_TITLES), *(_cells(c) for c in changes)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TITLES))]
    return ["", title, *(_table_row(row, widths) for row in rows)]


def _table_row(cells: list[str], widths: list[int]) -> str:
    parts = [
        cell.ljust(width) if i < _TEXT_COLUMNS else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(parts).rstrip()


# --- markdown --------------------------------------------------------------------------


def render_markdown(diff: Diff, top: int, fail_on: frozenset[Kind]) -> str:
    """A pull request comment: a heading with the totals, then one table per kind."""
    del fail_on  # the job's status shows the verdict; the comment shows the sites
    lines = [f"### {summary_line(diff)}", "", _sentence(_runs_line(diff))]
    note = _settings_note(diff)
    lines += ["", _sentence(note)] if note else []
    if not diff.changed:
        return "\n".join([*lines, "", _sentence(_no_changes_line(diff))]) + "\n"
    lines += ["", _sentence(_rules_line(diff))]
    for kind in CHANGE_KINDS:
        lines += _markdown_section(diff, kind, top)
    return "\n".join(lines) + "\n"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _markdown_section(diff: Diff, kind: Kind, top: int) -> list[str]:
    changes, cut = _shown(diff, kind, top)
    if not changes:
        return []
    lines = ["", f"#### {kind.capitalize()} ({diff.count(kind)})", ""]
    lines += [f"{cut.capitalize()}.", ""] if cut else []
    lines.append(_markdown_row(list(_TITLES)))
    lines.append(_markdown_row([":---"] * _TEXT_COLUMNS + ["---:"] * (len(_TITLES) - 2)))
    for change in changes:
        cells = _cells(change)
        cells[0] = f"`{cells[0]}`"  # a code span: `<lambda>` is not read as HTML
        lines.append(_markdown_row(cells))
    return lines


def _markdown_row(cells: list[str]) -> str:
    """GitHub splits cells at every unescaped ``|``, inside code spans too."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


# --- json ------------------------------------------------------------------------------


def render_json(diff: Diff, top: int, fail_on: frozenset[Kind]) -> str:
    """A stable document for tools: ``version``, the rules, the verdict, a list per kind.

    Lists hold at most ``top`` sites each; ``counts`` has the full numbers.
    """
    document: dict[str, Any] = {
        "version": JSON_VERSION,
        "rules": {
            "threshold_percent": diff.rules.threshold_percent,
            "min_seconds": diff.rules.min_seconds,
        },
        "totals": {"old": _run_totals(diff.old), "new": _run_totals(diff.new)},
        "counts": {kind: diff.count(kind) for kind in KINDS},
        "fail_on": [kind for kind in CHANGE_KINDS if kind in fail_on],
        "failed": bool(diff.failing(fail_on)),
    }
    for kind in KINDS:
        document[kind] = [_json_site(c) for c in diff.of_kind(kind)[:top]]
    return json.dumps(document, indent=2) + "\n"


def _run_totals(snapshot: Snapshot) -> dict[str, Any]:
    totals = snapshot.totals
    return {
        "dark_seconds": totals.dark_seconds,
        "operations": totals.operations,
        "sites": len(snapshot.sites),
    }


def _json_site(change: SiteChange) -> dict[str, Any]:
    old, new = change.old, change.new
    location = new or old
    return {
        "site": change.site,
        "cause": change.cause,
        "file": location.file if location else None,
        "line": location.line if location else None,
        "old_count": None if old is None else old.count,
        "new_count": None if new is None else new.count,
        "old_total_seconds": None if old is None else old.total_seconds,
        "new_total_seconds": None if new is None else new.total_seconds,
        "change_seconds": change.change_seconds,
        "change_percent": change.change_percent,
    }


# --- choosing a format -----------------------------------------------------------------

DiffRenderer = Callable[[Diff, int, frozenset[Kind]], str]

RENDERERS: dict[str, DiffRenderer] = {
    "table": render_table,
    "markdown": render_markdown,
    "json": render_json,
}
FORMATS = tuple(RENDERERS)


def render_diff(
    diff: Diff, *, fmt: str = "table", top: int = 20, fail_on: Iterable[Kind] = DEFAULT_FAIL_ON
) -> str:
    """``diff`` in format ``fmt``, at most ``top`` sites per kind; raises ValueError."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(RENDERERS)}")
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    return RENDERERS[fmt](diff, top, frozenset(fail_on))
