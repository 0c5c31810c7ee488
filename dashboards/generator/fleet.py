"""Fleet overview: is every agent alive, what is being detected, is detection degraded anywhere."""

from __future__ import annotations

from generator import elasticsearch
from generator.board import Layout, dashboard, datasource_var, restart_annotation, standard_vars
from generator.grafana import (
    ES,
    SEL,
    Json,
    bargauge,
    link,
    or_zero,
    override,
    severity_overrides,
    stat,
    table,
    target,
    timeseries,
    titled,
)

UID = "vedette-fleet"
RATE = "$__rate_interval"


def _agents(lay: Layout) -> None:
    lay.row("Agents")
    lay.add(stat(
        "Agents up",
        "Vedette scrape targets whose last scrape succeeded (Prometheus `up`).",
        [target(f"sum(up{{{SEL}}})")], steps=((1, "green"),), base="red",
    ), 4, 4)
    lay.add(stat(
        "Agents down",
        "Vedette scrape targets whose last scrape failed. Anything above 0 means a server is "
        "currently unwatched.",
        [target(f"count(up{{{SEL}}} == 0) or vector(0)")], steps=((1, "red"),),
    ), 4, 4)
    lay.add(stat(
        "Restarted in the last hour",
        "Agents whose process start time changed in the last hour (crash loops, OOM kills, "
        "deployments).",
        [target(f"count(changes(vedette_start_time_seconds{{{SEL}}}[1h]) > 0) or vector(0)")],
        steps=((1, "orange"),),
    ), 4, 4)
    lay.add(stat(
        "Degraded collectors",
        "Collectors running with reduced coverage (missing privilege, fallback mode), summed "
        "over the selected agents. See the Agent health dashboard for which.",
        [target(f"sum(vedette_collector_degraded{{{SEL}}}) or vector(0)")],
        steps=((1, "orange"),),
    ), 4, 4)
    lay.add(stat(
        "Alerts opened (range)",
        "Alerts opened by all selected agents in the dashboard time range.",
        [target(f"sum(increase(vedette_alerts_total{{{SEL}}}[$__range])) or vector(0)")],
        steps=((1, "orange"), (100, "red")), decimals=0,
    ), 4, 4)
    lay.add(stat(
        "Events dropped (range)",
        "Events the agents could not evaluate (queue full, shutdown, detection error) in the "
        "time range. Anything above 0 means detection was blind for a moment.",
        [target(f"sum(increase(vedette_events_dropped_total{{{SEL}}}[$__range])) or vector(0)")],
        steps=((1, "red"),), decimals=0,
    ), 4, 4)
    lay.add(table(
        "Agents",
        "One line per agent: version, uptime and scrape health. Click an instance to open its "
        "Host detail dashboard.",
        [
            target(f"max by (job, instance, version, python) (vedette_build_info{{{SEL}}})",
                   instant=True, table=True),
            target(f"max by (job, instance) (time() - vedette_start_time_seconds{{{SEL}}})",
                   instant=True, table=True),
            target(f"max by (job, instance) (up{{{SEL}}})", instant=True, table=True),
            target(f"max by (job, instance) (vedette_queue_depth{{{SEL}, queue=\"events\"}} / "
                   f"vedette_queue_capacity{{{SEL}, queue=\"events\"}})",
                   instant=True, table=True),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value #A": True},
                "renameByName": {"Value #B": "uptime", "Value #C": "up",
                                 "Value #D": "event queue fill"},
                "indexByName": {"instance": 0, "job": 1, "version": 2, "python": 3},
            }},
        ],
        overrides=[
            override("uptime", unit="dtdurations"),
            override("event queue fill", unit="percentunit"),
            override("up", mappings=[{"type": "value", "options": {
                "0": {"text": "DOWN", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1}}}],
                **{"custom.cellOptions": {"type": "color-background"}}),
            override("instance", links=[link("Host detail", "vedette-host", "vedette-host-detail",
                                              instance_field="instance")]),
        ],
    ), 16, 8)
    lay.add(bargauge(
        "Build versions",
        "How many agents run each Vedette version; more than one bar means a rollout is in "
        "progress or a server was missed.",
        [target(f"count by (version) (vedette_build_info{{{SEL}}})", "{{version}}",
                instant=True)],
    ), 8, 8)


