"""Renderers: a Snapshot as a terminal table, a markdown table, or JSON for tools.

Each format is one function with the same signature, chosen by :func:`render`, so that a
new format is one function and one entry in ``RENDERERS``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

from ..celery_tasks import CELERY_PRODUCER
from ..snapshot import SiteStats, Snapshot, Totals
from .flame import render_folded, render_html, render_speedscope

SORT_KEYS = ("total", "self", "count", "p95")

# Below this the table's fixed columns alone no longer fit; narrower requests are widened.
MIN_WIDTH = 60

Renderer = Callable[[Snapshot, list[SiteStats], int], str]

_SORT_VALUE: dict[str, Callable[[SiteStats], float]] = {
    "total": lambda s: s.total_seconds,
    "self": lambda s: s.self_seconds,
    "count": lambda s: s.count,
    "p95": lambda s: s.p95_seconds,
}

_CAUSE_LABEL = {"no_span": "no_span", "context_lost": "lost"}

_GAP = "  "


def render(
    snapshot: Snapshot, *, fmt: str = "table", top: int = 20, sort: str = "total", width: int = 80
) -> str:
    """The ``top`` sites of ``snapshot`` by ``sort``, in format ``fmt``; raises ValueError."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(RENDERERS)}")
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    shown = sort_sites(snapshot.sites, sort)[:top]
    return RENDERERS[fmt](snapshot, shown, max(width, MIN_WIDTH))


def sort_sites(sites: list[SiteStats], sort: str = "total") -> list[SiteStats]:
    """Worst first by the sort key; ties by site name so that output is reproducible."""
    if sort not in _SORT_VALUE:
        raise ValueError(f"unknown sort key {sort!r}; choose from {', '.join(SORT_KEYS)}")
    value = _SORT_VALUE[sort]
    return sorted(sites, key=lambda s: (-value(s), s.site, s.cause))


# --- numbers and words -----------------------------------------------------------------


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _number(value: float, decimals: int) -> str:
    """Fewer decimals as values grow, so a long-running service does not widen the table."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.1f}M"
    if abs(value) >= 10_000:
        decimals = 0
    elif abs(value) >= 100:
        decimals = min(decimals, 1)
    return f"{value:,.{decimals}f}"


def _count(value: int) -> str:
    return _number(value, 0) if value >= 1e6 else f"{value:,}"


def _seconds(value: float) -> str:
    return _number(value, 2)


def _milliseconds(seconds: float) -> str:
    return _number(seconds * 1000, 1)


def _setting_ms(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def _share(part: float, whole: float) -> str:
    if whole <= 0:
        return "-"
    percent = 100 * part / whole
    if 0 < percent < 0.5:
        return "<1%"
    return f"{percent:.0f}%"


def _qualname(site: str) -> str:
    return site.partition(":")[2] or site


def _shorten_left(text: str, width: int) -> str:
    """Fit a dotted name into ``width`` keeping what tells names apart: the function and
    its module's last part. Leading packages shrink to initials first
    (``shop.reports:build_report`` -> ``s.reports:build_report``); only then is the
    name cut from the left."""
    if len(text) <= width:
        return text
    head, sep, tail = text.rpartition(":") if ":" in text else ("", "", text)
    if sep:
        packages = head.split(".")
        for i in range(len(packages) - 1):
            packages[i] = packages[i][:1]
            shorter = ".".join(packages) + sep + tail
            if len(shorter) <= width:
                return shorter
        text = ".".join(packages) + sep + tail
    else:
        parts = text.split(".")
        if len(parts) > 2 and len(".".join(parts[-2:])) <= width:
            return ".".join(parts[-2:])  # waited in: "SocketIO.readinto", "cursor.execute"
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :]


def header_line(snapshot: Snapshot) -> str:
    """One sentence with the run's totals, shared by the table and markdown formats."""
    found, coverage = _header_clauses(snapshot)
    return f"{found} {coverage}"


def _header_clauses(snapshot: Snapshot) -> tuple[str, str]:
    totals = snapshot.totals
    found = (
        f"spangap: {_plural(totals.operations, 'uninstrumented operation')} at "
        f"{_plural(len(snapshot.sites), 'site')}, {totals.dark_seconds:,.1f} s dark (self);"
    )
    return found, _coverage_phrase(totals)


def _coverage_phrase(totals: Totals) -> str:
    if totals.coverage is None:
        return "span coverage unknown (no in-scope time was sampled)"
    return (
        f"span coverage {totals.coverage * 100:.0f}% of "
        f"{totals.in_scope_seconds:,.1f} s in-scope time"
    )


