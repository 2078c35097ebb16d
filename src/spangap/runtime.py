"""Where spangap runs: CPython 3.11 to 3.13 with the GIL. Elsewhere it stays off.

The sampler reads other threads' frames and contexts as CPython lays them out, and its
safety rests on the GIL (how-it-works.md). On PyPy, on a free-threaded CPython, or on a
CPython it has not been built and tested for, ``enable_gap_detector()`` says so in one
warning line and returns an :class:`InertDetector`: the application runs as it would
without spangap. This module imports nothing beyond the standard library, so that even
``import spangap`` works where the rest of the package could not be imported.
"""

from __future__ import annotations

import logging
import platform
import sys
import sysconfig
from typing import Any

log = logging.getLogger("spangap")

SUPPORTED = ((3, 11), (3, 13))  # oldest and newest CPython minor versions


def unsupported_reason() -> str | None:
    """Why spangap cannot run in this interpreter, or None when it can."""
    version = ".".join(map(str, sys.version_info[:3]))
    oldest, newest = (".".join(map(str, v)) for v in SUPPORTED)
    needs = f"spangap needs CPython {oldest} to {newest} with the GIL"
    if sys.implementation.name != "cpython":
        name = platform.python_implementation()
        return f"{needs}; this is {name} (Python {version}), so the detector is off"
    if not SUPPORTED[0] <= sys.version_info[:2] <= SUPPORTED[1]:
        return f"{needs}; this is CPython {version}, so the detector is off"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return f"{needs}; this is a free-threaded CPython {version}, so the detector is off"
    return None


class InertDetector:
    """What ``enable_gap_detector()`` returns where spangap cannot run: nothing is
    sampled, hooked or served, and every call is harmless."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    running = False
    metrics_port = None
    context_reader = tracker = liveness = "off"

    def stop(self) -> None:
        """Nothing to stop."""

    def operation_counts(self) -> dict[tuple[str, str], int]:
        return {}


_warned = False


def enable_inert(**options: Any) -> InertDetector:
    """``enable_gap_detector`` where spangap cannot run: one warning line, once."""
    global _warned
    reason = unsupported_reason() or "the detector is off"
    if not _warned:
        _warned = True
        log.warning("%s", reason)
    return InertDetector(reason)
