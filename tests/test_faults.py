"""Faults inside spangap never reach the host: its output and exit code stay the same,
and spangap counts the error by kind (fault_host.py runs each scenario off and on)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spangap.snapshot import Snapshot

HOST = Path(__file__).parent / "fault_host.py"


def run_host(
    scenario: str, mode: str, out: Path, mount: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the host; ``mount`` puts a file system of that kind (tmpfs options) at
    ``out/mount``, in a mount namespace of the host's own."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-X", "faulthandler", str(HOST), scenario, mode, str(out)]
    if mount is not None:
        (out / "mount").mkdir()
        script = f'mount -t tmpfs -o {mount} spangap-test "{out / "mount"}" && exec "$@"'
        cmd = [shutil.which("unshare") or "unshare", "-rm", "sh", "-c", script, "sh", *cmd]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: the host hung with the detector {mode}")


def errors_by_kind(out: Path) -> dict[str, float]:
    text = (out / "metrics.txt").read_text()
    return {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "spangap_internal_errors"
        for s in family.samples
        if s.name.endswith("_total")
    }


#: CPython 3.12+ warns when a process with more than one thread forks, and the sampler is
#: a thread: a fork in a program's ``__main__`` module (where DeprecationWarnings show)
#: gains this warning and the line of code it points at (a known limit, README).
FORK_WARNING = re.compile(r".*DeprecationWarning: This process \(pid=\d+\) is multi-threaded")


def assert_host_unaffected(
    off: subprocess.CompletedProcess[str], on: subprocess.CompletedProcess[str]
) -> None:
    """Same stdout and exit code; stderr gains nothing but spangap's own log lines."""
    assert on.returncode == off.returncode, on.stderr[-3000:]
    assert on.stdout == off.stdout
    assert on.stdout.strip(), "the host printed nothing: the scenario did not run"
    extra = [line for line in on.stderr.splitlines() if line not in off.stderr.splitlines()]
    after_warning = False
    for line in extra:
        if sys.version_info >= (3, 12) and FORK_WARNING.match(line):
            after_warning = True  # its next line is the source line of the fork() call
            continue
        if after_warning and line.strip() == "pid = os.fork()":
            after_warning = False
            continue
        assert line.startswith("spangap: "), on.stderr[-3000:]


@pytest.mark.parametrize(
    ("scenario", "kinds"),
    [
        ("broken-span", {"span_read", "handoff_hook"}),
        ("attach-hook", {"attach_hook"}),
        ("handoff-hooks", {"handoff_hook"}),
        ("context-read", {"sampler"}),
        ("collector", {"scrape", "sampler"}),
        ("stop-step", {"stop"}),
        ("fork-hook", {"fork"}),
    ],
)
def test_a_fault_inside_a_hook_is_counted_and_the_host_is_unaffected(
    scenario: str, kinds: set[str], tmp_path: Path
) -> None:
    off = run_host(scenario, "off", tmp_path / "off")
    on = run_host(scenario, "on", tmp_path / "on")
    assert_host_unaffected(off, on)
    counted = errors_by_kind(tmp_path / "on")
    assert kinds <= {kind for kind, n in counted.items() if n > 0}, counted
    for kind in kinds:  # each kind logged once, however many times it happened
        assert on.stderr.count(f'{{kind="{kind}"}}') == 1, on.stderr
    side = json.loads((tmp_path / "on" / "side.json").read_text())
    if scenario == "broken-span":  # the exception's message (it could hold a value) is not logged
        assert "broken span" not in on.stderr
    if scenario == "collector":
        assert side["scrape"] == [200, True]  # the scrape was served all the same
    if scenario == "stop-step":  # the steps after the failing one still ran
        assert Snapshot.load(tmp_path / "on" / "snapshot.json").totals.samples > 0


@pytest.mark.parametrize(
    ("scenario", "mount"),
    [("snapshot-readonly", "ro,size=64k"), ("snapshot-full", "size=4k")],
)
def test_a_snapshot_path_that_cannot_be_written_costs_the_host_nothing(
    scenario: str, mount: str, tmp_path: Path
) -> None:
    off = run_host(scenario, "off", tmp_path / "off", mount)
    on = run_host(scenario, "on", tmp_path / "on", mount)
    assert_host_unaffected(off, on)
    assert errors_by_kind(tmp_path / "on").get("snapshot", 0) >= 1  # at stop(), if not before
    assert on.stderr.count("could not write snapshot") == 1, on.stderr


@pytest.mark.parametrize(
    "scenario",
    ["provider-swap", "scrape-during-stop", "fork-mid-tick", "thread-churn", "task-churn"],
)
def test_stress_leaves_the_host_unaffected_and_counts_no_error(
    scenario: str, tmp_path: Path
) -> None:
    off = run_host(scenario, "off", tmp_path / "off")
    on = run_host(scenario, "on", tmp_path / "on")
    assert_host_unaffected(off, on)
    assert sum(errors_by_kind(tmp_path / "on").values()) == 0
    if scenario == "scrape-during-stop":
        statuses = set(json.loads((tmp_path / "on" / "side.json").read_text())["statuses"])
        # Served whole, or refused / reset once the server closes; never an error page.
        refused = {
            "ConnectionRefusedError",
            "ConnectionResetError",
            "RemoteDisconnected",
            "URLError",
        }
        assert "200" in statuses and statuses <= {"200", *refused}, statuses


@pytest.mark.parametrize(("scenario", "code"), [("shutdown", 0), ("shutdown-exit-3", 3)])
def test_the_interpreter_exits_while_sampling_as_it_would_without_spangap(
    scenario: str, code: int, tmp_path: Path
) -> None:
    off = run_host(scenario, "off", tmp_path / "off")
    on = run_host(scenario, "on", tmp_path / "on")
    assert off.returncode == code
    assert_host_unaffected(off, on)
    assert "last " in on.stdout  # the thread still running at exit finished its work
    snapshot = Snapshot.load(tmp_path / "on" / "snapshot.json")  # written at exit
    assert snapshot.totals.internal_errors == 0 and snapshot.totals.operations > 0