def _sampler_cost(sampler_cpu: float, process_cpu: object) -> str:
    """The sampler's CPU, in proportion to the whole process's when that is known."""
    text = f"sampler CPU {sampler_cpu:,.2f} s"
    if isinstance(process_cpu, int | float) and process_cpu > 0:
        text += f" ({sampler_cpu / process_cpu:.1%} of the process)"
    return text


def settings_line(snapshot: Snapshot) -> str:
    """How the run was measured, so that a reader can judge the numbers above it."""
    settings, totals = snapshot.settings, snapshot.totals
    parts = []
    # A snapshot file always has both; a live report knows only what the metrics say.
    if "threshold_ms" in settings:
        parts.append(f"threshold {_setting_ms(settings.get('threshold_ms'))} ms")
    if "interval_ms" in settings:
        parts.append(f"sampled every {_setting_ms(settings.get('interval_ms'))} ms")
    parts += [
        _plural(totals.samples, "sample"),
        _sampler_cost(totals.sampler_cpu_seconds, snapshot.program.get("cpu_seconds")),
    ]
    if totals.internal_errors:
        parts.append(_plural(totals.internal_errors, "internal error"))
    if totals.sites_dropped:
        parts.append(
            f"{_plural(totals.sites_dropped, 'site')} beyond max_sites "
            f"({settings.get('max_sites')}) counted as __other__ in metrics"
        )
    return ", ".join(parts)


def _no_sites_line(snapshot: Snapshot) -> str:
    if "threshold_ms" not in snapshot.settings:
        return "no uninstrumented operations were seen"
    threshold = _setting_ms(snapshot.settings.get("threshold_ms"))
    return f"no uninstrumented operations of {threshold} ms or more were seen"


# --- columns shared by the table and markdown ------------------------------------------


@dataclass(frozen=True)
class _Column:
    short: str  # title in the terminal table, where columns are scarce
    long: str  # title in markdown
    numeric: bool = False
    flexible: bool = False  # shortened from the left when the line would not fit


_COLUMNS = (
    _Column("#", "rank", numeric=True),
    _Column("site", "site", flexible=True),
    _Column("count", "count", numeric=True),
    _Column("dark s", "dark total (s)", numeric=True),
    _Column("self s", "self (s)", numeric=True),
    _Column("p95 ms", "p95 (ms)", numeric=True),
    _Column("share", "share", numeric=True),
    _Column("waited in", "waited in", flexible=True),
    _Column("cause", "cause"),
)
_SITE, _WAITED = 1, 7


def _cells(rank: int, site: SiteStats, dark_seconds: float) -> list[str]:
    waited = site.waited_in[0].name if site.waited_in else ""
    return [
        str(rank),
        site.site,
        _count(site.count),
        _seconds(site.total_seconds),
        _seconds(site.self_seconds),
        _milliseconds(site.p95_seconds),
        _share(site.self_seconds, dark_seconds),
        waited,
        _CAUSE_LABEL.get(site.cause, site.cause),
    ]


def _rows(snapshot: Snapshot, shown: list[SiteStats]) -> list[list[str]]:
    dark = snapshot.totals.dark_seconds
    return [_cells(rank, site, dark) for rank, site in enumerate(shown, start=1)]


# --- table -----------------------------------------------------------------------------


