"""Every thread's stack of this interpreter, read without the GIL (see c/_stacks.c)."""

from contextvars import ContextVar
from types import CodeType
from typing import Any

MAX_DEPTH: int

Stacks = dict[int, list[tuple[int, int]]]
Spans = dict[int, int | None]
Walked = tuple[Stacks, Spans, dict[str, float]]

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
    def start(self, interval_s: float) -> None: ...
    def stop(self) -> None: ...
    def latest(self) -> Walked: ...

def usable() -> str | None: ...
def code_address(code: CodeType) -> int: ...
