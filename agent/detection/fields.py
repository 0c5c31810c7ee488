"""The logsources Vedette produces and the fields a rule may use on each of them.

This module is the single catalogue that the rule loader checks rules against. Each entry maps a
Sigma logsource (product, category, service) to the ECS fields its events carry and to the Sigma
field names (Sysmon-for-Linux style: ``Image``, ``CommandLine`` …) that the pySigma processing
pipeline rewrites onto them. A rule whose logsource has no entry, or that needs a field its
logsource does not carry, is *rejected* at load time with the reason.

Extending it (network and host issues): add or update one :class:`LogsourceFields` in
:data:`CATALOGUE` with the ECS names your collector emits. Product ``vedette`` rules use ECS
names directly, so they rarely need a Sigma mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

Key = tuple[str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class LogsourceFields:
    """Fields of one logsource: ECS names allowed, Sigma name → ECS name, raw-key policy."""

    product: str
    category: str | None = None
    service: str | None = None
    fields: frozenset[str] = frozenset()
    sigma_names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Raw keys (auditd: a0, SYSCALL …) are accepted when they match this predicate.
    raw_keys: bool = False
    description: str = ""

    @property
    def key(self) -> Key:
        return (self.product, self.category, self.service)

    @property
    def key_text(self) -> str:
        return "/".join(p for p in self.key if p)

    def resolve(self, name: str) -> str | None:
        """The event field a rule's field name refers to, or ``None`` when never produced."""
        mapped = self.sigma_names.get(name, name)
        if mapped in self.fields:
            return mapped
        if self.raw_keys and _is_raw_key(name):
            return name
        return None


def _is_raw_key(name: str) -> bool:
    return bool(name) and len(name) <= 64 and name.replace("_", "").replace("-", "").isalnum()


def _entry(
    product: str,
    category: str | None = None,
    service: str | None = None,
    *,
    fields: Iterable[str] = (),
    sigma: Mapping[str, str] | None = None,
    raw_keys: bool = False,
    description: str = "",
) -> LogsourceFields:
    sigma = dict(sigma or {})
    return LogsourceFields(
        product, category, service, frozenset(fields) | frozenset(sigma.values()),
        MappingProxyType(sigma), raw_keys, description,
    )


MESSAGE = "message"
"""The raw log line; Sigma keyword rules (values without a field) match against it."""

