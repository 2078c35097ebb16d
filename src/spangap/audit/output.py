"""The audit's result as a terminal table, markdown, JSON, SARIF or GitHub annotations.

Each format is one function of a :class:`Report`, chosen by :func:`render`, so that a new
format is one function and one entry in ``RENDERERS``. Machine formats (JSON, SARIF)
carry every finding with its key; the GitHub format annotates only new findings, since
known ones would repeat on every run of a pull request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from .. import __version__
from .baseline import Comparison
from .checks import (
    ATTACH_WITHOUT_DETACH,
    CHECK_HELP,
    SPAN_NOT_ENDED,
    SPAN_NOT_ENTERED,
    SPAN_NOT_PROPAGATED,
)
from .scan import (
    MISSING_SPAN,
    OPT_OUT_WITHOUT_REASON,
    OPTED_OUT,
    SYNTAX_ERROR,
    Coverage,
    Finding,
    Function,
    ScanResult,
    coverage_by,
    package_of,
)

TOOL_NAME = "spangap-audit"
JSON_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
FINGERPRINT = "spangapKey/v1"

_GAP = "  "


@dataclass(frozen=True)
class Report:
    """A scan, its findings against the baseline, and the gate it is judged by."""

    result: ScanResult
    comparison: Comparison
    baseline: str | None = None
    min_coverage: float | None = None
    show_opted_out: bool = False

    @property
    def coverage(self) -> Coverage:
        return self.result.coverage

    @property
    def below_minimum(self) -> bool:
        """Compared on the exact counts, so that 79.99% never passes a minimum of 80."""
        minimum, coverage = self.min_coverage, self.coverage
        return (
            minimum is not None
            and coverage.counted > 0
            and 100 * coverage.covered < (minimum * coverage.counted)
        )

    @property
    def passed(self) -> bool:
        return not self.comparison.new and not self.below_minimum

    @property
    def opted_out(self) -> list[Function]:
        return [f for f in self.result.functions if f.status == OPTED_OUT]


def render(report: Report, fmt: str) -> str:
    """``report`` in format ``fmt``; raises ValueError for an unknown format."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(RENDERERS)}")
    return RENDERERS[fmt](report)


# --- words -----------------------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def percent_text(coverage: Coverage) -> str:
    """Rounded down to a tenth, so that the text never claims a minimum that was missed."""
    if not coverage.counted:
        return "n/a"
    tenths = 1000 * coverage.covered // coverage.counted
    whole, tenth = divmod(tenths, 10)
    return f"{whole}%" if tenth == 0 else f"{whole}.{tenth}%"


def _minimum_text(minimum: float) -> str:
    return f"{minimum:g}%"


def header_line(report: Report) -> str:
    """The totals in one sentence, first in the table and markdown formats."""
    coverage = report.coverage
    text = (
        f"spangap audit: {_plural(coverage.counted, 'public function')}, "
        f"{coverage.covered:,} with a span, "
        + (f"{percent_text(coverage)} coverage" if coverage.counted else "coverage n/a")
    )
    extras = []
    if coverage.opted_out:
        extras.append(f"{coverage.opted_out:,} opted out")
    unparsed = sum(1 for f in report.result.findings if f.kind == SYNTAX_ERROR)
    if unparsed:
        extras.append(f"{_plural(unparsed, 'file')} could not be parsed")
    extras.append(f"{_plural(report.result.files, 'file')} read")
    return f"{text} ({'; '.join(extras)})"


def findings_line(report: Report) -> str:
    """How many findings there are, and how many of them the baseline already knows."""
    comparison = report.comparison
    total = len(comparison.new) + len(comparison.known)
    if report.baseline is None:
        return f"{_plural(total, 'finding')} (no baseline: all are new)" if total else "no findings"
    text = (
        f"{_plural(total, 'finding')}: {len(comparison.new):,} new, "
        f"{len(comparison.known):,} known in {report.baseline}"
    )
    if comparison.gone:
        text += (
            f"; {_plural(len(comparison.gone), 'baseline entry')} no longer found"
            " (run --update-baseline to drop them)"
        )
    return text


