"""Every PromQL expression of the dashboard, run on a real Prometheus over real detectors.

Grafana's variables are substituted as Grafana would: ``$job``/``$instance`` by ``.*`` (the
"All" value) or by one job or instance, ``$__rate_interval`` by 5s and ``$__range`` by 60s
(longer than the fleet has lived, so the range covers all of it). Each panel must show the
series it is meant to show: the sites the two processes report on their own ``/metrics``,
with values summed across both instances.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prometheus_server import JOB, Fleet, Vector, fleet, require_prometheus  # noqa: F401
from spangap.metrics import DURATION_BUCKETS
from spangap.report.dashboard import dashboard_json
from spangap.report.promql import MetricNames, Queries
from spangap.report.top import bucket_quantile

RATE, RANGE = "5s", "60s"
# Differences between an increase() over scrapes and a direct read a moment later:
# the first scrape of a series misses up to a second of it, and the counters keep going.
TOLERANCE = 0.1


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(dashboard_json())
    return document


def panel(title_start: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        p for p in dashboard()["panels"] if p["title"].startswith(title_start)
    )
    return found


def expr_of(title_start: str, ref_id: str) -> str:
    target = next(t for t in panel(title_start)["targets"] if t["refId"] == ref_id)
    expr: str = target["expr"]
    return expr


def substitute(expr: str, job: str = ".*", instance: str = ".*") -> str:
    text = (
        expr.replace("$__rate_interval", RATE)
        .replace("$__range", RANGE)
        .replace("$__interval", "1s")
        .replace("$job", job)
        .replace("$instance", instance)
    )
    assert "$" not in text, text
    return text


def grafana_regex(value: str) -> str:
    """One selected value as Grafana writes it into a regex matcher: regex-escaped, with
    the backslashes doubled for the PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


def keyed(vector: Vector, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(m.get(label, "") for label in labels): v for m, v in vector}


def direct(fleet: Fleet) -> dict[str, dict[tuple[str, ...], float]]:  # noqa: F811
    """Both processes' /metrics read directly, summed: sample name -> labels -> value."""
    summed: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))
    for detector in fleet.detectors:
        for family in text_string_to_metric_families(detector.scrape()):
            for s in family.samples:
                key = (s.labels.get("site", ""), s.labels.get("cause", ""), s.labels.get("le", ""))
                summed[s.name][key] += s.value
    return summed


def per_site(values: dict[tuple[str, ...], float]) -> dict[tuple[str, str], float]:
    return {(site, cause): v for (site, cause, _le), v in values.items()}


def shares(values: dict[Any, float]) -> dict[Any, float]:
    total = sum(values.values())
    return {k: v / total for k, v in values.items()}


def bucket_of(seconds: float) -> float:
    """The upper bound of the duration bucket that holds ``seconds``."""
    return next(le for le in (*DURATION_BUCKETS, math.inf) if seconds <= le)


def assert_sum_over_instances(fleet: Fleet, expr: str, *labels: str) -> None:  # noqa: F811
    """The all-instances value of each series is the sum of the two instances' values."""
    at = time.time() - 2  # every scrape stamped before this has been stored
    whole = keyed(fleet.prometheus.query(substitute(expr), at), *labels)
    parts: dict[tuple[str, ...], float] = defaultdict(float)
    for detector in fleet.detectors:
        one = substitute(expr, job=JOB, instance=grafana_regex(detector.target))
        for key, value in keyed(fleet.prometheus.query(one, at), *labels).items():
            parts[key] += value
    assert whole.keys() == parts.keys()
    for key, value in whole.items():
        assert value == pytest.approx(parts[key], rel=1e-9, abs=1e-12), key


def test_every_expression_runs_and_the_job_filter_selects_the_same(fleet: Fleet) -> None:  # noqa: F811
    at = time.time() - 2
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    assert len(exprs) == 9
    for expr in exprs:
        everything = fleet.prometheus.query(substitute(expr), at)
        assert everything, expr
        by_job = fleet.prometheus.query(substitute(expr, job=JOB), at)
        assert sorted(map(repr, by_job)) == sorted(map(repr, everything)), expr
        assert fleet.prometheus.query(substitute(expr, job="no-such-job"), at) == []


def test_template_variables_list_the_job_and_both_instances(fleet: Fleet) -> None:  # noqa: F811
    variables = {v["name"]: v["query"] for v in dashboard()["templating"]["list"][1:]}
    # label_values(metric{matchers}, label) is Grafana's call of the label values API.
    found = {}
    for name, query in variables.items():
        call = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
        assert call, query
        found[name] = fleet.prometheus.label_values(call[2], substitute(call[1]))
    assert found == {"job": [JOB], "instance": sorted(d.target for d in fleet.detectors)}