_PROCESS_SIGMA = {
    "Image": "process.executable",
    "CommandLine": "process.command_line",
    "ParentImage": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "CurrentDirectory": "process.working_directory",
    "User": "user.name",
    "ProcessId": "process.pid",
    "ParentProcessId": "process.parent.pid",
    "OriginalFileName": "process.name",
}
_PROCESS_ECS = (
    "process.executable", "process.command_line", "process.name", "process.pid", "process.args",
    "process.parent.executable", "process.parent.command_line", "process.parent.pid",
    "process.parent.name", "process.working_directory", "user.name", "user.id", "host.name",
    "event.action",
)
_HOST_METRICS_ECS = (
    "host.name", "host.cpu.usage", "host.cpu.count", "system.load.1", "system.load.5",
    "system.load.15", "system.memory.used.pct", "system.swap.used.pct",
    "system.filesystem.max_used.pct", "system.process.count", "system.thread.count",
    "system.fd.open", "system.users.count", "host.uptime", "host.network.ingress.bytes",
    "host.network.egress.bytes", "host.disk.read.bytes", "host.disk.write.bytes",
    "event.dataset",
)
_NET_COMMON = (
    "source.ip", "source.port", "source.mac", "destination.ip", "destination.port",
    "destination.mac", "network.transport", "network.protocol", "network.direction",
    "network.bytes", "network.packets", "network.iana_number", "observer.ingress.interface.name",
    "host.name", "event.dataset",
)
_NET_PACKET = (
    "network.type", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.rst", "tcp.flags.fin",
    "tcp.flags.psh", "tcp.flags.urg", "tcp.flags.value", "icmp.type", "icmp.code",
    "icmp.original.transport", "icmp.original.destination.ip", "icmp.original.destination.port",
    "tcp.connection_state", "network.fragments", "ipv6.extension_headers",
    "ipv6.extension_chain", "ipv6.unusual_extension_chain", "event.action",
    "vedette.decoy_set_size", "ip.ttl", "ip.df", "ip.tos", "tcp.window", "tcp.options",
    "vedette.likely_spoofed", "vedette.answers_spoofed", "vedette.decoy_spoofed_count",
    "tcp.mss", "tcp.window_scale", "tcp.flags.ece", "tcp.flags.cwr", "icmp.id", "icmp.seq",
    "icmp.payload_length", "network.probe_shape", "network.service_probe",
)
_NET_TRAFFIC = (
    "network.type", "traffic.interval_seconds", "traffic.packets", "traffic.bytes",
    "traffic.source_count", "traffic.syn", "traffic.synack", "traffic.rst", "traffic.syn_ratio",
    "traffic.icmp_echo",
)
_NET_FLOW = (
    "network.type", "event.action", "event.duration", "threat.indicator.ip",
    "threat.indicator.type", "threat.feed.name", "threat.indicator.matched_side",
)
_NET_DNS = (
    "network.type", "dns.id", "dns.type", "dns.op_code", "dns.question.name",
    "dns.question.type", "dns.question.registered_domain", "dns.question.top_level_domain",
    "dns.question.subdomain", "dns.question.subdomain_length", "dns.question.subdomain_entropy",
    "dns.question.max_label_length", "dns.question.name_length", "dns.response_code",
    "dns.answers.count",
)
_NET_ARP = (
    "network.type", "arp.opcode", "arp.operation", "arp.sender_ip", "arp.sender_mac",
    "arp.target_ip", "arp.target_mac", "arp.gratuitous", "arp.sender_is_gateway",
    "arp.sender_mac_previous",
)
_NET_SSH = (
    "network.type", "event.action", "event.outcome", "event.duration", "source.bytes",
    "source.packets", "destination.bytes", "destination.packets", "ssh.client", "ssh.server",
    "ssh.auth_attempts", "ssh.auth_failures", "ssh.auth_success", "ssh.auth_outcome",
    "ssh.auth_inference", "ssh.key_exchange", "ssh.state",
)
_NET_SESSIONS = (
    "network.type", "event.action", "sessions.open", "sessions.slow",
    "sessions.bytes_per_second", "sessions.clients", "sessions.half_open",
)
_NET_ICMP_ECHO = (
    "network.type", "event.action", "icmp_echo.request_bytes", "icmp_echo.reply_bytes",
    "icmp_echo.large_packets", "icmp_echo.requests", "icmp_echo.replies", "icmp_echo.sizes",
    "icmp_echo.window_seconds",
)
_NET_ND = (
    "network.type", "event.action", "icmp.type", "nd.type", "nd.hop_limit_valid",
    "nd.target_ip", "nd.target_mac", "nd.target_mac_previous", "nd.router", "nd.solicited",
    "nd.override", "nd.new_neighbor", "nd.router_lifetime", "nd.managed", "nd.other_config",
    "nd.prefixes", "nd.new_router", "nd.known_routers", "nd.new_prefixes",
    "nd.new_prefix_count", "nd.redirect_destination", "nd.fragmented",
)
_NET_HEALTH = (
    "capture.packets", "capture.drops", "capture.drop_ratio", "capture.freeze_drops",
    "capture.decode_errors", "capture.events_over_budget", "capture.events_over_global_budget",
)
_LOG_SERVICES = (
    "sshd", "auth", "sudo", "syslog", "cron", "su", "vsftpd", "clamav", "guacamole", "auditd",
)
# Sigma field names of log services: sudo's own keys (``USER=#-1``) as its parser maps them.
_LOG_SIGMA: dict[str, dict[str, str]] = {
    "sudo": {"USER": "user.target.name", "COMMAND": "process.command_line",
             "TTY": "process.tty.name", "PWD": "process.working_directory"},
}
# Host collectors (agent/collectors; docs/events.md "Host collectors").
_HOST_PROCESS = (
    "process.io.socket", "process.io.socket_fds", "vedette.process.io.local_socket_fds",
    "process.executable_deleted",
    "process.parent.args", "process.parent.user.name", "process.parent.parent.pid",
    "process.parent.parent.executable", "process.parent.parent.name",
    "process.parent.parent.command_line", "process.parent.parent.args", "user.effective.id",
    "user.effective.name", "group.id", "container.id", "process.start", "event.kind",
    "event.category", "event.type", "event.dataset", "vedette.process.source",
    # exec facts from audit, and the socket/pipe relations of issue 17 (docs/host.md)
    "vedette.process.io.socket_inode", "vedette.process.io.stdin_pipe",
    "vedette.process.io.stdout_pipe", "vedette.process.interactive_shell",
    "vedette.process.shell_copy",
    "vedette.process.parent.network_socket", "user.audit.id", "vedette.process.audit_session",
    "process.tty.name", "vedette.process.script", "vedette.process.file",
    "vedette.download.path", "vedette.process.stdin_program", "vedette.process.built_locally",
)
_HOST_CONNECTION = (
    "event.kind", "event.category", "event.action", "event.dataset", "network.type", "user.id",
)
_FILE_STATE = ("mode", "uid", "gid", "size", "inode", "mtime", "target_path")
_HOST_FILE = (
    "event.kind", "event.category", "event.type", "event.dataset", "file.directory",
    "file.type", "file.owner", "file.hash.sha256", "vedette.fim.source", "vedette.fim.changes",
    "vedette.fim.previous.sha256", "vedette.fim.package_manager",
    "vedette.fim.package_transaction", *(f"file.{k}" for k in _FILE_STATE),
    *(f"vedette.fim.previous.{k}" for k in _FILE_STATE),
)
_HOST_AUDITD = (
    "event.dataset", "event.action", "event.outcome", "auditd.serial", "process.executable",
    "process.name", "process.pid", "process.parent.pid", "process.args", "process.command_line",
    "process.working_directory", "process.title", "user.id", "user.effective.id",
    "user.audit.id", "user.name", "file.path", "source.address",
)
_HOST_AUTH = (
    "event.dataset", "event.category", "event.action", "event.outcome", "event.reason",
    "source.ip", "source.port", "source.domain", "user.name", "user.id", "user.effective.name",
    "user.target.name", "user.target.id", "user.target.group.id", "group.name", "group.id",
    "process.command_line", "process.tty.name", "process.working_directory",
    "log.syslog.hostname", "log.syslog.facility.code", "vedette.auth.method",
    "vedette.auth.invalid_user", "vedette.auth.preauth", "vedette.pam.service",
    "vedette.group.privileged", "vedette.user.shell", "vedette.user.previous_id",
    "vedette.auth.failures_before", "vedette.auth.new_source", "vedette.user.privileged",
    "vedette.sudo.ambiguous",
)
_HOST_WEB = (
    "vedette.url.decoded", "http.version", "source.domain", "event.outcome", "event.category",
    "log.file.path", "event.action", "vedette.web.truncated", "vedette.web.line_bytes",
)