def render_table(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """For a terminal: prose wrapped and table rows shortened to fit ``width``."""
    lines = [_header_lines(snapshot, width), _wrap(settings_line(snapshot), width), ""]
    if not shown:
        lines.append(_no_sites_line(snapshot))
        return "\n".join(lines) + "\n"
    if len(shown) < len(snapshot.sites):
        lines.append(f"top {len(shown)} of {len(snapshot.sites)} sites")
    lines += _table_lines(_rows(snapshot, shown), width)
    lines += ["", _wrap(_legend(snapshot), width), ""]
    lines += _advice(shown, width)
    return "\n".join(lines).rstrip("\n") + "\n"


def _header_lines(snapshot: Snapshot, width: int) -> str:
    """The header on one line if it fits, else broken between its two clauses."""
    line = header_line(snapshot)
    if len(line) <= width:
        return line
    found, coverage = _header_clauses(snapshot)
    return _wrap(found, width) + "\n" + _wrap("  " + coverage, width)


def _wrap(text: str, width: int) -> str:
    return textwrap.fill(text, width, subsequent_indent="  ", break_on_hyphens=False)


def _legend(snapshot: Snapshot) -> str:
    return (
        "dark s: seconds in dark calls of the site, nested dark calls included; self s: "
        "without them; share: self s of all "
        f"{snapshot.totals.dark_seconds:,.1f} s dark (self) time; "
        "waited in: where the time went outside your code."
    )


def _table_lines(rows: list[list[str]], width: int) -> list[str]:
    """One line per site when everything fits; otherwise "waited in" moves to an
    indented second line, so that the site keeps its whole name (what people act on)."""
    titles = [c.short for c in _COLUMNS]
    widths = _fit_widths([titles, *rows], width)
    full = [max(len(row[i]) for row in [titles, *rows]) for i in (_SITE, _WAITED)]
    if [widths[_SITE], widths[_WAITED]] == full:
        return [_format_row(cells, widths) for cells in [titles, *rows]]
    widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(_COLUMNS))]
    widths[_WAITED] = 0
    fixed = sum(w for i, w in enumerate(widths) if i != _SITE)
    visible = sum(1 for w in widths if w) - 1
    widths[_SITE] = max(len(_COLUMNS[_SITE].short), width - fixed - len(_GAP) * visible)
    indent = " " * (widths[0] + len(_GAP) + 2)
    lines = [_format_row(titles, widths)]
    for cells in rows:
        lines.append(_format_row(cells, widths))
        if cells[_WAITED]:
            room = width - len(indent) - len("waited in ")
            lines.append(f"{indent}waited in {_shorten_left(cells[_WAITED], room)}")
    return lines


