"""Small builders for Grafana dashboard JSON (schemaVersion 39, Grafana 11+).

Every data panel queries the templated Prometheus datasource ``${datasource}``; the optional
Elasticsearch panel queries ``${es_datasource}``. A :class:`Layout` places panels left to right
in rows of 24 columns (see :mod:`generator.board`), so no two panels overlap and ids are
unique by construction.

A panel whose queries may legitimately return nothing on a healthy test agent (data that only
exists with packet capture or an Elasticsearch cluster) carries ``"vedetteAllowEmpty": "<why>"``.
Grafana ignores unknown panel keys; ``tests/dashboards/test_live_prometheus.py`` reads it.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 39
PROM = {"type": "prometheus", "uid": "${datasource}"}
ES = {"type": "elasticsearch", "uid": "${es_datasource}"}
ALLOW_EMPTY = "vedetteAllowEmpty"

# The scheduler's per-job metrics name the job in a label called ``task`` (``job`` is
# Prometheus' own target label). Dashboards and rules refer to it through this name only.
TASK = "task"

# Matchers for the dashboard variables; `=~` works for single- and multi-value variables.
SEL = 'job=~"$job", instance=~"$instance"'

Json = dict[str, Any]

SEVERITY_COLORS = {
    "critical": "dark-red",
    "high": "red",
    "medium": "orange",
    "low": "yellow",
    "informational": "blue",
}


def target(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False, ref: str = "A"
) -> Json:
    return {
        "refId": ref,
        "datasource": PROM,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if table else "time_series",
    }


def or_zero(on: str = "", base: str = "vedette_build_info") -> str:
    """`` or <zero per agent>``: a flat 0 instead of "No data" for counters with lazy labels.

    Right-hand elements only fill in where the left side has no element with the same ``on``
    labels, so real series never get a duplicate zero line. A typo on the left is still caught:
    the tests check each metric name against the catalogue and the live agent's metadata.
    """
    by = f" by ({on})" if on else ""
    return f" or on ({on}) sum{by} ({base}{{{SEL}}}) * 0"


def titled(expr: str) -> str:
    """``expr`` — a vector with a ``rule`` label (a rule id) — with a ``title`` label for the
    legend, joined from ``vedette_rule_info``: one title per rule even when agents run
    different versions of it (``topk by (rule)``), and the id itself for a rule without one
    (a correlation that never alerted). ``$1`` is a regex group, which Grafana leaves alone
    (it is no variable)."""
    info = f"topk by (rule) (1, max by (rule, title) (vedette_rule_info{{{SEL}}}))"
    return (f"({expr}) * on (rule) group_left (title) {info}"
            f' or on (rule) label_replace({expr}, "title", "$1", "rule", "(.*)")')


def thresholds(*steps: tuple[float, str], base: str = "green") -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": base, "value": None}]
        + [{"color": color, "value": value} for value, color in steps],
    }


def _with_refs(targets: list[Json]) -> list[Json]:
    out = []
    for i, t in enumerate(targets):
        t = dict(t)
        t["refId"] = chr(ord("A") + i)
        out.append(t)
    return out


def _panel(
    kind: str, title: str, description: str, targets: list[Json], unit: str,
    steps: tuple[tuple[float, str], ...], base: str, options: Json, custom: Json | None = None,
    overrides: list[Json] | None = None, allow_empty: str | None = None, **extra: Any,
) -> Json:
    defaults: Json = {
        "unit": unit,
        "color": {"mode": "thresholds" if kind in ("stat", "gauge") else "palette-classic"},
        "thresholds": thresholds(*steps, base=base),
        "mappings": [],
    }
    if custom is not None:
        defaults["custom"] = custom
    defaults.update(extra.pop("defaults", {}))
    panel: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": PROM,
        "targets": _with_refs(targets),
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options,
        **extra,
    }
    if allow_empty:
        panel[ALLOW_EMPTY] = allow_empty
    return panel


def timeseries(
    title: str, description: str, targets: list[Json], unit: str = "short", *,
    steps: tuple[tuple[float, str], ...] = (), stack: bool = False, bars: bool = False,
    min0: bool = True, overrides: list[Json] | None = None, allow_empty: str | None = None,
    max1: bool = False,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else (25 if stack else 10),
        "gradientMode": "none",
        "showPoints": "never",
        "spanNulls": False,
        "axisPlacement": "auto",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line" if steps else "off"},
    }
    extra_defaults: Json = {}
    if min0:
        extra_defaults["min"] = 0
    if max1:
        extra_defaults["max"] = 1
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return _panel(
        "timeseries", title, description, targets, unit, steps, "green", options, custom,
        overrides, allow_empty, defaults=extra_defaults,
    )


def stat(
    title: str, description: str, targets: list[Json], unit: str = "short", *,
    steps: tuple[tuple[float, str], ...] = (), base: str = "green", graph: bool = False,
    allow_empty: str | None = None, mappings: list[Json] | None = None, decimals: int | None = None,
) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area" if graph else "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
    }
    defaults: Json = {"mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return _panel(
        "stat", title, description, targets, unit, steps, base, options,
        allow_empty=allow_empty, defaults=defaults,
    )


def bargauge(
    title: str, description: str, targets: list[Json], unit: str = "short", *,
    steps: tuple[tuple[float, str], ...] = (), max_value: float | None = None,
    allow_empty: str | None = None,
) -> Json:
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
    }
    defaults: Json = {"min": 0}
    if max_value is not None:
        defaults["max"] = max_value
    return _panel(
        "bargauge", title, description, targets, unit, steps, "green", options,
        allow_empty=allow_empty, defaults=defaults,
    )


def table(
    title: str, description: str, targets: list[Json], *, transformations: list[Json],
    overrides: list[Json] | None = None, unit: str = "short",
    allow_empty: str | None = None, datasource: Json | None = None,
) -> Json:
    options = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "countRows": False, "fields": ""},
    }
    panel = _panel(
        "table", title, description, targets, unit, (), "green", options,
        {"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
        overrides, allow_empty, transformations=transformations,
    )
    if datasource is not None:
        panel["datasource"] = datasource
        for t in panel["targets"]:
            t["datasource"] = datasource
    return panel


def override(field_name: str, **properties: Any) -> Json:
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def color_override(series: str, color: str) -> Json:
    return override(series, color={"mode": "fixed", "fixedColor": color})


def severity_overrides() -> list[Json]:
    return [color_override(sev, color) for sev, color in SEVERITY_COLORS.items()]


def link(title: str, uid: str, slug: str, *, instance_field: str | None = None) -> Json:
    """A data link to another Vedette dashboard, keeping time range and variables."""
    url = f"/d/{uid}/{slug}?${{__url_time_range}}&${{datasource:queryparam}}"
    if instance_field:
        url += f"&var-instance=${{__data.fields.{instance_field}}}"
    else:
        url += "&${job:queryparam}&${instance:queryparam}"
    return {"title": title, "url": url, "targetBlank": False}
