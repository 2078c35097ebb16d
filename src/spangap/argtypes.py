"""Value types for ``gapreport``'s options: a bad value is argparse's one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def positive_int(text: str) -> int:
    """A whole number of at least 1 (a count of sites, of functions to fix)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> float:
    """A finite number of at least 0 (seconds, a change in percent: ``20%`` too)."""
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, got {text}")
    return value


def percent(text: str) -> float:
    """A share from 0 to 100 (a coverage to reach)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 0 to 100, got {text}")
    return value


def seconds_at_least(minimum: float) -> Callable[[str], float]:
    """Seconds, finite and at least ``minimum`` (a timeout that must leave time to work)."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            message = f"expected a number of seconds, got {text!r}"
            raise argparse.ArgumentTypeError(message) from None
        if not minimum <= value < math.inf:
            raise argparse.ArgumentTypeError(f"must be at least {minimum:g} seconds, got {text}")
        return value

    return seconds
