"""The static audit joined with what the detector saw at runtime.

A function the audit finds without a span matters as much as the dark time it causes:
the join ranks those findings by the seconds their site ran dark (a snapshot, a live
``/metrics`` or a fleet in Prometheus), lists the dark sites the audit cannot see (code
reached by dynamic dispatch, callbacks, private or nested functions), and the functions
without a span that never ran dark in the data given.

Sites are matched by name: the runtime's ``module:qualname`` against the function's
module and qualified name, or, when a scan root makes the module name shorter than the
imported one (``api`` for ``shop.api``), by the qualified name and the module's tail.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..snapshot import SiteStats, Snapshot
from .scan import MISSING_SPAN, UNCOVERED, Finding, Function, ScanResult


@dataclass(frozen=True)
class RankedFinding:
    """A missing-span finding and the dark time its site had at runtime."""

    finding: Finding
    dark_seconds: float
    operations: int


@dataclass(frozen=True)
class Joined:
    """Findings ranked by dark seconds (most first), runtime sites the scan has no
    function for, and uncovered functions never seen dark."""

    ranked: tuple[RankedFinding, ...]
    unseen_statically: tuple[SiteStats, ...]
    never_dark: tuple[Function, ...]
    source: str


def join(result: ScanResult, snapshot: Snapshot, source: str) -> Joined:
    by_site = _dark_by_site(snapshot.sites)
    matched: set[str] = set()
    ranked: list[RankedFinding] = []
    for finding in result.findings:
        if finding.kind != MISSING_SPAN:
            continue
        site = _match(finding.module, finding.qualname, by_site)
        seconds, count = (0.0, 0) if site is None else by_site[site]
        if site is not None:
            matched.add(site)
        ranked.append(RankedFinding(finding, seconds, count))
    ranked.sort(key=lambda r: -r.dark_seconds)  # stable: the static order among equals
    known = {_match(f.module, f.qualname, by_site) for f in result.functions}
    unseen = [s for s in _merged(snapshot.sites) if s.site not in known and s.site not in matched]
    never = [
        f
        for f in result.functions
        if f.status == UNCOVERED and _match(f.module, f.qualname, by_site) is None
    ]
    return Joined(tuple(ranked), tuple(unseen), tuple(never), source)


def _dark_by_site(sites: list[SiteStats]) -> dict[str, tuple[float, int]]:
    """Dark seconds and operations per site, both causes together."""
    totals: dict[str, tuple[float, int]] = {}
    for site in sites:
        seconds, count = totals.get(site.site, (0.0, 0))
        totals[site.site] = (seconds + site.total_seconds, count + site.count)
    return totals


def _merged(sites: list[SiteStats]) -> list[SiteStats]:
    """One row per site (the first cause's), most dark time first."""
    seen: dict[str, SiteStats] = {}
    for site in sorted(sites, key=lambda s: -s.total_seconds):
        seen.setdefault(site.site, site)
    return list(seen.values())


def _match(module: str, qualname: str, by_site: dict[str, tuple[float, int]]) -> str | None:
    exact = f"{module}:{qualname}"
    if exact in by_site:
        return exact
    for site in by_site:
        runtime_module, _, runtime_qualname = site.partition(":")
        if runtime_qualname == qualname and (
            runtime_module.endswith("." + module) or module.endswith("." + runtime_module)
        ):
            return site
    return None


def render_joined(joined: Joined, fmt: str, limit: int = 20) -> str:
    """The join as a section after the audit's report: text for a terminal or markdown."""
    seen = [r for r in joined.ranked if r.operations]
    lines = [f"Ranked by dark time at runtime ({joined.source}):"]
    if not seen:
        lines.append("  none of the functions without a span ran dark in this data")
    for r in seen[:limit]:
        f = r.finding
        lines.append(
            f"  {r.dark_seconds:9.2f} s  {r.operations:6d} ops  {f.path}:{f.line}  {f.qualname}"
        )
    if joined.unseen_statically:
        lines += ["", "Dark at runtime, with no function in the audit (callbacks, dynamic "
                  "dispatch, private or nested functions):"]  # fmt: skip
        lines += [
            f"  {s.total_seconds:9.2f} s  {s.count:6d} ops  {s.site}"
            for s in joined.unseen_statically[:limit]
        ]
    lines += ["", f"Without a span and never dark in this data: {len(joined.never_dark)}"]
    if fmt == "markdown":
        return "\n```\n" + "\n".join(lines) + "\n```\n"
    return "\n" + "\n".join(lines) + "\n"


def joined_fields(joined: Joined) -> dict[str, object]:
    """The join for the JSON document (``runtime``)."""
    return {
        "source": joined.source,
        "ranked": [
            {"key": r.finding.key, "dark_seconds": r.dark_seconds, "operations": r.operations}
            for r in joined.ranked
        ],
        "unseen_statically": [
            {"site": s.site, "dark_seconds": s.total_seconds, "operations": s.count}
            for s in joined.unseen_statically
        ],
        "never_dark": [f"{f.path}:{f.qualname}" for f in joined.never_dark],
    }