def _fit_widths(rows: list[list[str]], width: int) -> list[int]:
    """Column widths for ``width``: site and waited-in are narrowed, site last.

    A width of 0 drops the column: when even a narrowed waited-in would not fit, the
    site, which is what the reader acts on, gets its room.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    fixed = sum(w for w, c in zip(widths, _COLUMNS, strict=True) if not c.flexible)
    room = width - fixed - len(_GAP) * (len(_COLUMNS) - 1)
    site_need, waited_need = widths[_SITE], widths[_WAITED]
    if site_need + waited_need <= room:
        return widths
    waited_min = len(_COLUMNS[_WAITED].short)
    site_min = len(_COLUMNS[_SITE].short)
    if room - waited_min < max(site_min, room * 2 // 3):
        widths[_WAITED] = 0
        widths[_SITE] = max(min(site_need, room + len(_GAP)), site_min)
        return widths
    widths[_SITE] = min(site_need, room - min(waited_need, max(room // 3, waited_min)))
    widths[_WAITED] = min(waited_need, room - widths[_SITE])
    return widths


def _format_row(cells: list[str], widths: list[int]) -> str:
    parts = []
    for cell, width, column in zip(cells, widths, _COLUMNS, strict=True):
        if width == 0:
            continue
        text = _shorten_left(cell, width)
        parts.append(text.rjust(width) if column.numeric else text.ljust(width))
    return _GAP.join(parts).rstrip()


# --- what to do ------------------------------------------------------------------------

_CODE_INDENT = "       "
_TEXT_INDENT = "   "


def _advice(shown: list[SiteStats], width: int) -> list[str]:
    """Concrete next steps for the worst no_span site and for the context_lost sites."""
    no_span = [s for s in shown if s.cause == "no_span"]
    lost = [s for s in shown if s.cause == "context_lost"]
    if not no_span and not lost:
        return []
    lines = ["What to do"]
    if no_span:
        # The site with the most time of its own: a span there explains the most. (The
        # largest total is often a thread's lifetime loop, which is no place for a span.)
        lines += _advice_no_span(max(no_span, key=lambda s: (s.self_seconds, s.count)), width)
    if lost:
        lines += _advice_lost(lost, width)
    return lines


def _advice_no_span(site: SiteStats, width: int) -> list[str]:
    text = (
        f"{site.site} ran {_plural(site.count, 'time')} ({_seconds(site.total_seconds)} s) "
        f"with no span anywhere above it. Open a span inside it{_location(site)}, "
        "so that every caller is covered:"
    )
    return [
        _bullet(text, width),
        "",
        *_span_snippet(_qualname(site.site), width),
        "",
    ]


def _location(site: SiteStats) -> str:
    """`` (file:line)``; empty for sites read from metrics, which carry no location."""
    return f" ({site.file}:{site.line})" if site.file else ""


def _span_snippet(name: str, width: int) -> list[str]:
    opener = _code_call("with tracer.start_as_current_span(", f'"{name}"', "):", width)
    return [*opener, f"{_CODE_INDENT}    ...  # the function's body"]


def _code_call(head: str, arguments: str, tail: str, width: int) -> list[str]:
    """Code to paste, never cut: split after the parenthesis when one line is too wide."""
    line = f"{_CODE_INDENT}{head}{arguments}{tail}"
    if len(line) <= width:
        return [line]
    return [f"{_CODE_INDENT}{head}", f"{_CODE_INDENT}    {arguments}", f"{_CODE_INDENT}{tail}"]


def _advice_lost(sites: list[SiteStats], width: int) -> list[str]:
    lines = []
    for site in sites[:3]:
        text = (
            f"{site.site} ran {_plural(site.count, 'time')} ({_seconds(site.total_seconds)} s) "
            f"in a thread, executor or task handed over by {_submitter(site)}; "
            "the span did not travel into it."
        )
        lines.append(_bullet(text, width))
    if len(sites) > 3:
        lines.append(_bullet(f"{len(sites) - 3} more context_lost sites, same fix.", width))
    fix = "Hand the context over with the work:"
    closing = "or use asyncio.to_thread, or enable opentelemetry-instrumentation-threading."
    lines += [
        _wrap_indented(fix, width),
        *_code_call("executor.submit(", "contextvars.copy_context().run, fn, *args", ")", width),
        _wrap_indented(closing, width),
    ]
    if any(_submitter(site).startswith(CELERY_PRODUCER) for site in sites):
        celery = (
            "For Celery tasks, the worker must take the span from the message: run "
            "CeleryInstrumentor().instrument() (opentelemetry-instrumentation-celery) in "
            "its worker_process_init signal."
        )
        lines.append(_wrap_indented(celery, width))
    return [*lines, ""]


def _submitter(site: SiteStats) -> str:
    """Who handed the work over; live metrics do not carry it (the snapshot does)."""
    if site.lost_context and site.lost_context.submitters:
        return f"{site.lost_context.submitters[0].name}, which had a span"
    return "code that had a span (the snapshot names it)"


def _bullet(text: str, width: int) -> str:
    return textwrap.fill(
        text, width, initial_indent=" - ", subsequent_indent=_TEXT_INDENT, break_on_hyphens=False
    )


def _wrap_indented(text: str, width: int) -> str:
    return textwrap.fill(
        text,
        width,
        initial_indent=_TEXT_INDENT,
        subsequent_indent=_TEXT_INDENT,
        break_on_hyphens=False,
    )


# --- markdown --------------------------------------------------------------------------


def render_markdown(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """A GitHub table for issues and pull requests; names are never shortened."""
    del width  # markdown reflows in the reader's browser
    lines = [header_line(snapshot), "", settings_line(snapshot), ""]
    if not shown:
        lines.append(_no_sites_line(snapshot))
        return "\n".join(lines) + "\n"
    lines.append(_markdown_row([c.long for c in _COLUMNS]))
    lines.append(_markdown_row(["---:" if c.numeric else ":---" for c in _COLUMNS]))
    for cells in _rows(snapshot, shown):
        lines.append(_markdown_row(_markdown_cells(cells)))
    return "\n".join(lines) + "\n"


def _markdown_cells(cells: list[str]) -> list[str]:
    # Code spans keep names like `<lambda>` from being read as HTML.
    return [
        f"`{cell}`" if column.flexible and cell else cell
        for cell, column in zip(cells, _COLUMNS, strict=True)
    ]


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


# --- json ------------------------------------------------------------------------------


def render_json(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """The snapshot document with only the shown sites, in order, plus derived coverage.

    It stays a valid snapshot, so the output can be saved and shown again.
    """
    del width
    document = snapshot.to_dict()
    document["totals"]["coverage"] = snapshot.totals.coverage
    document["sites_total"] = len(snapshot.sites)
    document["sites"] = [site.to_dict() for site in shown]
    return json.dumps(document, indent=2) + "\n"


RENDERERS: dict[str, Renderer] = {
    "table": render_table,
    "json": render_json,
    "markdown": render_markdown,
    # The dark time as a flame graph (flame.py): every site, whatever --top says.
    "html": render_html,
    "speedscope": render_speedscope,
    "folded": render_folded,
}
FORMATS = tuple(RENDERERS)
