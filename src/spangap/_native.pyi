import contextvars
from collections.abc import Callable

def spanned_threads(
    var: contextvars.ContextVar[object],
    thread_ids: dict[int, object],
    key: str,
    cache: dict[int, tuple[object, bool]],
    is_active: Callable[[object], bool],
    plain: tuple[tuple[type, ...], type] | None = None,
    /,
) -> set[int]: ...
def holds_active_span(
    ctx: object, key: str, plain: tuple[tuple[type, ...], type] | None
) -> bool | None: ...
