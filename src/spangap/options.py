"""The detector's options: defaults, environment twins, and fail-fast validation.

Every option ``name`` can also be set through the environment variable
``SPANGAP_<NAME>`` (upper case). Explicit keyword arguments win over the environment,
the environment wins over the defaults. A bad value raises :class:`OptionError` whose
message names the option and the accepted range, so a mistyped deployment setting
fails at start-up instead of silently measuring the wrong thing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client import CollectorRegistry

ENV_PREFIX = "SPANGAP_"
_METRIC_PREFIX_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$")
_CONTEXT_READERS = ("auto", "native", "python")
_LIVENESS_MODES = ("auto", "native", "sampled")
_TRACKERS = ("auto", "native", "python")
_STACK_SAMPLERS = ("auto", "native", "off")


class OptionError(ValueError):
    """A detector option has a value outside what it accepts; the message says which."""


@dataclass(frozen=True)
class Options:
    """Validated settings of one detector. Build with :func:`resolve_options`."""

    threshold_ms: float = 10.0
    interval_ms: float = 5.0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    idle_functions: tuple[str, ...] = ()
    max_sites: int = 200
    registry: CollectorRegistry | None = None
    metrics_port: int | None = None
    metrics_addr: str = "127.0.0.1"
    metric_prefix: str = ""
    snapshot_path: str | None = None
    snapshot_interval_s: float = 60.0
    entry_module: str | None = None
    native: str = "auto"
    # Implementation switches, for tests and benchmarks (undocumented): ``native`` sets
    # all three; one given explicitly wins over it.
    context_reader: str = "auto"
    liveness: str = "auto"
    tracker: str = "auto"
    stacks: str = "off"
    max_overhead: float = 0.01
    coverage_window_s: float = 60.0
    inferred_spans: bool = False
    inferred_spans_per_minute: int = 60
    otel_metrics: bool = False
    outbound_requests: bool = True

    @property
    def threshold_s(self) -> float:
        return self.threshold_ms / 1000.0

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000.0


def _float_in(lo: float, hi: float) -> Callable[[str, Any], float]:
    def parse(name: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionError(
                f"{name}: expected a number between {lo:g} and {hi:g}, got {value!r}"
            ) from None
        if not lo <= number <= hi or number != number:
            raise OptionError(f"{name}: must be between {lo:g} and {hi:g}, got {value!r}")
        return number

    return parse


def _int_in(lo: int, hi: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise OptionError(f"{name}: expected an integer between {lo} and {hi}, got {value!r}")
        try:
            number = int(str(value).strip()) if isinstance(value, str) else int(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
            raise OptionError(
                f"{name}: expected an integer between {lo} and {hi}, got {value!r}"
            ) from None
        if isinstance(value, float) and value != number:
            raise OptionError(f"{name}: expected an integer between {lo} and {hi}, got {value!r}")
        if not lo <= number <= hi:
            raise OptionError(f"{name}: must be between {lo} and {hi}, got {value!r}")
        return number

    return parse


def _optional(parse: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def wrapped(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return parse(name, value)

    return wrapped


def _globs(name: str, value: Any) -> tuple[str, ...]:
    """A list of module-name globs; the environment twin is comma-separated."""
    items: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        globs = tuple(str(item).strip() for item in items)
    except TypeError:
        raise OptionError(
            f"{name}: expected a list of globs or a comma-separated string, got {value!r}"
        ) from None
    bad = [g for g in globs if not isinstance(g, str) or any(ch.isspace() for ch in g)]
    if bad:
        raise OptionError(f"{name}: globs may not contain spaces, got {bad[0]!r}")
    return tuple(g for g in globs if g)


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise OptionError(f"{name}: expected a string, got {value!r}")
    return value


def _metric_prefix(name: str, value: Any) -> str:
    text = _text(name, value)
    if not _METRIC_PREFIX_RE.match(text):
        raise OptionError(
            f"{name}: must be a Prometheus metric-name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), "
            f"got {value!r}"
        )
    return text


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        text = _text(name, value).strip().lower()
        if text not in choices:
            raise OptionError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _bool(name: str, value: Any) -> bool:
    """True or False; the environment twin takes true/false, 1/0, yes/no, on/off."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(f"{name}: expected true or false, got {value!r}")


