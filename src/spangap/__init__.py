"""spangap: find the work your OpenTelemetry traces cannot see, ranked by call site."""

from .runtime import unsupported_reason

if unsupported_reason() is None:
    from .detector import GapDetector, enable_gap_detector
    from .options import OptionError
    from .snapshot import Snapshot, SnapshotError
    from .traced import traced
else:  # PyPy, a free-threaded or an untested CPython: off, said in one line (runtime.py)
    from .runtime import InertDetector as GapDetector  # type: ignore[assignment]
    from .runtime import enable_inert as enable_gap_detector  # type: ignore[assignment]
    from .snapshot import Snapshot, SnapshotError
    from .traced import traced

    class OptionError(ValueError):  # type: ignore[no-redef]
        """A bad option (never raised here: options are not read where spangap is off)."""


__all__ = [
    "GapDetector",
    "OptionError",
    "Snapshot",
    "SnapshotError",
    "enable_gap_detector",
    "traced",
]
__version__ = "0.1.0"
