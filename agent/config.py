"""Configuration: one YAML file parsed into frozen pydantic models, one per collector or sink.

Sources, later ones winning: built-in defaults → the YAML file (``--config``, default
``/etc/vedette/vedette.yaml``; absent means defaults) → environment variables
``VEDETTE_<SECTION>__<KEY>`` (nested keys joined by ``__``, values parsed as YAML scalars).
Secrets are given as ``*_file`` paths (or inline/env values, which are masked everywhere).
Every problem is reported with file, line and reason; unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from agent.errors import ConfigError, ConfigErrors
from agent.yamlguard import SafeLoader, YamlLimits, YamlRefused, check_events, read_text

DEFAULT_CONFIG_PATH = Path("/etc/vedette/vedette.yaml")
ENV_PREFIX = "VEDETTE_"
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 50_000
MAX_YAML_DEPTH = 32
MAX_YAML_CHARS = 4 << 20  # values once aliases are expanded
YAML_LIMITS = YamlLimits(MAX_CONFIG_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, MAX_YAML_CHARS)
REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_RULES_DIR = Path("/etc/vedette/rules")
SYSTEM_RULES_DIR = Path("/usr/share/vedette/rules")
SHIPPED_RULES_PACKAGE = "agent.shipped_rules"  # the wheel's copy of rules/ (pyproject.toml)


def shipped_rules_dir() -> Path | None:
    """Where the rules shipped with Vedette are: the wheel's package data, else a checkout's
    ``rules/`` (``make run``, editable installs), else ``/usr/share/vedette/rules``."""
    packaged = Path(__file__).resolve().parent / SHIPPED_RULES_PACKAGE.rpartition(".")[2]
    if packaged.is_dir():
        return packaged
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "rules").is_dir():
        return REPO_ROOT / "rules"
    return SYSTEM_RULES_DIR if SYSTEM_RULES_DIR.is_dir() else None





Port = Annotated[int, Field(ge=0, le=65535)]
"""A TCP/UDP port number (0-65535)."""

class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_subsection_is_empty(cls, data: Any) -> Any:
        """``metrics:`` with every option commented out (the shipped example) is YAML null."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            info = cls.model_fields.get(key) if isinstance(key, str) else None
            annotation = info.annotation if info is not None else None
            if value is None and isinstance(annotation, type) and issubclass(annotation, Section):
                out[key] = {}
        return out


class AgentSection(Section):
    name: str | None = Field(None, description="agent.name in alerts; defaults to the host name")
    state_dir: Path | None = Field(
        None, description="offsets, baselines, spool; /var/lib/vedette as root, else ./var"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="ECS labels on every alert")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = Field(
        "text", description="stderr log format; unset under systemd (JOURNAL_STREAM) = json"
    )

    def resolved_state_dir(self) -> Path:
        """Configured dir; else systemd's ``$STATE_DIRECTORY``; else by privilege."""
        if self.state_dir is not None:
            return self.state_dir
        from_systemd = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        if from_systemd:
            return Path(from_systemd)
        return Path("/var/lib/vedette") if os.geteuid() == 0 else Path("var").resolve()


