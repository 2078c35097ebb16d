"""The child process of ``gapreport doctor``: import the app, run the checks, report.

The app runs here rather than in ``gapreport`` itself, so that whatever it does at import
(a crash, a hang, a global it sets) stays in a process that exists for the checks alone.

The report goes to the original stdout as JSON lines, one event a line; fd 1 itself is
pointed at stderr first, so that what the app prints cannot mix with it:

- ``{"event": "imported"}`` once the app is imported;
- ``{"event": "import-error", "message": "ExcType: message"}`` when it cannot be;
- ``{"event": "done", "findings": [...], "skipped": [...]}`` at the end.

The process then leaves with ``os._exit``: the app's exit hooks would flush its span
processors to the backend and run whatever else it registered, none of which the checks
should cause.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import sys
import time
from types import SimpleNamespace
from typing import IO, Any

from . import describe

#: Exit code of the probe when it could report (the report says how the checks went).
EXIT_REPORTED = 0


def parse_app(text: str) -> tuple[str | None, str | None, str | None]:
    """``(script, module, attribute)`` for ``module``, ``module:attr``, ``file.py`` or
    ``file.py:attr``; the unused one of script and module is None."""
    target, colon, attribute = text.rpartition(":")
    if not colon or not attribute.replace(".", "_").isidentifier():
        target, attribute = text, ""
    if target.endswith(".py") or "/" in target or os.sep in target:
        return target, None, attribute or None
    return None, target, attribute or None


def _import_app(text: str) -> None:
    """Import the app as a server would load it: its top level runs, its
    ``if __name__ == "__main__":`` block does not."""
    script, module, attribute = parse_app(text)
    if script is not None:
        sys.argv = [script]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        stem = os.path.splitext(os.path.basename(script))[0]
        run_name = stem if stem != "__main__" else "__spangap_doctor__"
        namespace: object = SimpleNamespace(**runpy.run_path(script, run_name=run_name))
        shown = script
    else:
        assert module is not None
        sys.argv = [module]
        sys.path.insert(0, os.getcwd())  # as ``python -m`` does
        namespace = importlib.import_module(module)
        shown = f"module {module!r}"
    if attribute is not None:
        _resolve(namespace, attribute, shown)


def _resolve(namespace: object, attribute: str, shown: str) -> None:
    value = namespace
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise AttributeError(f"{shown} has no attribute {attribute!r}")
        value = getattr(value, part)


def _report_channel() -> IO[str]:
    """The real stdout, kept for the report; fd 1 and ``sys.stdout`` now go to stderr."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return channel


def _send(channel: IO[str], event: dict[str, object]) -> None:
    channel.write(json.dumps(event) + "\n")
    channel.flush()


def _run_checks(modules: frozenset[str], endpoint: str | None, deadline: float) -> dict[str, Any]:
    from .checks import CHECKS, NotApplicable, Probe, run_check

    probe = Probe(modules=modules, otlp_endpoint=endpoint, deadline=deadline)
    findings: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    for name, check in CHECKS:
        try:
            findings.extend(f.to_json() for f in run_check(name, check, probe))
        except NotApplicable as exc:
            skipped.append({"id": name, "reason": str(exc)})
    return {"event": "done", "findings": findings, "skipped": skipped}


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="spangap.doctor.probe")
    parser.add_argument("app")
    parser.add_argument("--otlp-endpoint")
    parser.add_argument("--seconds", type=float, default=20.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the probe; never returns (see the module's docstring)."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    deadline = time.monotonic() + args.seconds
    channel = _report_channel()
    try:
        _import_app(args.app)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from the app too
        _send(channel, {"event": "import-error", "message": describe(exc)})
        os._exit(EXIT_REPORTED)
    modules = frozenset(sys.modules)
    _send(channel, {"event": "imported"})
    _send(channel, _run_checks(modules, args.otlp_endpoint, deadline))
    sys.stderr.flush()
    os._exit(EXIT_REPORTED)
