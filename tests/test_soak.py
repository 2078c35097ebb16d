"""The soak benchmark, bounded: one round of both examples beside two CPU hogs, with the
load generator stopped and continued. The full run is ``benchmarks/soak.py --rounds 300``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def test_one_soak_round_of_both_examples_neither_crashes_nor_stalls(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--rounds", "1", "--hogs", "2", "--requests", "100",
         "--stall-s", "90", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    kept = {
        p.name: p.read_text(errors="replace")[-3000:]
        for p in tmp_path.iterdir()
        if p.name != "progress.json"  # the tally so far, written after every round
    }
    assert done.returncode == 0, (done.stdout[-2000:], kept)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("threaded", "async"):
        assert summary["examples"][name] == {
            **summary["examples"][name],
            "runs": 1,
            "crashes": 0,
            "stalls": 0,
            "failed": 0,
        }
    assert kept == {}  # a clean run keeps no evidence
