"""The overhead budget: keep the sampler's own CPU near ``max_overhead`` of one core.

Two knobs, in this order: the interval between ticks (from ``interval_ms`` up to 10x the
threshold), then the stride (each tick examines one thread and task in ``stride``, up to
8, in rotation). The controller moves one number, the slowdown factor (interval /
interval_ms x stride): straight down to 93% of the budget when over it, half way up when
under. At the floor it logs once and sets ``spangap_sampler_over_budget``. Why these
choices: docs/how-it-works.md, "The overhead budget, step by step".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger("spangap")

FLOOR_OF_THRESHOLD = 10.0  # widest interval at all, as a multiple of the threshold
MAX_STRIDE = 8
#: The most of the budget the native stack sampler may leave the ticks without.
RESERVABLE = 0.7
_AIM = 0.93  # aim a little under the budget so that the held share lands inside it
_DEADBAND = 0.05
_STEP_DOWN = 1.0  # share of the (log) correction applied per update, over the budget
_STEP_UP = 0.5  # ... and under it


@dataclass(frozen=True)
class Setting:
    """What the sampler does now: tick every ``interval_s``, examine 1 thread in ``stride``."""

    interval_s: float
    stride: int

    @property
    def per_thread_interval_s(self) -> float:
        """How often each thread is examined."""
        return self.interval_s * self.stride


def next_factor(factor: float, share: float, budget: float, max_factor: float) -> float:
    """The slowdown factor (1 = full rate) for the next window, from the CPU ``share``
    spent at ``factor`` against ``budget``: straight down to a little under the budget
    when over it, half way up when under, unchanged inside the dead band."""
    target = budget * _AIM
    ratio = share / target if target > 0 else math.inf
    if abs(ratio - 1.0) <= _DEADBAND:
        return factor
    step = _STEP_DOWN if ratio > 1.0 else _STEP_UP
    scaled: float = factor * ratio**step
    return min(max(scaled, 1.0), max_factor)


class OverheadBudget:
    """Chooses the sampler's :class:`Setting` from its measured CPU share."""

    def __init__(self, max_overhead: float, interval_s: float, threshold_s: float) -> None:
        self.max_overhead = max_overhead
        self.base_interval_s = interval_s
        self.floor_s = max(interval_s, FLOOR_OF_THRESHOLD * threshold_s)
        self._max_factor = self.floor_s / interval_s * MAX_STRIDE
        self._factor = 1.0
        self.setting = Setting(interval_s, 1)
        self.share = 0.0  # CPU share measured over the last window
        self.over_budget = False  # at the floor and still over the budget
        self._logged = False

    def update(self, cpu_s: float, wall_s: float, reserved: float = 0.0) -> Setting:
        """Account ``cpu_s`` of sampler CPU over ``wall_s`` of wall time; return the new
        setting. ``reserved``: the share of a core the native stack sampler spent, which
        the ticks leave to it (at most ``RESERVABLE`` of the budget)."""
        if wall_s <= 0:
            return self.setting
        ticks = cpu_s / wall_s
        self.share = ticks + max(reserved, 0.0)  # the whole sampler's, as reported
        reserved = min(max(reserved, 0.0), RESERVABLE * self.max_overhead)
        factor = next_factor(self._factor, ticks, self.max_overhead - reserved, self._max_factor)
        if factor != self._factor:
            self._factor = factor
            self.setting = self._setting_for(factor)
        at_floor = self._factor >= self._max_factor * (1 - 1e-9)
        self.over_budget = at_floor and self.share > self.max_overhead
        if self.over_budget and not self._logged:
            self._logged = True
            log.warning(
                "spangap: the sampler needs %.1f%% of a core at its slowest setting "
                "(a tick every %.1f ms, 1 thread in %d per tick), over max_overhead %.1f%%; "
                "it keeps sampling at that setting (see spangap_sampler_over_budget)",
                100 * self.share,
                1000 * self.setting.interval_s,
                self.setting.stride,
                100 * self.max_overhead,
            )
        return self.setting

    def _setting_for(self, factor: float) -> Setting:
        widest = self.floor_s / self.base_interval_s
        if factor <= widest:
            return Setting(self.base_interval_s * factor, 1)
        stride = min(MAX_STRIDE, math.ceil(factor / widest))
        # A whole stride is a coarse step (2 -> 3 is a third of the per-thread cost): the
        # interval, a little under the widest, makes each thread's turn come every
        # factor x interval_ms exactly, instead of up to a stride step later than the
        # budget needs.
        return Setting(min(self.floor_s, self.base_interval_s * factor / stride), stride)
