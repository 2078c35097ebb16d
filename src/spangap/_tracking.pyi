"""The call tracker's per-thread hot path in C (see tracker.py, the reference)."""

from collections.abc import Callable, Container, Mapping, Sequence
from types import FrameType
from typing import Any, Protocol

from ._liveness import Watcher

class CompletedCall:
    """A call that ended, as the C tracker passes it on."""

    info: Any
    cause: str
    lost_from: Mapping[str, str] | None
    duration: float
    dark: float
    self_s: float
    caller: Any | None
    thread: str
    waits: list[tuple[Any, int, int]]
    end_time: float
    example: tuple[str, ...] | None
    thread_id: int

class _Limits(Protocol):
    @property
    def code_cache(self) -> int: ...
    @property
    def wait_log(self) -> int: ...
    @property
    def example_depth(self) -> int: ...

class ThreadTracker:
    interval: float
    @property
    def threads(self) -> int: ...
    def __init__(
        self,
        info_of: Callable[[FrameType], Any],
        thread_name: Callable[[int], str],
        lost_context: Callable[[int], Mapping[str, str] | None],
        example: Callable[[tuple[tuple[FrameType, ...], tuple[Any, ...]]], tuple[str, ...]],
        threshold: float,
        interval: float,
        max_correction: float,
        limits: _Limits,
        idle_kinds: tuple[int, int, int],
        watcher: Watcher | None = None,
    ) -> None: ...
    def observe(
        self,
        frames: Mapping[int, FrameType],
        spanned: Container[int],
        now: float,
        alive: Mapping[int, object],
        activated: dict[int, tuple[FrameType, ...]] | None = None,
        frozen: tuple[float, Mapping[int, float]] | None = None,
    ) -> None: ...
    def take_coverage(self) -> tuple[float, float]: ...
    def clear(self) -> None: ...
    def take(self) -> list[CompletedCall]: ...

def note_activation(
    threads: dict[int, Any], tasks: dict[Any, Any], tid: int, task: object
) -> None: ...
def current_frames() -> dict[int, FrameType]: ...
def back(frame: FrameType) -> FrameType | None: ...
def suspended_frame(obj: object) -> FrameType | None: ...
def activation_count() -> int: ...
def frames_at(
    addresses: bytes, codes: tuple[Any, ...], frames: Sequence[FrameType]
) -> tuple[FrameType, ...]: ...
