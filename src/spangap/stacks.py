"""Every thread's stack without the GIL: opening the native reader (``c/_stacks.c``).

The reader is used only where it is known to read this interpreter right: a CPython it
was built for, ``process_vm_readv`` allowed on this process, and a walk of the calling
thread equal to what ``sys._getframe()`` shows. :func:`open_reader` says which check
failed, so that the caller can name the reader in use (or why there is none) in its log.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._stacks import Reader


def open_reader() -> tuple[Reader | None, str]:
    """(a checked reader, "native") or (None, why there is none)."""
    try:
        from . import _stacks
    except ImportError:
        return None, "spangap._stacks is not built for this interpreter"
    refused = _stacks.usable()
    if refused is not None:
        return None, refused
    reader = _stacks.Reader()
    if not walks_like_getframe(reader):
        return None, "the native walk of this thread differs from sys._getframe()"
    return reader, "native"


def walks_like_getframe(reader: Reader) -> bool:
    """Whether the reader's walk of this thread shows the frames of ``sys._getframe()``:
    the same code objects from here to the root, at the same instructions (but the
    innermost, which has moved on since the walk)."""
    from ._stacks import code_address

    stacks, _ = reader.walk(release_gil=False)
    walked = stacks.get(threading.get_ident())
    expected = _chain(sys._getframe(), code_address)
    if not walked or len(walked) != len(expected):
        return False
    return walked[0][0] == expected[0][0] and walked[1:] == expected[1:]


def _chain(
    frame: FrameType | None, code_address: Callable[[CodeType], int]
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while frame is not None:
        out.append((code_address(frame.f_code), frame.f_lasti))
        frame = frame.f_back
    return out
