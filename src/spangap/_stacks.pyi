"""Every thread's stack of this interpreter, read without the GIL (see c/_stacks.c)."""

from collections.abc import Iterable
from contextvars import ContextVar
from types import CodeType
from typing import Any

MAX_DEPTH: int

Stacks = dict[int, list[tuple[int, int]]]
Spans = dict[int, int | None]
Walked = tuple[Stacks, Spans, dict[str, float]]
#: (frame address, code address, lasti)
Frame = tuple[int, int, int]
#: (thread id, frame, code, depth, first, last, began after, gone by, duration,
#: samples, callers, callees, cut)
Record = tuple[
    int,
    int,
    int,
    int,
    float,
    float,
    float,
    float,
    float,
    int,
    tuple[int, ...],
    tuple[Frame, ...],
    bool,
]
#: (thread id, cpu_ns, activations, span_none, stack innermost first, or None)
ThreadSample = tuple[int, int, int, bool, list[Frame] | None]

class Chains:
    def __init__(self, threshold_s: float, max_correction_s: float) -> None: ...
    def observe(
        self, now: float, threads: list[ThreadSample], ended: dict[int, int], /
    ) -> None: ...
    def take(self) -> list[Record]: ...

class Reader:
    @property
    def running(self) -> bool: ...
    def __init__(
        self,
        *,
        var: ContextVar[Any] | None = None,
        span_key: str | None = None,
        invalid_span: object = None,
        pin_limit: int = 20000,
    ) -> None: ...
    def walk(self, release_gil: bool = True) -> Walked: ...
    def pin(self) -> int: ...
    def pin_codes(self, codes: Iterable[CodeType], /) -> int: ...
    @property
    def cpu_seconds(self) -> float: ...
    interval_s: float
    def start(
        self,
        interval_s: float,
        *,
        threshold_s: float = 0.0,
        max_correction_s: float = 0.0,
        keep: int = 10000,
    ) -> None: ...
    def take(self) -> list[Record]: ...
    def stop(self) -> None: ...
    def latest(self) -> Walked: ...

def copy_path(path: str | None = None, /) -> dict[str, Any]: ...
def usable() -> str | None: ...
def code_address(code: CodeType) -> int: ...
