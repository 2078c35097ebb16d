"""``gapreport run``: the program behaves exactly as under plain Python, and the report
names its dark functions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from conftest import FULL_RATE_ENV
from spangap.snapshot import Snapshot

PROGRAM = """
    import sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("prog")

    def load_rows(n):
        time.sleep(0.03)
        return list(range(n))

    def spanned_handler(n):
        with tracer.start_as_current_span("handler"):
            time.sleep(0.03)
            return n * 2

    printed = threading.Event()

    def late_worker():
        printed.wait()  # outlives main(): its output always comes after main's
        time.sleep(0.2)
        for _ in range(3):
            load_rows(3)
        print("late worker done")

    def main():
        threading.Thread(target=late_worker).start()  # outlives main()
        pool = ThreadPoolExecutor(2)
        total = sum(len(f.result()) for f in [pool.submit(load_rows, i) for i in range(6)])
        total += sum(spanned_handler(i) for i in range(5))
        print("total", total, "args", sys.argv[1:], flush=True)
        printed.set()
        return int(sys.argv[1]) if len(sys.argv) > 1 else 0

    if __name__ == "__main__":
        sys.exit(main())
"""


def write_program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(textwrap.dedent(PROGRAM))
    return path


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**(os.environ if env is None else env), "COLUMNS": "80"},
    )


def gapreport(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "spangap.cli", *args], cwd)


def measure(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``gapreport run`` at its full sampling rate (see ``FULL_RATE_ENV``)."""
    env = {**os.environ, **FULL_RATE_ENV}
    return run([sys.executable, "-m", "spangap.cli", *args], cwd, env)


def test_program_output_and_exit_code_are_unchanged(tmp_path: Path) -> None:
    prog = write_program(tmp_path)
    plain = run([sys.executable, str(prog), "3", "--flag"], tmp_path)
    under = gapreport("run", "--snapshot", "s.json", str(prog), "3", "--flag", cwd=tmp_path)
    assert plain.returncode == under.returncode == 3
    assert under.stdout == plain.stdout
    assert "late worker done" in under.stdout and "args ['3', '--flag']" in under.stdout


