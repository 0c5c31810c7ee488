"""Host detail: one server's resources, sessions and alerts, as its Vedette agent sees them."""

from __future__ import annotations

from generator.board import Layout, dashboard, restart_annotation, standard_vars
from generator.grafana import (
    SEL,
    Json,
    bargauge,
    color_override,
    or_zero,
    severity_overrides,
    stat,
    target,
    timeseries,
    titled,
)

UID = "vedette-host"
RATE = "$__rate_interval"


def _overview(lay: Layout) -> None:
    lay.row("Overview")
    lay.add(stat(
        "CPU busy",
        "Busy CPU fraction over the agent's last collection interval.",
        [target(f"max(vedette_host_cpu_usage_ratio{{{SEL}}})")],
        "percentunit", steps=((0.8, "orange"), (0.95, "red")), graph=True,
    ), 4, 4)
    lay.add(stat(
        "Load per CPU",
        "1-minute load average divided by the number of logical CPUs; above 1 means runnable "
        "work is waiting.",
        [target(f"max(vedette_host_load1{{{SEL}}}) / max(vedette_host_cpus{{{SEL}}})")],
        "short", steps=((1, "orange"), (2, "red")), graph=True,
    ), 4, 4)
    lay.add(stat(
        "Memory used",
        "Memory in use (total minus available) as a share of physical memory.",
        [target(f"max(vedette_host_memory_used_bytes{{{SEL}}}) / "
                f"max(vedette_host_memory_total_bytes{{{SEL}}})")],
        "percentunit", steps=((0.85, "orange"), (0.95, "red")), graph=True,
    ), 4, 4)
    lay.add(stat(
        "Fullest filesystem",
        "Used share of the fullest monitored filesystem.",
        [target(f"max(vedette_host_filesystem_used_ratio{{{SEL}}})")],
        "percentunit", steps=((0.8, "orange"), (0.9, "red")),
    ), 4, 4)
    lay.add(stat(
        "Logged-in sessions",
        "Login sessions recorded in utmp right now.",
        [target(f"max(vedette_host_users_logged_in{{{SEL}}})")],
        "short", steps=((5, "orange"),), graph=True, decimals=0,
    ), 4, 4)
    lay.add(stat(
        "Uptime",
        "Time since the host booted; a small value means an unexpected reboot may have happened.",
        [target(f"max(vedette_host_uptime_seconds{{{SEL}}})")],
        "dtdurations", steps=((3600, "green"),), base="orange",
    ), 4, 4)


def _cpu_memory(lay: Layout) -> None:
    lay.row("CPU and memory")
    lay.add(timeseries(
        "CPU by mode",
        "Share of all CPUs spent in each mode (user, system, iowait, steal ...), idle excluded.",
        [target(
            f'sum by (mode) (rate(vedette_host_cpu_seconds_total{{{SEL}, mode!="idle"}}[{RATE}]))'
            f" / ignoring (mode) group_left () max(vedette_host_cpus{{{SEL}}})",
            "{{mode}}",
        )],
        "percentunit", stack=True, max1=True,
    ), 8, 8)
    lay.add(timeseries(
        "Load average",
        "1, 5 and 15-minute load averages against the number of logical CPUs.",
        [
            target(f"max(vedette_host_load1{{{SEL}}})", "load 1m"),
            target(f"max(vedette_host_load5{{{SEL}}})", "load 5m"),
            target(f"max(vedette_host_load15{{{SEL}}})", "load 15m"),
            target(f"max(vedette_host_cpus{{{SEL}}})", "CPUs"),
        ],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Memory and swap",
        "Physical memory in use and available, and swap in use, against total memory.",
        [
            target(f"max(vedette_host_memory_used_bytes{{{SEL}}})", "used"),
            target(f"max(vedette_host_memory_available_bytes{{{SEL}}})", "available"),
            target(f"max(vedette_host_memory_total_bytes{{{SEL}}})", "total"),
            target(f"max(vedette_host_swap_used_bytes{{{SEL}}})", "swap used"),
        ],
        "bytes",
    ), 8, 8)


def _disk(lay: Layout) -> None:
    lay.row("Disks")
    lay.add(bargauge(
        "Filesystem used",
        "Used share of each monitored filesystem (pseudo filesystems excluded by the agent).",
        [target(f"max by (device) (vedette_host_filesystem_used_ratio{{{SEL}}})", "{{device}}",
                instant=True)],
        "percentunit", steps=((0.8, "orange"), (0.9, "red")), max_value=1,
    ), 6, 8)
    lay.add(timeseries(
        "Disk throughput",
        "Bytes read (positive) and written per second by block device.",
        [
            target(f"sum by (device) (rate(vedette_host_disk_read_bytes_total{{{SEL}}}[{RATE}]))",
                   "{{device}} read"),
            target(f"sum by (device) "
                   f"(rate(vedette_host_disk_written_bytes_total{{{SEL}}}[{RATE}]))",
                   "{{device}} written"),
        ],
        "Bps",
    ), 6, 8)
    lay.add(timeseries(
        "Disk IOPS",
        "Read and write operations completed per second by block device.",
        [
            target(f"sum by (device) "
                   f"(rate(vedette_host_disk_reads_completed_total{{{SEL}}}[{RATE}]))",
                   "{{device}} reads"),
            target(f"sum by (device) "
                   f"(rate(vedette_host_disk_writes_completed_total{{{SEL}}}[{RATE}]))",
                   "{{device}} writes"),
        ],
        "iops",
    ), 6, 8)
    lay.add(timeseries(
        "Disk utilisation",
        "Share of time each block device was busy doing I/O.",
        [target(f"sum by (device) "
                f"(rate(vedette_host_disk_io_time_seconds_total{{{SEL}}}[{RATE}]))",
                "{{device}}")],
        "percentunit", steps=((0.8, "orange"), (0.95, "red")),
    ), 6, 8)


