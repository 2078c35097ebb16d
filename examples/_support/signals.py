"""Stop signals for the examples' servers: SIGINT and SIGTERM both raise KeyboardInterrupt."""

from __future__ import annotations

import signal
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread.

    A process started in the background by a non-interactive shell inherits SIGINT as
    ignored; installing the default handler makes SIGINT always stop the server.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