def _detection(lay: Layout) -> None:
    lay.row("Detection")
    lay.add(timeseries(
        "Alerts/s by severity",
        "New alerts per second across the selected agents, stacked by Sigma level.",
        [target(f"sum by (severity) (rate(vedette_alerts_total{{{SEL}}}[{RATE}]))",
                "{{severity}}")],
        "count:alerts/s", stack=True, bars=True, overrides=severity_overrides(),
    ), 12, 8)
    lay.add(timeseries(
        "Alerts/s by rule (top 10)",
        "The ten rules producing the most alerts right now.",
        [target("topk(10, " + titled(
            f"sum by (rule) (rate(vedette_alerts_total{{{SEL}}}[{RATE}]))") + ")", "{{title}}")],
        "count:alerts/s",
    ), 12, 8)
    lay.add(stat(
        "Attacks in progress",
        "Alerts currently open (opened minus closed since each agent started): attacks whose "
        "correlation window has not closed yet.",
        [target(
            f'(sum(vedette_alert_updates_total{{{SEL}, status="open"}}) - '
            f'(sum(vedette_alert_updates_total{{{SEL}, status="closed"}}) or vector(0)))'
            " or vector(0)"
        )],
        steps=((1, "orange"), (10, "red")), graph=True, decimals=0,
    ), 6, 8)
    lay.add(bargauge(
        "Alerting agents (range)",
        "Agents ordered by alerts opened in the time range.",
        [target(f"topk(10, sum by (instance) (increase(vedette_alerts_total{{{SEL}}}[$__range])))",
                "{{instance}}", instant=True)],
        steps=((1, "orange"), (100, "red")),
    ), 9, 8)
    lay.add(bargauge(
        "Top rules (range)",
        "Rules ordered by alerts opened in the time range, across the selected agents.",
        [target("topk(10, " + titled(
            f"sum by (rule) (increase(vedette_alerts_total{{{SEL}}}[$__range]))") + ")",
            "{{title}}", instant=True)],
        steps=((1, "orange"), (100, "red")),
    ), 9, 8)


def _degraded(lay: Layout) -> None:
    lay.row("Detection degraded")
    lay.add(timeseries(
        "Events dropped/s",
        "Events lost before detection, by agent, stage and reason. A full queue means "
        "detection cannot keep up; every dropped event is a blind spot.",
        [target(f"sum by (instance, stage, reason) "
                f"(rate(vedette_events_dropped_total{{{SEL}}}[{RATE}]))",
                "{{instance}} {{stage}}/{{reason}}")],
        "count:events/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Event queue fill",
        "Fill ratio of each agent's detection queue; at 100 % new events are dropped.",
        [target(f'max by (instance) (vedette_queue_depth{{{SEL}, queue="events"}} / '
                f'vedette_queue_capacity{{{SEL}, queue="events"}})', "{{instance}}")],
        "percentunit", steps=((0.5, "orange"), (0.8, "red")), max1=True,
    ), 8, 8)
    lay.add(timeseries(
        "Collector and job errors/s",
        "Collector runs and scheduled jobs that raised, by agent.",
        [
            target(f"sum by (instance) (rate(vedette_job_failures_total{{{SEL}}}[{RATE}]))",
                   "{{instance}} job failures"),
            target(f"sum by (instance) (rate(vedette_collector_errors_total{{{SEL}}}[{RATE}]))"
                   + or_zero("instance"),
                   "{{instance}} collector errors"),
        ],
        "count:errors/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Exec events lost/s",
        "Process executions lost by the kernel (proc connector overruns) per agent: process "
        "rules are blind to them (exec coverage).",
        [target(f"sum by (instance) (rate(vedette_process_events_lost_total{{{SEL}}}[{RATE}]))",
                "{{instance}}")],
        "ops", steps=((0.001, "red"),),
    ), 6, 8)
    lay.add(timeseries(
        "Network capture blind spots/s",
        "Per agent: packets the kernel dropped before the agent read them (ring full), and "
        "per-packet events skipped because the global event budget was spent. Network "
        "detection is partly blind while either is above 0.",
        [
            target(f"sum by (instance) (rate(vedette_capture_ring_drops_total{{{SEL}}}[{RATE}]))"
                   + or_zero("instance", "vedette_capture_interfaces"), "{{instance}} ring drops"),
            target(f"sum by (instance) (rate(vedette_capture_events_over_budget_total"
                   f'{{{SEL}, budget="global"}}[{RATE}]))'
                   + or_zero("instance", "vedette_capture_interfaces"),
                   "{{instance}} over global budget"),
        ],
        "pps", steps=((1, "red"),),
    ), 6, 8)
    lay.add(timeseries(
        "Rule load errors and rejections",
        "Rule files that failed to load and valid rules the agent cannot evaluate, per agent, "
        "since it started.",
        [
            target(f"sum by (instance) (vedette_rule_load_errors_total{{{SEL}}})",
                   "{{instance}} load errors"),
            target(f"sum by (instance) (vedette_rules_rejected_total{{{SEL}}})"
                   + or_zero("instance"), "{{instance}} rejected"),
        ],
        "short", steps=((1, "orange"),),
    ), 6, 8)
    lay.add(timeseries(
        "Correlation group evictions/s",
        "Correlation state evicted by the per-rule max_groups bound, per agent: a flood of "
        "spoofed sources is being absorbed (and slow attacks may be missed).",
        [target(f"sum by (instance) "
                f"(rate(vedette_correlation_group_evictions_total{{{SEL}}}[{RATE}]))"
                + or_zero("instance"), "{{instance}}")],
        "ops", steps=((1, "orange"),),
    ), 6, 8)


