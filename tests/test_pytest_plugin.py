"""``pytest --spangap`` on a small project, run by a real pytest in a subprocess: the
first run records the dark sites as the baseline, the same run then passes, a change
that adds a dark site fails the run and names the site, the snapshot is one
``gapreport show`` reads, and the exact mode finds the same sites on every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SHOP = """import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer(__name__)


def load_rows():
    time.sleep(0.012)  # dark, just above the threshold: exact mode never misses it
    return [1, 2]


def render(rows):
    with tracer.start_as_current_span("render"):
        time.sleep(0.02)  # spanned: never a site
        return ",".join(map(str, rows))


def quick():
    return 1  # far below the threshold
"""

TESTS = """import time

import shop


def test_page():
    time.sleep(0.02)  # the test's own time: tests are not the application
    assert shop.render(shop.load_rows()) == "1,2"
    assert shop.quick() == 1
"""

NEW_SITE = """

def export():
    time.sleep(0.015)  # a new dark site
"""

NEW_TEST = """

def test_export():
    shop.export()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "test_shop.py").write_text(TESTS)
    return tmp_path


def pytest_run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--spangap", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=120)


def baseline_sites(project: Path) -> list[str]:
    return list(json.loads((project / ".spangap-tests-baseline.json").read_text())["sites"])


def test_the_baseline_run_passes_and_a_new_dark_site_fails_the_run(project: Path) -> None:
    first = pytest_run(project, "--spangap-update-baseline")
    assert first.returncode == 0, first.stdout + first.stderr
    assert baseline_sites(project) == ["shop:load_rows"]

    again = pytest_run(project)
    assert again.returncode == 0, again.stdout
    assert "1 dark sites" in again.stdout and "NEW" not in again.stdout

    with (project / "shop.py").open("a") as f:
        f.write(NEW_SITE)
    with (project / "test_shop.py").open("a") as f:
        f.write(NEW_TEST)
    failed = pytest_run(project)
    assert failed.returncode == 1, failed.stdout
    assert "2 passed" in failed.stdout  # the tests pass; the gate fails the run
    assert "NEW dark site: shop:export" in failed.stdout


def test_the_snapshot_is_read_by_gapreport_show(project: Path) -> None:
    assert pytest_run(project, "--spangap-snapshot", "run.json").returncode == 1  # no baseline
    shown = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "show", "run.json", "--format", "json"],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    sites = json.loads(shown.stdout)["sites"]
    found = [(s["site"], s["cause"], s["count"]) for s in sites]
    assert found == [("shop:load_rows", "no_span", 1)]


def test_the_exact_mode_finds_the_same_sites_every_run(project: Path) -> None:
    for _ in range(3):
        pytest_run(project, "--spangap-update-baseline")
        assert baseline_sites(project) == ["shop:load_rows"]


def test_a_broken_baseline_is_one_clear_line(project: Path) -> None:
    (project / ".spangap-tests-baseline.json").write_text("{not json")
    run = pytest_run(project)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "spangap: .spangap-tests-baseline.json: cannot read the baseline" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