class MetricsSection(Section):
    enabled: bool = True
    listen_address: str = "127.0.0.1"
    port: int = Field(9787, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    basic_auth_username: str | None = None
    basic_auth_password: SecretStr | None = None
    basic_auth_password_file: Path | None = None

    @model_validator(mode="after")
    def _pairs(self) -> MetricsSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        has_password = self.basic_auth_password is not None or self.basic_auth_password_file
        if bool(self.basic_auth_username) != bool(has_password):
            raise ValueError("basic_auth_username needs basic_auth_password(_file) and vice versa")
        return self


class PipelineSection(Section):
    queue_size: int = Field(65_536, ge=16, description="events waiting for detection")
    batch_size: int = Field(512, ge=1, description="events the detection stage takes at once")
    tick_seconds: float = Field(1.0, gt=0, le=60, description="wall-clock timer resolution")
    shutdown_timeout_seconds: float = Field(8.0, gt=0, le=60)
    sink_retry_buffer: int = Field(10_000, ge=1, description="alerts kept per failing sink")


class SchedulerSection(Section):
    misfire_grace_seconds: int = Field(30, ge=1)


class HostMetricsSection(Section):
    enabled: bool = True
    interval_seconds: float = Field(10.0, gt=0)
    exclude_interfaces: list[str] = Field(default_factory=lambda: ["veth*"])
    exclude_fstypes: list[str] = Field(
        default_factory=lambda: [
            "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2",
            "nsfs", "autofs", "devpts", "mqueue", "tracefs", "debugfs", "securityfs", "pstore",
            "bpf", "configfs", "fusectl", "hugetlbfs", "binfmt_misc", "ramfs",
        ]
    )


class TrustedSource(Section):
    """Events whose ``field`` is in ``cidrs`` or equals one of ``values`` never alert."""

    field: str = Field("source.ip", min_length=1, description="event field compared (ECS name)")
    cidrs: list[str] = Field(default_factory=list, description="addresses or networks")
    values: list[str] = Field(default_factory=list, description="exact values (case-sensitive)")
    rules: list[str] = Field(
        default_factory=list, description="rule ids or names it applies to; empty = every rule"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TrustedSource:
        if bool(self.cidrs) == bool(self.values):
            raise ValueError("give exactly one of cidrs or values")
        for cidr in self.cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or network") from None
        return self


class DetectionSection(Section):
    shipped_rules: bool = Field(
        True, description="load the rules shipped with Vedette first (then rule_paths)"
    )
    rule_paths: list[Path] = Field(
        default_factory=list,
        description="local rule files/dirs loaded after the shipped rules, adding rules or "
        "overriding one by id; empty = /etc/vedette/rules when it exists",
    )
    extra_rule_paths: list[Path] = Field(
        default_factory=list, description="third-party Sigma folders (e.g. SigmaHQ)"
    )
    allow_empty: bool = Field(
        False, description="start (and reload) even when no rule would load: blind on purpose"
    )
    late_allowance_seconds: float = Field(5.0, ge=0)
    meta_alert_threshold: int = Field(
        1000, ge=1, description="suppressed triggers of one rule per minute that raise a meta-alert"
    )
    watch_rules: bool = Field(True, description="reload when a rule file changes")
    allow_unsafe_rule_paths: bool = Field(
        False, description="load rule paths other users can write to (refused by default)"
    )
    watch_interval_seconds: float = Field(5.0, gt=0)
    disabled_rules: list[str] = Field(
        default_factory=list, description="rule ids or names never evaluated (docs/tuning.md)"
    )
    trusted_sources: list[TrustedSource] = Field(
        default_factory=list,
        description="silence matches by field value, e.g. [{cidrs: [10.0.0.0/8], rules: "
        "[ssh_bruteforce]}, {field: user.name, values: [backup]}] (docs/tuning.md)",
    )

    def shipped_rule_paths(self) -> list[Path]:
        """The shipped rule folder, unless ``shipped_rules`` is off (or none is installed)."""
        if not self.shipped_rules:
            return []
        found = shipped_rules_dir()
        return [found] if found is not None else []

    def local_rule_paths(self) -> list[Path]:
        """``rule_paths``; empty means ``/etc/vedette/rules`` if that folder exists."""
        if self.rule_paths:
            return list(self.rule_paths)
        return [LOCAL_RULES_DIR] if LOCAL_RULES_DIR.is_dir() else []

    def resolved_rule_paths(self) -> list[Path]:
        """Every own rule folder, in load order: shipped, then local (which override by id)."""
        return [*self.shipped_rule_paths(), *self.local_rule_paths()]


class JsonlSinkSection(Section):
    enabled: bool = True
    path: Path | None = Field(
        None, description="default: <state_dir>/alerts.jsonl (./var/alerts.jsonl when not root)"
    )
    fsync: Literal["always", "interval", "never"] = "interval"
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    backups: int = Field(5, ge=0, le=100)


class StdoutSinkSection(Section):
    enabled: bool = False


class SinksSection(Section):
    jsonl: JsonlSinkSection = JsonlSinkSection()
    stdout: StdoutSinkSection = StdoutSinkSection()


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ElasticsearchSection(Section):
    """Alert shipping to Elasticsearch (docs/elasticsearch.md); no ``hosts`` = sink off."""

    hosts: list[str] = Field(default_factory=list, description="empty = sink off")
    namespace: str = Field("default", pattern=r"^[a-z0-9_]{1,100}$")
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    verify_certs: bool = True
    request_timeout_seconds: float = Field(10.0, gt=0)
    compression: Literal["auto"] | bool = Field(
        "auto", description="gzip bulk bodies; auto: unless every host is loopback"
    )
    compatibility_8x: bool = Field(False, description="send compatible-with=8 (8.x servers)")
    setup_templates: bool = Field(True, description="install ILM/templates at start, reconnect")
    ilm_delete_after_days: int = Field(90, ge=1)
    latest_index: bool = Field(
        True, description="also keep one converging document per alert in vedette-alerts-latest-*"
    )
    batch_max_docs: int = Field(1000, ge=1)
    batch_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    batch_max_age_seconds: float = Field(0.2, gt=0, description="linger before a small batch")
    retry_backoff_initial_seconds: float = Field(0.5, gt=0)
    retry_backoff_max_seconds: float = Field(30.0, gt=0)
    spool_dir: Path | None = Field(None, description="default: <state_dir>/es-spool")
    spool_max_bytes: int = Field(512 * 1024 * 1024, ge=1 << 20)
    spool_max_age_seconds: float = Field(7 * 86400, gt=0)
    spool_fsync: Literal["always", "batch", "never"] = Field(
        "batch", description="batch: fsync at most every second; kill -9 never loses a record"
    )
    spool_overflow: Literal["drop_lowest_severity", "drop_oldest"] = "drop_lowest_severity"
    spool_min_free_bytes: int = Field(
        64 * 1024 * 1024, ge=0,
        description="stop growing the spool below this free space (at most 5 % of the disk)",
    )
    dead_letter_max_bytes: int = Field(50 * 1024 * 1024, ge=1024)
    ship_events: bool = False
    events_sample_rate: float = Field(1.0, ge=0, le=1)
    events_datasets: list[str] = Field(default_factory=list, description="empty = all")

    @model_validator(mode="after")
    def _consistent(self) -> ElasticsearchSection:
        for host in self.hosts:
            if not host.startswith(("http://", "https://")):
                raise ValueError(f"hosts: {host!r} must start with http:// or https://")
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("api_key and api_key_file are exclusive")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are exclusive")
        has_key = self.api_key is not None or self.api_key_file is not None
        has_password = self.password is not None or self.password_file is not None
        if has_key and self.username:
            raise ValueError("use either api_key(_file) or username/password, not both")
        if bool(self.username) != has_password:
            raise ValueError("username needs password(_file) and vice versa")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file go together")
        if self.retry_backoff_max_seconds < self.retry_backoff_initial_seconds:
            raise ValueError("retry_backoff_max_seconds is below retry_backoff_initial_seconds")
        return self

    def gzip_bodies(self) -> bool:
        """Whether bulk bodies are gzipped: ``compression``, where ``auto`` means yes unless
        every host is on loopback (compressing for a local socket only costs CPU)."""
        if self.compression != "auto":
            return bool(self.compression)
        return not self.hosts or not all(_is_loopback_url(host) for host in self.hosts)


class InputsSection(Section):
    event_files: list[Path] = Field(
        default_factory=list,
        description="JSON-lines files of events (ECS fields + logsource) to follow",
    )
    event_files_interval_seconds: float = Field(1.0, gt=0)


class CaptureSection(Section):
    """Live packet capture (AF_PACKET, TPACKET_V3 ring, kernel BPF); see docs/network.md."""

    enabled: bool = Field(True, description="capture packets when the agent has CAP_NET_RAW")
    interfaces: list[str] = Field(
        default_factory=list,
        description="interfaces to capture on; empty = every non-loopback interface that is up",
    )
    exclude_interfaces: list[str] = Field(
        default_factory=lambda: ["lo", "veth*"],
        description="glob patterns never captured (veth: container traffic is seen on its bridge)",
    )
    rescan_seconds: float = Field(10.0, gt=0, description="how often new interfaces are picked up")
    bpf_filter: str = Field(
        "", description="extra tcpdump filter expression, compiled with `tcpdump -dd` at start"
    )
    snaplen: int = Field(
        512, ge=96, le=65535, description="bytes kept per packet (headers + a DNS question)"
    )
    ring_block_bytes: int = Field(
        1 << 20, ge=1 << 16, description="TPACKET_V3 block size (a power of two, >= page size)"
    )
    ring_blocks: int = Field(64, ge=2, le=4096, description="blocks per ring (64 x 1 MiB = 64 MiB)")
    block_timeout_ms: int = Field(
        100, ge=1, le=1000, description="a partly filled block is handed over after this long"
    )
    health_interval_seconds: float = Field(
        10.0, gt=0, description="how often capture_health events (drop counts) are emitted"
    )


class NetworkSection(Section):
    """Turning decoded packets into events: budgets, aggregates, flows, direction."""

    local_networks: list[str] = Field(
        default_factory=lambda: [
            "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
            "fc00::/7", "fe80::/10", "::1/128",
        ],
        description="networks counted as local for network.direction",
    )
    gateways: list[str] = Field(
        default_factory=list,
        description="gateway IPs for the ARP gateway rule (live capture adds the default routes)",
    )
    max_events_per_destination: int = Field(
        100, ge=1, description="per-packet events per second toward one (address, port)"
    )
    max_events_per_source: int = Field(
        1000, ge=1, description="per-packet events per second from one address"
    )
    max_events_per_second: int = Field(
        20000, ge=1,
        description="per-packet events per second of each class (control packets; DNS and ARP)",
    )
    max_arp_events_per_mac: int = Field(
        50, ge=1, description="ARP events per second per sender MAC"
    )
    max_dns_events_per_client: int = Field(
        200, ge=1, description="DNS events per second per client address"
    )
    aggregate_min_packets: int = Field(
        20, ge=1, description="a destination's per-second aggregate needs this many packets"
    )
    max_aggregate_events: int = Field(
        200, ge=1, description="per-second aggregates emitted per second (largest first)"
    )
    max_tracked_keys: int = Field(
        65536, ge=1024, description="bound of every per-second table (destinations, sources)"
    )
    flow_interval_seconds: float = Field(
        10.0, gt=0, description="flow summaries (bytes per source->destination) period"
    )
    max_flows: int = Field(50000, ge=100, description="flows tracked per interval")
    max_new_flows_per_destination: int = Field(
        1000, ge=1,
        description="new flows per second toward one address (more: a flood, left to aggregates)",
    )
    max_flow_events: int = Field(
        500, ge=1, description="flow summaries emitted per interval (largest first)"
    )
    flow_min_bytes: int = Field(0, ge=0, description="smaller flows are not emitted")
    dns_ports: list[Port] = Field(
        default_factory=lambda: [53], description="UDP ports parsed as DNS"
    )
    ssh_ports: list[Port] = Field(
        default_factory=lambda: [22],
        description="TCP ports whose connections the SSH analyzer follows (empty: none)",
    )
    max_ssh_connections: int = Field(
        4096, ge=16, description="SSH connections followed at once (more: counted, not followed)"
    )
    ssh_idle_timeout_seconds: float = Field(
        300.0, gt=0, description="an SSH connection without a segment for this long is reported"
    )
    max_nd_neighbours: int = Field(
        4096, ge=16, description="IPv6 neighbour table (address -> MAC) entries, oldest dropped"
    )


class ThreatIntelSection(Section):
    """Blocklists of bad addresses matched against every new flow."""

    files: list[Path] = Field(
        default_factory=list,
        description="plain IP/CIDR lists, FireHOL netsets, Spamhaus DROP (text or JSON)",
    )
    reload_interval_seconds: float = Field(
        300.0, gt=0, description="how often the files are checked for changes and reloaded"
    )


# ---------------------------------------------------------------------------- host collectors


class ProcessSection(Section):
    """Process executions (proc connector, /proc polling fallback)."""

    enabled: bool = Field(True, description="report every exec as a process_creation event")
    fallback_polling: bool = Field(
        True, description="poll /proc when the proc connector is unavailable (degraded coverage)"
    )
    kernel_exec_facts: bool = Field(
        True, description="take exec facts (argv, executable, cwd, ids) from kernel audit "
        "records (needs CAP_AUDIT_CONTROL and CAP_AUDIT_READ; falls back to /proc reads)"
    )
    poll_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="/proc polling interval in fallback mode"
    )
    cpu_sampling: bool = Field(
        True, description="report processes that keep a CPU busy (process_cpu events)"
    )
    cpu_interval_seconds: float = Field(
        30.0, ge=1, description="how often per-process CPU use is sampled"
    )
    cpu_threshold: float = Field(
        0.8, gt=0, le=64, description="CPU share of one core at which a process is reported"
    )
    cpu_young_interval_seconds: float = Field(
        5.0, ge=1, description="between CPU samples, how often processes started since the "
        "last sample are checked (busy since their start: reported at once; >= "
        "cpu_interval_seconds turns this off)"
    )


class SocketsSection(Section):
    """Listening sockets and outbound connections, sampled from /proc/net."""

    enabled: bool = Field(True, description="report listeners appearing/disappearing")
    interval_seconds: float = Field(10.0, gt=0, description="how often socket tables are read")
    outbound: bool = Field(True, description="also report new outbound TCP connections")
    include_loopback: bool = Field(False, description="report connections to 127.0.0.0/8 and ::1")
    max_events_per_run: int = Field(500, ge=1, description="cap on events of one run")


class AuthLogsSection(Section):
    """Authentication logs: syslog files and/or the systemd journal."""

    enabled: bool = Field(True, description="follow authentication logs")
    paths: list[Path] = Field(
        default_factory=lambda: [Path("/var/log/auth.log"), Path("/var/log/secure")],
        description="syslog files to follow (missing ones are skipped)",
    )
    sshd_paths: list[Path] = Field(
        default_factory=list,
        description="files written by 'sshd -E' (bare messages without syslog header)",
    )
    journal: Literal["auto", "on", "off"] = Field(
        "auto", description="journalctl follower: auto = instead of the paths when the host "
        "has a journal"
    )
    journalctl: Path = Field(Path("/usr/bin/journalctl"), description="journalctl binary")
    start_at_end: bool = Field(
        True, description="on first start read only new lines (later starts resume at offsets)"
    )
    poll_interval_seconds: float = Field(0.25, gt=0, le=10, description="file poll interval")
    watch_integrity: bool = Field(
        True, description="report truncation or deletion of the auth logs (log tampering)"
    )


class WebLogsSection(Section):
    """Web server access logs (nginx/Apache, combined or common format)."""

    enabled: bool = Field(True, description="follow web access logs")
    paths: list[Path] = Field(
        default_factory=lambda: [
            Path("/var/log/nginx/access.log"), Path("/var/log/apache2/access.log"),
            Path("/var/log/httpd/access_log"),
        ],
        description="access logs to follow (missing ones are skipped)",
    )
    start_at_end: bool = Field(True, description="on first start read only new lines")
    poll_interval_seconds: float = Field(0.5, gt=0, le=10, description="file poll interval")


class FimSection(Section):
    """File integrity monitoring."""

    enabled: bool = Field(True, description="watch files for changes")
    default_watch_list: bool = Field(
        True, description="passwd/shadow/sudoers/ssh/cron/systemd/PAM/profile/ld.so.preload …"
    )
    paths: list[str] = Field(
        default_factory=list, description="extra absolute paths (files or directories)"
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["*.swp", "*~", "*.dpkg-new", "*.dpkg-tmp"],
        description="glob patterns of paths never reported",
    )
    root: Path = Field(Path("/"), description="directory the watched paths are relative to")
    rescan_interval_seconds: float = Field(
        3600.0, ge=10, description="full rescan (catches what inotify misses)"
    )
    max_hash_bytes: int = Field(
        1 << 30, ge=0, description="larger files are tracked by size/mtime only"
    )
    inotify: bool = Field(True, description="immediate events through inotify")

    @model_validator(mode="after")
    def _absolute(self) -> FimSection:
        bad = [p for p in self.paths if not p.startswith("/")]
        if bad:
            raise ValueError(f"fim.paths must be absolute: {bad[:3]}")
        return self


class KernelModulesSection(Section):
    """Kernel module load/unload diff."""

    enabled: bool = Field(True, description="report loaded/unloaded kernel modules")
    interval_seconds: float = Field(30.0, gt=0, description="how often /proc/modules is read")


class AuditdSection(Section):
    """auditd log tailing (when the file exists)."""

    enabled: bool = Field(True, description="follow the audit log when it exists")
    path: Path = Field(Path("/var/log/audit/audit.log"), description="auditd log file")
    start_at_end: bool = Field(True, description="on first start read only new records")
    poll_interval_seconds: float = Field(0.5, gt=0, le=10, description="file poll interval")


class Config(Section):
    agent: AgentSection = AgentSection()
    metrics: MetricsSection = MetricsSection()
    pipeline: PipelineSection = PipelineSection()
    scheduler: SchedulerSection = SchedulerSection()
    host_metrics: HostMetricsSection = HostMetricsSection()
    detection: DetectionSection = DetectionSection()
    sinks: SinksSection = SinksSection()
    elasticsearch: ElasticsearchSection = ElasticsearchSection()
    inputs: InputsSection = InputsSection()
    capture: CaptureSection = CaptureSection()
    network: NetworkSection = NetworkSection()
    threat_intel: ThreatIntelSection = ThreatIntelSection()
    process: ProcessSection = ProcessSection()
    sockets: SocketsSection = SocketsSection()
    auth_logs: AuthLogsSection = AuthLogsSection()
    web_logs: WebLogsSection = WebLogsSection()
    fim: FimSection = FimSection()
    kernel_modules: KernelModulesSection = KernelModulesSection()
    auditd: AuditdSection = AuditdSection()


# ---------------------------------------------------------------------------- loading


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Load and validate; raises :class:`ConfigErrors` listing every problem found."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    source = "<defaults>"
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        source = str(path)
        data, lines = _read_yaml(path)
    env_sources: dict[tuple[str, ...], str] = {}
    errors = _apply_env(data, environ, env_sources)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors.extend(_located(exc, source, lines, env_sources))
        raise ConfigErrors(errors) from None
    if errors:
        raise ConfigErrors(errors)
    return config


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    src = str(path)
    try:  # the one YAML guard (agent/yamlguard.py): size first, then the expanded document
        text = read_text(path, YAML_LIMITS)
        check_events(text, YAML_LIMITS)
        node = yaml.compose(text, Loader=SafeLoader)
    except YamlRefused as exc:
        raise ConfigErrors([ConfigError(exc.reason, src, exc.line)]) from None
    except yaml.MarkedYAMLError as exc:  # pragma: no cover - the guard parsed it already
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        reason = f"invalid YAML: {exc.problem or exc}"
        raise ConfigErrors([ConfigError(reason, src, line)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - the guard parsed it already
        raise ConfigErrors([ConfigError(f"invalid YAML: {exc}", src)]) from None
    if node is None:
        return {}, {}
    lines: dict[tuple[str, ...], int] = {}
    _index_lines(node, (), lines)
    try:
        data = yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:  # a tag no safe constructor knows (!!python/object)
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        reason = f"invalid YAML: {exc.problem or exc}"
        raise ConfigErrors([ConfigError(reason, src, line)]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # constructors raise plain errors on values such as `2001-13-45` or `!!int abc`
        raise ConfigErrors([ConfigError(f"invalid YAML value: {exc}", src)]) from None
    if data is None:  # an empty document (`---` alone)
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigErrors(
            [ConfigError("top level must be a mapping of sections", src, node.start_mark.line + 1)]
        )
    return data, lines


def _index_lines(node: yaml.Node, path: tuple[str, ...], lines: dict[tuple[str, ...], int]
                 ) -> None:
    """Line of every key path (bounded: the guard refused deep, huge or recursive input)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, str(i)), lines)


def _apply_env(
    data: dict[str, Any], environ: Mapping[str, str], sources: dict[tuple[str, ...], str]
) -> list[ConfigError]:
    errors: list[ConfigError] = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        if not all(keys):
            errors.append(ConfigError("empty key in variable name", f"<env:{name}>"))
            continue
        try:
            value = yaml.load(environ[name], Loader=SafeLoader)  # noqa: S506 - a safe loader
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            value = environ[name]  # e.g. `2001-13-45`: not a valid YAML scalar, keep the text
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
        sources[tuple(keys)] = f"<env:{name}>"
    return errors


def _located(
    exc: ValidationError,
    source: str,
    lines: dict[tuple[str, ...], int],
    env_sources: dict[tuple[str, ...], str],
) -> list[ConfigError]:
    out: list[ConfigError] = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "<root>"
        reason = err["msg"]
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "value_error":  # our validators' own message, without pydantic's prefix
            reason = reason.removeprefix("Value error, ")
        env = next(
            (env_sources[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in env_sources), None
        )
        if env is None and loc and loc not in lines:  # e.g. VEDETTE_NOSUCH__KEY: error at `nosuch`
            env = next(
                (src for keys, src in sorted(env_sources.items()) if keys[: len(loc)] == loc), None
            )
        if env is not None:
            out.append(ConfigError(f"{dotted}: {reason}", env))
            continue
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        out.append(ConfigError(f"{dotted}: {reason}", source, line))
    return out


# ---------------------------------------------------------------------------- secrets and output

_SECRET_MARKERS = ("password", "api_key", "secret", "token")


def read_secret(inline: SecretStr | None, path: Path | None) -> str | None:
    """The secret value from its file (first line, stripped) or inline; never logged."""
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            reason = f"cannot read secret file: {exc}"
            raise ConfigErrors([ConfigError(reason, str(path))]) from None
    return inline.get_secret_value() if inline is not None else None


def effective(config: Config) -> dict[str, Any]:
    """The config as plain data with every secret masked (``vedette config check``)."""
    masked: dict[str, Any] = _mask(config.model_dump(mode="json"))
    return masked


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if value is not None and any(m in key for m in _SECRET_MARKERS) and not key.endswith("_file"):
        return "********"
    if isinstance(value, str) and "@" in value and "://" in value:
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    """``http://user:secret@host`` -> ``http://user:********@host`` (credentials in a URL)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "********"  # unparsable: it may still hold a secret
    if password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:********@{host}").geturl()


def option_location(path: Path | None, *keys: str) -> tuple[str, int | None]:
    """File and line of an option, for problems found after validation (agent/preflight.py)."""
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is None:
        return "<defaults>", None
    try:
        _, lines = _read_yaml(path)
    except ConfigErrors:
        return str(path), None
    line = next((lines[keys[:i]] for i in range(len(keys), 0, -1) if keys[:i] in lines), None)
    return str(path), line
