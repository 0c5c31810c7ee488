"""Dashboard skeleton: templating variables, the panel layout and the dashboard object."""

from __future__ import annotations

from dataclasses import dataclass, field

from generator.grafana import PROM, SCHEMA_VERSION, SEL, Json

# ----------------------------------------------------------------------------- variables


def datasource_var(name: str, plugin: str, label: str, *, hide: int = 0) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "current": {},
        "hide": hide,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(
    name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True,
    description: str = "",
) -> Json:
    var: Json = {
        "name": name,
        "label": label,
        "description": description,
        "type": "query",
        "datasource": PROM,
        "definition": query,
        "query": query,
        "current": {},
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
    }
    if include_all:
        var["allValue"] = ".+"
    return var


def standard_vars(*, instance_multi: bool = True) -> list[Json]:
    return [
        datasource_var("datasource", "prometheus", "Prometheus"),
        query_var("job", "Job", "label_values(vedette_build_info, job)",
                  description="Prometheus scrape job(s) of the Vedette agents"),
        query_var(
            "instance", "Instance", 'label_values(vedette_build_info{job=~"$job"}, instance)',
            multi=instance_multi, include_all=instance_multi,
            description="Agent scrape target (host:port)",
        ),
    ]


# ----------------------------------------------------------------------------- layout


@dataclass
class Layout:
    """Places panels in reading order; a row header starts a new line."""

    panels: list[Json] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _line_h: int = 0
    _next_id: int = 1
    _open_row: Json | None = None

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def row(self, title: str, *, collapsed: bool = False) -> None:
        self._newline()
        row: Json = {
            "type": "row",
            "title": title,
            "id": self._id(),
            "collapsed": collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            "panels": [],
        }
        self.panels.append(row)
        self._y += 1
        self._open_row = row if collapsed else None

    def add(self, panel: Json, w: int, h: int = 8) -> None:
        if not 0 < w <= 24:
            raise ValueError(f"panel width {w} out of 1..24")
        if self._x + w > 24:
            self._newline()
        placed = {"id": self._id(), "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y}}
        placed.update(panel)
        self._x += w
        self._line_h = max(self._line_h, h)
        if self._open_row is not None:
            self._open_row["panels"].append(placed)
        else:
            self.panels.append(placed)

    def _newline(self) -> None:
        if self._x:
            self._y += self._line_h
        self._x = 0
        self._line_h = 0


def dashboard(
    uid: str, title: str, description: str, layout: Layout, variables: list[Json], *,
    annotations: list[Json] | None = None, refresh: str = "30s", time_from: str = "now-1h",
) -> Json:
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vedette", "security"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                *(annotations or []),
            ]
        },
        "links": [
            {
                "title": "Vedette dashboards",
                "type": "dashboards",
                "tags": ["vedette"],
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables},
        "panels": layout.panels,
    }


def restart_annotation() -> Json:
    return {
        "name": "Agent restarts",
        "datasource": PROM,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        "expr": f"changes(vedette_start_time_seconds{{{SEL}}}[2m]) > 0",
        "step": "60s",
        "titleFormat": "Vedette agent restarted",
        "textFormat": "{{instance}}",
        "useValueForTime": False,
    }
