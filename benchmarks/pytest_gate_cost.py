"""What ``pytest --spangap`` costs a test run: the same tests run plainly, under the exact
mode (every call seen: ``sys.monitoring`` on 3.12+, a profile hook on 3.11) and under the
sampling detector at full rate, side by side, in turns, medians over the rounds.

Two suites: ``app``, a generated project whose tests make 400,000 calls of small
functions of the project (in scope: the exact mode's worst case, as every call is
seen), and ``repo``, unit tests of this repository (the audit, the report, the
snapshot), whose code under test is spangap's own and so out of scope (on 3.12+
switched off after its first event; on 3.11 the profile hook still pays for each call).

    python benchmarks/pytest_gate_cost.py                  # 5 rounds of both suites
    python benchmarks/pytest_gate_cost.py --rounds 3 --suite app --json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO_TESTS = ["tests/test_audit.py", "tests/test_render.py", "tests/test_snapshot.py"]
APP = """
import time


def price(n):
    return tax(n) + n


def tax(n):
    return n // 10


def load(n):
    time.sleep(0.012)  # one dark call above the threshold per test
    return [price(i) for i in range(n)]
"""
APP_TESTS = """
import pytest

import shopbench


@pytest.mark.parametrize("case", range(20))
def test_prices(case):
    assert sum(shopbench.price(i) for i in range(10_000)) > 0
    assert len(shopbench.load(10)) == 10
"""
MODES = {
    "plain": [],
    "exact": ["--spangap", "--spangap-update-baseline"],
    "sampled": ["--spangap", "--spangap-mode", "sampled", "--spangap-update-baseline"],
}


def run_once(tests: list[str], extra: list[str], workdir: Path, cwd: Path) -> float:
    baseline = ["--spangap-baseline", str(workdir / "baseline.json")] if extra else []
    snapshot = ["--spangap-snapshot", str(workdir / "run.json")] if extra else []
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, *extra, *baseline, *snapshot], cwd=cwd, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({' '.join(extra) or 'plain'}):\n{done.stdout[-2000:]}")
    return elapsed


def measure(rounds: int, tests: list[str], cwd: Path, workdir: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(rounds):
        order = list(MODES)[round_ % 3 :] + list(MODES)[: round_ % 3]  # rotate
        for mode in order:
            times[mode].append(run_once(tests, MODES[mode], workdir, cwd))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--suite", choices=("app", "repo", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.suite in ("app", "both"):
            (work / "shopbench.py").write_text(APP)
            (work / "test_shopbench.py").write_text(APP_TESTS)
            results["app"] = measure(args.rounds, ["test_shopbench.py"], work, work)
        if args.suite in ("repo", "both"):
            results["repo"] = measure(args.rounds, REPO_TESTS, ROOT, work)
    if args.json:
        print(json.dumps({"python": platform.python_version(), "times": results}, indent=2))
        return
    print(f"CPython {platform.python_version()}, {args.rounds} rounds, median wall time")
    print(f"{'suite':6} {'mode':8} {'seconds':>8} {'vs plain':>9}")
    for suite, times in results.items():
        medians = {mode: statistics.median(values) for mode, values in times.items()}
        for mode, median in medians.items():
            print(f"{suite:6} {mode:8} {median:8.2f} {median / medians['plain']:8.2f}x")


if __name__ == "__main__":
    main()
