"""Zero-code start: ``SPANGAP_ENABLED=true opentelemetry-instrument python app.py``.

OpenTelemetry's launcher calls every ``opentelemetry_post_instrument`` entry point once
the SDK is configured and the instrumentations are in; spangap's starts the detector
there, with its options from the ``SPANGAP_*`` variables. Without ``SPANGAP_ENABLED`` it
does nothing. A bad value gets one line on stderr and the program runs without the
detector: a typo in a variable must not stop the service.
"""

from __future__ import annotations

import os
import sys

from .options import ENV_PREFIX, OptionError

ENABLED_VARIABLE = ENV_PREFIX + "ENABLED"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def post_instrument() -> None:
    """The ``opentelemetry_post_instrument`` hook."""
    value = os.environ.get(ENABLED_VARIABLE, "").strip().lower()
    if value in _FALSE:
        return
    if value not in _TRUE:
        print(
            f"spangap: {ENABLED_VARIABLE}: expected true or false, got {value!r}; "
            "the detector is not started",
            file=sys.stderr,
        )
        return
    from . import enable_gap_detector

    try:
        enable_gap_detector()
    except (OptionError, RuntimeError) as exc:
        print(f"spangap: {exc}; the detector is not started", file=sys.stderr)
