"""Agent health: the Vedette process itself, its pipeline, rules, jobs, collectors and sinks."""

from __future__ import annotations

from generator import coverage, elasticsearch
from generator.board import Layout, dashboard, restart_annotation, standard_vars
from generator.grafana import SEL, TASK, Json, or_zero, override, stat, table, target, timeseries

UID = "vedette-agent"
RATE = "$__rate_interval"
# Restrict the generic process_* series of prometheus-client to Vedette targets.
VEDETTE_ONLY = (
    f"on (job, instance) group_left () max by (job, instance) (vedette_build_info{{{SEL}}})"
)


def _process(lay: Layout) -> None:
    lay.row("Process")
    lay.add(timeseries(
        "Agent CPU",
        "CPU used by the agent process, in cores (1 = one full core).",
        [target(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}]) * {VEDETTE_ONLY}",
                "{{instance}}")],
        "percentunit", steps=((0.5, "orange"), (1, "red")),
    ), 8, 8)
    lay.add(timeseries(
        "Agent memory (RSS)",
        "Resident memory of the agent process.",
        [target(f"process_resident_memory_bytes{{{SEL}}} * {VEDETTE_ONLY}", "{{instance}}")],
        "bytes", steps=((512 * 1024 * 1024, "orange"), (1024 * 1024 * 1024, "red")),
    ), 8, 8)
    lay.add(timeseries(
        "Agent file descriptors",
        "Open file descriptors of the agent process, as a share of its limit.",
        [target(f"process_open_fds{{{SEL}}} / process_max_fds{{{SEL}}} * {VEDETTE_ONLY}",
                "{{instance}}")],
        "percentunit", steps=((0.8, "orange"), (0.9, "red")),
    ), 8, 8)
    lay.add(table(
        "Agents",
        "Version, Python, uptime and configuration reload state of each agent.",
        [
            target(f"max by (instance, version, python) (vedette_build_info{{{SEL}}})",
                   instant=True, table=True),
            target(f"max by (instance) (time() - vedette_start_time_seconds{{{SEL}}})",
                   instant=True, table=True),
            target(f"max by (instance) "
                   f"(time() - vedette_config_last_reload_success_timestamp_seconds{{{SEL}}})",
                   instant=True, table=True),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True, "Value #A": True},
                "renameByName": {"Value #B": "uptime", "Value #C": "config loaded ago"},
            }},
        ],
        overrides=[override("uptime", unit="dtdurations"),
                   override("config loaded ago", unit="dtdurations")],
    ), 24, 6)


def _pipeline(lay: Layout) -> None:
    lay.row("Pipeline")
    lay.add(timeseries(
        "Events published/s by collector",
        "Events each collector put into the detection queue.",
        [target(f"sum by (collector) (rate(vedette_events_published_total{{{SEL}}}[{RATE}]))",
                "{{collector}}")],
        "count:events/s", stack=True,
    ), 8, 8)
    lay.add(timeseries(
        "Events processed/s by stage",
        "Events that went through each pipeline stage.",
        [target(f"sum by (stage) (rate(vedette_events_processed_total{{{SEL}}}[{RATE}]))",
                "{{stage}}")],
        "count:events/s",
    ), 8, 8)
    lay.add(timeseries(
        "Events dropped/s",
        "Events lost by stage and reason (queue_full: detection cannot keep up; shutdown; "
        "error: the engine raised on an event).",
        [target(f"sum by (stage, reason) (rate(vedette_events_dropped_total{{{SEL}}}[{RATE}]))",
                "{{stage}}/{{reason}}")],
        "count:events/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Queue depth",
        "Items waiting in each queue: the detection queue and each sink's retry buffer.",
        [target(f"max by (queue) (vedette_queue_depth{{{SEL}}})", "{{queue}}")],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Event queue fill",
        "Detection queue depth as a share of its capacity; at 100 % events are dropped.",
        [target(f'max by (instance) (vedette_queue_depth{{{SEL}, queue="events"}} / '
                f'vedette_queue_capacity{{{SEL}, queue="events"}})', "{{instance}}")],
        "percentunit", steps=((0.5, "orange"), (0.8, "red")), max1=True,
    ), 8, 8)
    lay.add(timeseries(
        "Input errors/s",
        "Malformed input refused (bad event lines, hostile log lines, undecodable packets), by "
        "source and reason. Attackers sending garbage show up here.",
        [target(f"sum by (source, reason) (rate(vedette_input_errors_total{{{SEL}}}[{RATE}]))"
                + or_zero(),
                "{{source}}/{{reason}}")],
        "count:errors/s", steps=((1, "orange"),),
    ), 8, 8)


