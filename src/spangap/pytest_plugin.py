"""``pytest --spangap``: the test run as a gate on dark sites.

The run goes under spangap: by default in the exact mode (exact.py), which sees every
call of the code under test, so that the same tests find the same sites every time; or
under the sampling detector (``--spangap-mode sampled``), as in production. At the end
the findings are written as a snapshot (``gapreport show`` reads it) and the dark sites
are compared with a baseline: a site the baseline does not hold fails the run. Sites are
named ``module:qualname``, so moving code keeps them; ``--spangap-update-baseline``
writes the baseline (it only shrinks as sites get spans, like the audit's).

Tests themselves are not the application: modules named like tests (``test_*``,
``*_test``, ``conftest``, a ``tests`` package) are left out, as pytest itself is.
Registered through the ``pytest11`` entry point; off unless ``--spangap`` is given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

BASELINE_FORMAT = "spangap-pytest-baseline"
BASELINE_VERSION = 1
#: Module-name globs of test code, left out of the application's scope.
TEST_MODULES = (
    "test_*",
    "*.test_*",
    "*_test",
    "*.*_test",
    "conftest",
    "*.conftest",
    "tests",
    "tests.*",
    "*.tests.*",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spangap", "spangap: fail the run on new dark sites")
    group.addoption(
        "--spangap",
        action="store_true",
        help="run the tests under spangap and fail on dark sites the baseline does not hold",
    )
    group.addoption(
        "--spangap-baseline",
        default=".spangap-tests-baseline.json",
        metavar="FILE",
        help="the known dark sites (default .spangap-tests-baseline.json)",
    )
    group.addoption(
        "--spangap-update-baseline",
        action="store_true",
        help="write this run's dark sites to the baseline instead of failing on them",
    )
    group.addoption(
        "--spangap-mode",
        choices=("exact", "sampled"),
        default="exact",
        help="exact: every call is seen (default); sampled: the production sampler",
    )
    group.addoption(
        "--spangap-snapshot",
        default="spangap-tests.json",
        metavar="FILE",
        help="where the findings go, for gapreport show (default spangap-tests.json)",
    )
    group.addoption(
        "--spangap-threshold-ms",
        type=float,
        default=None,
        metavar="X",
        help="count calls of at least X ms (default: the detector's, 10)",
    )
    group.addoption(
        "--spangap-include",
        action="append",
        default=[],
        metavar="GLOB",
        help="module glob to count as the application (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("spangap"):
        return
    if config.getoption("numprocesses", None):
        raise pytest.UsageError("--spangap sees the tests in one process: run without -n")
    config.pluginmanager.register(DarkSiteGate(config), "spangap-gate")


class DarkSiteGate:
    """Starts spangap at the session's start; judges its findings at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._stop: Any = None
        self._snapshot_of: Any = None
        self._new: list[str] = []
        self._gone: list[str] = []
        self._sites: list[str] = []
        self._error: str | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from .options import OptionError

        try:
            self._start()
        except (OptionError, ValueError, RuntimeError) as exc:
            raise pytest.UsageError(f"spangap: {exc}") from None

    def _start(self) -> None:
        config = self._config
        options: dict[str, Any] = {"exclude": list(TEST_MODULES)}
        includes = config.getoption("spangap_include")
        if includes:
            options["include"] = includes
        threshold = config.getoption("spangap_threshold_ms")
        if threshold is not None:
            options["threshold_ms"] = threshold
        if config.getoption("spangap_mode") == "sampled":
            self._start_sampled(options)
        else:
            self._start_exact(options)

    def _start_sampled(self, options: dict[str, Any]) -> None:
        from prometheus_client import CollectorRegistry

        from . import enable_gap_detector

        detector = enable_gap_detector(registry=CollectorRegistry(), max_overhead=1, **options)
        self._stop = detector.stop
        self._snapshot_of = detector.snapshot

    def _start_exact(self, options: dict[str, Any]) -> None:
        from prometheus_client import CollectorRegistry

        from .exact import ExactTracer
        from .findings import Findings
        from .handoff import HandoffWatcher
        from .metrics import metric_set
        from .options import resolve_options
        from .scope import Scope, detect_entry_package

        resolved = resolve_options({**options, "registry": CollectorRegistry()})
        findings = Findings(resolved, metric_set(resolved.registry, resolved.metric_prefix))
        scope = Scope(
            resolved.include,
            resolved.exclude,
            resolved.idle_functions,
            entry_package=detect_entry_package(),
        )
        handoff = HandoffWatcher(scope)
        tracer = ExactTracer(
            scope, resolved.threshold_s, findings.record, handoff.lost_context,
            min_dark_s=resolved.interval_s,
        )  # fmt: skip
        handoff.install()
        tracer.start()

        def stop() -> None:
            tracer.stop()
            handoff.uninstall()

        self._stop = stop
        self._snapshot_of = lambda: findings.snapshot(0.0)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._stop is None:
            return
        self._stop()
        snapshot = self._snapshot_of()
        snapshot.save(self._config.getoption("spangap_snapshot"))
        self._sites = sorted({site.site for site in snapshot.sites})
        path = Path(self._config.getoption("spangap_baseline"))
        if self._config.getoption("spangap_update_baseline"):
            _write_baseline(path, self._sites)
            return
        try:
            known = _read_baseline(path)
        except ValueError as exc:
            self._error = str(exc)
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        self._new = [s for s in self._sites if s not in known]
        self._gone = sorted(known - set(self._sites))
        if self._new and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._stop is None:
            return
        write = terminalreporter.write_line
        terminalreporter.section("spangap")
        snapshot = self._config.getoption("spangap_snapshot")
        baseline = self._config.getoption("spangap_baseline")
        if self._error is not None:
            write(f"spangap: {self._error}", red=True)
            return
        if self._config.getoption("spangap_update_baseline"):
            write(f"{len(self._sites)} dark sites written to {baseline}")
            return
        write(f"{len(self._sites)} dark sites (details: gapreport show {snapshot})")
        for site in self._new:
            write(f"NEW dark site: {site} (not in {baseline})", red=True)
        if self._gone:
            write(
                f"{len(self._gone)} sites of the baseline were not dark in this run; "
                "--spangap-update-baseline shrinks it"
            )
        if self._new:
            write("give each a span (spangap.traced), or accept them: --spangap-update-baseline")


def _read_baseline(path: Path) -> frozenset[str]:
    """The known sites; a missing file holds none (the first run shows every site)."""
    if not path.exists():
        return frozenset()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the baseline: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != BASELINE_FORMAT:
        raise ValueError(f"{path}: not a spangap test baseline (format {BASELINE_FORMAT!r})")
    sites = document.get("sites")
    if document.get("version") != BASELINE_VERSION or not isinstance(sites, list):
        raise ValueError(f"{path}: unknown baseline version or no list of sites")
    return frozenset(str(site) for site in sites)


def _write_baseline(path: Path, sites: list[str]) -> None:
    document = {"format": BASELINE_FORMAT, "version": BASELINE_VERSION, "sites": sites}
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