def _registry(name: str, value: Any) -> CollectorRegistry | None:
    if value is None or isinstance(value, CollectorRegistry):
        return value
    raise OptionError(
        f"{name}: expected a prometheus_client CollectorRegistry, got {type(value).__name__}"
    )


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "threshold_ms": _float_in(0.1, 3_600_000.0),
    "interval_ms": _float_in(0.1, 10_000.0),
    "include": _globs,
    "exclude": _globs,
    "idle_functions": _globs,
    "max_sites": _int_in(1, 100_000),
    "registry": _registry,
    "metrics_port": _optional(_int_in(0, 65_535)),
    "metrics_addr": _text,
    "metric_prefix": _metric_prefix,
    "snapshot_path": _optional(_text),
    "snapshot_interval_s": _float_in(0.1, 86_400.0),
    "entry_module": _optional(_text),
    "native": _one_of(("auto", "off")),
    "context_reader": _one_of(_CONTEXT_READERS),
    "liveness": _one_of(_LIVENESS_MODES),
    "tracker": _one_of(_TRACKERS),
    "stacks": _one_of(_STACK_SAMPLERS),
    "max_overhead": _float_in(0.001, 1.0),
    "coverage_window_s": _float_in(1.0, 86_400.0),
    "inferred_spans": _bool,
    "inferred_spans_per_minute": _int_in(1, 100_000),
    "otel_metrics": _bool,
    "outbound_requests": _bool,
}
#: The documentation of every option a user sets (docs/reference.md and the README's
#: table are generated from it: ``python -m spangap.reference``): default as shown, meaning.
OPTION_DOCS: dict[str, tuple[str, str]] = {
    "threshold_ms": ("`10`", "shortest call that counts (0.1 – 3,600,000)"),
    "interval_ms": (
        "`5`",
        "shortest time between samples; at most `threshold_ms / 2`. The overhead budget "
        "widens it when needed",
    ),
    "max_overhead": (
        "`0.01`",
        "CPU budget of the sampler, as a share of one core (0.001 – 1; `1` = no budget, "
        "always `interval_ms`)",
    ),
    "include": ("—", "module globs forced in scope (`shop` also covers `shop.*`)"),
    "exclude": ("—", "module globs forced out of scope; wins over `include`"),
    "idle_functions": ("—", "`module:qualname` globs added to the idle waits"),
    "max_sites": ("`200`", "distinct `site` label values; the rest fold into `__other__`"),
    "registry": ("global", "prometheus-client `CollectorRegistry` (code only, no variable)"),
    "metrics_port": (
        "off",
        "serve `/metrics` on this port (0 = any free port, see `detector.metrics_port`)",
    ),
    "metrics_addr": ("`127.0.0.1`", "address for `metrics_port`"),
    "metric_prefix": ("empty", "prepended to every metric name, e.g. `reveried_`"),
    "snapshot_path": (
        "off",
        "write the JSON snapshot here every `snapshot_interval_s` and at exit "
        "(`gapreport run`: `spangap-<pid>.json`)",
    ),
    "snapshot_interval_s": ("`60`", "seconds between snapshots"),
    "entry_module": ("detected", "the program's entry module (its package is in scope)"),
    "native": (
        "`auto`",
        "`auto`: the C extension's context reader, call tracker and liveness watcher where "
        "built; `off`: the pure-Python path",
    ),
    "coverage_window_s": ("`60`", "sliding window of the `span_coverage_ratio` gauge"),
    "inferred_spans": (
        "`false`",
        "send each counted operation as a span (`spangap.inferred=true`) through the "
        "application's TracerProvider: a child of the lost span for `context_lost`",
    ),
    "inferred_spans_per_minute": ("`60`", "inferred spans per site and minute, at most"),
    "otel_metrics": (
        "`false`",
        "also report the counters through the application's OpenTelemetry MeterProvider "
        "(for OTLP metrics without a Prometheus scrape)",
    ),
    "outbound_requests": (
        "`true`",
        "count outbound HTTP requests (http.client, urllib3, requests, httpx, aiohttp) sent "
        "with no active span or no `traceparent` header: `untraced_outbound_requests_total`",
    ),
}
#: Implementation switches for tests and benchmarks, left out of the documentation.
UNDOCUMENTED = frozenset({"context_reader", "liveness", "tracker", "stacks"})

#: What ``native="off"`` chooses for each implementation switch.
_PURE_PYTHON = {
    "context_reader": "python",
    "liveness": "sampled",
    "tracker": "python",
    "stacks": "off",
}
# Options that only make sense in code, not in an environment variable.
_NO_ENV_TWIN = frozenset({"registry"})

OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Options))


def resolve_options(kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Options:
    """Merge keyword arguments over ``SPANGAP_*`` variables over defaults, and validate."""
    env = os.environ if environ is None else environ
    unknown = sorted(set(kwargs) - set(OPTION_NAMES))
    if unknown:
        raise OptionError(
            f"{unknown[0]}: unknown option; known options are {', '.join(OPTION_NAMES)}"
        )
    values: dict[str, Any] = {}
    for name in OPTION_NAMES:
        env_name = ENV_PREFIX + name.upper()
        if name in kwargs:
            values[name] = _PARSERS[name](name, kwargs[name])
        elif name not in _NO_ENV_TWIN and env_name in env:
            values[name] = _PARSERS[name](env_name, env[env_name])
    if values.get("native") == "off":  # the pure-Python path, except where set explicitly
        for name, python in _PURE_PYTHON.items():
            values.setdefault(name, python)
    options = Options(**values)
    if options.interval_ms > options.threshold_ms / 2:
        raise OptionError(
            f"interval_ms: must be at most half of threshold_ms ({options.threshold_ms / 2:g}) "
            f"so that calls shorter than the threshold are not counted, got {options.interval_ms:g}"
        )
    return options
