"""``gapreport doctor APP``: its options, the child process that checks the app, the report.

Exit codes: 0 when no check found an error, 1 when one did, 2 when the app could not be
checked at all (it cannot be imported, it does not finish importing in time), reported
on one line as every ``gapreport`` error is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..argtypes import seconds_at_least
from . import CHECK_IDS, ERROR, OK, WARNING, Finding, otlp_traces_url
from .probe import parse_app

PROG = "gapreport"
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
FORMATS = ("table", "json")

#: Seconds of ``--timeout`` kept back from the child, to read its report before the end.
_MARGIN_S = 1.0

#: Run in the child: the probe, importable wherever spangap came from, after the app's
#: own sys.path entries.
_BOOTSTRAP = "import sys; sys.path.append({root!r}); from spangap.doctor.probe import main; main()"


class DoctorError(Exception):
    """The app could not be checked; printed as one line, exit code 2."""


@dataclass(frozen=True)
class Report:
    """What the child found, and the checks that had nothing to look at."""

    app: str
    findings: list[Finding]
    skipped: list[tuple[str, str]]

    def count(self, severity: str) -> int:
        return sum(1 for f in self.findings if f.severity == severity)


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app",
        metavar="APP",
        help="module, module:attribute or file.py, importable from here without starting",
    )
    parser.add_argument(
        "--otlp-endpoint",
        type=_endpoint,
        metavar="URL",
        help="send a test span to this OTLP/HTTP collector (http://HOST:4318)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )
    parser.add_argument(
        "--timeout",
        type=seconds_at_least(2),
        default=20.0,
        metavar="S",
        help="give up when importing and checking the app takes longer (default 20)",
    )


def _endpoint(text: str) -> str:
    try:
        return otlp_traces_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_doctor(args: argparse.Namespace) -> int:
    """Check the app, print the report and return the exit code."""
    try:
        report = check_app(args.app, args.otlp_endpoint, args.timeout)
    except DoctorError as exc:
        print(f"{PROG}: doctor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(render_json(report) if args.format == "json" else render_table(report))
    sys.stdout.flush()
    return EXIT_UNHEALTHY if report.count(ERROR) else EXIT_HEALTHY


# --- the child process -----------------------------------------------------------------


def check_app(app: str, otlp_endpoint: str | None, timeout: float) -> Report:
    """Import ``app`` in a child process and run the checks there."""
    _check_target(app)
    command = _child_command(app, otlp_endpoint, timeout - _MARGIN_S)
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DoctorError(_timeout_message(app, exc.stdout, timeout)) from None
    events = _events(done.stdout)
    for event in events:
        if event.get("event") == "import-error":
            raise DoctorError(f"cannot import {app}: {event.get('message')}")
        if event.get("event") == "done":
            return _report(app, event)
    raise DoctorError(_crash_message(app, done.returncode, done.stderr, bool(events)))


def _check_target(app: str) -> None:
    """Mistakes that need no child process to find."""
    script, module, _ = parse_app(app)
    if script is not None and not os.path.isfile(script):
        raise DoctorError(f"no such file: {script}")
    if module is not None and not all(part.isidentifier() for part in module.split(".")):
        raise DoctorError(f"not a module name: {module!r} (give module, module:attr or file.py)")


def _child_command(app: str, otlp_endpoint: str | None, seconds: float) -> list[str]:
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds spangap/
    command = [sys.executable, "-c", _BOOTSTRAP.format(root=root), "--seconds", f"{seconds:g}"]
    if otlp_endpoint is not None:
        command += ["--otlp-endpoint", otlp_endpoint]
    return [*command, "--", app]


def _events(stdout: bytes | str | None) -> list[dict[str, object]]:
    """The child's JSON lines; anything else on them is ignored."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode("utf-8", "replace")
    events = []
    for line in (stdout or "").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _report(app: str, event: dict[str, object]) -> Report:
    try:
        findings = [Finding.from_json(f) for f in _list_of_dicts(event.get("findings"))]
        skipped = [(str(s["id"]), str(s["reason"])) for s in _list_of_dicts(event.get("skipped"))]
    except (KeyError, ValueError) as exc:
        raise DoctorError(f"unreadable report from the check process: {exc}") from None
    return Report(app, findings, skipped)


def _list_of_dicts(value: object) -> list[dict[str, object]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"expected a list of objects, got {value!r}")
    return value


def _timeout_message(app: str, stdout: bytes | str | None, timeout: float) -> str:
    if any(event.get("event") == "imported" for event in _events(stdout)):
        return f"the checks of {app} did not finish within {timeout:g} s"
    return (
        f"importing {app} did not finish within {timeout:g} s: does importing it start the "
        'server? Keep start-up under `if __name__ == "__main__":` (or raise --timeout)'
    )


def _crash_message(app: str, returncode: int, stderr: bytes, imported: bool) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    last = f": {' '.join(lines[-1].split())}" if lines else ""
    when = "while it was checked" if imported else "while it was imported"
    return f"the process checking {app} exited with code {returncode} {when}{last}"


# --- output ----------------------------------------------------------------------------

_ORDER = {name: n for n, name in enumerate(CHECK_IDS)}


def render_table(report: Report) -> str:
    """A line a check, in the order they run (with the fix under a problem), then the tally."""
    rows = [(f.id, f.severity, f.message, f.fix) for f in report.findings]
    rows += [(name, "not run", reason, "") for name, reason in report.skipped]
    rows.sort(key=lambda row: _ORDER.get(row[0], len(_ORDER)))
    width = max(len(row[0]) for row in rows) if rows else 0
    lines = [f"gapreport doctor {report.app}", ""]
    for name, severity, message, fix in rows:
        lines.append(f"  {severity:<7}  {name:<{width}}  {message}")
        if fix:
            lines.append(f"  {'':<7}  {'':<{width}}  fix: {fix}")
    lines += ["", _tally(report)]
    return "\n".join(lines) + "\n"


def _tally(report: Report) -> str:
    counts = [(report.count(ERROR), "error"), (report.count(WARNING), "warning")]
    parts = [f"{n} {noun}{'' if n == 1 else 's'}" for n, noun in counts]
    return f"{', '.join(parts)}, {report.count(OK)} ok"


def render_json(report: Report) -> str:
    document = {
        "app": report.app,
        "findings": [f.to_json() for f in report.findings],
        "skipped": [{"id": name, "reason": reason} for name, reason in report.skipped],
        "errors": report.count(ERROR),
        "warnings": report.count(WARNING),
    }
    return json.dumps(document, indent=2) + "\n"
