"""``gapreport audit PATH...``: its options, and the run that turns them into an exit code.

Exit codes make the audit a gate: 0 when there are no new findings and coverage meets
the minimum, 1 when either rule fails, 2 when the request itself is wrong (a missing
path, a bad configuration or baseline), reported on one line as every ``gapreport``
error is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..argtypes import percent, positive_int
from ..report.top import SourceError, read_metrics, read_prometheus
from ..snapshot import Snapshot, SnapshotError
from .baseline import BaselineError, compare, load_baseline, write_baseline
from .config import ConfigError, find_config, load_config
from .fix import FixError, diff, fixed_source
from .join import Joined, join, joined_fields, render_joined
from .output import FORMATS, Report, render, verdict_line
from .scan import MISSING_SPAN, Finding, ScanResult, scan_paths

PROG = "gapreport"
EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Formats read by programs: nothing but the document may go to stdout.
_MACHINE_FORMATS = frozenset({"json", "sarif"})


class UsageError(ValueError):
    """The request cannot be carried out as given."""


def add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="Python files or directories to audit"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with [tool.spangap.audit] (default: the nearest pyproject.toml)",
    )
    parser.add_argument(
        "--baseline", metavar="FILE", help="JSON file of known findings: only new ones fail"
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the current findings to the --baseline FILE and exit 0",
    )
    parser.add_argument(
        "--min-coverage",
        type=percent,
        metavar="PERCENT",
        help="fail when coverage is below PERCENT (overrides min-coverage in the config)",
    )
    parser.add_argument(
        "--show-opted-out",
        action="store_true",
        help="list the functions that opted out, with their reasons",
    )
    runtime = parser.add_mutually_exclusive_group()
    runtime.add_argument(
        "--runtime", metavar="SNAPSHOT", help="rank findings by a snapshot's dark seconds"
    )
    runtime.add_argument(
        "--url", metavar="URL", help="... by a live process's /metrics (gapreport top --url)"
    )
    runtime.add_argument(
        "--prometheus", metavar="URL", help="... by a fleet's dark seconds in Prometheus"
    )
    parser.add_argument(
        "--range", default="1d", metavar="WINDOW", help="Prometheus window (default 1d)"
    )
    parser.add_argument(
        "--fix",
        action="store_true",
        help="add @traced to the top functions without a span: a diff unless --write",
    )
    parser.add_argument(
        "--fix-limit",
        type=positive_int,
        default=10,
        metavar="N",
        help="how many functions --fix decorates (default 10; ranked by dark time "
        "with --runtime/--url/--prometheus)",
    )
    parser.add_argument("--write", action="store_true", help="with --fix: write the files")


def run_audit(args: argparse.Namespace) -> int:
    """Audit, print the report and return the gate's exit code."""
    try:
        return _audit(args)
    except (UsageError, ConfigError, BaselineError, FixError, SourceError, SnapshotError) as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: audit: {message}", file=sys.stderr)
        return EXIT_USAGE


def _audit(args: argparse.Namespace) -> int:
    paths = [Path(text) for text in args.paths]
    for path in paths:
        if not path.exists():
            raise UsageError(f"no such file or directory: {path}")
    if args.update_baseline and args.baseline is None:
        raise UsageError("--update-baseline needs --baseline FILE")
    if args.write and not args.fix:
        raise UsageError("--write goes with --fix")
    cwd = Path.cwd()
    config_path = Path(args.config) if args.config is not None else find_config(paths[0])
    config = load_config(config_path, cwd)
    result = scan_paths(paths, config, cwd)
    joined = _joined(result, args)
    if args.fix:
        return _fix(result, joined, args)
    if args.update_baseline:
        count = write_baseline(Path(args.baseline), result.findings)
        noun = "finding" if count == 1 else "findings"
        print(f"baseline {args.baseline}: {count:,} {noun} recorded")
        return EXIT_PASSED
    known = load_baseline(Path(args.baseline)) if args.baseline is not None else None
    minimum = args.min_coverage if args.min_coverage is not None else config.min_coverage
    report = Report(
        result=result,
        comparison=compare(result.findings, known),
        baseline=args.baseline,
        min_coverage=minimum,
        show_opted_out=args.show_opted_out,
    )
    sys.stdout.write(_with_join(render(report, args.format), joined, args.format))
    sys.stdout.flush()
    if report.passed:
        return EXIT_PASSED
    if args.format in _MACHINE_FORMATS:
        print(verdict_line(report), file=sys.stderr)
    return EXIT_FAILED


def _joined(result: ScanResult, args: argparse.Namespace) -> Joined | None:
    if args.runtime is not None:
        return join(result, Snapshot.load(args.runtime), args.runtime)
    if args.url is not None:
        return join(result, read_metrics(args.url), args.url)
    if args.prometheus is not None:
        snapshot = read_prometheus(args.prometheus, window=args.range)
        return join(result, snapshot, f"{args.prometheus}, last {args.range}")
    return None


def _with_join(text: str, joined: Joined | None, fmt: str) -> str:
    if joined is None or fmt in ("sarif", "github"):
        return text
    if fmt == "json":
        document = json.loads(text)
        document["runtime"] = joined_fields(joined)
        return json.dumps(document, indent=2) + "\n"
    return text + render_joined(joined, fmt)


def _fix(result: ScanResult, joined: Joined | None, args: argparse.Namespace) -> int:
    """Add @traced to the top ``--fix-limit`` functions without a span (by dark time
    when runtime data is given, else in the audit's order); print the diff, or write."""
    if joined is not None:
        chosen: list[Finding] = [r.finding for r in joined.ranked if r.operations]
    else:
        chosen = [f for f in result.findings if f.kind == MISSING_SPAN]
    chosen = chosen[: args.fix_limit]
    by_path: dict[str, list[str]] = {}
    for finding in chosen:
        by_path.setdefault(finding.path, []).append(finding.qualname)
    for path_text, qualnames in sorted(by_path.items()):
        path = Path(path_text)
        before = path.read_text(encoding="utf-8")
        try:
            after = fixed_source(before, qualnames)
        except FixError as exc:
            raise FixError(f"{path_text}: {exc}") from None
        if args.write:
            path.write_text(after, encoding="utf-8")
        else:
            sys.stdout.write(diff(path, before, after))
    verb = "decorated" if args.write else "would decorate (dry run; --write applies it)"
    print(f"{verb} {len(chosen)} functions in {len(by_path)} files", file=sys.stderr)
    return EXIT_PASSED
