"""The detector's lifecycle and exports: idempotence, flush on stop, /metrics, label bound."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import gt_workloads as w
import spangap
from conftest import FULL_RATE_ENV, counts_by_site
from spangap.snapshot import Snapshot


def scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_enable_is_idempotent(start_detector) -> None:
    first = start_detector()
    assert spangap.enable_gap_detector() is first
    first.stop()
    second = start_detector()
    assert second is not first and second.running


def test_stop_flushes_operations_that_just_completed(start_detector, recorded) -> None:
    detector = start_detector(include=["gt_workloads"])
    w.dark_sleep(0.05)  # ends right before stop(): no tick may have seen it end yet
    detector.stop()
    assert counts_by_site(detector)[w.site("dark_sleep")] == 1


class Payload:
    """An application object that only a call's locals hold."""


def stop_while_holding(detector: Any) -> Any:
    """A call still running when the detector stops, whose locals hold a payload."""
    import weakref

    payload = Payload()
    time.sleep(0.03)  # seen by a sample: a call the sampler follows
    detector.stop()
    return weakref.ref(payload)


def test_stop_lets_go_of_the_applications_objects(start_detector) -> None:
    """The sampler holds the frames of the calls it follows, and so their locals once
    they return; a stopped detector (which ``enable_gap_detector`` keeps) must let go."""
    import gc

    gone = stop_while_holding(start_detector(include=[__name__]))
    gc.collect()
    assert gone() is None


def test_metrics_served_over_http_match_the_workload(start_detector, recorded) -> None:
    detector = start_detector(include=["gt_workloads"], metrics_port=0)
    port = detector.metrics_port
    assert port
    w.run_threads(lambda: [w.dark_sleep() for _ in range(10)], 3)
    for _ in range(5):
        w.spanned_cm()
    time.sleep(1.2)  # let the once-a-second gauges update
    families = scrape(port)
    detector.stop()
    ops = {
        (s.labels["site"], s.labels["cause"]): s.value
        for s in families["uninstrumented_operations"]
        if s.name == "uninstrumented_operations_total"
    }
    assert ops[(w.site("dark_sleep"), "no_span")] == 30
    assert (w.site("spanned_body"), "no_span") not in ops
    seconds = {
        s.labels["site"]: s.value
        for s in families["uninstrumented_operation_seconds"]
        if s.name.endswith("_total")
    }
    assert seconds[w.site("dark_sleep")] == pytest.approx(30 * 0.025, rel=0.25)
    assert 0.0 < families["span_coverage_ratio"][0].value < 1.0
    assert families["spangap_samples"][0].value > 0
    assert families["spangap_sampler_cpu_seconds"][0].value > 0
    assert sum(s.value for s in families["spangap_internal_errors"]) == 0


def test_metrics_stay_registered_after_stop(start_detector, recorded) -> None:
    registry = CollectorRegistry()
    detector = start_detector(registry=registry, include=["gt_workloads"])
    w.dark_sleep()
    detector.stop()
    value = registry.get_sample_value(
        "uninstrumented_operations_total", {"site": w.site("dark_sleep"), "cause": "no_span"}
    )
    assert value == 1
    # A later detector on the same registry keeps counting into the same series.
    again = start_detector(registry=registry, include=["gt_workloads"])
    w.dark_sleep()
    again.stop()
    assert (
        registry.get_sample_value(
            "uninstrumented_operations_total", {"site": w.site("dark_sleep"), "cause": "no_span"}
        )
        == 2
    )


def test_metric_prefix(start_detector, recorded) -> None:
    registry = CollectorRegistry()
    detector = start_detector(
        registry=registry, include=["gt_workloads"], metric_prefix="reveried_"
    )
    w.dark_sleep()
    detector.stop()
    assert (
        registry.get_sample_value(
            "reveried_uninstrumented_operations_total",
            {"site": w.site("dark_sleep"), "cause": "no_span"},
        )
        == 1
    )


def dark_functions(tmp_path: Path, module: str, count: int, seconds: float) -> dict[str, Any]:
    """A generated module of ``count`` distinct dark functions ``dark_<i>``: one call site
    each, with a real file behind them."""
    source = "import time\n" + "".join(
        f"def dark_{i}():\n    time.sleep({seconds})\n" for i in range(count)
    )
    module_path = tmp_path / f"{module}.py"
    module_path.write_text(source)
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(source, str(module_path), "exec"), namespace)
    return namespace


