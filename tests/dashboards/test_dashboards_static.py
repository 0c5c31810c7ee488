"""Static checks of the Grafana dashboards: structure, layout, datasources, names, labels."""

from __future__ import annotations

import copy
import re
from typing import Any

import build  # dashboards/build.py; conftest puts dashboards/ on sys.path
import pytest
import yaml
from generator.grafana import ALLOW_EMPTY, SCHEMA_VERSION
from generator.promql import Usage, legend_labels, usage, variable_usage

from .helpers import BOUNDED_LABELS, GRAFANA, REPO, iter_panels

DOC = REPO / "docs" / "dashboards.md"
PROVISIONING = REPO / "dashboards" / "provisioning"
NAMES = sorted(build.BUILDERS)

# Grafana unit ids used here (packages/grafana-data/src/valueFormats/categories.ts) and the
# custom-unit prefixes getValueFormat() understands.
UNITS = {"short", "none", "percentunit", "percent", "bytes", "decbytes", "Bps", "binBps", "pps",
         "bps", "s", "ms", "dtdurations", "dateTimeFromNow", "ops", "cps", "reqps", "iops",
         "locale"}
UNIT_PREFIXES = ("count:", "suffix:", "prefix:", "si:", "bool:")
MAX_ALLOW_EMPTY = 6


def data_panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dash["panels"]) if p["type"] != "row"]


def panel_usage(panel: dict[str, Any]) -> Usage:
    total = Usage()
    for t in panel.get("targets", []):
        if "expr" in t:
            u = usage(t["expr"])
            total.metrics |= u.metrics
            total.labels |= u.labels | legend_labels(t.get("legendFormat", ""))
    return total


def test_committed_json_is_what_the_generator_builds() -> None:
    generated = build.generate()
    committed = {p.name: p.read_text() for p in GRAFANA.glob("*.json")}
    assert committed == generated, "run: python dashboards/build.py"


def test_check_mode_reports_stale_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(build, "OUT", tmp_path)
    assert build.main(["--check"]) == 1
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    (tmp_path / NAMES[0]).write_text("{}")
    assert build.main(["--check"]) == 1


