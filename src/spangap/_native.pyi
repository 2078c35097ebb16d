import contextvars
from typing import TypeVar

_T = TypeVar("_T")

def thread_contexts() -> dict[int, contextvars.Context]: ...
def thread_values(var: contextvars.ContextVar[_T], /) -> dict[int, _T]: ...