def verdict_line(report: Report) -> str:
    """Why the gate passes or fails, in the words of its two rules."""
    problems = []
    if report.comparison.new:
        problems.append(_plural(len(report.comparison.new), "new finding"))
    if report.below_minimum and report.min_coverage is not None:
        problems.append(
            f"coverage {percent_text(report.coverage)} is below the minimum "
            f"{_minimum_text(report.min_coverage)}"
        )
    if problems:
        return "audit failed: " + "; ".join(problems)
    if report.min_coverage is not None:
        return (
            f"audit passed: no new findings, coverage {percent_text(report.coverage)} "
            f"meets the minimum {_minimum_text(report.min_coverage)}"
        )
    return "audit passed: no new findings"


def _location(item: Finding | Function) -> str:
    return f"{item.path}:{item.line}:{item.column}"


def _function_name(finding: Finding) -> str:
    return finding.qualname or "(whole file)"


def _entry_text(entry_point: str) -> str:
    return "-" if entry_point == "none" else entry_point


def _status(report: Report, finding: Finding) -> str:
    return "new" if report.comparison.is_new(finding) else "known"


# --- coverage rows shared by the table and markdown ------------------------------------


def _module_rows(report: Report) -> list[list[str]]:
    functions = report.result.functions
    names = {f.path: f.module for f in functions}
    return [
        [names[path], path, *_coverage_cells(coverage)]
        for path, coverage in coverage_by(functions, lambda f: f.path).items()
    ]


def _package_rows(report: Report) -> list[list[str]]:
    return [
        [package, *_coverage_cells(coverage)]
        for package, coverage in coverage_by(report.result.functions, package_of).items()
    ]


def _coverage_cells(coverage: Coverage) -> list[str]:
    return [f"{coverage.counted:,}", f"{coverage.covered:,}", percent_text(coverage)]


_MODULE_TITLES = ["module", "file", "functions", "with span", "coverage"]
_PACKAGE_TITLES = ["package", "functions", "with span", "coverage"]


def _finding_rows(report: Report) -> list[list[str]]:
    rows = []
    for rank, finding in enumerate(report.result.findings, start=1):
        row = [
            str(rank),
            _location(finding),
            _function_name(finding),
            finding.kind,
            _entry_text(finding.entry_point),
        ]
        if report.baseline is not None:
            row.append(_status(report, finding))
        rows.append(row)
    return rows


def _finding_titles(report: Report) -> list[str]:
    titles = ["#", "location", "function", "kind", "entry"]
    return [*titles, "status"] if report.baseline is not None else titles


# --- table -----------------------------------------------------------------------------


def render_table(report: Report) -> str:
    """For a terminal: totals, coverage per module (and package), then what to fix."""
    lines = [header_line(report), ""]
    module_rows = _module_rows(report)
    if module_rows:
        lines += _aligned([_MODULE_TITLES, *module_rows], numeric={2, 3, 4})
        lines.append("")
    package_rows = _package_rows(report)
    if len(package_rows) > 1:
        lines += _aligned([_PACKAGE_TITLES, *package_rows], numeric={1, 2, 3})
        lines.append("")
    if report.result.findings:
        lines.append("Findings, span mistakes and entry points first:")
        lines += _aligned([_finding_titles(report), *_finding_rows(report)], numeric={0})
        lines.append("")
    if report.show_opted_out and report.opted_out:
        lines.append("Opted out:")
        lines += [f"  {_location(f)}  {f.qualname}: {f.reason}" for f in report.opted_out]
        lines.append("")
    lines += [findings_line(report), verdict_line(report)]
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        _GAP.join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


# --- markdown --------------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    """GitHub tables for a pull request comment or a job summary."""
    lines = [f"**{header_line(report)}**", ""]
    module_rows = _module_rows(report)
    if module_rows:
        lines += _markdown_table(_MODULE_TITLES, module_rows, numeric={2, 3, 4}, code={0, 1})
        lines.append("")
    package_rows = _package_rows(report)
    if len(package_rows) > 1:
        lines += _markdown_table(_PACKAGE_TITLES, package_rows, numeric={1, 2, 3}, code={0})
        lines.append("")
    if report.result.findings:
        lines += ["Findings, span mistakes and entry points first:", ""]
        titles = _finding_titles(report)
        titles[0] = "rank"
        lines += _markdown_table(titles, _finding_rows(report), numeric={0}, code={1, 2})
        lines.append("")
    if report.show_opted_out and report.opted_out:
        lines += ["Opted out:", ""]
        lines += _markdown_table(
            ["location", "function", "reason"],
            [[_location(f), f.qualname, f.reason] for f in report.opted_out],
            numeric=set(),
            code={0, 1},
        )
        lines.append("")
    lines += [findings_line(report), "", verdict_line(report)]
    return "\n".join(lines) + "\n"


