"""spangap: find the work your OpenTelemetry traces cannot see, ranked by call site."""

from .detector import GapDetector, enable_gap_detector
from .options import OptionError

__all__ = ["GapDetector", "OptionError", "enable_gap_detector"]
__version__ = "0.1.0"
