"""Detection engine and host-collector panels of the Agent health dashboard: is the agent
seeing everything (rules loaded, exec events not lost) and keeping its state bounded."""

from __future__ import annotations

from generator.board import Layout
from generator.grafana import SEL, bargauge, or_zero, stat, target, timeseries, titled

RATE = "$__rate_interval"


def rule_panels(lay: Layout) -> None:
    lay.row("Rules and correlation state")
    lay.add(stat(
        "Rules loaded",
        "Compiled rules in the active rule set, by kind (single-event detections, "
        "correlations).",
        [target(f"sum by (kind) (vedette_rules_loaded{{{SEL}}})", "{{kind}}")],
        steps=((1, "green"),), base="red", decimals=0,
    ), 4, 8)
    lay.add(stat(
        "Rule load errors (range)",
        "Rule files or documents that failed to load in the time range (file:line: reason in "
        "the agent log). A refused reload keeps the previous rule set active.",
        [target(f"sum(increase(vedette_rule_load_errors_total{{{SEL}}}[$__range]))")],
        steps=((1, "red"),), decimals=0,
    ), 4, 8)
    lay.add(bargauge(
        "Rules rejected by reason",
        "Valid Sigma rules Vedette cannot evaluate (unknown logsource, missing field, "
        "unsupported feature or reference), counted at each load since the agent started.",
        [target(f"sum by (reason) (vedette_rules_rejected_total{{{SEL}}})" + or_zero(),
                "{{reason}}", instant=True)],
        steps=((1, "orange"),),
    ), 8, 8)
    lay.add(timeseries(
        "Rule evaluations/s",
        "Rule predicates evaluated per second after logsource routing and indexing, and events "
        "older than the late allowance (ignored by correlations).",
        [
            target(f"sum(rate(vedette_rule_evaluations_total{{{SEL}}}[{RATE}]))", "evaluations"),
            target(f"sum(rate(vedette_detection_late_events_total{{{SEL}}}[{RATE}]))",
                   "late events"),
        ],
        "ops",
    ), 8, 8)
    lay.add(timeseries(
        "Correlation groups (top 10 rules)",
        "Live correlation groups per rule. Each rule keeps at most max_groups (LRU), so a "
        "spoofed-source flood cannot exhaust memory; it shows up as evictions instead.",
        [target("topk(10, " + titled(f"sum by (rule) (vedette_correlation_groups{{{SEL}}})")
                + ")", "{{title}}")],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Group evictions/s",
        "Correlation groups or open alerts evicted by the max_groups bound, by rule. Sustained "
        "evictions during a flood mean some slow attacks may be missed.",
        [target(titled(f"sum by (rule) "
                       f"(rate(vedette_correlation_group_evictions_total{{{SEL}}}[{RATE}]))")
                + or_zero(), "{{title}}")],
        "ops", steps=((1, "orange"),),
    ), 8, 8)
    lay.add(timeseries(
        "Alerts suppressed/s",
        "Alert triggers not sent, by reason: dropped (cooldown, per-minute cap) or coalesced "
        "into an open alert's next update.",
        [target(f"sum by (reason) (rate(vedette_alerts_suppressed_total{{{SEL}}}[{RATE}]))"
                + or_zero(), "{{reason}}")],
        "ops",
    ), 8, 8)


def host_collector_panels(lay: Layout) -> None:
    lay.row("Host collectors")
    lay.add(timeseries(
        "Exec events lost/s",
        "Process executions the kernel dropped before the agent read them (proc connector "
        "overruns) and executions reported without /proc details (process already gone). "
        "Lost execs are a blind spot for process rules.",
        [
            target(f"sum by (instance) (rate(vedette_process_events_lost_total{{{SEL}}}[{RATE}]))",
                   "{{instance}} lost"),
            target(f"sum by (instance) "
                   f"(rate(vedette_process_enrichment_failures_total{{{SEL}}}[{RATE}]))",
                   "{{instance}} unenriched"),
        ],
        "ops", steps=((0.001, "red"),),
    ), 6, 8)
    lay.add(timeseries(
        "Log lines read/s",
        "Lines read per second by each host log collector (auth, journal, web, auditd).",
        [target(f"sum by (source) (rate(vedette_log_lines_total{{{SEL}}}[{RATE}]))"
                + or_zero(), "{{source}}")],
        "count:lines/s",
    ), 6, 8)
    lay.add(timeseries(
        "Host telemetry age",
        "Seconds since host telemetry was last collected; it should stay near "
        "host_metrics.interval_seconds. A growing line means the collector is stuck.",
        [target(f"max by (instance) "
                f"(time() - vedette_host_collect_timestamp_seconds{{{SEL}}})", "{{instance}}")],
        "s", steps=((60, "orange"), (300, "red")),
    ), 6, 8)
    lay.add(timeseries(
        "File integrity baseline",
        "Files in the file-integrity baseline and how long the last full rescan took.",
        [
            target(f"max(vedette_fim_files{{{SEL}}})", "files"),
            target(f"max(vedette_fim_rescan_duration_seconds{{{SEL}}})", "rescan seconds"),
        ],
        "short",
    ), 6, 8)


def threat_intel_panels(lay: Layout) -> None:
    lay.row("Threat intelligence")
    lay.add(timeseries(
        "Threat-intel networks by feed",
        "Networks loaded from each blocklist file (threat_intel.files); new flows to or from "
        "them raise alerts. A feed dropping to 0 means its file is gone or empty.",
        [target(f"sum by (feed) (vedette_threat_intel_networks{{{SEL}}})" + or_zero(),
                "{{feed}}")],
        "short",
    ), 12, 8)
    lay.add(timeseries(
        "Feed reloads/s",
        "Threat-intel reloads by result; errors keep the previous lists.",
        [target(f"sum by (result) (rate(vedette_threat_intel_reloads_total{{{SEL}}}[{RATE}]))"
                + or_zero(), "{{result}}")],
        "ops", steps=((0.001, "orange"),),
    ), 12, 8)
