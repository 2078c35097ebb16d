"""The audit joined with a real run of the code, and ``--fix``: a small project is run
under the detector (``gapreport run``), the audit ranks its functions without a span by
the dark seconds of that run, ``--fix`` decorates them (a diff first, then ``--write``),
and afterwards the audit counts them covered while the project still imports and passes
its own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULL_RATE_ENV

SHOP = '''"""A tiny shop."""
import time

from opentelemetry import trace

tracer = trace.get_tracer(__name__)


def load_rows(n):
    time.sleep(0.03)  # dark: the slowest
    return list(range(n))


def render(rows):
    time.sleep(0.015)  # dark, less
    return ",".join(map(str, rows))


def unused_helper():
    return 0


def checkout():
    with tracer.start_as_current_span("checkout"):
        return render(load_rows(3))


def dispatch(name):
    return {"late": _late}[name]()


def _late():
    time.sleep(0.02)  # dark, reached by dynamic dispatch only
'''

MAIN = """from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shop import core

trace.set_tracer_provider(TracerProvider())
for _ in range(6):
    core.render(core.load_rows(3))
    core.dispatch("late")
    core.checkout()
"""

TESTS = """from shop import core


def test_render():
    assert core.render([1, 2]) == "1,2"


def test_checkout():
    assert core.checkout() == "0,1,2"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "core.py").write_text(SHOP)
    (tmp_path / "main.py").write_text(MAIN)
    (tmp_path / "test_shop.py").write_text(TESTS)
    return tmp_path


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def gapreport(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(cwd, "-m", "spangap.cli", *args)


def test_runtime_join_ranks_by_dark_seconds_and_fix_covers_them(project: Path) -> None:
    env = {**os.environ, **FULL_RATE_ENV, "PYTHONPATH": str(project)}
    ran = run(project, "-m", "spangap.cli", "run", "--quiet", "--snapshot", "run.json",
              "main.py", env=env)  # fmt: skip
    assert ran.returncode == 0, ran.stderr

    audit = gapreport(project, "audit", "shop", "--runtime", "run.json", "--format", "json")
    runtime = json.loads(audit.stdout)["runtime"]
    seen = [r["key"] for r in runtime["ranked"] if r["operations"]]
    # dispatch is dark too: it waits for _late (20 ms a call); load_rows waits the most
    assert seen[0] == "missing-span:shop/core.py:load_rows"
    assert sorted(key.rsplit(":", 1)[1] for key in seen) == ["dispatch", "load_rows", "render"]
    assert [s["site"] for s in runtime["unseen_statically"]] == ["shop.core:_late"]
    assert runtime["never_dark"] == ["shop/core.py:unused_helper"]

    dry = gapreport(project, "audit", "shop", "--runtime", "run.json", "--fix")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("+@traced") == 3 and "+from spangap import traced" in dry.stdout
    assert "@traced" not in (project / "shop" / "core.py").read_text()  # a dry run

    fixed = gapreport(project, "audit", "shop", "--runtime", "run.json", "--fix", "--write")
    assert fixed.returncode == 0, fixed.stderr
    source = (project / "shop" / "core.py").read_text()
    assert "# dark: the slowest" in source  # comments and layout kept

    after = json.loads(gapreport(project, "audit", "shop", "--format", "json").stdout)
    missing = {f["qualname"] for f in after["findings"] if f["kind"] == "missing-span"}
    assert missing == {"unused_helper"}  # the three that ran dark are covered now

    tests = run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py")
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_fix_without_runtime_takes_the_audit_order_and_limit(project: Path) -> None:
    dry = gapreport(project, "audit", "shop", "--fix", "--fix-limit", "1")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("+@traced") == 1


def test_write_without_fix_is_a_usage_error(project: Path) -> None:
    done = gapreport(project, "audit", "shop", "--write")
    assert done.returncode == 2
    assert done.stderr.strip() == "gapreport: audit: --write goes with --fix"
