"""When did a call last run: the native watcher (``spangap._liveness``) answers
without the GIL, to within its own interval.

Once a sample has seen a call, the watcher follows it from a native thread and records
the last moment it was still running; the tracker ends the call there rather than at
the last sample. It also logs who holds the GIL, so that a late tick knows since when
each thread's stack had not changed (``Watcher.frozen_since``). ``liveness="sampled"``
uses samples alone, the reference behaviour (docs/how-it-works.md, "The sampler").
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
