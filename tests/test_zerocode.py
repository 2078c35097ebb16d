"""The zero-code start: OpenTelemetry's own launcher, `opentelemetry-instrument`, starts
the detector through its `opentelemetry_post_instrument` entry point when
SPANGAP_ENABLED is set, after the SDK is configured, and not otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULL_RATE_ENV
from spangap.snapshot import Snapshot

APP = """
import time
from opentelemetry import trace

tracer = trace.get_tracer("app")


def dark_work():
    time.sleep(0.03)


def spanned_work():
    with tracer.start_as_current_span("spanned"):
        time.sleep(0.03)


for _ in range(5):
    dark_work()
    spanned_work()
print("provider", type(trace.get_tracer_provider()).__module__)
"""

LAUNCHER = Path(sys.executable).with_name("opentelemetry-instrument")


def launch(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(APP)
    quiet = {f"OTEL_{kind}_EXPORTER": "none" for kind in ("TRACES", "METRICS", "LOGS")}
    # The launcher turns on every instrumentation installed; the logging one's handler
    # starts a thread at interpreter shutdown, which 3.12+ refuses with a traceback of
    # its own (nothing of spangap's) that would hide the line these tests look for.
    quiet["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "logging"
    assert LAUNCHER.exists(), "opentelemetry-instrument is installed with spangap[examples]"
    return subprocess.run(
        [str(LAUNCHER), sys.executable, "app.py"],
        cwd=tmp_path,
        env={**os.environ, **quiet, **FULL_RATE_ENV, "SPANGAP_SNAPSHOT_PATH": "s.json", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_launcher_starts_the_detector_after_the_sdk(tmp_path: Path) -> None:
    done = launch(tmp_path, SPANGAP_ENABLED="true")
    assert done.returncode == 0, done.stderr
    assert "provider opentelemetry.sdk.trace" in done.stdout  # the SDK the launcher set up
    counts = {s.site: s.count for s in Snapshot.load(tmp_path / "s.json").sites}
    assert counts.get("app:dark_work") == 5
    assert "app:spanned_work" not in counts


def test_without_the_variable_the_launcher_leaves_spangap_off(tmp_path: Path) -> None:
    done = launch(tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "s.json").exists()
    assert "spangap" not in done.stderr


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SPANGAP_ENABLED": "maybe"}, "SPANGAP_ENABLED"),
        ({"SPANGAP_ENABLED": "1", "SPANGAP_THRESHOLD_MS": "x"}, "SPANGAP_THRESHOLD_MS"),
    ],
)
def test_a_bad_value_is_one_line_and_the_program_runs_on(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    done = launch(tmp_path, **env)
    assert done.returncode == 0
    assert "provider" in done.stdout
    lines = [line for line in done.stderr.splitlines() if "spangap" in line]
    assert len(lines) == 1 and named in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.json").exists()
