"""Test matrix: ``python3 -m nox`` runs lint and the test suite on CPython 3.11-3.13.

On machines whose interpreters come from pyenv, the versions are made visible to nox
through PYENV_VERSION, so the same command works there and on a plain machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
nox.options.sessions = ["lint", "docs", "tests", "sanitizers", "unsupported"]
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
# uv makes the environments (a fifth of pip's time for the seven sessions); plain
# virtualenv and pip where uv is not installed.
nox.options.default_venv_backend = "uv|virtualenv"


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
    """The whole suite. The tests that measure the sampler run alone: they must not
    compete with a second test process on a small machine. The ones marked ``parallel``
    (tests/conftest.py says which and why) run two at a time after them."""
    session.install("-e", ".[dev,examples]")  # examples: the bounded soak runs them
    # every C extension must build
    session.run(
        "python",
        "-c",
        "import spangap._native, spangap._liveness, spangap._tracking, spangap._stacks",
    )
    if session.posargs:  # a selection of one's own: as given
        session.run("pytest", "-q", *session.posargs)
        return
    session.run("pytest", "-q", "-m", "not parallel")
    session.run("pytest", "-q", "-m", "parallel", "-n", "2")


#: What the sanitizer session runs: the C paths under the ground-truth workloads, the
#: hazards that once crashed or hung the host, and the examples under load (the soak).
SANITIZED_TESTS = [
    "tests/test_ground_truth.py",
    "tests/test_host_safety.py",
    "tests/test_tracking.py",
    "tests/test_liveness.py",
    "tests/test_native.py",
    "tests/test_stacks.py",
    "tests/test_soak.py",
]


@nox.session(python=["3.11", "3.12"])
def sanitizers(session: nox.Session) -> None:
    """The C extensions built with AddressSanitizer and UndefinedBehaviorSanitizer, in a
    copy of the tree (the editable build in src/ stays a normal one), loaded into the
    ordinary interpreter with the sanitizer runtimes preloaded. Any report fails it."""
    session.install("setuptools", "wheel", ".[dev,examples]")  # the copy below is what runs
    tree = Path(session.create_tmp()).resolve() / "sanitized"
    shutil.rmtree(tree, ignore_errors=True)
    for part in ("src", "tests", "benchmarks", "examples"):
        shutil.copytree(part, tree / part, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for part in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(part, tree / part)
    runtimes = [_gcc_file("libasan.so"), _gcc_file("libubsan.so")]
    env = {
        "LD_PRELOAD": " ".join(runtimes),
        "PYTHONPATH": str(tree / "src"),
        # CPython keeps much memory to the end on purpose: leaks are not checked here.
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    flags = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -g"
    with session.chdir(tree):
        session.run(
            "python", "setup.py", "-q", "build_ext", "--inplace",
            env={"CFLAGS": flags, "LDFLAGS": "-fsanitize=address,undefined"},
        )  # fmt: skip
        session.run("python", "-c", "import spangap._tracking as t; assert 'sanitized' in t.__file__", env=env)
        pytest = ("pytest", "-q", "-p", "no:cacheprovider", *SANITIZED_TESTS)
        if session.posargs:  # options of one's own (-k, -x): one run of them all
            session.run(*pytest, *session.posargs, env=env)
            return
        # The pure-Python tracker's cases add no C to check (the readers they use run
        # in the other cases too). As in ``tests``: what measures the sampler alone, the
        # crash and hang cases two at a time.
        session.run(*pytest, "-m", "not python_tracker and not parallel", env=env)
        session.run(*pytest, "-m", "not python_tracker and parallel", "-n", "2", env=env)


def _gcc_file(name: str) -> str:
    """The path of a gcc runtime library, e.g. libasan.so (gcc knows where it is)."""
    found = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True,
                           check=True).stdout.strip()
    if not Path(found).is_absolute():
        raise RuntimeError(f"gcc has no {name}: install libasan/libubsan")
    return found


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "dashboards")
    session.run("ruff", "format", "--check", "src", "tests")
    session.run("mypy")


@nox.session(python="pypy3")
def unsupported(session: nox.Session) -> None:
    """On an interpreter spangap does not support (PyPy, Debian's), ``import spangap``
    and ``enable_gap_detector()`` must work and leave the program alone. spangap cannot
    be installed there (requires-python), so it is imported from the source tree, with
    the two libraries it then touches."""
    session.install("opentelemetry-api", "prometheus-client", "pytest")
    env = {"PYTHONPATH": str(Path("src").resolve())}
    session.run(
        "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "tests/test_runtime.py",
        *session.posargs, env=env,
    )


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The docs site: a broken link or a missing page fails the build (strict)."""
    session.install("mkdocs>=1.6", "mkdocs-material>=9")
    session.run("mkdocs", "build", "--strict", "--quiet", env={"NO_MKDOCS_2_WARNING": "1"})
