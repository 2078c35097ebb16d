"""Scope: the application's code is in scope; the stdlib, dependencies and spangap are not."""

from __future__ import annotations

import json
import os
import queue
import sys
import textwrap
from pathlib import Path

import opentelemetry.trace
import pytest

import spangap.tracker
from spangap.scope import Scope, _console_script_module, detect_entry_package


def info(scope: Scope, func, module: str | None = None):
    return scope.info(func.__code__, module or func.__module__)


def app_function() -> None:
    pass


def test_default_scope() -> None:
    scope = Scope()
    assert info(scope, app_function).in_scope  # the tests are application code
    assert not info(scope, json.dumps).in_scope  # stdlib
    assert not info(scope, queue.Queue.get).in_scope
    assert not info(scope, opentelemetry.trace.get_current_span).in_scope  # dependency
    assert not info(scope, pytest.approx).in_scope
    assert not info(scope, spangap.tracker.CallTracker.observe).in_scope  # ourselves


def test_code_the_stdlib_makes_from_strings_is_not_in_scope() -> None:
    """A namedtuple's ``__new__`` is compiled from a string in a made-up module
    (``namedtuple_Sample``): it is the standard library's code, not the application's."""
    import collections

    sample = collections.namedtuple("Sample", "name value")
    assert sample.__new__.__code__.co_filename.startswith("<")
    code = sample.__new__.__code__
    assert not Scope().info(code, sample.__new__.__globals__["__name__"]).in_scope


def test_site_names_are_module_and_qualname() -> None:
    site = info(Scope(), queue.Queue.get)
    assert site.site == "queue:Queue.get"
    assert site.line == queue.Queue.get.__code__.co_firstlineno
    assert os.path.samefile(site.file, queue.__file__)


def test_include_and_exclude_override_the_default() -> None:
    scope = Scope(include=["opentelemetry.trace"], exclude=["test_scope"])
    assert info(scope, opentelemetry.trace.get_current_span).in_scope
    assert not info(scope, app_function).in_scope
    # A package glob also covers its submodules; exclude wins over include.
    scope = Scope(include=["opentelemetry"], exclude=["opentelemetry.trace"])
    assert not info(scope, opentelemetry.trace.get_current_span).in_scope
    assert Scope(include=["opentelemetry"]).in_scope("opentelemetry.sdk.trace", "/x.py")


def test_the_entry_package_is_in_scope_even_when_installed() -> None:
    scope = Scope(entry_package="opentelemetry")
    assert info(scope, opentelemetry.trace.get_current_span).in_scope


def test_a_tool_that_runs_the_application_is_not_the_application() -> None:
    scope = Scope(entry_package="pytest")
    assert scope.entry_package is None
    assert not info(scope, pytest.approx).in_scope


def test_entry_package_of_this_run_is_not_pytest() -> None:
    assert detect_entry_package() is None


def test_a_console_script_is_looked_up_and_a_script_file_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Run as a console script (here this project's ``gapreport``, whose entry point is
    ``spangap.cli:main``), the installed entry points name its module; run as
    ``app.py``, no distribution's entry points are read at all."""
    import importlib.metadata

    read: list[object] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: object) -> object:
        read.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None)
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/gapreport", "show"])
    assert detect_entry_package() is None  # spangap runs the application: not it
    assert read == [{"group": "console_scripts"}]
    assert _console_script_module("gapreport") == "spangap.cli"
    read.clear()
    monkeypatch.setattr(sys, "argv", ["/srv/app.py"])
    assert detect_entry_package() is None
    assert read == []


def test_module_bodies_and_comprehensions_are_not_operations() -> None:
    scope = Scope()
    code = compile("x = 1", os.path.abspath(__file__), "exec")
    module_info = scope.info(code, "test_scope")
    assert module_info.in_scope and not module_info.countable
    assert info(scope, app_function).countable


def test_idle_waits_are_marked() -> None:
    import socketserver

    from spangap.idle import IDLE, IDLE_IF_DIRECT, WORK

    scope = Scope(idle_functions=["test_scope:app_*"])
    assert info(scope, socketserver.BaseServer.serve_forever).idle == IDLE
    assert info(scope, queue.Queue.get).idle == IDLE_IF_DIRECT
    assert info(scope, app_function).idle == IDLE  # a user-named idle function
    import concurrent.futures

    assert info(scope, concurrent.futures.Future.result).idle == WORK


def test_a_scripts_sites_are_named_after_the_script(tmp_path: Path) -> None:
    """``python app.py`` with enable_gap_detector(): ``app:handler``, not ``__main__:``."""
    import subprocess

    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import time, spangap
            detector = spangap.enable_gap_detector(max_overhead=1)

            def handler():
                time.sleep(0.03)

            for _ in range(3):
                handler()
            print(sorted(site for site, _ in detector.operation_counts()))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['app:handler']"
