"""When did a call last run? Samples answer to within the GIL's delays; the native
watcher (``spangap._liveness``) answers to within its own interval, without the GIL.

The sampler takes the GIL to read stacks, so behind CPU-bound threads its samples come
late and a long call can be seen by a single one. Once a sample has seen a call, the
watcher follows it from a native thread and records the last moment it was still
running; the tracker then uses that moment instead of the last sample's. Only liveness
comes from the watcher: whether a call was dark is still judged by samples.

The sampler also sleeps between ticks in the watcher (``Watcher.sleep``), which looks
once at the calls the last tick saw first, at the moment that decides whether they reach
the threshold (and not at all when nothing new was seen or the next tick comes first);
the watcher's own rounds come at the sampler's interval.

The watcher also logs who holds the GIL at those moments, so that a tick that waited for
the GIL knows since when each other thread's stack had not changed
(``Watcher.frozen_since``): a thread that does not hold the GIL runs no Python code.

``liveness="sampled"`` (or an interpreter where the extension is not built) uses samples
alone, which is the reference behaviour the watcher refines.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the C extension's stub (_liveness.pyi) is the interface
    from ._liveness import Watcher as LivenessWatcher

#: How far perf_counter and CLOCK_MONOTONIC may disagree before the watcher's times are
#: not trusted (they are the same clock on Linux).
_CLOCK_TOLERANCE_S = 0.001


def native_liveness_available() -> bool:
    try:
        from . import _liveness  # noqa: F401
    except ImportError:
        return False
    drift = abs(time.perf_counter() - time.clock_gettime(time.CLOCK_MONOTONIC))
    return drift <= _CLOCK_TOLERANCE_S


def make_watcher(mode: str, interval_s: float) -> LivenessWatcher | None:
    """``auto``: the native watcher if available; ``native``: it or an error;
    ``sampled``: none."""
    if mode == "sampled":
        return None
    if not native_liveness_available():
        if mode == "native":
            raise RuntimeError(
                "liveness='native' needs spangap's C extension _liveness, which is not built "
                "for this interpreter (or its clock differs from perf_counter)"
            )
        return None
    from ._liveness import Watcher

    return Watcher(interval_s)