def test_the_four_dashboards_exist_with_unique_uids(dashboards) -> None:
    assert set(dashboards) == set(NAMES)
    assert len(NAMES) == 4
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_header(dashboards, name: str) -> None:
    dash = dashboards[name]
    assert dash["schemaVersion"] >= SCHEMA_VERSION >= 39
    assert dash["id"] is None, "an id makes an import overwrite a random dashboard"
    assert dash["title"].startswith("Vedette / ")
    assert "vedette" in dash["tags"]
    assert dash["description"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    tag_links = [lnk for lnk in dash["links"] if lnk["type"] == "dashboards"]
    assert tag_links and tag_links[0]["tags"] == ["vedette"] and tag_links[0]["includeVars"]


@pytest.mark.parametrize("name", NAMES)
def test_panel_ids_unique_and_layout_without_overlap(dashboards, name: str) -> None:
    dash = dashboards[name]
    ids = [p["id"] for p in iter_panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    # Top-level panels share one grid; the panels of a collapsed row share another.
    groups = [dash["panels"]] + [p["panels"] for p in dash["panels"] if p.get("panels")]
    for group in groups:
        taken: dict[tuple[int, int], int] = {}
        for panel in group:
            g = panel["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
            assert g["x"] + g["w"] <= 24, f"panel {panel['title']!r} wider than the grid"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    other = taken.setdefault((x, y), panel["id"])
                    assert other == panel["id"], f"panels {other} and {panel['id']} overlap"


@pytest.mark.parametrize("name", NAMES)
def test_every_line_of_panels_spans_the_full_width(dashboards, name: str) -> None:
    """No ragged half-empty lines: panels that start on one line fill its 24 columns."""
    lines: dict[int, int] = {}
    for panel in iter_panels(dashboards[name]["panels"]):
        g = panel["gridPos"]
        lines[g["y"]] = lines.get(g["y"], 0) + g["w"]
    ragged = {y: w for y, w in lines.items() if w != 24}
    assert not ragged, f"lines (y: used width) not filling the grid: {ragged}"


def _is_variable_ref(uid: str, variables: dict[str, Any], plugin: str) -> bool:
    m = re.fullmatch(r"\$\{(\w+)\}", uid)
    if m is None or m.group(1) not in variables:
        return False
    var = variables[m.group(1)]
    return bool(var["type"] == "datasource" and var["query"] == plugin)


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_description_and_templated_datasource(dashboards, name: str) -> None:
    dash = dashboards[name]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for panel in data_panels(dash):
        title = panel["title"]
        assert panel.get("description", "").strip(), f"{title}: no description"
        ds = panel["datasource"]
        assert _is_variable_ref(ds["uid"], variables, ds["type"]), f"{title}: datasource {ds}"
        assert panel["targets"], f"{title}: no query"
        for t in panel["targets"]:
            assert t["datasource"] == ds, f"{title}: target datasource differs from the panel's"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"
    for ann in dash["annotations"]["list"]:
        if not ann.get("builtIn"):
            assert ann["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("name", NAMES)
def test_units_and_thresholds(dashboards, name: str) -> None:
    for panel in data_panels(dashboards[name]):
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults["unit"]
        assert unit in UNITS or unit.startswith(UNIT_PREFIXES), f"{panel['title']}: unit {unit}"
        steps = defaults["thresholds"]["steps"]
        assert steps[0]["value"] is None
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), f"{panel['title']}: thresholds not ascending"


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_exists_in_the_catalogue(dashboards, allowed_metrics, name: str) -> None:
    used = metrics_used(dashboards[name])
    assert used, "no metric found at all: the parser is broken"
    unknown = {m: sorted(where) for m, where in used.items() if m not in allowed_metrics}
    assert not unknown, f"metrics not in agent.metrics.catalog(): {unknown}"


def test_a_typo_in_a_new_panel_is_caught(dashboards, allowed_metrics) -> None:
    dash = copy.deepcopy(dashboards["vedette-fleet.json"])
    typo = copy.deepcopy(data_panels(dash)[0])
    typo["targets"][0]["expr"] = 'sum(rate(vedette_alert_total{job=~"$job"}[5m])) or vector(0)'
    dash["panels"].append(typo)
    unknown = set(metrics_used(dash)) - allowed_metrics
    assert unknown == {"vedette_alert_total"}


def metrics_used(dash: dict[str, Any]) -> dict[str, set[str]]:
    """Metric name → where it is used (panel, variable, annotation) in one dashboard."""
    used: dict[str, set[str]] = {}
    for panel in data_panels(dash):
        for metric in panel_usage(panel).metrics:
            used.setdefault(metric, set()).add(panel["title"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            for metric in variable_usage(var["query"]).metrics:
                used.setdefault(metric, set()).add(f"variable {var['name']}")
    for ann in dash["annotations"]["list"]:
        for metric in usage(ann.get("expr", "")).metrics:
            used.setdefault(metric, set()).add(f"annotation {ann['name']}")
    return used


@pytest.mark.parametrize("name", NAMES)
def test_only_bounded_labels(dashboards, name: str) -> None:
    dash = dashboards[name]
    for panel in data_panels(dash):
        labels = panel_usage(panel).labels
        assert labels <= BOUNDED_LABELS, f"{panel['title']}: {labels - BOUNDED_LABELS}"
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert variable_usage(var["query"]).labels <= BOUNDED_LABELS


def test_data_links_point_at_existing_dashboards(dashboards) -> None:
    uids = {d["uid"] for d in dashboards.values()}
    found = 0
    for dash in dashboards.values():
        for panel in data_panels(dash):
            for ov in panel["fieldConfig"]["overrides"]:
                for prop in ov["properties"]:
                    if prop["id"] == "links":
                        for lnk in prop["value"]:
                            m = re.match(r"/d/([\w-]+)/", lnk["url"])
                            assert m and m.group(1) in uids, lnk["url"]
                            found += 1
    assert found


def test_allow_empty_panels_are_few_justified_and_documented(dashboards) -> None:
    doc = DOC.read_text()
    flagged = [
        (dash["title"], p["title"], p[ALLOW_EMPTY])
        for dash in dashboards.values() for p in data_panels(dash) if ALLOW_EMPTY in p
    ]
    assert len(flagged) <= MAX_ALLOW_EMPTY, flagged
    for _, title, reason in flagged:
        assert isinstance(reason, str) and len(reason) > 10
        assert title in doc, f"{title!r} allows empty results but docs/dashboards.md omits it"


def test_docs_describe_every_dashboard_and_panel(dashboards) -> None:
    doc = DOC.read_text()
    for dash in dashboards.values():
        assert dash["title"] in doc
        for panel in data_panels(dash):
            assert panel["title"] in doc, f"docs/dashboards.md lacks panel {panel['title']!r}"


def test_provisioning_files() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "vedette.yml").read_text())
    assert provider["apiVersion"] == 1
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/")
    sources = yaml.safe_load((PROVISIONING / "datasources" / "vedette.yml").read_text())
    kinds = {d["type"]: d for d in sources["datasources"]}
    assert set(kinds) == {"prometheus", "elasticsearch"}
    assert kinds["elasticsearch"]["jsonData"]["index"] == "logs-vedette.alerts-*"