def test_ranking_table_sums_both_processes(fleet: Fleet) -> None:  # noqa: F811
    names = MetricNames()
    queries = {ref: substitute(expr_of("Where the dark time goes", ref)) for ref in "ABCD"}
    results = {ref: keyed(fleet.prometheus.query(q), "site", "cause") for ref, q in queries.items()}
    metrics = direct(fleet)
    expected = {
        "A": per_site(metrics[names.seconds]),
        "B": per_site(metrics[names.operations]),
        "C": per_site(metrics[names.self_seconds]),
    }
    sites = {site for site, _cause in expected["A"]}
    assert sites == fleet.sites
    for ref in "ABCD":
        assert results[ref].keys() == expected["A"].keys(), ref
    for ref in "ABC":
        for key, value in results[ref].items():
            assert value == pytest.approx(expected[ref][key], rel=TOLERANCE), (ref, key)
    # p95: in the same bucket as the quantile of the summed buckets read directly.
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for (site, cause, le), count in metrics[names.duration_bucket].items():
        buckets[(site, cause)].append((float(le), count))
    for key, p95 in results["D"].items():
        expected_p95 = bucket_quantile(0.95, buckets[key])
        assert bucket_of(p95) == bucket_of(expected_p95), (key, p95, expected_p95)
    for ref in "ABC":
        assert_sum_over_instances(fleet, expr_of("Where the dark time goes", ref), "site", "cause")


def test_operations_per_second_shows_every_site_and_nothing_else(fleet: Fleet) -> None:  # noqa: F811
    top = keyed(
        fleet.prometheus.query(substitute(expr_of("Uninstrumented operations", "A"))), "site"
    )
    other = fleet.prometheus.query(substitute(expr_of("Uninstrumented operations", "B")))
    assert {site for (site,) in top} == fleet.sites
    assert all(value > 0 for value in top.values())
    # Four sites fit in the top ten: "all other sites" is one series, at zero.
    assert len(other) == 1 and other[0][1] == pytest.approx(0, abs=1e-9)
    counts: dict[str, float] = defaultdict(float)
    for (site, _cause), value in per_site(direct(fleet)[MetricNames().operations]).items():
        counts[site] += value
    expected = shares(counts)
    for (site,), share in shares(top).items():
        assert share == pytest.approx(expected[site], abs=0.1), site
    assert_sum_over_instances(fleet, expr_of("Uninstrumented operations", "A"), "site")


def test_other_sites_is_the_total_minus_the_top(fleet: Fleet) -> None:  # noqa: F811
    """With a top 2 of four sites, "other" holds exactly the two sites left out."""
    queries = Queries(MetricNames(), f'job="{JOB}"')
    at = time.time() - 2
    rates = sorted(
        (v for _, v in fleet.prometheus.query(queries.operations_rate_by_site(RATE), at)),
        reverse=True,
    )
    assert len(rates) == 4
    top = fleet.prometheus.query(queries.top_sites_rate(2, RATE), at)
    assert sorted((v for _, v in top), reverse=True) == pytest.approx(rates[:2])
    other = fleet.prometheus.query(queries.other_sites_rate(2, RATE), at)
    assert len(other) == 1 and other[0][1] == pytest.approx(sum(rates[2:]), rel=1e-9)


def test_dark_seconds_by_cause(fleet: Fleet) -> None:  # noqa: F811
    expr = expr_of("Dark seconds per second", "A")
    by_cause = keyed(fleet.prometheus.query(substitute(expr)), "cause")
    direct_by_cause: dict[tuple[str], float] = defaultdict(float)
    for (_site, cause), value in per_site(direct(fleet)[MetricNames().self_seconds]).items():
        direct_by_cause[(cause,)] += value
    assert by_cause.keys() == direct_by_cause.keys()
    assert all(value > 0 for value in by_cause.values())
    expected = shares(direct_by_cause)
    for cause, share in shares(by_cause).items():
        assert share == pytest.approx(expected[cause], abs=0.1), cause
    assert_sum_over_instances(fleet, expr, "cause")


def test_span_coverage_is_the_ratio_of_the_fleet_sums(fleet: Fleet) -> None:  # noqa: F811
    names = MetricNames()
    at = time.time() - 2
    expr = substitute(expr_of("Span coverage", "A"))
    [(labels, coverage)] = fleet.prometheus.query(expr, at)
    assert labels == {} and 0 < coverage < 1
    spanned = sampled = 0.0
    for detector in fleet.detectors:
        instance = f'instance="{detector.target}"'
        spanned += fleet.prometheus.query(f"rate({names.spanned_seconds}{{{instance}}}[5s])", at)[
            0
        ][1]
        sampled += fleet.prometheus.query(f"rate({names.sampled_seconds}{{{instance}}}[5s])", at)[
            0
        ][1]
    assert coverage == pytest.approx(spanned / sampled, rel=1e-9)
    metrics = direct(fleet)
    lifetime = (
        metrics[names.spanned_seconds][("", "", "")] / metrics[names.sampled_seconds][("", "", "")]
    )
    assert coverage == pytest.approx(lifetime, abs=0.1)


def test_sampler_cpu_has_one_series_per_instance(fleet: Fleet) -> None:  # noqa: F811
    cpu = keyed(fleet.prometheus.query(substitute(expr_of("spangap's own CPU", "A"))), "instance")
    assert set(cpu) == {(d.target,) for d in fleet.detectors}
    assert all(0 < value < 0.5 and math.isfinite(value) for value in cpu.values())


def test_the_example_prometheus_config_is_valid() -> None:
    binary = require_prometheus()
    promtool = Path(binary).with_name("promtool")
    config = Path(__file__).resolve().parents[1] / "examples" / "observability" / "prometheus.yml"
    checked = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "127.0.0.1:9464" in config.read_text()
