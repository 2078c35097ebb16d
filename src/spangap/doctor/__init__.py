"""``gapreport doctor``: is the tracing pipeline of an app working end to end at all?

spangap can only tell work outside spans from work inside them when spans exist; the
doctor checks the setup that makes them: an SDK tracer provider, a processor with an
exporter that reaches a collector, W3C propagation, logs that carry the trace id, HTTP
clients and thread pools that carry the span along.

The checks run in a child process that imports the app (``probe``, ``checks``); this
module holds what both sides share, and imports nothing heavy, so that ``gapreport``
starts fast whatever the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

ERROR = "error"
WARNING = "warning"
OK = "ok"
SEVERITIES = (ERROR, WARNING, OK)

#: Every check, in the order of the report: the pipeline first, then what feeds it.
CHECK_IDS = (
    "tracer-provider",
    "span-processor",
    "test-span",
    "propagators",
    "log-correlation",
    "outbound-http",
    "executors",
)

_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report; ``fix`` is empty when all is well."""

    id: str
    severity: str
    message: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "message": self.message, "fix": self.fix}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Finding:
        """Read a finding back from the child process; ValueError if it is not one."""
        values = [data.get(key) for key in ("id", "severity", "message", "fix")]
        strings = [value for value in values if isinstance(value, str)]
        if len(strings) != len(values) or strings[1] not in SEVERITIES:
            raise ValueError(f"not a finding: {data!r}")
        return cls(*strings)


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """``ExcType: message`` on one line, as the report shows an error."""
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def otlp_traces_url(text: str) -> str:
    """The OTLP/HTTP traces URL for what a user typed: a collector's base URL
    (``http://host:4318``) gets the ``/v1/traces`` path, a URL with a path is kept."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    if parts.path in ("", "/"):
        return text.rstrip("/") + _TRACES_PATH
    return text


__all__ = [
    "CHECK_IDS",
    "ERROR",
    "OK",
    "SEVERITIES",
    "WARNING",
    "Finding",
    "describe",
    "one_line",
    "otlp_traces_url",
]
