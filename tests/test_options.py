"""Options: defaults, environment twins, precedence, and one clear message per bad value."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from spangap.options import OPTION_NAMES, OptionError, resolve_options


def test_defaults() -> None:
    options = resolve_options({}, environ={})
    assert options.threshold_ms == 10.0
    assert options.interval_ms == 5.0
    assert options.max_sites == 200
    assert options.metrics_port is None
    assert options.metrics_addr == "127.0.0.1"


def test_every_option_but_the_registry_has_an_environment_twin() -> None:
    env = {
        "SPANGAP_THRESHOLD_MS": "20",
        "SPANGAP_INTERVAL_MS": "4",
        "SPANGAP_INCLUDE": "shop, billing.*",
        "SPANGAP_EXCLUDE": "shop.vendor",
        "SPANGAP_IDLE_FUNCTIONS": "shop.worker:Consumer.poll",
        "SPANGAP_MAX_SITES": "50",
        "SPANGAP_METRICS_PORT": "9464",
        "SPANGAP_METRICS_ADDR": "0.0.0.0",
        "SPANGAP_METRIC_PREFIX": "reveried_",
        "SPANGAP_SNAPSHOT_PATH": "/tmp/s.json",
        "SPANGAP_SNAPSHOT_INTERVAL_S": "30",
        "SPANGAP_ENTRY_MODULE": "shop.cli",
        "SPANGAP_NATIVE": "off",
        "SPANGAP_CONTEXT_READER": "python",
        "SPANGAP_LIVENESS": "sampled",
        "SPANGAP_TRACKER": "python",
        "SPANGAP_STACKS": "native",
        "SPANGAP_MAX_OVERHEAD": "0.02",
        "SPANGAP_COVERAGE_WINDOW_S": "120",
        "SPANGAP_INFERRED_SPANS": "yes",
        "SPANGAP_INFERRED_SPANS_PER_MINUTE": "5",
        "SPANGAP_OTEL_METRICS": "true",
        "SPANGAP_OUTBOUND_REQUESTS": "off",
    }
    assert {n.upper() for n in OPTION_NAMES} - {"REGISTRY"} == {
        k.removeprefix("SPANGAP_") for k in env
    }
    o = resolve_options({}, environ=env)
    assert (o.threshold_ms, o.interval_ms, o.max_sites) == (20.0, 4.0, 50)
    assert o.include == ("shop", "billing.*") and o.exclude == ("shop.vendor",)
    assert o.idle_functions == ("shop.worker:Consumer.poll",)
    assert (o.metrics_port, o.metrics_addr, o.metric_prefix) == (9464, "0.0.0.0", "reveried_")
    assert (o.snapshot_path, o.snapshot_interval_s) == ("/tmp/s.json", 30.0)
    assert (o.entry_module, o.context_reader, o.coverage_window_s) == ("shop.cli", "python", 120)
    assert (o.liveness, o.tracker, o.max_overhead) == ("sampled", "python", 0.02)
    assert o.native == "off"
    assert (o.inferred_spans, o.inferred_spans_per_minute, o.otel_metrics) == (True, 5, True)
    assert o.outbound_requests is False


def test_keyword_arguments_win_over_the_environment() -> None:
    o = resolve_options({"threshold_ms": 50}, environ={"SPANGAP_THRESHOLD_MS": "20"})
    assert o.threshold_ms == 50


@pytest.mark.parametrize(
    ("kwargs", "env", "expected"),
    [
        ({"threshold_ms": -1}, {}, "threshold_ms: must be between 0.1 and"),
        ({"threshold_ms": "fast"}, {}, "threshold_ms: expected a number"),
        ({}, {"SPANGAP_INTERVAL_MS": "abc"}, "SPANGAP_INTERVAL_MS: expected a number"),
        ({"interval_ms": 8}, {}, "interval_ms: must be at most half of threshold_ms (5)"),
        ({"max_sites": 0}, {}, "max_sites: must be between 1 and 100000"),
        ({"max_sites": 2.5}, {}, "max_sites: expected an integer"),
        ({"max_sites": True}, {}, "max_sites: expected an integer"),
        ({"max_sites": float("inf")}, {}, "max_sites: expected an integer"),
        ({"inferred_spans": "maybe"}, {}, "inferred_spans: expected true or false"),
        ({}, {"SPANGAP_INFERRED_SPANS": "2"}, "SPANGAP_INFERRED_SPANS: expected true or false"),
        ({}, {"SPANGAP_METRICS_PORT": "70000"}, "SPANGAP_METRICS_PORT: must be between 0"),
        ({"metric_prefix": "bad-prefix"}, {}, "metric_prefix: must be a Prometheus"),
        ({"context_reader": "magic"}, {}, "context_reader: must be one of auto, native, python"),
        ({"liveness": "psychic"}, {}, "liveness: must be one of auto, native, sampled"),
        ({"tracker": "rust"}, {}, "tracker: must be one of auto, native, python"),
        ({"max_overhead": 0}, {}, "max_overhead: must be between 0.001 and 1"),
        ({}, {"SPANGAP_MAX_OVERHEAD": "1%"}, "SPANGAP_MAX_OVERHEAD: expected a number"),
        ({"registry": "default"}, {}, "registry: expected a prometheus_client"),
        ({"include": ["shop app"]}, {}, "include: globs may not contain spaces"),
        ({"treshold_ms": 5}, {}, "treshold_ms: unknown option"),
    ],
)
def test_bad_values_name_the_option(kwargs, env, expected) -> None:
    with pytest.raises(OptionError) as info:
        resolve_options(kwargs, environ=env)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_registry_is_accepted_only_in_code() -> None:
    registry = CollectorRegistry()
    assert resolve_options({"registry": registry}, environ={}).registry is registry


def test_metrics_port_none_in_environment_means_off() -> None:
    assert resolve_options({}, environ={"SPANGAP_METRICS_PORT": ""}).metrics_port is None


def test_native_off_takes_the_pure_python_path_unless_a_switch_is_given(start_detector) -> None:
    detector = start_detector(native="off")
    assert (detector.context_reader, detector.tracker, detector.liveness) == (
        "python",
        "python",
        "sampled",
    )
    assert resolve_options({"native": "off", "tracker": "native"}).tracker == "native"
    assert resolve_options({}, environ={"SPANGAP_NATIVE": "off"}).liveness == "sampled"
    with pytest.raises(OptionError, match=r"^native: must be one of auto, off"):
        resolve_options({"native": "python"})