def test_report_names_the_dark_functions_only(tmp_path: Path) -> None:
    prog = write_program(tmp_path)
    proc = measure("run", "--snapshot", "s.json", str(prog), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "prog:load_rows" in proc.stderr  # named after the script, not __main__
    assert "spanned_handler" not in proc.stderr
    assert all(len(line) <= 80 for line in proc.stderr.splitlines())
    snap = Snapshot.load(tmp_path / "s.json")
    counts = {s.site: s.count for s in snap.sites}
    # 6 pool jobs plus 3 calls from a thread that ran after main() had returned.
    assert counts["prog:load_rows"] == 9
    assert "prog:spanned_handler" not in counts
    assert "gapreport show s.json" in proc.stderr


def test_run_module(tmp_path: Path) -> None:
    pkg = tmp_path / "shopapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import time\n\ndef fetch():\n    time.sleep(0.03)\n\nfor _ in range(4):\n    fetch()\n"
    )
    proc = measure("run", "--snapshot", "m.json", "-m", "shopapp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    counts = {s.site: s.count for s in Snapshot.load(tmp_path / "m.json").sites}
    assert counts == {"shopapp.__main__:fetch": 4}  # the module's own name


def test_uncaught_exception_keeps_python_behaviour(tmp_path: Path) -> None:
    prog = tmp_path / "boom.py"
    prog.write_text("print('before')\nraise ValueError('boom')\n")
    plain = run([sys.executable, str(prog)], tmp_path)
    under = gapreport("run", "--quiet", "--snapshot", "b.json", str(prog), cwd=tmp_path)
    assert plain.returncode == under.returncode == 1
    assert under.stdout == plain.stdout == "before\n"
    assert "ValueError: boom" in under.stderr


def test_bad_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    prog = write_program(tmp_path)
    proc = gapreport("run", "--interval-ms", "50", str(prog), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gapreport: interval_ms:")
    assert "Traceback" not in proc.stderr


def test_missing_script_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = gapreport("run", "nope.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


#: A valid value, other than the default, for every option that has an environment twin,
#: as text (the variable) and as the value the detector then runs with.
ENV_VALUES: dict[str, tuple[str, object]] = {
    "threshold_ms": ("20", 20.0),
    "interval_ms": ("4", 4.0),
    "include": ("app,shop.*", ["app", "shop.*"]),
    "exclude": ("shop.skip", ["shop.skip"]),
    "idle_functions": ("app:idle", ["app:idle"]),
    "max_sites": ("7", 7),
    "metrics_port": ("0", 0),
    "metrics_addr": ("localhost", "localhost"),
    "metric_prefix": ("myapp_", "myapp_"),
    "snapshot_path": ("from-env.json", "from-env.json"),
    "snapshot_interval_s": ("30", 30.0),
    "entry_module": ("app", "app"),
    "native": ("off", "off"),
    "context_reader": ("python", "python"),
    "liveness": ("sampled", "sampled"),
    "tracker": ("python", "python"),
    "stacks": ("auto", "auto"),
    "max_overhead": ("0.5", 0.5),
    "coverage_window_s": ("30", 30.0),
    "inferred_spans": ("on", True),
    "inferred_spans_per_minute": ("12", 12),
    "otel_metrics": ("false", False),
    "outbound_requests": ("no", False),
}

SHOW_OPTIONS = """
import dataclasses, json, spangap
options = dataclasses.asdict(spangap.enable_gap_detector().options)
options.pop("registry")
print("OPTIONS " + json.dumps(options))
"""


def options_seen(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("OPTIONS "))
    seen: dict[str, object] = json.loads(line.removeprefix("OPTIONS "))
    return seen


def test_gapreport_run_honours_every_spangap_variable_and_its_flags_win(tmp_path: Path) -> None:
    from spangap.options import OPTION_NAMES

    assert set(ENV_VALUES) == set(OPTION_NAMES) - {"registry"}, "a new option needs a value here"
    (tmp_path / "app.py").write_text(SHOW_OPTIONS)
    env = {**os.environ, **{f"SPANGAP_{k.upper()}": text for k, (text, _) in ENV_VALUES.items()}}
    cmd = [sys.executable, "-m", "spangap.cli", "run", "--quiet"]
    seen = options_seen(run([*cmd, "app.py"], tmp_path, env))
    for name, (_, value) in ENV_VALUES.items():
        if name == "snapshot_path":  # made absolute before the program changes directory
            assert seen[name] == str(tmp_path / "from-env.json")
        else:
            assert seen[name] == value, name
    assert (tmp_path / "from-env.json").exists()

    flags = ["--threshold-ms", "30", "--interval-ms", "3", "--include", "app"]
    flags += ["--exclude", "other", "--metrics-port", "0", "--snapshot", "flag.json"]
    seen = options_seen(run([*cmd, *flags, "app.py"], tmp_path, env))
    assert (seen["threshold_ms"], seen["interval_ms"]) == (30.0, 3.0)
    assert (seen["include"], seen["exclude"]) == (["app"], ["other"])
    assert seen["snapshot_path"] == str(tmp_path / "flag.json")
    assert seen["max_sites"] == 7  # no flag: the variable still applies


PROGRESS_APP = """
import time

def load():
    time.sleep(0.02)

for _ in range(120):
    load()
"""


def test_a_terminal_sees_a_live_count_and_a_pipe_does_not(tmp_path: Path) -> None:
    """stderr a terminal (a pseudo-terminal here): the status line is drawn and cleared;
    stderr a pipe: only the program's output and the report."""
    import pty

    (tmp_path / "app.py").write_text(PROGRESS_APP)
    cmd = [sys.executable, "-m", "spangap.cli", "run", "--snapshot", "s.json", "app.py"]
    env = {**os.environ, **FULL_RATE_ENV}
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read as it comes: a full terminal buffer would block the child
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end is closed and drained
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, stderr=follower, stdout=subprocess.PIPE,
                              timeout=60)  # fmt: skip
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)
    terminal = b"".join(chunks)
    assert done.returncode == 0
    text = terminal.decode()
    assert re.search(r"spangap: \d+ s, [\d,]+ uninstrumented operations at \d+ sites so far", text)
    assert "\r\x1b[K" in text  # drawn in place, and cleared before the report
    assert "app:load" in text  # the report itself

    piped = run(cmd, tmp_path, env)
    assert "so far" not in piped.stderr and "\x1b[K" not in piped.stderr
