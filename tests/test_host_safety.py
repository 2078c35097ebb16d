"""Never hurt the host: the sampler must not crash or deadlock the program it watches,
even when a collection it starts runs an application's finalizer (host_hazards.py)."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spangap import frames

HAZARDS = Path(__file__).parent / "host_hazards.py"
PYTHON_PATHS = {"tracker": "python", "context_reader": "python", "liveness": "sampled"}


@pytest.mark.parametrize(
    ("scenario", "options"),
    [
        ("gil-threads", {}),
        ("gil-threads", PYTHON_PATHS),
        ("gil-threads", {"without_c": True}),
        ("gil-tasks", {}),
        ("gil-tasks", {"without_c": True}),
        ("lock", {}),
        ("lock", {"without_c": True}),
    ],
    ids=["threads", "threads-python", "threads-no-c", "tasks", "tasks-no-c", "lock", "lock-no-c"],
)
def test_a_collection_started_by_the_sampler_neither_crashes_nor_deadlocks_the_host(
    scenario: str, options: dict[str, Any]
) -> None:
    """The sampler's collections let the GIL go (``gil-*``: a segfault before frame reads
    paused the collector) or wait for a lock held by a thread that starts threads
    (``lock``: the gh-106883 deadlock inside sys._current_frames())."""
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-X",
                "faulthandler",
                str(HAZARDS),
                scenario,
                "3",
                json.dumps(options),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: the host hung (deadlock) with {options}")
    assert "Fatal Python error" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


READS = {
    "current_frames": lambda: frames.current_frames(),
    "back": lambda: frames.back(sys._getframe()),
    "suspended_frame": lambda: frames.suspended_frame(x for x in ()),
    "current_frames (Python)": lambda: frames._current_frames_in_python(),
    "back (Python)": lambda: frames._back_in_python(sys._getframe()),
}


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("enabled", [True, False], ids=["gc-on", "gc-off"])
@pytest.mark.usefixtures("collector_enabled")
def test_reading_frames_leaves_the_applications_collector_setting_as_it_was(
    read: str, enabled: bool
) -> None:
    (gc.enable if enabled else gc.disable)()
    READS[read]()
    assert gc.isenabled() is enabled


def test_the_safe_reads_give_what_the_interpreter_gives() -> None:
    here = sys._getframe()
    assert frames.back(here) is here.f_back
    assert frames._back_in_python(here) is here.f_back
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        found = frames.current_frames()
        assert worker.ident in found and threading.get_ident() in found
        assert found[worker.ident].f_code is sys._current_frames()[worker.ident].f_code
    finally:
        release.set()
        worker.join()


def test_suspended_frames_of_every_kind_and_of_other_awaitables() -> None:
    async def coroutine() -> None:
        await asyncio.sleep(0)

    async def agen() -> Any:
        yield 1

    def gen() -> Any:
        yield 1

    for make, name in ((coroutine, "coroutine"), (agen, "agen"), (gen, "gen")):
        obj = make()
        assert frames.suspended_frame(obj).f_code.co_name == name  # type: ignore[union-attr]
        if name != "agen":  # a finished one has no frame
            obj.close()  # type: ignore[attr-defined]
            assert frames.suspended_frame(obj) is None
    loop = asyncio.new_event_loop()
    try:
        assert frames.suspended_frame(loop.create_future()) is None  # no frame at all
    finally:
        loop.close()