def _markdown_table(
    titles: list[str], rows: list[list[str]], numeric: set[int], code: set[int]
) -> list[str]:
    align = ["---:" if i in numeric else ":---" for i in range(len(titles))]
    body = [
        [f"`{cell}`" if i in code and cell else cell for i, cell in enumerate(row)] for row in rows
    ]
    return [_markdown_row(row) for row in [titles, align, *body]]


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


# --- json ------------------------------------------------------------------------------


def render_json(report: Report) -> str:
    """The document described in docs/audit.md; ``version`` changes only when a field is
    removed or changes meaning."""
    functions = report.result.functions
    names = {f.path: f.module for f in functions}
    document = {
        "version": JSON_VERSION,
        "tool": TOOL_NAME,
        "summary": _summary(report),
        "packages": [
            {"package": package, **_coverage_fields(coverage)}
            for package, coverage in coverage_by(functions, package_of).items()
        ],
        "modules": [
            {"module": names[path], "path": path, **_coverage_fields(coverage)}
            for path, coverage in coverage_by(functions, lambda f: f.path).items()
        ],
        "findings": [
            {**_finding_fields(finding), "new": report.comparison.is_new(finding)}
            for finding in report.result.findings
        ],
        "opted_out": [
            {
                "path": f.path,
                "line": f.line,
                "column": f.column,
                "qualname": f.qualname,
                "module": f.module,
                "reason": f.reason,
            }
            for f in report.opted_out
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _summary(report: Report) -> dict[str, object]:
    comparison = report.comparison
    return {
        "files": report.result.files,
        **_coverage_fields(report.coverage),
        "min_coverage": report.min_coverage,
        "baseline": report.baseline,
        "findings": len(report.result.findings),
        "new": len(comparison.new),
        "known": len(comparison.known),
        "gone": len(comparison.gone),
        "passed": report.passed,
    }


def _coverage_fields(coverage: Coverage) -> dict[str, object]:
    percent = coverage.percent
    return {
        "functions": coverage.counted,
        "covered": coverage.covered,
        "uncovered": coverage.uncovered,
        "opted_out": coverage.opted_out,
        "coverage": None if percent is None else round(percent, 2),
    }


def _finding_fields(finding: Finding) -> dict[str, object]:
    return {
        "key": finding.key,
        "kind": finding.kind,
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "qualname": finding.qualname,
        "module": finding.module,
        "entry_point": finding.entry_point,
        "message": finding.message,
    }


# --- sarif -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    id: str
    name: str
    level: str
    short: str
    full: str


_RULES = (
    _Rule(
        MISSING_SPAN,
        "MissingSpan",
        "warning",
        "Public function opens no span",
        "The function has no span decorator, no with block that starts or enters a span "
        "and no call to a configured span helper, so the work it does is invisible in "
        "traces unless a caller's span covers it.",
    ),
    _Rule(
        OPT_OUT_WITHOUT_REASON,
        "OptOutWithoutReason",
        "warning",
        "Span opt-out without a reason",
        "A '# spangap: no-span' comment must say why the function needs no span, as in "
        "'# spangap: no-span pure computation, microseconds'.",
    ),
    _Rule(
        SYNTAX_ERROR,
        "SyntaxError",
        "error",
        "File could not be parsed",
        "The file is not valid Python for this interpreter, so none of its functions were audited.",
    ),
    _Rule(
        SPAN_NOT_ENDED,
        "SpanNotEnded",
        "error",
        CHECK_HELP[SPAN_NOT_ENDED],
        "A span from start_span is exported only when it ends. End it in a finally block, "
        "or use it in a with statement (trace.use_span(span, end_on_exit=True)), so that "
        "an exception or an early return cannot leave it open.",
    ),
    _Rule(
        SPAN_NOT_ENTERED,
        "SpanNotEntered",
        "error",
        CHECK_HELP[SPAN_NOT_ENTERED],
        "start_as_current_span returns a context manager: the span starts only when it is "
        "entered with a with statement or used as a decorator; the call alone does nothing.",
    ),
    _Rule(
        ATTACH_WITHOUT_DETACH,
        "AttachWithoutDetach",
        "error",
        CHECK_HELP[ATTACH_WITHOUT_DETACH],
        "A context attached with context.attach stays current in the thread until its "
        "token is detached; detach it in a finally block so that an exception cannot "
        "leave it attached to unrelated work.",
    ),
    _Rule(
        SPAN_NOT_PROPAGATED,
        "SpanNotPropagated",
        "warning",
        CHECK_HELP[SPAN_NOT_PROPAGATED],
        "Work handed to an executor or a thread runs in that thread's context, without "
        "the span that is current here. Pass the context with it: "
        "executor.submit(contextvars.copy_context().run, fn, *args), or use "
        "asyncio.to_thread. At runtime spangap counts such work as context_lost.",
    ),
)
_RULE_INDEX = {rule.id: i for i, rule in enumerate(_RULES)}


def render_sarif(report: Report) -> str:
    """SARIF 2.1.0 for code scanning; each result's ``partialFingerprints`` holds the
    finding's key, so that a finding keeps its identity when code moves."""
    run: dict[str, object] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": __version__,
                "rules": [_sarif_rule(rule) for rule in _RULES],
            }
        },
        "results": [_sarif_result(report, finding) for finding in report.result.findings],
        "properties": _summary(report),
    }
    document = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(document, indent=2) + "\n"


