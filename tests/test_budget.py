"""The overhead budget: the sampler widens its interval, then examines fewer threads per
tick, to hold max_overhead; at its floor it says so once."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from spangap.budget import FLOOR_OF_THRESHOLD, MAX_STRIDE, OverheadBudget

BASE, THRESHOLD = 0.005, 0.010


def run(budget: OverheadBudget, cost_at_full_rate: float, updates: int) -> None:
    """Feed the budget a sampler whose CPU share is inversely proportional to how much
    less often it examines each thread (the model the controller assumes)."""
    for _ in range(updates):
        factor = budget.setting.per_thread_interval_s / BASE
        budget.update(cost_at_full_rate / factor * 0.5, 0.5)


def test_under_the_budget_nothing_changes() -> None:
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    run(budget, 0.005, 20)
    assert (budget.setting.interval_s, budget.setting.stride) == (BASE, 1)
    assert not budget.over_budget


def test_over_the_budget_the_interval_widens_first_and_the_share_comes_down() -> None:
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    run(budget, 0.03, 30)
    assert budget.setting.stride == 1  # a 3x cut needs no stride
    assert BASE < budget.setting.interval_s <= FLOOR_OF_THRESHOLD * THRESHOLD
    assert 0.8 * 0.01 <= budget.share <= 1.2 * 0.01  # held within 20%
    assert not budget.over_budget


def test_over_the_budget_one_update_cuts_all_the_way_and_speeding_up_is_gradual() -> None:
    """A host pays for the sampler's overshoot, so a cut is made at once; narrowing back
    goes half way per update (in log space), so a brief lull does not cause a burst."""
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    budget.update(0.0279, 1.0)  # 3x the 0.93% aim
    assert budget.setting.interval_s == pytest.approx(3 * BASE)
    budget.update(0.0025, 1.0)  # at 3x: 4x cheaper than needed would allow 1x
    assert budget.setting.interval_s == pytest.approx(3 * BASE * (0.0025 / 0.0093) ** 0.5)


def test_past_the_widest_interval_it_examines_fewer_threads_per_tick() -> None:
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    run(budget, 0.5, 40)  # needs a 50x cut: 20x from the interval, then a stride
    stride, widest = budget.setting.stride, FLOOR_OF_THRESHOLD * THRESHOLD
    assert 1 < stride <= MAX_STRIDE
    # The interval makes up the rest of a whole stride step: a 3rd of the threads where
    # 2.6 of the widest interval would do means ticks at 2.6/3 of it.
    assert widest * (stride - 1) / stride < budget.setting.interval_s <= widest
    assert 0.8 * 0.01 <= budget.share <= 1.2 * 0.01


def test_with_a_stride_the_share_holds_steady_inside_the_budget() -> None:
    """A 30x cut is 1.6 strides at the widest interval: whole strides alone would
    alternate between 2 (75% of the budget) and 1 (150%) instead of settling."""
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    shares = []
    for _ in range(40):
        run(budget, 0.3, 1)
        shares.append(budget.share)
    assert budget.setting.stride == 2
    assert all(0.8 * 0.01 <= share <= 1.2 * 0.01 for share in shares[-10:])


def test_when_the_load_goes_away_it_narrows_back() -> None:
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    run(budget, 0.5, 40)
    run(budget, 0.002, 40)
    assert (budget.setting.interval_s, budget.setting.stride) == (BASE, 1)


def test_at_the_floor_it_reports_once(caplog: pytest.LogCaptureFixture) -> None:
    budget = OverheadBudget(0.01, BASE, THRESHOLD)
    with caplog.at_level(logging.WARNING, logger="spangap"):
        run(budget, 5.0, 60)  # 500x: more than the floor (160x) can cut
    assert budget.setting.stride == MAX_STRIDE
    assert budget.setting.interval_s == pytest.approx(FLOOR_OF_THRESHOLD * THRESHOLD)
    assert budget.over_budget
    warnings = [r for r in caplog.records if "max_overhead" in r.getMessage()]
    assert len(warnings) == 1


def recurse(depth: int) -> int:
    return 0 if depth == 0 else 1 + recurse(depth - 1)


def test_a_running_detector_holds_a_tiny_budget_and_says_it_cannot(
    start_detector, caplog: pytest.LogCaptureFixture
) -> None:
    """0.1% of a core is less than the sampler costs here at its floor beside threads
    that run pure Python and change their whole stack all the time (each tick waits
    for the GIL and walks new frames): the detector widens to the floor, shows it in
    its gauges, and logs one line."""
    registry = CollectorRegistry()
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            recurse(120)

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for worker in workers:
        worker.start()
    with caplog.at_level(logging.WARNING, logger="spangap"):
        detector = start_detector(registry=registry, max_overhead=0.001)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if registry.get_sample_value("spangap_sampler_over_budget") == 1:
                break
            time.sleep(0.2)
        detector.stop()
    stop.set()
    for worker in workers:
        worker.join()
    assert registry.get_sample_value("spangap_sampler_over_budget") == 1
    assert registry.get_sample_value("spangap_sampler_stride") == MAX_STRIDE
    assert registry.get_sample_value("spangap_sampler_max_overhead_ratio") == 0.001
    assert (registry.get_sample_value("spangap_sampler_overhead_ratio") or 0) > 0.001
    assert len([r for r in caplog.records if "max_overhead" in r.getMessage()]) == 1
