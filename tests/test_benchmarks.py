"""The benchmarks measure what they say: their arithmetic on known inputs, and one real
child run whose workload is checked against what it was asked to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import detection  # noqa: E402

SLEEP, SHORT = detection.DARK_SLEEP_SITE, detection.DARK_SHORT_SITE
SPANNED = f"{detection.MODULE}:spanned_cm"


def result(counted: dict[str, int], real: dict[str, tuple[int, int, int]]) -> dict[str, object]:
    return {
        "counted": counted,
        "real": {
            site: {"calls": c, "ge_threshold": t, "ge_2x_threshold": t2}
            for site, (c, t, t2) in real.items()
        },
        "dark_sleep_real_median_s": 0.025,
        "dark_sleep_p50_s": 0.0275,
        "samples": 400,
        "sampler_cpu_s": 0.02,
        "wall_s": 2.0,
    }


def test_recall_is_capped_per_site_and_excess_is_over_count() -> None:
    socket_site = f"{detection.MODULE}:dark_socket"
    m = detection.row_metrics(
        result(
            {SLEEP: 12, socket_site: 5, SHORT: 1},
            {SLEEP: (10, 10, 10), socket_site: (10, 10, 10), SHORT: (10, 0, 0)},
        )
    )
    # 12 counted at a site with 10 real calls cannot make up for 5 misses elsewhere.
    assert m["recall"] == pytest.approx(15 / 20)
    assert m["over_count"] == pytest.approx(2 / 20)
    assert (m["false_pos"], m["fp_short"]) == (1, 1)
    assert m["dur_err"] == pytest.approx(0.1)
    assert (m["samples_per_s"], m["sampler_cpu"]) == (200, 0.01)


def test_spanned_sites_never_count_as_found() -> None:
    m = detection.row_metrics(result({SPANNED: 3}, {SLEEP: (4, 4, 4)}))
    assert m["recall"] == 0 and m["false_pos"] == 3


def test_a_child_run_does_the_workload_it_describes() -> None:
    setting = detection.Setting(
        max_overhead=1.0, liveness="native", reader="native", threads=2, contended=False, rounds=1
    )
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "detection.py"), "--one", json.dumps(setting.__dict__)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    for site in detection.DARK_SITES:
        expected = 4 if site.endswith("dark_inner") else 2  # dark_outer calls it twice
        assert child["real"][site]["calls"] == expected, site
    assert child["samples"] > 0 and child["wall_s"] > 0
    assert not any(detection.is_never_countable(s) and n for s, n in child["counted"].items())
