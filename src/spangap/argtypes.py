"""Value types for ``gapreport``'s options: a bad value is argparse's one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T", int, float)


def _parsed(convert: Callable[[str], _T], text: str, expected: str) -> _T:
    """``convert(text)``, or argparse's error naming what was ``expected``."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def _require(holds: bool, message: str) -> None:
    if not holds:
        raise argparse.ArgumentTypeError(message)


def positive_int(text: str) -> int:
    """A whole number of at least 1 (a count of sites, of functions to fix)."""
    value = _parsed(int, text, "a whole number")
    _require(value >= 1, f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> float:
    """A finite number of at least 0 (seconds, a change in percent: ``20%`` too)."""
    value = _parsed(float, text.removesuffix("%"), "a number")
    _require(math.isfinite(value) and value >= 0, f"must be a number of at least 0, got {text}")
    return value


def percent(text: str) -> float:
    """A share from 0 to 100 (a coverage to reach)."""
    value = _parsed(float, text, "a percentage")
    _require(0 <= value <= 100, f"must be from 0 to 100, got {text}")
    return value


def seconds_at_least(minimum: float) -> Callable[[str], float]:
    """Seconds, finite and at least ``minimum`` (a timeout that must leave time to work)."""

    def seconds(text: str) -> float:
        value = _parsed(float, text, "a number of seconds")
        _require(minimum <= value < math.inf, f"must be at least {minimum:g} seconds, got {text}")
        return value

    return seconds