_ENTRIES: tuple[LogsourceFields, ...] = (
    _entry(
        "linux", "process_creation",
        fields=(*_PROCESS_ECS, *_HOST_PROCESS), sigma=_PROCESS_SIGMA,
        description="process executions (exec events)",
    ),
    _entry(
        "linux", "network_connection",
        fields=(
            "source.ip", "source.port", "destination.ip", "destination.port",
            "destination.domain", "network.direction", "network.initiated", "network.transport",
            "process.executable", "process.pid", "process.name", "user.name", "host.name",
            *_HOST_CONNECTION,
        ),
        sigma={
            "DestinationIp": "destination.ip", "DestinationPort": "destination.port",
            "DestinationHostname": "destination.domain", "SourceIp": "source.ip",
            "SourcePort": "source.port", "Initiated": "network.initiated",
            "Image": "process.executable", "User": "user.name", "Protocol": "network.transport",
        },
        description="outbound/inbound connections of local processes",
    ),
    _entry(
        "linux", "file_event",
        fields=("file.path", "file.name", "process.executable", "process.pid", "event.action",
                "user.name", "host.name", *_HOST_FILE),
        sigma={"TargetFilename": "file.path", "Image": "process.executable", "User": "user.name"},
        description="file creation/modification (file integrity monitoring)",
    ),
    _entry(
        "linux", None, "auditd", fields=(MESSAGE, "host.name", *_HOST_AUDITD), raw_keys=True,
        description="raw auditd records, keys kept as-is (type, SYSCALL, a0..a7, exe, key …)",
    ),
    _entry("linux", fields=(MESSAGE, "host.name", "log.file.path"),
           description="any Linux log line (keyword rules)"),
    *(
        _entry("linux", None, service, fields=(MESSAGE, "host.name", "log.file.path",
                                                "process.name", "process.pid", *_HOST_AUTH),
               sigma=_LOG_SIGMA.get(service),
               description=f"{service} log lines (keyword rules)")
        for service in _LOG_SERVICES if service != "auditd"
    ),
    _entry("vedette", "host_metrics", fields=_HOST_METRICS_ECS,
           description="host telemetry sampled every host_metrics.interval_seconds"),
    # Network logsources (agent/netevents/records.py; docs/events.md "Network").
    _entry(
        "vedette", "network_packet",
        fields=(*_NET_COMMON, *_NET_PACKET),
        description="TCP control packets and ICMP probes/errors from packet capture (budgeted)",
    ),
    _entry(
        "vedette", "network_traffic",
        fields=(*_NET_COMMON, *_NET_TRAFFIC),
        description="per-second aggregates per destination (floods)",
    ),
    _entry(
        "vedette", "network_flow",
        fields=(*_NET_COMMON, *_NET_FLOW),
        description="flow summaries per interval and threat-intel matches on new flows",
    ),
    _entry(
        "vedette", "dns",
        fields=(*_NET_COMMON, *_NET_DNS),
        description="DNS queries and answers from packet capture",
    ),
    _entry(
        "vedette", "arp",
        fields=(*_NET_COMMON, *_NET_ARP),
        description="ARP requests and replies (with the capture's IP->MAC binding table)",
    ),
    _entry(
        "vedette", "network_ssh",
        fields=(*_NET_COMMON, *_NET_SSH),
        description="one SSH connection: version lines, authentication inferred from the wire",
    ),
    _entry(
        "vedette", "network_sessions",
        fields=(*_NET_COMMON, *_NET_SESSIONS),
        description="concurrent held-open TCP connections per (client, service) and per service",
    ),
    _entry(
        "vedette", "network_icmp_echo",
        fields=(*_NET_COMMON, *_NET_ICMP_ECHO),
        description="echo request/reply pairs carrying many-sized payloads (ICMP tunnels)",
    ),
    _entry(
        "vedette", "ipv6_nd",
        fields=(*_NET_COMMON, *_NET_ND),
        description="IPv6 neighbour discovery: advertisements, router advertisements, redirects",
    ),
    _entry(
        "vedette", "capture_health",
        fields=("observer.ingress.interface.name", "host.name", "event.dataset",
                *_NET_HEALTH),
        description="packet-capture health per interface: kernel drops, decode errors",
    ),
    _entry(
        "vedette", "web_access",
        fields=("source.ip", "http.request.method", "http.response.status_code", "url.path",
                "url.original", "url.query", "user_agent.original", "http.response.body.bytes",
                "http.request.referrer", "user.name", "host.name", MESSAGE, "event.dataset",
                *_HOST_WEB),
        description="web server access log lines",
    ),
    _entry(
        "vedette", "listening_socket",
        fields=("event.kind", "event.category", "event.action", "event.dataset", "server.ip",
                "server.port", "network.transport", "network.type", "vedette.socket.wildcard",
                "process.pid", "process.name", "process.executable", "user.id", "user.name",
                "host.name", "process.args", "process.command_line"),
        description="listening sockets appearing (listening_started) or going away",
    ),
    _entry(
        "vedette", "process_cpu",
        fields=("event.kind", "event.category", "event.action", "event.dataset", "process.pid",
                "process.name", "process.executable", "process.command_line", "process.cpu.pct",
                "vedette.process.executable_age", "user.id", "user.name", "host.name",
                "vedette.process.age_seconds", "vedette.process.remote.ip",
                "vedette.process.remote.port"),
        description="processes keeping a CPU busy, with the age of their executable",
    ),
    _entry(
        "vedette", "process_state",
        fields=("event.kind", "event.category", "event.type", "event.action", "event.dataset",
                "process.pid", "process.name", "process.executable", "process.args",
                "process.command_line", "process.parent.pid", "process.start", "user.id",
                "user.name", "host.name", "vedette.process.memfd",
                "vedette.process.executable_replaced"),
        description="running processes whose executable was deleted (executable_deleted)",
    ),
    _entry(
        "vedette", "process_uid_change",
        fields=("event.kind", "event.category", "event.type", "event.action", "event.dataset",
                "process.pid", "process.executable", "process.name", "process.args",
                "process.command_line", "process.parent.pid", "process.parent.executable",
                "process.parent.name", "process.parent.args", "process.parent.command_line",
                "user.id", "user.name", "user.effective.id", "user.effective.name",
                "vedette.process.previous_uid", "vedette.process.previous_euid", "host.name"),
        description="a process's real or effective uid changed (proc connector uid events)",
    ),
    _entry(
        "vedette", "kernel_module",
        fields=("event.kind", "event.category", "event.action", "event.dataset",
                "kernel_module.name", "kernel_module.size", "kernel_module.state",
                "kernel_module.taints", "kernel_module.out_of_tree", "kernel_module.unsigned",
                "host.name"),
        description="kernel modules loaded or unloaded (/proc/modules diff)",
    ),
    _entry(
        "vedette", "log_integrity",
        fields=("event.kind", "event.category", "event.action", "event.dataset",
                "log.file.path", "file.path", "file.size", "vedette.log.previous_size",
                "host.name"),
        description="followed log files truncated, deleted or rotated",
    ),
    _entry(
        "vedette", "log_forgery",
        fields=("event.kind", "event.category", "event.action", "event.dataset",
                "event.reason", "vedette.log.claimed_program", "vedette.log.claimed_action",
                "vedette.log.unit", "process.pid", "process.executable", "process.name",
                "user.id", "log.syslog.hostname", MESSAGE, "host.name"),
        description="journal entries whose writer is not the program they name (journal_trust)",
    ),
)

CATALOGUE: Mapping[Key, LogsourceFields] = MappingProxyType({e.key: e for e in _ENTRIES})


def lookup(
    product: str | None, category: str | None, service: str | None
) -> LogsourceFields | None:
    """The catalogue entry of a rule's logsource; ``None`` when Vedette never produces it."""
    return CATALOGUE.get((product, category, service))


def sigma_field_mappings() -> list[tuple[LogsourceFields, dict[str, str]]]:
    """Per-logsource Sigma → ECS renames, for the pySigma processing pipeline."""
    return [(e, dict(e.sigma_names)) for e in _ENTRIES if e.sigma_names]
