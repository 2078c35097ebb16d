"""Bounds on what spangap keeps, shared by the Python paths and the C tracker.

Each figure is written once, here: the C tracker receives them when it is made. They
keep memory flat in a process that makes code dynamically or runs for months; a table
that reaches its bound starts over (or, for dropped sites, stops counting new ones).
Components read :data:`LIMITS` when they are made.
"""

from __future__ import annotations

from typing import NamedTuple


class Limits(NamedTuple):
    """What spangap keeps, per detector or per followed thread."""

    code_cache: int = 20_000
    """Code objects whose facts (name, scope, idle class, call names) are cached, and
    code whose operations already had an example stack."""
    wait_log: int = 4096
    """Samples of where a thread waited, per thread; the older half is dropped."""
    example_depth: int = 40
    """Frames in an operation's example stack, counted from the operation's call."""
    wait_names: int = 4096
    """Distinct places whose wait name is cached by the Python side."""
    dropped_sites: int = 10_000
    """Distinct sites told apart (and counted) once ``max_sites`` folds them away."""


LIMITS = Limits()
