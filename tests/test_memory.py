"""Bounded memory: more distinct functions than spangap keeps track of, with threads
that come and go, leave every table at its limit (benchmarks/memory_soak.py measures
the RSS over 30 minutes; here the limits are lowered so that a test reaches them).
Both trackers read the same bounds (limits.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from spangap import limits
from test_detector import dark_functions

LIMIT = 40


@pytest.mark.parametrize("tracker", ["python", "native"])
def test_tables_stay_within_their_limits_with_many_distinct_functions(
    start_detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracker: str
) -> None:
    lowered = limits.Limits(code_cache=LIMIT, wait_names=LIMIT, dropped_sites=LIMIT)
    monkeypatch.setattr(limits, "LIMITS", lowered)
    namespace = dark_functions(tmp_path, f"many_sites_bounded_{tracker}", 240, 0.012)
    detector = start_detector(
        include=[f"many_sites_bounded_{tracker}"], max_sites=5, tracker=tracker
    )
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
    if tracker == "python":  # the C tracker's own set is not visible from Python
        assert len(detector._tracker._exampled) <= LIMIT
    assert detector.snapshot().totals.sites_dropped == LIMIT  # counted up to the limit
