"""Pre-fork servers: forked workers start their own sampler, and in prometheus-client's
multiprocess mode their counters add up exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import FULL_RATE_ENV

WORKERS = """
    import json, os, sys, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry, multiprocess
    import spangap

    trace.set_tracer_provider(TracerProvider())
    # "__main__" still selects the script, whose sites are named after it (workers:...)
    detector = spangap.enable_gap_detector(include=["__main__"], snapshot_path=sys.argv[1])

    def dark_work():
        time.sleep(0.03)

    calls = {}
    for worker in range(4):
        pid = os.fork()
        if pid == 0:  # a worker: its own sampler, its own findings
            for _ in range(5 + worker):
                dark_work()
            spangap.enable_gap_detector().stop()  # flush before leaving
            os._exit(0)
        calls[pid] = 5 + worker
    for pid in calls:
        _, status = os.waitpid(pid, 0)
        assert status == 0
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    labels = {"site": "workers:dark_work", "cause": "no_span"}
    detector.stop()
    print(json.dumps({
        "total": registry.get_sample_value("uninstrumented_operations_total", labels),
        "expected": sum(calls.values()),
        "worker_pids": sorted(calls),
        "parent_count": sum(detector.operation_counts().values()),
    }))
"""


def test_forked_workers_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    script = tmp_path / "workers.py"
    script.write_text(textwrap.dedent(WORKERS))
    snapshot = tmp_path / "snap.json"
    env = {**os.environ, **FULL_RATE_ENV, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.run(
        [sys.executable, str(script), str(snapshot)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["total"] == result["expected"] == 26
    assert result["parent_count"] == 0  # the parent's findings are its own
    # Each worker wrote its own snapshot next to the parent's.
    for pid in result["worker_pids"]:
        assert (tmp_path / f"snap.{pid}.json").exists()
