"""What the tracker finds and the findings keep: one uninstrumented operation, and the
names of its causes (SPEC "cause")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

NO_SPAN = "no_span"  # no span anywhere above the call
CONTEXT_LOST = "context_lost"  # a span was left behind where the work was handed over


class Operation(NamedTuple):
    """One uninstrumented operation: a completed dark call of an in-scope function.

    ``example_stack`` is filled for the first operation of each code object only (the
    findings keep one example per site)."""

    site: str
    file: str
    line: int
    cause: str
    duration_s: float  # estimated wall time of the call
    dark_s: float  # the part of it that was not idle
    self_s: float  # dark_s minus time inside counted child operations
    caller: str | None
    thread: str
    waited_in: str | None
    end_time: float
    example_stack: tuple[str, ...] | None
    lost_from: Mapping[str, str] | None = None
    thread_id: int = 0  # the thread's id (0 for a task): each call is counted once by it
