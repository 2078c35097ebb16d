"""Test matrix: ``python3 -m nox`` runs lint and the test suite on CPython 3.11-3.13.

On machines whose interpreters come from pyenv, the versions are made visible to nox
through PYENV_VERSION, so the same command works there and on a plain machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))


def _expose_pyenv_versions() -> None:
    """Add the newest installed 3.11/3.12/3.13 to PYENV_VERSION (pyenv's own shim sets it
    to just the version that runs nox)."""
    if not shutil.which("pyenv"):
        return
    installed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True,
                               check=False).stdout.split()
    current = [v for v in os.environ.get("PYENV_VERSION", "").split(":") if v]
    for wanted in PYTHONS:
        matches = [v for v in installed if v.startswith(wanted + ".")]
        if matches and not any(v.startswith(wanted + ".") for v in current):
            current.append(max(matches, key=lambda v: [int(x) for x in re.findall(r"\d+", v)]))
    if current:
        os.environ["PYENV_VERSION"] = ":".join(current)


_expose_pyenv_versions()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite. Serial on purpose: detection tests measure a sampler that must
    not compete with a second CPU-heavy test process on a small machine."""
    session.install("-e", ".[dev]")
    # every C extension must build
    session.run("python", "-c", "import spangap._native, spangap._liveness, spangap._tracking")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "dashboards")
    session.run("ruff", "format", "--check", "src", "tests")
    session.run("mypy")
