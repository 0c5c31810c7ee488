"""Shared names for the dashboard tests: paths, allowed metric names, bounded labels."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from agent.metrics import catalog

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
GRAFANA = DASHBOARDS / "grafana"
RULES = DASHBOARDS / "prometheus" / "vedette-alerts.yml"
RULE_TESTS = DASHBOARDS / "prometheus" / "vedette-alerts.test.yml"

if str(DASHBOARDS) not in sys.path:
    sys.path.insert(0, str(DASHBOARDS))

# Series Prometheus itself attaches to every scrape target.
PROMETHEUS_SYNTHETIC = frozenset({
    "up", "scrape_duration_seconds", "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling", "scrape_series_added",
})

# Every label a panel or rule may group, filter or label by. Each has a small, fixed set of
# values (names chosen by the agent's code or configuration, not by traffic). Adding one here
# is a review decision: never an IP, port, path, PID, user, domain or rule *match* value.
BOUNDED_LABELS = frozenset({
    "job", "instance",            # Prometheus target labels
    "task",                       # scheduler job name
    "le",                         # histogram buckets
    "version", "python",          # build info
    "mode", "device", "fstype", "interface",   # host telemetry
    "queue", "collector", "stage", "reason", "source",  # pipeline
    "rule", "severity", "status",  # detection (rule ids come from the loaded rule set)
    "title",                      # rule titles (vedette_rule_info: one per rule that alerted)
    "sink", "result",             # sinks, reloads
    "kind", "outcome", "action",  # rule kinds, login outcomes, file-integrity actions
    "spool", "stream",            # Elasticsearch spool name, data stream (alerts/events)
    "protocol", "direction", "table",  # capture: decoded protocol, direction class, table name
    "rcode",                      # capture: DNS response code, 6 names + "other"
    "feed",                       # threat-intel feed (a configured file)
    "budget",                     # capture event budget (per_key, global)
    "state",                      # durable agent state (checkpoint, positions)
})


def runtime_collector_names() -> set[str]:
    """Sample names of the prometheus-client collectors the daemon registers (process, ...)."""
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    names: set[str] = set()
    for family in reg.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def allowed_metric_names() -> frozenset[str]:
    return frozenset(catalog()) | frozenset(runtime_collector_names()) | PROMETHEUS_SYNTHETIC


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))