def test_site_label_values_are_bounded(start_detector, tmp_path: Path) -> None:
    namespace = dark_functions(tmp_path, "many_sites", 30, 0.04)
    registry = CollectorRegistry()
    detector = start_detector(registry=registry, include=["many_sites"], max_sites=5)
    for i in range(30):
        namespace[f"dark_{i}"]()
    detector.stop()
    sites = {
        s.labels["site"]
        for metric in registry.collect()
        if metric.name == "uninstrumented_operations"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert len(sites) == 6 and "__other__" in sites
    assert registry.get_sample_value("spangap_sites_dropped_total") == 25
    assert sum(counts_by_site(detector).values()) == 30
    assert detector.snapshot().totals.sites_dropped == 25


def test_a_crash_inside_the_sampler_is_counted_and_logged_once(
    start_detector, recorded, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    detector = start_detector(registry=registry, include=["gt_workloads"])

    def broken(*args: object) -> None:
        raise RuntimeError("injected fault")

    detector._sampler._observe = broken  # what each tick calls to feed the tracker
    with caplog.at_level(logging.WARNING, logger="spangap"):
        results = [w.burn(40) for _ in range(20)]  # the host keeps computing
        time.sleep(0.1)
        detector.stop()
    assert results == [w.burn(40)] * 20
    assert registry.get_sample_value("spangap_internal_errors_total", {"kind": "sampler"}) >= 2
    logged = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(logged) == 1


def test_snapshot_written_at_stop_loads_back(start_detector, recorded, tmp_path: Path) -> None:
    path = tmp_path / "snap.json"
    detector = start_detector(include=["gt_workloads"], snapshot_path=str(path))
    w.dark_outer(2)
    detector.stop()
    snap = Snapshot.load(path)
    sites = {s.site: s for s in snap.sites}
    outer = sites[w.site("dark_outer")]
    assert outer.count == 1 and outer.file == w.__file__
    assert outer.line == w.dark_outer.__code__.co_firstlineno
    assert sites[w.site("dark_inner")].callers[0].name == w.site("dark_outer")
    assert sites[w.site("dark_inner")].waited_in[0].name == "time.sleep"
    assert any("dark_outer" in frame for frame in outer.example_stack)
    assert snap.totals.samples > 0


def run_python(code: str, tmp_path: Path, env: dict[str, str] | None = None):
    """Run ``code`` as a program in a fresh interpreter, at full rate
    (``FULL_RATE_ENV``) unless ``env`` sets the budget."""
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(code))
    import os

    full_env = {**os.environ, **FULL_RATE_ENV, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), *sys.path])
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=tmp_path,
    )


def test_warns_once_when_no_sdk_is_ever_configured(tmp_path: Path) -> None:
    proc = run_python(
        """
        import time, spangap
        d = spangap.enable_gap_detector()
        time.sleep(2.5)
        d.stop()
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("no OpenTelemetry SDK tracer provider is configured") == 1


def test_sdk_configured_after_enable_is_seen(tmp_path: Path) -> None:
    proc = run_python(
        """
        import json, spangap, gt_workloads as w
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        d = spangap.enable_gap_detector(include=["gt_workloads"])
        trace.set_tracer_provider(TracerProvider())
        tracer = trace.get_tracer("late")
        for _ in range(5):
            with tracer.start_as_current_span("x"):
                w.spanned_body()
            w.dark_sleep()
        d.stop()
        print(json.dumps({s: n for (s, c), n in d.operation_counts().items()}))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts.get("gt_workloads:dark_sleep") == 5
    assert "gt_workloads:spanned_body" not in counts
    assert "no OpenTelemetry SDK" not in proc.stderr


def test_final_snapshot_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.json"
    proc = run_python(
        """
        import spangap, gt_workloads as w
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        spangap.enable_gap_detector(include=["gt_workloads"])
        w.dark_sleep()
        """,
        tmp_path,
        env={"SPANGAP_SNAPSHOT_PATH": str(path)},
    )
    assert proc.returncode == 0, proc.stderr
    counts = {s.site: s.count for s in Snapshot.load(path).sites}
    assert counts == {"gt_workloads:dark_sleep": 1}


def test_bad_environment_value_fails_fast_with_one_line(tmp_path: Path) -> None:
    proc = run_python(
        """
        import spangap
        try:
            spangap.enable_gap_detector()
        except spangap.OptionError as exc:
            print(exc)
        """,
        tmp_path,
        env={"SPANGAP_THRESHOLD_MS": "soon"},
    )
    assert proc.stdout.strip() == (
        "SPANGAP_THRESHOLD_MS: expected a number between 0.1 and 3.6e+06, got 'soon'"
    )


def test_five_thousand_dark_functions_expose_at_most_51_sites(
    start_detector, tmp_path: Path
) -> None:
    """The label bound at fleet scale: max_sites=50, 5,000 distinct dark functions."""
    namespace = dark_functions(tmp_path, "five_thousand", 5000, 0.02)
    registry = CollectorRegistry()
    detector = start_detector(registry=registry, include=["five_thousand"], max_sites=50)

    def call_share(first: int) -> None:
        for i in range(first, 5000, 50):
            namespace[f"dark_{i}"]()

    import threading

    threads = [threading.Thread(target=call_share, args=(k,)) for k in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    detector.stop()
    sites = {
        s.labels["site"]
        for metric in registry.collect()
        for s in metric.samples
        if "site" in s.labels
    }
    counted_sites = {site for site, _ in detector.operation_counts()}
    assert "__other__" in sites and len(sites) <= 51
    dropped = registry.get_sample_value("spangap_sites_dropped_total")
    assert dropped is not None and dropped >= 4000  # nearly every function was seen
    assert len(counted_sites) == 51


def test_stop_never_hangs_on_a_stuck_sampler(start_detector, caplog) -> None:
    """If a tick ever got stuck holding the sampler's lock, stop() (and so the host's
    exit) must still return, after its timeout, with the problem counted and logged."""
    registry = CollectorRegistry()
    detector = start_detector(registry=registry)
    sampler = detector._sampler
    sampler._stopping = True
    sampler._thread.join()  # type: ignore[union-attr]
    sampler.hold()  # stands in for a tick that never finishes
    import threading

    with caplog.at_level(logging.ERROR, logger="spangap"):
        stopper = threading.Thread(target=sampler.stop, kwargs={"timeout": 0.2})
        stopper.start()
        stopper.join(30)  # a liveness guard, so a regression fails instead of hanging
        returned = not stopper.is_alive()
        sampler.release()
        stopper.join()
    assert returned, "stop() blocked on the stuck sampler"
    assert "did not stop" in caplog.text
    assert registry.get_sample_value("spangap_internal_errors_total", {"kind": "stop"}) == 1