def _network(lay: Layout) -> None:
    lay.row("Network")
    lay.add(timeseries(
        "Network traffic",
        "Bytes received and sent per second by interface. The Network dashboard has more.",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_bytes_total{{{SEL}}}[{RATE}]))",
                   "{{interface}} in"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_transmit_bytes_total{{{SEL}}}[{RATE}]))",
                   "{{interface}} out"),
        ],
        "Bps",
    ), 12, 8)
    lay.add(timeseries(
        "Network errors and drops",
        "Interface receive/transmit errors and dropped packets per second.",
        [
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_errors_total{{{SEL}}}[{RATE}]) + "
                   f"rate(vedette_host_network_transmit_errors_total{{{SEL}}}[{RATE}]))",
                   "{{interface}} errors"),
            target(f"sum by (interface) "
                   f"(rate(vedette_host_network_receive_drop_total{{{SEL}}}[{RATE}]) + "
                   f"rate(vedette_host_network_transmit_drop_total{{{SEL}}}[{RATE}]))",
                   "{{interface}} drops"),
        ],
        "pps", steps=((1, "orange"),),
    ), 12, 8)


def _processes(lay: Layout) -> None:
    lay.row("Processes and sessions")
    lay.add(timeseries(
        "Processes and threads",
        "Processes and threads on the host; a sudden jump can be a fork bomb or a miner.",
        [
            target(f"max(vedette_host_processes{{{SEL}}})", "processes"),
            target(f"max(vedette_host_threads{{{SEL}}})", "threads"),
        ],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Open file descriptors",
        "File descriptors allocated system-wide.",
        [target(f"max(vedette_host_open_fds{{{SEL}}})", "open fds")],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Logged-in sessions",
        "Login sessions in utmp over time; unexpected sessions at odd hours deserve a look.",
        [target(f"max(vedette_host_users_logged_in{{{SEL}}})", "sessions")],
        "short",
    ), 8, 8)
    lay.add(timeseries(
        "Logins by outcome",
        "Login attempts per second seen in the authentication logs (ssh, su, login), by "
        "outcome. A wall of failures is password guessing.",
        [target(f"sum by (outcome) (rate(vedette_logins_total{{{SEL}}}[{RATE}]))" + or_zero(),
                "{{outcome}}")],
        "count:logins/s", bars=True, stack=True,
        overrides=[color_override("failure", "red"), color_override("success", "green")],
    ), 8, 8)
    lay.add(timeseries(
        "File integrity changes",
        "Changes to watched files (passwd, shadow, sudoers, SSH keys, cron, systemd units ...) "
        "per second, by action.",
        [target(f"sum by (action) (rate(vedette_fim_changes_total{{{SEL}}}[{RATE}]))"
                + or_zero(), "{{action}}")],
        "ops", bars=True, stack=True, steps=((0.001, "orange"),),
    ), 8, 8)
    lay.add(timeseries(
        "Listening sockets",
        "Listening TCP/UDP sockets on the host; a new listener can be a backdoor.",
        [target(f"max(vedette_listening_sockets{{{SEL}}})", "listeners")],
        "short",
    ), 8, 8)


def _alerts(lay: Layout) -> None:
    lay.row("Alerts on this host")
    lay.add(timeseries(
        "Alerts/s by severity",
        "New alerts on this host per second, stacked by Sigma level.",
        [target(f"sum by (severity) (rate(vedette_alerts_total{{{SEL}}}[{RATE}]))",
                "{{severity}}")],
        "count:alerts/s", stack=True, bars=True, overrides=severity_overrides(),
    ), 12, 8)
    lay.add(bargauge(
        "Rules that fired (range)",
        "Alerts opened on this host in the time range, by rule.",
        [target("topk(15, " + titled(
            f"sum by (rule) (increase(vedette_alerts_total{{{SEL}}}[$__range]))") + ")",
            "{{title}}", instant=True)],
        steps=((1, "orange"), (100, "red")),
    ), 12, 8)


def build() -> Json:
    lay = Layout()
    _overview(lay)
    _cpu_memory(lay)
    _disk(lay)
    _network(lay)
    _processes(lay)
    _alerts(lay)
    return dashboard(
        UID, "Vedette / Host detail",
        "One server as its Vedette agent sees it: resources, sessions and alerts.",
        lay, standard_vars(instance_multi=False), annotations=[restart_annotation()],
    )
