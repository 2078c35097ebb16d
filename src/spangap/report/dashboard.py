"""The Grafana dashboard for spangap's metrics, generated with grafanalib.

The dashboard is code so that its queries cannot drift from the metric names: the
expressions come from :mod:`spangap.report.promql`, which ``gapreport top --prometheus`` uses
too, and ``dashboards/spangap.json`` is this module's output (a test regenerates it and
compares). grafanalib builds the panels; :func:`_to_model` then writes them in the
dashboard JSON model of :data:`SCHEMA_VERSION`, because grafanalib still emits the
pre-v8 model (schemaVersion 12, ``rows``, table ``displayMode``) that current Grafana
only reaches through a long chain of migrations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafanalib import core as G  # type: ignore[import-untyped]
from grafanalib._gen import DashboardEncoder  # type: ignore[import-untyped]

from .promql import P95, MetricNames, Queries

#: The dashboard JSON model written (see the README's "Grafana dashboard" section).
SCHEMA_VERSION = 39
UID = "spangap"
DEFAULT_TITLE = "spangap: work outside spans"
#: Sites drawn one by one in the operations panel; the rest are summed into one line.
TOP_SITES = 10
#: Every query is filtered by the dashboard's two label variables.
MATCHERS = 'job=~"$job", instance=~"$instance"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
RANGE = "$__range"

# Column titles of the ranking table, in the order of its queries (refId A, B, ...).
TABLE_COLUMNS = ("dark s", "count", "self s", "p95")


@dataclass(frozen=True)
class PromTarget:
    """A Prometheus query in the model Grafana's Prometheus data source saves today.

    grafanalib's ``Target`` also writes Graphite-era keys (``step``, ``intervalFactor``)
    that would halve the resolution of every panel.
    """

    ref_id: str
    expr: str
    legend: str = ""
    table: bool = False  # an instant query read as a table, one row per series

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "format": "table" if self.table else "time_series",
            "instant": self.table,
            "range": not self.table,
            "refId": self.ref_id,
        }
        if self.legend:
            data["legendFormat"] = self.legend
        return data


def build_dashboard(
    title: str = DEFAULT_TITLE, datasource: str | None = None, prefix: str = ""
) -> Any:
    """The dashboard as a grafanalib ``Dashboard``.

    ``datasource`` (a data source name or uid) becomes the data source variable's default;
    without it Grafana picks the default Prometheus data source. ``prefix`` is the
    detector's ``metric_prefix``.
    """
    queries = Queries(MetricNames(prefix), MATCHERS)
    return G.Dashboard(
        title=title,
        uid=UID,
        description="Work that ran outside every OpenTelemetry span, by call site (spangap).",
        tags=["spangap", "opentelemetry"],
        timezone="browser",
        time=G.Time("now-1h", "now"),
        refresh="30s",
        graphTooltip=G.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=G.Templating(list=_variables(MetricNames(prefix), datasource)),
        panels=[
            _ranking_table(queries),
            _operations_panel(queries),
            _dark_by_cause_panel(queries),
            _coverage_panel(queries),
            _sampler_cpu_panel(queries),
        ],
    ).auto_panel_ids()


def dashboard_json(
    title: str = DEFAULT_TITLE, datasource: str | None = None, prefix: str = ""
) -> str:
    """The dashboard as stable JSON text: sorted keys, two-space indent, final newline."""
    dashboard = build_dashboard(title=title, datasource=datasource, prefix=prefix)
    generated = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    return json.dumps(_to_model(generated, datasource), indent=2, sort_keys=True) + "\n"


# --- variables ---------------------------------------------------------------------------


def _variables(names: MetricNames, datasource: str | None) -> list[Any]:
    # Every detector exports the samples counter, so it lists every job and instance.
    return [
        G.Template(
            name="datasource",
            label="Data source",
            type="datasource",
            query="prometheus",
            default=datasource,
        ),
        _label_variable("job", f"label_values({names.samples}, job)"),
        _label_variable("instance", f'label_values({names.samples}{{job=~"$job"}}, instance)'),
    ]


def _label_variable(name: str, query: str) -> Any:
    # allValue ".*" rather than a list of the values seen: "All" then also covers an
    # instance that appeared after the variable was last refreshed.
    return G.Template(
        name=name,
        label=name,
        query=query,
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        allValue=".*",
        refresh=G.REFRESH_ON_TIME_RANGE_CHANGE,
        sort=G.SORT_ALPHA_ASC,
    )


# --- panels ------------------------------------------------------------------------------


def _ranking_table(queries: Queries) -> Any:
    targets = [
        PromTarget("A", queries.dark_seconds_by_site(RANGE), table=True),
        PromTarget("B", queries.operations_by_site(RANGE), table=True),
        PromTarget("C", queries.self_seconds_by_site(RANGE), table=True),
        PromTarget("D", queries.quantile_by_site(P95, RANGE), table=True),
    ]
    values = {
        f"Value #{t.ref_id}": column for t, column in zip(targets, TABLE_COLUMNS, strict=True)
    }
    order = ["site", "cause", *values]
    return G.Table(
        title="Where the dark time goes: sites by dark seconds over the time range",
        description=(
            "Each site (module:qualname) and cause over the dashboard's time range, summed "
            "over the selected instances. dark s: seconds of its uninstrumented calls, nested "
            "dark calls included; self s: without them; p95: of one call's duration. "
            "no_span: nothing upstream had a span; context_lost: a span existed where the "
            "work was handed to a thread, executor or task, and did not travel with it."
        ),
        dataSource=DATASOURCE,
        targets=targets,
        gridPos=G.GridPos(h=10, w=24, x=0, y=0),
        maxDataPoints=None,
        sortBy=[G.TableSortByField(displayName=TABLE_COLUMNS[0], desc=True)],
        overrides=[
            _unit_override("dark s", "s", 2),
            _unit_override("self s", "s", 2),
            _unit_override("p95", "s", 3),
            _unit_override("count", "short", 0),
        ],
        transformations=[
            # One row per (site, cause) out of the four queries' tables.
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {column: index for index, column in enumerate(order)},
                    "renameByName": values,
                },
            },
        ],
    )


def _unit_override(column: str, unit: str, decimals: int) -> dict[str, Any]:
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "unit", "value": unit}, {"id": "decimals", "value": decimals}],
    }


def _time_series(title: str, description: str, targets: list[PromTarget], **options: Any) -> Any:
    return G.TimeSeries(
        title=title,
        description=description,
        dataSource=DATASOURCE,
        targets=targets,
        maxDataPoints=None,
        **options,
    )


def _operations_panel(queries: Queries) -> Any:
    return _time_series(
        f"Uninstrumented operations per second: top {TOP_SITES} sites",
        f"The {TOP_SITES} sites with the most uninstrumented operations per second at each "
        "moment; 'all other sites' is the total minus those.",
        [
            PromTarget("A", queries.top_sites_rate(TOP_SITES, RATE), legend="{{site}}"),
            PromTarget("B", queries.other_sites_rate(TOP_SITES, RATE), legend="all other sites"),
        ],
        gridPos=G.GridPos(h=9, w=12, x=0, y=10),
        unit="ops",
        fillOpacity=10,
    )


def _dark_by_cause_panel(queries: Queries) -> Any:
    return _time_series(
        "Dark seconds per second, by cause",
        "Self seconds of uninstrumented operations per second of wall time (2 = two threads "
        "busy outside any span), so nested operations are not counted twice.",
        [PromTarget("A", queries.dark_rate_by_cause(RATE), legend="{{cause}}")],
        gridPos=G.GridPos(h=9, w=12, x=12, y=10),
        unit="short",
        axisLabel="dark s / s",
        fillOpacity=30,
        stacking={"mode": "normal", "group": "A"},
    )


def _coverage_panel(queries: Queries) -> Any:
    return _time_series(
        "Span coverage",
        "Of the sampled, non-idle time in application code, the share that ran under an "
        "active span; summed over the selected instances before dividing.",
        [PromTarget("A", queries.coverage(RATE), legend="coverage")],
        gridPos=G.GridPos(h=8, w=12, x=0, y=19),
        unit="percentunit",
        valueMin=0,
        valueMax=1,
    )


def _sampler_cpu_panel(queries: Queries) -> Any:
    return _time_series(
        "spangap's own CPU, per instance",
        "CPU seconds per second used by each detector's sampler thread (0.01 = 1% of a core).",
        [PromTarget("A", queries.sampler_cpu_by_instance(RATE), legend="{{instance}}")],
        gridPos=G.GridPos(h=8, w=12, x=12, y=19),
        unit="percentunit",
    )


# --- grafanalib's output, in the dashboard model of SCHEMA_VERSION -----------------------

# Dashboard keys of the pre-v8 model, unknown to the current one.
_OBSOLETE_DASHBOARD_KEYS = ("__inputs", "hideControls", "rows", "sharedCrosshair", "style")
# The keys a panel has in the current model; grafanalib adds pre-v8 ones (span, height,
# error, a table's top-level color and mappings) that Grafana ignores.
PANEL_KEYS = frozenset(
    {
        "datasource",
        "description",
        "fieldConfig",
        "gridPos",
        "hideTimeOverride",
        "id",
        "interval",
        "links",
        "maxDataPoints",
        "options",
        "targets",
        "timeFrom",
        "timeShift",
        "title",
        "transformations",
        "transparent",
        "type",
    }
)
# Variable keys that only interval variables or the tag feature removed in Grafana 7 use.
_OBSOLETE_VARIABLE_KEYS = (
    "auto",
    "auto_count",
    "auto_min",
    "tagValuesQuery",
    "tagsQuery",
    "useTags",
)


def _to_model(generated: dict[str, Any], datasource: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = _without_nulls(generated)
    for key in _OBSOLETE_DASHBOARD_KEYS:
        doc.pop(key, None)
    doc["schemaVersion"] = SCHEMA_VERSION
    doc["timepicker"].pop("time_options", None)  # dropped by the v41 migration
    doc["panels"] = [_panel_model(panel) for panel in doc["panels"]]
    doc["templating"]["list"] = [_variable_model(v, datasource) for v in doc["templating"]["list"]]
    return doc


def _without_nulls(value: Any) -> Any:
    """grafanalib writes every unset option as null; the model leaves them out."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _panel_model(panel: dict[str, Any]) -> dict[str, Any]:
    model = {key: value for key, value in panel.items() if key in PANEL_KEYS}
    custom = model["fieldConfig"]["defaults"].setdefault("custom", {})
    if model["type"] == "table":
        # schemaVersion 38 replaced a table's displayMode with cellOptions.
        custom.pop("displayMode", None)
        custom["cellOptions"] = {"type": "auto"}
    legend = model.get("options", {}).get("legend")
    if legend is not None:
        legend["showLegend"] = True  # schemaVersion 37 made this explicit
    return model


def _variable_model(variable: dict[str, Any], datasource: str | None) -> dict[str, Any]:
    model = {k: v for k, v in variable.items() if k not in _OBSOLETE_VARIABLE_KEYS}
    if model["type"] == "datasource":
        if datasource:
            model["current"] = {"selected": True, "text": datasource, "value": datasource}
        else:
            model.pop("current", None)  # Grafana then picks the default data source
        model.pop("allValue", None)
    else:
        model["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    model.setdefault("options", [])
    return model