def _detection(lay: Layout) -> None:
    lay.row("Detection")
    lay.add(timeseries(
        "Detection time per event",
        "Time the engine spends on one event (sampled 1 in 64): median and 99th percentile.",
        [
            target(f"histogram_quantile(0.5, sum by (le) "
                   f"(rate(vedette_detection_seconds_bucket{{{SEL}}}[{RATE}])))", "p50"),
            target(f"histogram_quantile(0.99, sum by (le) "
                   f"(rate(vedette_detection_seconds_bucket{{{SEL}}}[{RATE}])))", "p99"),
        ],
        "s", steps=((0.001, "orange"), (0.01, "red")),
    ), 8, 8)
    lay.add(timeseries(
        "Alert lifecycle/s",
        "Alert documents sent to sinks per second, by status (open, updated, closed).",
        [target(f"sum by (status) (rate(vedette_alert_updates_total{{{SEL}}}[{RATE}]))",
                "{{status}}")],
        "count:docs/s",
    ), 8, 8)
    lay.add(stat(
        "Config/rule reload errors (range)",
        "Reloads (SIGHUP or changed rule files) refused because the new configuration or a "
        "rule was invalid; the agent keeps running on the previous set.",
        [target(f'sum(increase(vedette_config_reloads_total{{{SEL}, result="error"}}'
                f"[$__range])) or vector(0)")],
        steps=((1, "red"),), decimals=0,
    ), 8, 8)


def _jobs(lay: Layout) -> None:
    lay.row("Scheduled jobs and collectors")
    lay.add(timeseries(
        "Job runs/s",
        "Scheduled job executions per second, by job.",
        [target(f"sum by ({TASK}) (rate(vedette_job_runs_total{{{SEL}}}[{RATE}]))",
                f"{{{{{TASK}}}}}")],
        "ops",
    ), 6, 8)
    lay.add(timeseries(
        "Job failures and misfires/s",
        "Runs that raised, and runs skipped because they were late or still running.",
        [
            target(f"sum by ({TASK}) (rate(vedette_job_failures_total{{{SEL}}}[{RATE}]))",
                   f"{{{{{TASK}}}}} failed"),
            target(f"sum by ({TASK}) (rate(vedette_job_misfires_total{{{SEL}}}[{RATE}]))",
                   f"{{{{{TASK}}}}} misfired"),
        ],
        "ops", steps=((0.001, "red"),),
    ), 6, 8)
    lay.add(timeseries(
        "Job duration p95",
        "95th percentile duration of each scheduled job.",
        [target(f"histogram_quantile(0.95, sum by ({TASK}, le) "
                f"(rate(vedette_job_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
                f"{{{{{TASK}}}}}")],
        "s", steps=((1, "orange"), (10, "red")),
    ), 6, 8)
    lay.add(timeseries(
        "Collectors degraded / errors",
        "1 when a collector runs with reduced coverage; collector runs that raised per second.",
        [
            target(f"max by (collector) (vedette_collector_degraded{{{SEL}}})",
                   "{{collector}} degraded"),
            target(f"sum by (collector) (rate(vedette_collector_errors_total{{{SEL}}}[{RATE}]))"
                   + or_zero("collector", "vedette_collector_degraded"),
                   "{{collector}} errors/s"),
        ],
        "short", steps=((1, "red"),),
    ), 6, 8)


def _sinks(lay: Layout) -> None:
    lay.row("Sinks")
    zero = or_zero("sink", "vedette_sink_deliveries_total")
    lay.add(timeseries(
        "Deliveries/s by sink",
        "Alert documents each sink accepted per second.",
        [target(f"sum by (sink) (rate(vedette_sink_deliveries_total{{{SEL}}}[{RATE}]))",
                "{{sink}}")],
        "count:docs/s",
    ), 8, 8)
    lay.add(timeseries(
        "Sink failures and drops/s",
        "Failed delivery attempts (kept in the retry buffer) and documents given up on.",
        [
            target(f"sum by (sink) (rate(vedette_sink_failures_total{{{SEL}}}[{RATE}]))"
                   + zero, "{{sink}} failed"),
            target(f"sum by (sink) (rate(vedette_sink_dropped_total{{{SEL}}}[{RATE}]))"
                   + zero, "{{sink}} dropped"),
        ],
        "count:docs/s", steps=((0.001, "red"),),
    ), 8, 8)
    lay.add(timeseries(
        "Sink retry backlog",
        "Alerts waiting in each sink's retry buffer.",
        [target(f'max by (queue) (vedette_queue_depth{{{SEL}, queue=~"sink_.+"}})', "{{queue}}")],
        "short", steps=((100, "orange"), (5000, "red")),
    ), 8, 8)


def build() -> Json:
    lay = Layout()
    _process(lay)
    _pipeline(lay)
    _detection(lay)
    coverage.rule_panels(lay)
    _jobs(lay)
    coverage.host_collector_panels(lay)
    coverage.threat_intel_panels(lay)
    _sinks(lay)
    elasticsearch.agent_panels(lay)
    return dashboard(
        UID, "Vedette / Agent health",
        "The Vedette agent itself: resources, pipeline throughput and drops, rules, jobs, sinks.",
        lay, standard_vars(), annotations=[restart_annotation()],
    )