def _sarif_rule(rule: _Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.short},
        "fullDescription": {"text": rule.full},
        "defaultConfiguration": {"level": rule.level},
        "help": {"text": rule.full},
    }


def _sarif_result(report: Report, finding: Finding) -> dict[str, object]:
    rule = _RULES[_RULE_INDEX[finding.kind]]
    location: dict[str, object] = {
        "physicalLocation": {
            "artifactLocation": {"uri": _uri(finding.path)},
            "region": {"startLine": finding.line, "startColumn": finding.column},
        }
    }
    if finding.qualname:
        location["logicalLocations"] = [
            {"fullyQualifiedName": f"{finding.module}.{finding.qualname}", "kind": "function"}
        ]
    result: dict[str, object] = {
        "ruleId": rule.id,
        "ruleIndex": _RULE_INDEX[rule.id],
        "level": rule.level,
        "message": {"text": finding.message},
        "locations": [location],
        "partialFingerprints": {FINGERPRINT: finding.key},
    }
    if report.baseline is not None:
        result["baselineState"] = "new" if report.comparison.is_new(finding) else "unchanged"
    return result


def _uri(path: str) -> str:
    posix = PurePosixPath(path)
    if posix.is_absolute():
        return "file://" + quote(path)
    return quote(path)


# --- github ----------------------------------------------------------------------------


def render_github(report: Report) -> str:
    """Workflow commands: a warning annotation per new finding, then the verdict."""
    lines = [_github_annotation(finding) for finding in report.comparison.new]
    summary = f"{findings_line(report)}; {verdict_line(report)}"
    level = "notice" if report.passed else "error"
    lines.append(f"::{level} title=spangap audit::{_escape_data(summary)}")
    return "\n".join(lines) + "\n"


def _github_annotation(finding: Finding) -> str:
    properties = {
        "file": finding.path,
        "line": str(finding.line),
        "col": str(finding.column),
        "title": f"spangap {finding.kind}",
    }
    joined = ",".join(f"{name}={_escape_property(value)}" for name, value in properties.items())
    return f"::warning {joined}::{_escape_data(finding.message)}"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


Renderer = Callable[[Report], str]

RENDERERS: dict[str, Renderer] = {
    "table": render_table,
    "json": render_json,
    "markdown": render_markdown,
    "sarif": render_sarif,
    "github": render_github,
}
FORMATS = tuple(RENDERERS)
