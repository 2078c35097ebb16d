import contextvars
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

def thread_contexts() -> dict[int, contextvars.Context]: ...
def thread_values(var: contextvars.ContextVar[_T], /) -> dict[int, _T]: ...
def spanned_threads(
    var: contextvars.ContextVar[object],
    thread_ids: dict[int, object],
    key: str,
    cache: dict[int, tuple[object, bool]],
    is_active: Callable[[object], bool],
    /,
) -> set[int]: ...
