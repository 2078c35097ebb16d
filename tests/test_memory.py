"""Bounded memory: more distinct functions than spangap keeps track of, with threads
that come and go, leave every table at its limit (benchmarks/memory_soak.py measures
the RSS over 30 minutes; here the limits are lowered so that a test reaches them)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from spangap import callee, metrics, scope, tracker
from test_detector import dark_functions

LIMIT = 40


def test_tables_stay_within_their_limits_with_many_distinct_functions(
    start_detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python tracker's tables (the C tracker's have the same limits, compiled in;
    the memory soak measures them)."""
    for module, name in [
        (scope, "_CACHE_LIMIT"),
        (callee, "_CACHE_LIMIT"),
        (tracker, "_EXAMPLED_LIMIT"),
        (metrics, "DROPPED_LIMIT"),
    ]:
        monkeypatch.setattr(module, name, LIMIT)
    namespace = dark_functions(tmp_path, "many_sites_bounded", 240, 0.012)
    detector = start_detector(include=["many_sites_bounded"], max_sites=5, tracker="python")
    calls = [namespace[f"dark_{i}"] for i in range(240)]

    def worker(part: int) -> None:
        for call in calls[part::12]:
            call()

    for _ in range(2):  # twice round: every table fills, starts over, fills again
        threads = [threading.Thread(target=worker, args=(p,)) for p in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    counted = sum(detector.operation_counts().values())
    detector.stop()
    assert counted > 240  # the functions were seen: the tables had work to do
    assert len(detector._scope._cache) <= LIMIT
    assert len(detector._tracker._callees._maps) <= LIMIT
    assert len(detector._tracker._exampled) <= LIMIT
    assert detector.snapshot().totals.sites_dropped == LIMIT  # counted up to the limit
