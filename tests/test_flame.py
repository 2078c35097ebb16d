"""``gapreport show --format folded|speedscope|html``: the dark time of a real run as a
flame graph. The paths are the program's call paths, the weights its sites' own dark
seconds, the speedscope file is valid by speedscope's schema, and the HTML page is
self-contained with a script that parses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULL_RATE_ENV
from spangap.snapshot import Snapshot

APP = """import time
from concurrent.futures import ThreadPoolExecutor

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("shop")


def load_rows():
    time.sleep(0.02)


def render():
    time.sleep(0.015)


def handler():
    load_rows()
    time.sleep(0.015)  # the handler's own dark time
    render()


def resize():
    time.sleep(0.02)


with ThreadPoolExecutor(1) as pool:
    for _ in range(5):
        handler()
        with tracer.start_as_current_span("upload"):
            pool.submit(resize).result()
"""


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of a real run of APP under ``gapreport run``."""
    directory = tmp_path_factory.mktemp("flame")
    (directory / "app.py").write_text(APP)
    env = {**os.environ, **FULL_RATE_ENV}
    command = [sys.executable, "-m", "spangap.cli", "run", "--quiet", "--snapshot", "run.json"]
    done = subprocess.run([*command, "app.py"], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return directory / "run.json"


def show(snapshot_file: Path, fmt: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "spangap.cli", "show", str(snapshot_file), "--format", fmt],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_folded_stacks_are_the_call_paths_weighted_by_own_dark_time(snapshot_file) -> None:
    folded = dict(line.rsplit(" ", 1) for line in show(snapshot_file, "folded").splitlines())
    assert set(folded) == {
        "app:<module>;app:handler",
        "app:<module>;app:handler;app:load_rows",
        "app:<module>;app:handler;app:render",
        "app:resize",  # a pool thread: its stack starts in the pool, out of scope
    }
    snapshot = Snapshot.load(snapshot_file)
    own = sum(s.self_seconds for s in snapshot.sites)
    assert sum(int(v) for v in folded.values()) == pytest.approx(own * 1e6, abs=10)


def test_speedscope_file_is_valid(snapshot_file) -> None:
    import jsonschema

    from npm_schemas import speedscope_schema

    document = json.loads(show(snapshot_file, "speedscope"))
    schema = speedscope_schema()
    jsonschema.validate(document, schema)
    names = [frame["name"] for frame in document["shared"]["frames"]]
    profile = document["profiles"][0]
    stacks = {tuple(names[i] for i in sample) for sample in profile["samples"]}
    assert ("app:<module>", "app:handler", "app:load_rows") in stacks


def test_html_is_self_contained_and_its_script_parses(snapshot_file, tmp_path) -> None:
    page = show(snapshot_file, "html")
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing fetched
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    assert data is not None
    tree = json.loads(data.group(1))
    leaves = {c["name"]: c for c in tree["children"]}
    assert leaves["app:resize"]["cause"] == "context_lost"
    handler = leaves["app:<module>"]["children"][0]
    assert handler["name"] == "app:handler" and handler["cause"] == "no_span"
    script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    (tmp_path / "page.js").write_text(script)
    checked = subprocess.run(["node", "--check", str(tmp_path / "page.js")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_the_page_renders_in_chromium_and_a_click_zooms_in(snapshot_file, tmp_path) -> None:
    """Headless Chromium: the page draws its frames, the top site is visible, and a
    click on a frame makes it the full width. The screenshot is kept in tmp_path (and
    docs/images/flame.png is one taken this way)."""
    from headless_chromium import opened

    page = tmp_path / "dark.html"
    page.write_text(show(snapshot_file, "html"))
    frame = "document.querySelector('[data-name=\"app:handler\"]')"
    with opened(page) as tab:
        assert tab.evaluate("document.querySelectorAll('.frame').length") >= 5
        box = tab.evaluate(f"(() => {{ const r = {frame}.getBoundingClientRect(); "
                           "return [r.x, r.y, r.width, r.height]; })()")  # fmt: skip
        graph_width = tab.evaluate("document.getElementById('graph').clientWidth")
        x, y, width, height = box
        assert 0 < width < graph_width and height > 0  # visible, not yet zoomed
        assert y + height <= 700  # within the window
        tab.screenshot(tmp_path / "before.png")
        tab.click(x + width / 2, y + height / 2)
        zoomed = tab.evaluate(f"{frame}.getBoundingClientRect().width")
        assert zoomed == pytest.approx(graph_width, abs=2)  # the frame fills the graph
        assert tab.evaluate("document.getElementById('details').textContent") != ""
        tab.screenshot(tmp_path / "after.png")
    for name in ("before.png", "after.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
