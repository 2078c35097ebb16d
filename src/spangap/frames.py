"""Reading other threads' stacks without letting the interpreter run code in the middle.

A read of another thread's frames (``sys._current_frames()``, ``f_back``, a suspended
coroutine's frame) makes a frame object; on CPython 3.11 that allocation can start a
collection whose finalizers deadlock the host or let the GIL go mid-read. So every such
read is made with the collector paused, for that read only (docs/how-it-works.md,
"Reading other threads' frames" and "Locks").
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Callable
from types import FrameType
from typing import Any

_NEEDS_PAUSE = sys.version_info < (3, 12)  # 3.12+ collects only between bytecodes
_FRAME_ATTRS = ("cr_frame", "gi_frame", "ag_frame")


def _paused(read: Callable[[], Any]) -> Any:
    """``read()`` with the collector paused, if it was running."""
    if not _NEEDS_PAUSE or not gc.isenabled():
        return read()
    gc.disable()
    try:
        return read()
    finally:
        gc.enable()


def _current_frames_in_python() -> dict[int, FrameType]:
    frames: dict[int, FrameType] = _paused(sys._current_frames)
    return frames


def _back_in_python(frame: FrameType) -> FrameType | None:
    if not _NEEDS_PAUSE:
        return frame.f_back
    back: FrameType | None = _paused(lambda: frame.f_back)
    return back


_OWN_TYPES: dict[type, str] = {
    types.CoroutineType: "cr_frame",
    types.GeneratorType: "gi_frame",
    types.AsyncGeneratorType: "ag_frame",
}

current_frames: Callable[[], dict[int, FrameType]] = _current_frames_in_python
back: Callable[[FrameType], FrameType | None] = _back_in_python
_own_type_frame: Callable[[Any], FrameType | None] | None = None
try:
    from . import _tracking
except ImportError:  # no C extension: the same reads, paused from Python
    pass
else:
    current_frames = _tracking.current_frames
    back = _tracking.back
    _own_type_frame = _tracking.suspended_frame


def suspended_frame(coro: Any) -> FrameType | None:
    """The frame of a coroutine, generator or async generator (None when it finished
    or ``coro`` has none); CPython's own types are read with the collector paused."""
    name = _OWN_TYPES.get(type(coro))
    if name is None:  # another awaitable: its attributes are its own
        for attr in _FRAME_ATTRS:
            frame: FrameType | None = getattr(coro, attr, None)
            if frame is not None:
                return frame
        return None
    if _own_type_frame is not None:
        return _own_type_frame(coro)
    found: FrameType | None = _paused(lambda: getattr(coro, name))
    return found
