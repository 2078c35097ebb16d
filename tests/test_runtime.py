"""spangap runs on CPython 3.11-3.13 with the GIL and stays off, saying so in one line,
everywhere else. This file runs on both: in the suite on CPython, and in the nox
session ``unsupported`` on PyPy (with --noconftest: the suite's fixtures need spangap
whole)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

ON_CPYTHON = sys.implementation.name == "cpython"

PROGRAM = textwrap.dedent(
    """
    import spangap
    detector = spangap.enable_gap_detector(threshold_ms=10)
    again = spangap.enable_gap_detector()
    print("computed", sum(i * i for i in range(1000)), detector.running, detector.tracker)
    detector.stop()

    @spangap.traced  # needs only opentelemetry-api: a span where spangap itself is off
    def add(a, b):
        return a + b

    print("traced", add(2, 3))
    """
)


def run_program() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(ON_CPYTHON, reason="runs in the nox session 'unsupported' (PyPy)")
def test_on_an_unsupported_interpreter_the_detector_stays_off_and_says_so_once() -> None:
    done = run_program()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "computed 332833500 False off\ntraced 5\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line, however many calls
    assert lines[0].startswith("spangap needs CPython 3.11 to 3.13")
    assert "PyPy" in lines[0] and "the detector is off" in lines[0]


@pytest.mark.skipif(not ON_CPYTHON, reason="the supported interpreter")
def test_on_cpython_the_detector_runs() -> None:
    done = run_program()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("computed 332833500 True ")
    assert done.stdout.endswith("traced 5\n")
    assert "needs CPython" not in done.stderr
