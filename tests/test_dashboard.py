"""The Grafana dashboard: committed file up to date, and shaped as Grafana's model says.

Grafana cannot run here, so the structure is checked against the dashboard JSON model of
schemaVersion 39 (Grafana's documented model and the types it publishes in
``@grafana/schema``; see the README's "Grafana dashboard"), and against the migrations a
newer Grafana would run on it (40-43), which must find nothing to change.
The queries themselves are proven on a real Prometheus in ``test_prometheus.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from grafanalib import core as G

from spangap import cli
from spangap.report.dashboard import (
    DATASOURCE,
    PANEL_KEYS,
    SCHEMA_VERSION,
    build_dashboard,
    dashboard_json,
)

COMMITTED = Path(__file__).resolve().parents[1] / "dashboards" / "spangap.json"
METRIC_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")
METRICS = (
    "uninstrumented_operations_total",
    "uninstrumented_operation_seconds_total",
    "uninstrumented_operation_self_seconds_total",
    "uninstrumented_operation_duration_seconds_bucket",
    "span_coverage_spanned_seconds_total",
    "span_coverage_sampled_seconds_total",
    "spangap_sampler_cpu_seconds_total",
)


def model(**options: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(dashboard_json(**options))
    return document


def targets(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for panel in document["panels"] for t in panel["targets"]]


def test_committed_dashboard_is_what_the_code_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == dashboard_json(), (
        "dashboards/spangap.json is stale; regenerate it with: "
        "gapreport dashboard -o dashboards/spangap.json"
    )


def test_json_is_stable_sorted_and_ends_with_a_newline() -> None:
    text = dashboard_json()
    assert text == dashboard_json()
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_built_with_grafanalib() -> None:
    dashboard = build_dashboard()
    assert isinstance(dashboard, G.Dashboard)
    assert [p.title for p in dashboard.panels] == [p["title"] for p in model()["panels"]]


def test_dashboard_fields_of_the_model() -> None:
    doc = model()
    assert doc["schemaVersion"] == SCHEMA_VERSION == 39
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", doc["uid"])
    assert doc["title"] and isinstance(doc["editable"], bool)
    assert doc["time"] == {"from": "now-1h", "to": "now"}
    assert doc["graphTooltip"] in (0, 1, 2)
    assert isinstance(doc["tags"], list) and all(isinstance(t, str) for t in doc["tags"])
    # Keys of the pre-v8 model that grafanalib writes by default must not survive.
    assert not {"rows", "__inputs", "hideControls", "sharedCrosshair", "style"} & set(doc)
    assert "null" not in json.dumps(doc)


def test_panels_are_on_the_grid_without_overlapping() -> None:
    panels = model()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert set(panel) <= PANEL_KEYS, set(panel) - PANEL_KEYS
        assert panel["type"] in ("timeseries", "table")
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in "hwxy")
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24
        area = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not area & cells, panel["title"]
        cells |= area


def test_every_query_uses_the_datasource_variable_and_filters_job_and_instance() -> None:
    doc = model()
    for panel in doc["panels"]:
        assert panel["datasource"] == DATASOURCE
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(set(ref_ids)) == len(ref_ids)
    for target in targets(doc):
        assert target["datasource"] == DATASOURCE
        expr = target["expr"]
        selectors = METRIC_SELECTOR.findall(expr)
        assert selectors, expr
        for _metric, matchers in selectors:
            assert matchers == 'job=~"$job", instance=~"$instance"', expr
        # No metric is read without the filter.
        for metric in METRICS:
            assert expr.count(metric) == expr.count(metric + "{"), expr


def test_ranking_table_reads_instant_tables_over_the_range() -> None:
    table = next(p for p in model()["panels"] if p["type"] == "table")
    assert all(t["instant"] and t["format"] == "table" for t in table["targets"])
    assert all("[$__range]" in t["expr"] for t in table["targets"])
    p95 = table["targets"][3]["expr"]
    assert p95.startswith("histogram_quantile(0.95, sum by (site, cause, le) (increase(")
    organize = table["transformations"][1]["options"]["renameByName"]
    assert organize == {
        "Value #A": "dark s",
        "Value #B": "count",
        "Value #C": "self s",
        "Value #D": "p95",
    }
    assert table["options"]["sortBy"] == [{"desc": True, "displayName": "dark s"}]
    # schemaVersion 38 moved a table's display mode into cellOptions.
    assert table["fieldConfig"]["defaults"]["custom"]["cellOptions"] == {"type": "auto"}
    assert "displayMode" not in table["fieldConfig"]["defaults"]["custom"]


def test_time_series_panels_use_the_rate_interval() -> None:
    for panel in model()["panels"]:
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"] is True  # schemaVersion 37
            for target in panel["targets"]:
                assert "[$__rate_interval]" in target["expr"]
                assert target["range"] and not target["instant"]


def test_template_variables() -> None:
    variables = {v["name"]: v for v in model()["templating"]["list"]}
    assert list(variables) == ["datasource", "job", "instance"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
        assert variable["query"].startswith("label_values(spangap_samples_total")
        assert variable["query"].endswith(f", {name})")
        assert variable["current"]["value"] == ["$__all"]


def test_migrations_after_39_would_change_nothing() -> None:
    """What Grafana's migrations 40-43 rewrite is already in the form they produce."""
    doc = model()
    assert isinstance(doc["refresh"], str)  # 40: refresh normalised to a string
    assert "time_options" not in doc["timepicker"]  # 41: time_options dropped
    for panel in doc["panels"]:
        for override in panel["fieldConfig"]["overrides"]:  # 42: hideFrom.viz overrides
            assert all(p["id"] != "custom.hideFrom" for p in override["properties"])
        # 43: formatTime transformations become convertFieldType
        assert all(t["id"] != "formatTime" for t in panel["transformations"])


def test_options_reach_the_json() -> None:
    doc = model(title="Shop gaps", datasource="prom-eu", prefix="shop_")
    assert doc["title"] == "Shop gaps"
    datasource = doc["templating"]["list"][0]
    assert datasource["current"] == {"selected": True, "text": "prom-eu", "value": "prom-eu"}
    for target in targets(doc):
        for metric, _ in METRIC_SELECTOR.findall(target["expr"]):
            assert metric.startswith("shop_"), target["expr"]
    assert "shop_spangap_samples_total" in doc["templating"]["list"][1]["query"]
    assert "current" not in model()["templating"]["list"][0]


def test_cli_writes_the_dashboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dashboard"]) == 0
    assert capsys.readouterr().out == dashboard_json()
    out = tmp_path / "d.json"
    argv = ["dashboard", "-o", str(out), "--datasource", "P1", "--title", "T", "--prefix", "x_"]
    assert cli.main(argv) == 0
    assert out.read_text() == dashboard_json(title="T", datasource="P1", prefix="x_")


def test_cli_reports_an_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dashboard", "-o", str(tmp_path / "missing" / "d.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gapreport: ") and err.count("\n") == 1
