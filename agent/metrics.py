"""The metric catalogue: every metric the agent exposes is declared here, once.

:class:`AgentMetrics` builds the instrumented metrics (counters, gauges, histograms) against a
registry that the caller passes in, so tests use a fresh ``CollectorRegistry``. Metrics whose
values are read at scrape time (host telemetry, queue depth) are produced by custom collectors
elsewhere, but their names, types and help texts are declared in :data:`SCRAPE_TIME` below;
``tests/test_metrics_catalog.py`` fails when the agent exposes a name that is not in
:func:`catalog`.

No label ever carries an IP address, a path, a PID, a user name or any other value an attacker
or a busy host can multiply: labels are rule ids, stage/queue/job/sink/collector names,
severities, modes, device and interface names.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from agent import __version__

NAMESPACE = "vedette"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    type: str  # counter | gauge | histogram | info
    help: str
    labels: tuple[str, ...] = ()


# Read at scrape time by custom collectors (collectors/host.py, pipeline.py).
SCRAPE_TIME: tuple[MetricSpec, ...] = (
    MetricSpec("vedette_host_cpu_seconds_total", "counter", "CPU time by mode.", ("mode",)),
    MetricSpec("vedette_host_cpu_usage_ratio", "gauge", "Busy CPU fraction over the last collection interval (0-1)."),
    MetricSpec("vedette_host_cpus", "gauge", "Logical CPUs."),  # not _count: promtool reserves it
    MetricSpec("vedette_host_load1", "gauge", "1-minute load average."),
    MetricSpec("vedette_host_load5", "gauge", "5-minute load average."),
    MetricSpec("vedette_host_load15", "gauge", "15-minute load average."),
    MetricSpec("vedette_host_memory_total_bytes", "gauge", "Total physical memory."),
    MetricSpec("vedette_host_memory_available_bytes", "gauge", "Memory available without swapping."),
    MetricSpec("vedette_host_memory_used_bytes", "gauge", "Memory in use (total - available)."),
    MetricSpec("vedette_host_swap_total_bytes", "gauge", "Total swap."),
    MetricSpec("vedette_host_swap_used_bytes", "gauge", "Swap in use."),
    MetricSpec("vedette_host_filesystem_size_bytes", "gauge", "Filesystem size.", ("device", "fstype")),
    MetricSpec("vedette_host_filesystem_free_bytes", "gauge", "Filesystem space available to unprivileged users.", ("device", "fstype")),
    MetricSpec("vedette_host_filesystem_used_ratio", "gauge", "Filesystem used fraction (0-1).", ("device", "fstype")),
    MetricSpec("vedette_host_disk_read_bytes_total", "counter", "Bytes read from a block device.", ("device",)),
    MetricSpec("vedette_host_disk_written_bytes_total", "counter", "Bytes written to a block device.", ("device",)),
    MetricSpec("vedette_host_disk_reads_completed_total", "counter", "Reads completed.", ("device",)),
    MetricSpec("vedette_host_disk_writes_completed_total", "counter", "Writes completed.", ("device",)),
    MetricSpec("vedette_host_disk_io_time_seconds_total", "counter", "Time spent doing I/O.", ("device",)),
    MetricSpec("vedette_host_network_receive_bytes_total", "counter", "Bytes received.", ("interface",)),
    MetricSpec("vedette_host_network_transmit_bytes_total", "counter", "Bytes sent.", ("interface",)),
    MetricSpec("vedette_host_network_receive_packets_total", "counter", "Packets received.", ("interface",)),
    MetricSpec("vedette_host_network_transmit_packets_total", "counter", "Packets sent.", ("interface",)),
    MetricSpec("vedette_host_network_receive_errors_total", "counter", "Receive errors.", ("interface",)),
    MetricSpec("vedette_host_network_transmit_errors_total", "counter", "Transmit errors.", ("interface",)),
    MetricSpec("vedette_host_network_receive_drop_total", "counter", "Inbound packets dropped.", ("interface",)),
    MetricSpec("vedette_host_network_transmit_drop_total", "counter", "Outbound packets dropped.", ("interface",)),
    MetricSpec("vedette_host_processes", "gauge", "Processes on the host."),
    MetricSpec("vedette_host_threads", "gauge", "Threads on the host."),
    MetricSpec("vedette_host_open_fds", "gauge", "File descriptors allocated system-wide."),
    MetricSpec("vedette_host_boot_time_seconds", "gauge", "Boot time, seconds since the epoch."),
    MetricSpec("vedette_host_uptime_seconds", "gauge", "Seconds since boot."),
    MetricSpec("vedette_host_users_logged_in", "gauge", "Login sessions (utmp)."),
    MetricSpec("vedette_host_collect_timestamp_seconds", "gauge", "When host telemetry was last collected."),
    MetricSpec("vedette_queue_depth", "gauge", "Items waiting in a pipeline queue.", ("queue",)),
    MetricSpec("vedette_queue_capacity", "gauge", "Capacity of a pipeline queue.", ("queue",)),
    # Elasticsearch shipping (agent/sinks/elasticsearch.py SpoolCollector)
    MetricSpec("vedette_es_spool_records", "gauge", "Documents waiting in the Elasticsearch spool.", ("spool",)),
    MetricSpec("vedette_es_spool_bytes", "gauge", "Payload bytes waiting in the Elasticsearch spool.", ("spool",)),
    MetricSpec("vedette_es_spool_disk_bytes", "gauge", "Disk used by the Elasticsearch spool files (database, WAL).", ("spool",)),
    MetricSpec("vedette_es_spool_limit_bytes", "gauge", "Configured size limit of the Elasticsearch spool.", ("spool",)),
    MetricSpec("vedette_es_spool_oldest_age_seconds", "gauge", "Age of the oldest document in the Elasticsearch spool (0 when empty).", ("spool",)),
)

# Buckets for per-event and per-job timings (seconds).
_FAST_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
_JOB_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    """Instrumented metrics of the agent, built against ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = Info(
            "vedette_build", "Vedette build information.", registry=registry
        )
        self.build_info.info({"version": __version__, "python": platform.python_version()})
        self.start_time = Gauge(
            "vedette_start_time_seconds", "When the agent process started.", registry=registry
        )
        self.metrics_connections_dropped = Counter(
            "vedette_metrics_connections_dropped_total",
            "Connections to /metrics closed without an answer (idle, overflow of idle ones, "
            "busy workers, failed request); agent/metrics_http.py.",
            ["reason"], registry=registry,
        )
        # Pipeline
        self.events_published = Counter(
            "vedette_events_published_total",
            "Events published by a collector into the pipeline.",
            ["collector"], registry=registry,
        )
        self.events_processed = Counter(
            "vedette_events_processed_total",
            "Events that went through a pipeline stage.",
            ["stage"], registry=registry,
        )
        self.events_dropped = Counter(
            "vedette_events_dropped_total",
            "Events dropped, by stage and reason (queue_full, shutdown, ...).",
            ["stage", "reason"], registry=registry,
        )
        self.input_errors = Counter(
            "vedette_input_errors_total",
            "Malformed input refused (bad packet, hostile log line, bad event), by source and reason.",
            ["source", "reason"], registry=registry,
        )
        # Collectors and jobs
        self.collector_errors = Counter(
            "vedette_collector_errors_total",
            "Collector runs that raised an error.", ["collector"], registry=registry,
        )
        self.collector_degraded = Gauge(
            "vedette_collector_degraded",
            "1 when a collector runs with reduced coverage (missing privilege, fallback mode).",
            ["collector"], registry=registry,
        )
        self.job_runs = Counter(
            "vedette_job_runs_total", "Scheduled job executions.", ["task"], registry=registry
        )
        self.job_failures = Counter(
            "vedette_job_failures_total", "Scheduled job executions that raised.",
            ["task"], registry=registry,
        )
        self.job_misfires = Counter(
            "vedette_job_misfires_total",
            "Scheduled runs skipped because they were late beyond the grace time or still running.",
            ["task"], registry=registry,
        )
        self.job_duration = Histogram(
            "vedette_job_duration_seconds", "Duration of scheduled job executions.",
            ["task"], buckets=_JOB_BUCKETS, registry=registry,
        )
        # Detection
        self.alerts = Counter(
            "vedette_alerts_total", "Alerts opened, by rule and severity.",
            ["rule", "severity"], registry=registry,
        )
        self.rule_info = Gauge(
            "vedette_rule_info",
            "1 for each rule that opened an alert, with its title: dashboards join it on "
            "'rule' (an id) for readable legends.",
            ["rule", "title"], registry=registry,
        )
        self.alert_updates = Counter(
            "vedette_alert_updates_total",
            "Alert lifecycle transitions sent to sinks (open, updated, closed).",
            ["status"], registry=registry,
        )
        self.detection_seconds = Histogram(
            "vedette_detection_seconds", "Time the engine spent on one event.",
            buckets=_FAST_BUCKETS, registry=registry,
        )
        self.last_alert = Gauge(
            "vedette_last_alert_timestamp_seconds",
            "When the last new alert was opened (0: none since start); `vedette status` shows it.",
            registry=registry,
        )
        # Detection engine (agent/detection): rule loading, evaluation, state bounds, suppression
        self.rule_load_errors = Counter(
            "vedette_rule_load_errors_total",
            "Rule documents or files that failed to load (file:line: reason in the log).",
            registry=registry,
        )
        self.rule_paths_refused = Gauge(
            "vedette_rule_paths_refused",
            "Configured rule paths refused at the last (re)load because users other than root "
            "and the agent can write to them (detection.allow_unsafe_rule_paths).",
            registry=registry,
        )
        self.rules_rejected = Counter(
            "vedette_rules_rejected_total",
            "Valid rules Vedette cannot evaluate, by reason (logsource, field, feature, reference).",
            ["reason"], registry=registry,
        )
        self.rules_loaded = Gauge(
            "vedette_rules_loaded", "Compiled rules in the active rule set, by kind.",
            ["kind"], registry=registry,
        )
        self.rule_evaluations = Counter(
            "vedette_rule_evaluations_total",
            "Rule predicates evaluated (after logsource routing and indexing).", registry=registry,
        )
        self.late_events = Counter(
            "vedette_detection_late_events_total",
            "Events older than the late allowance, ignored by correlations.", registry=registry,
        )
        self.correlation_groups = Gauge(
            "vedette_correlation_groups", "Live correlation groups, by rule.",
            ["rule"], registry=registry,
        )
        self.group_evictions = Counter(
            "vedette_correlation_group_evictions_total",
            "Correlation groups or open alerts evicted by the max_groups bound, by rule.",
            ["rule"], registry=registry,
        )
        self.alerts_suppressed = Counter(
            "vedette_alerts_suppressed_total",
            "Alert triggers not sent: dropped (cooldown, per-minute cap) or coalesced into an "
            "open alert's next update.",
            ["rule", "reason"], registry=registry,
        )
        self.bad_timestamps = Counter(
            "vedette_detection_bad_timestamps_total",
            "Events whose timestamp is not a plausible time (NaN, before 1970, after 5000): "
            "matched by single-event rules, never placed in a correlation window.",
            registry=registry,
        )
        self.rule_matches_silenced = Counter(
            "vedette_rule_matches_silenced_total",
            "Rule matches silenced before alerting or counting, by rule and reason (filter: a "
            "Sigma filter, trusted_source: detection.trusted_sources).",
            ["rule", "reason"], registry=registry,
        )
        self.rule_errors = Counter(
            "vedette_rule_errors_total",
            "Events a rule's condition raised on (a bug, or an input it was not written for): "
            "that rule skipped the event, the other rules still saw it.",
            ["rule"], registry=registry,
        )
        self.rules_disabled = Gauge(
            "vedette_rules_disabled",
            "Loaded rules the running rule set leaves out (detection.disabled_rules, and "
            "correlations counting a disabled rule).", registry=registry,
        )
        self.checkpoint_problems = Counter(
            "vedette_checkpoint_problems_total",
            "Detection checkpoints (open alerts, correlation windows, cooldowns) not restored "
            "whole at start: unreadable, damaged (torn, checksum), foreign (not a checkpoint), "
            "version (written by a newer Vedette), old_version (read, without windows), "
            "stale_rule (windows of a rule whose content changed); and source positions files "
            "refused: positions_damaged, positions_unreadable (those logs are read again from "
            "their start), journal_cursor (the journal is read again from the cursor file's "
            "time).",
            ["reason"], registry=registry,
        )
        self.checkpoint_groups_left_out = Gauge(
            "vedette_checkpoint_groups_left_out",
            "Correlation groups not in the last detection checkpoint (beyond its size bound, "
            "or holding a value it cannot keep): their windows start empty after a crash.",
            registry=registry,
        )
        self.state_write_failures = Counter(
            "vedette_state_write_failures_total",
            "Failed durable writes of agent state (checkpoint: the detection checkpoint, "
            "positions: acknowledged source positions); retried at the next tick, source "
            "positions stay where they were meanwhile.",
            ["state"], registry=registry,
        )
        # Host collectors (agent/collectors: process, sockets, auth/web/audit logs, FIM, modules)
        self.process_events_lost = Counter(
            "vedette_process_events_lost_total",
            "Proc connector receive-buffer overruns: the kernel dropped process events.",
            registry=registry,
        )
        self.process_enrichment_failures = Counter(
            "vedette_process_enrichment_failures_total",
            "Exec events whose process exited before /proc could be read (event sent unenriched).",
            registry=registry,
        )
        self.process_exec_source = Gauge(
            "vedette_process_exec_source",
            "1 for where exec facts come from: audit (kernel audit records), connector (proc "
            "connector + /proc read), poll (/proc polling).",
            ["source"], registry=registry,
        )
        self.log_lines = Counter(
            "vedette_log_lines_total",
            "Lines read by a host log collector (auth_log, journal, web_log, auditd).",
            ["source"], registry=registry,
        )
        self.logins = Counter(
            "vedette_logins_total",
            "Login attempts seen in authentication logs (ssh, su, login), by outcome.",
            ["outcome"], registry=registry,
        )
        self.fim_changes = Counter(
            "vedette_fim_changes_total",
            "Changes to watched files, by action (created, modified, deleted, attributes_changed).",
            ["action"], registry=registry,
        )
        self.fim_files = Gauge(
            "vedette_fim_files", "Files in the file-integrity baseline.", registry=registry,
        )
        self.fim_rescan_duration = Gauge(
            "vedette_fim_rescan_duration_seconds",
            "Duration of the last file-integrity rescan.", registry=registry,
        )
        self.listening_sockets = Gauge(
            "vedette_listening_sockets", "Listening TCP/UDP sockets on the host.",
            registry=registry,
        )
        # Network capture (agent/capture, agent/netevents); labels: protocol (tcp, udp, icmp,
        # ipv6-icmp, arp, fragment, other), direction (inbound, outbound, internal, external,
        # none, unknown), interface names. Never an address.
        self.capture_packets = Counter(
            "vedette_capture_packets_total",
            "Packets decoded by the capture stage, by protocol and direction; a flow's packets "
            "are added when its flow interval (network.flow_interval_seconds) is summarised, so "
            "this trails vedette_capture_ring_packets_total by up to one interval.",
            ["protocol", "direction"], registry=registry,
        )
        self.capture_bytes = Counter(
            "vedette_capture_bytes_total",
            "Bytes on the wire of the packets decoded by the capture stage, by protocol and direction.",
            ["protocol", "direction"], registry=registry,
        )
        self.capture_tcp_control = Counter(
            "vedette_capture_tcp_control_total",
            "TCP control segments decoded by the capture stage, by kind: syn (SYN without ACK: "
            "connection attempts), syn_ack, rst (RST without SYN), no_ack (no SYN, RST or ACK: "
            "FIN/NULL/Xmas probes).",
            ["kind"], registry=registry,
        )
        self.capture_dns_queries = Counter(
            "vedette_capture_dns_queries_total",
            "DNS queries (QR=0) seen on the DNS ports by the capture stage (UDP and TCP).",
            registry=registry,
        )
        self.capture_dns_responses = Counter(
            "vedette_capture_dns_responses_total",
            "DNS responses (QR=1) seen on the DNS ports by the capture stage (UDP and TCP), by rcode "
            "(noerror, nxdomain, servfail, refused, formerr, notimp, other).",
            ["rcode"], registry=registry,
        )
        self.capture_ring_packets = Counter(
            "vedette_capture_ring_packets_total",
            "Packets the kernel passed the capture filter on an interface (delivered + dropped).",
            ["interface"], registry=registry,
        )
        self.capture_ring_drops = Counter(
            "vedette_capture_ring_drops_total",
            "Packets the kernel dropped because the capture ring of an interface was full.",
            ["interface"], registry=registry,
        )
        self.capture_degraded = Gauge(
            "vedette_capture_degraded",
            "1 while an interface's ring drops more than 1 % of its packets (network detection is partly blind).",
            ["interface"], registry=registry,
        )
        self.capture_interfaces = Gauge(
            "vedette_capture_interfaces", "Interfaces being captured.", registry=registry,
        )
        self.capture_events_over_budget = Counter(
            "vedette_capture_events_over_budget_total",
            "Per-packet events not emitted because a per-second budget was spent, by budget: "
            "per_key (one destination/source/client: floods, by design; the packets still count "
            "in the aggregates) or global (max_events_per_second: detection partly blind).",
            ["budget"], registry=registry,
        )
        self.capture_table_overflows = Counter(
            "vedette_capture_table_overflows_total",
            "Entries not tracked because a bounded capture table was full, by table.",
            ["table"], registry=registry,
        )
        self.capture_evasion = Counter(
            "vedette_capture_evasion_total",
            "Packets shaped to slip past a sensor, by kind: fragment_overlap, tiny_fragment, "
            "ipv6_unusual_chain, ipv6_chain_too_long.",
            ["kind"], registry=registry,
        )
        self.threat_intel_networks = Gauge(
            "vedette_threat_intel_networks", "Networks loaded from each threat-intel feed.",
            ["feed"], registry=registry,
        )
        self.threat_intel_reloads = Counter(
            "vedette_threat_intel_reloads_total",
            "Threat-intel feed reloads, by result (ok, error).", ["result"], registry=registry,
        )
        # Sinks
        self.sink_deliveries = Counter(
            "vedette_sink_deliveries_total", "Alert documents a sink accepted.",
            ["sink"], registry=registry,
        )
        self.sink_failures = Counter(
            "vedette_sink_failures_total", "Sink delivery attempts that failed.",
            ["sink"], registry=registry,
        )
        self.sink_dropped = Counter(
            "vedette_sink_dropped_total",
            "Alert documents a sink gave up on (retry buffer full).",
            ["sink"], registry=registry,
        )
        # Elasticsearch shipping (agent/sinks/elasticsearch.py, es_shipper.py); stream is one of
        # alerts, alerts_latest, events, other.
        self.es_docs_shipped = Counter(
            "vedette_es_docs_shipped_total",
            "Documents Elasticsearch acknowledged as written (bulk item 200/201), by stream.",
            ["stream"], registry=registry,
        )
        self.es_duplicates_avoided = Counter(
            "vedette_es_duplicates_avoided_total",
            "Documents Elasticsearch already had (bulk item 409): a resend that did not duplicate.",
            ["stream"], registry=registry,
        )
        self.es_retries = Counter(
            "vedette_es_retries_total",
            "Bulk items kept for another attempt, by reason (rejected, unavailable, cluster_block, "
            "auth: a per-item 401/403 such as a missing index privilege).",
            ["reason"], registry=registry,
        )
        self.es_request_failures = Counter(
            "vedette_es_request_failures_total",
            "Bulk or setup requests that failed as a whole and were retried, by reason "
            "(connection, timeout, auth, rejected, unavailable, too_large, bad_request, status, bad_response).",
            ["reason"], registry=registry,
        )
        self.es_dead_lettered = Counter(
            "vedette_es_dead_lettered_total",
            "Documents refused for good (mapping/parsing errors) and written to the dead-letter file.",
            ["stream"], registry=registry,
        )
        self.es_spool_dropped = Counter(
            "vedette_es_spool_dropped_total",
            "Documents dropped from the spool before delivery, by reason (overflow, disk_full, age, corrupt).",
            ["reason"], registry=registry,
        )
        self.es_spool_superseded = Counter(
            "vedette_es_spool_superseded_total",
            "Unsent alert snapshots replaced in the spool by a newer snapshot of the same alert.",
            registry=registry,
        )
        self.es_spool_recovered = Counter(
            "vedette_es_spool_recovered_total",
            "Records carried over from a damaged spool file into a new one (the rest is in "
            "vedette_es_spool_dropped_total{reason=\"corrupt\"}).",
            registry=registry,
        )
        self.es_auth_failures = Counter(
            "vedette_es_auth_failures_total",
            "Requests Elasticsearch refused with 401/403 (wrong or insufficient credentials).",
            registry=registry,
        )
        self.es_setup = Counter(
            "vedette_es_setup_total",
            "Index setup runs (ILM policy, templates), by result (ok, forbidden, error).",
            ["result"], registry=registry,
        )
        self.es_bulk_seconds = Histogram(
            "vedette_es_bulk_seconds", "Duration of one bulk request to Elasticsearch.",
            buckets=_JOB_BUCKETS, registry=registry,
        )
        self.es_last_success = Gauge(
            "vedette_es_last_success_timestamp_seconds",
            "When a bulk request to Elasticsearch last succeeded.", registry=registry,
        )
        self.es_reachable = Gauge(
            "vedette_es_reachable",
            "1 when the last request to Elasticsearch got an HTTP answer, 0 when it did not.",
            registry=registry,
        )
        self.es_batch_docs = Gauge(
            "vedette_es_batch_docs",
            "Current bulk batch size limit in documents (halved when a request times out, "
            "grown back as requests are answered; at most batch_max_docs).", registry=registry,
        )
        # Configuration
        self.config_reloads = Counter(
            "vedette_config_reloads_total", "Configuration reloads, by result (ok, error).",
            ["result"], registry=registry,
        )
        self.config_last_reload_success = Gauge(
            "vedette_config_last_reload_success_timestamp_seconds",
            "When configuration and rules were last loaded successfully.", registry=registry,
        )


def catalog(registry: CollectorRegistry | None = None) -> dict[str, MetricSpec]:
    """Every metric name the agent may expose (sample names, including ``_bucket`` etc.)."""
    reg = registry or CollectorRegistry()
    if registry is None:
        AgentMetrics(reg)
    names: dict[str, MetricSpec] = {}
    for metric in reg.collect():
        spec = MetricSpec(metric.name, metric.type, metric.documentation)
        names[metric.name] = spec
        for suffix in _SUFFIXES.get(metric.type, ("",)):
            names[metric.name + suffix] = spec
    for spec in SCRAPE_TIME:
        names[spec.name] = spec
    return names


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
}