# Failure counters have no series before the first failure: show 0 for every sink that has
# delivered something instead of "No data".
_sinks_zero = or_zero("instance, sink", "vedette_sink_deliveries_total")


def _shipping(lay: Layout) -> None:
    lay.row("Alert delivery")
    lay.add(timeseries(
        "Alert deliveries/s by sink",
        "Alert documents accepted by each sink (JSON lines, stdout, Elasticsearch).",
        [target(f"sum by (sink) (rate(vedette_sink_deliveries_total{{{SEL}}}[{RATE}]))",
                "{{sink}}")],
        "count:docs/s",
    ), 8, 8)
    lay.add(timeseries(
        "Sink failures and drops/s",
        "Failed delivery attempts (retried) and documents given up on (lost), by agent and sink.",
        [
            target(f"sum by (instance, sink) (rate(vedette_sink_failures_total{{{SEL}}}[{RATE}]))"
                   + _sinks_zero, "{{instance}} {{sink}} failed"),
            target(f"sum by (instance, sink) (rate(vedette_sink_dropped_total{{{SEL}}}[{RATE}]))"
                   + _sinks_zero, "{{instance}} {{sink}} dropped"),
        ],
        "count:docs/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Sink backlog",
        "Alerts waiting in each sink's retry buffer; a growing line means the destination "
        "(e.g. Elasticsearch) is unreachable.",
        [target(f'max by (instance, queue) (vedette_queue_depth{{{SEL}, queue=~"sink_.+"}})',
                "{{instance}} {{queue}}")],
        "short", steps=((100, "orange"), (5000, "red")),
    ), 8, 8)


def _es_alerts(lay: Layout) -> None:
    lay.row("Recent alerts (Elasticsearch, optional)", collapsed=True)
    lay.add(table(
        "Latest alerts",
        "The newest alert documents from the logs-vedette.alerts-* data stream. Needs an "
        "Elasticsearch datasource pointing at that index pattern (select it in the "
        "'Elasticsearch' variable); leave the row collapsed otherwise.",
        [{
            "refId": "A",
            "datasource": ES,
            "query": "event.kind:alert",
            "alias": "",
            "metrics": [{"id": "1", "type": "raw_data", "settings": {"size": "100"}}],
            "bucketAggs": [],
            "timeField": "@timestamp",
        }],
        transformations=[{"id": "organize", "options": {
            "includeByName": {
                "@timestamp": True, "host.name": True, "rule.name": True,
                "event.severity": True, "vedette.alert.status": True,
                "vedette.alert.count": True, "message": True, "threat.technique.id": True,
            },
            "indexByName": {"@timestamp": 0, "host.name": 1, "rule.name": 2,
                            "event.severity": 3, "vedette.alert.status": 4},
        }}],
        datasource=ES,
        allow_empty="Elasticsearch datasource; not queried through Prometheus",
    ), 24, 10)


def build() -> Json:
    lay = Layout()
    _agents(lay)
    _detection(lay)
    _degraded(lay)
    _shipping(lay)
    elasticsearch.fleet_panels(lay)
    _es_alerts(lay)
    variables = [
        *standard_vars(),
        datasource_var("es_datasource", "elasticsearch", "Elasticsearch (optional)"),
    ]
    return dashboard(
        UID, "Vedette / Fleet overview",
        "Every Vedette agent at a glance: alive, detecting, degraded, delivering alerts.",
        lay, variables, annotations=[restart_annotation()],
    )
