"""Host telemetry with psutil: Prometheus ``vedette_host_*`` metrics and ``host_metrics`` events.

One scheduled :meth:`HostMetricsCollector.collect` reads psutil once and keeps that snapshot;
Prometheus scrapes render the last snapshot (no psutil call per scrape), and the run returns one
``vedette/host_metrics`` event carrying the values threshold rules use (``host.cpu.usage`` …).
The psutil module and the proc root are injected so tests can fake them.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil as _psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.collectors.base import AnyCollector, CollectorContext
from agent.events import HOST_METRICS, Event

_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass
class HostSnapshot:
    taken_at: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpu_usage: float = 0.0
    cpu_count: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory_total: int = 0
    memory_available: int = 0
    swap_total: int = 0
    swap_used: int = 0
    # device -> (fstype, size, free, used_ratio)
    filesystems: dict[str, tuple[str, int, int, float]] = field(default_factory=dict)
    # device -> (read_bytes, write_bytes, reads, writes, io_time_seconds)
    disks: dict[str, tuple[int, int, int, int, float]] = field(default_factory=dict)
    # interface -> (rx_bytes, tx_bytes, rx_packets, tx_packets, rx_err, tx_err, rx_drop, tx_drop)
    interfaces: dict[str, tuple[int, int, int, int, int, int, int, int]] = field(
        default_factory=dict
    )
    processes: int = 0
    threads: int = 0
    open_fds: int = 0
    boot_time: float = 0.0
    users: int = 0


class HostMetricsCollector:
    name = "host_metrics"

    def __init__(
        self,
        interval_seconds: float = 10.0,
        exclude_interfaces: list[str] | None = None,
        exclude_fstypes: list[str] | None = None,
        psutil: ModuleType = _psutil,
        proc_root: Path = Path("/proc"),
        host_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_seconds = interval_seconds
        self._exclude_if = list(exclude_interfaces or [])
        self._exclude_fs = set(exclude_fstypes or [])
        self._ps = psutil
        self._proc = proc_root
        self._host_name = host_name
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = HostSnapshot()

    @property
    def snapshot(self) -> HostSnapshot:
        with self._lock:
            return self._snapshot

    def collect(self) -> list[Event]:
        snap = self._read()
        with self._lock:
            previous = self._snapshot
            snap.cpu_usage = _busy_ratio(previous.cpu_seconds, snap.cpu_seconds)
            self._snapshot = snap
        return [self._event(snap, previous)]

    def prometheus_collector(self) -> Collector:
        return _HostPrometheus(self)

    # ------------------------------------------------------------------ reading

    def _read(self) -> HostSnapshot:
        ps = self._ps
        snap = HostSnapshot(taken_at=self._clock())
        times = ps.cpu_times()
        snap.cpu_seconds = {m: float(getattr(times, m)) for m in _CPU_MODES if hasattr(times, m)}
        snap.cpu_count = int(ps.cpu_count() or 0)
        snap.load = tuple(float(x) for x in ps.getloadavg())  # type: ignore[assignment]
        mem = ps.virtual_memory()
        snap.memory_total, snap.memory_available = int(mem.total), int(mem.available)
        swap = ps.swap_memory()
        snap.swap_total, snap.swap_used = int(swap.total), int(swap.used)
        snap.filesystems = self._filesystems()
        snap.disks = {
            dev: (c.read_bytes, c.write_bytes, c.read_count, c.write_count,
                  getattr(c, "busy_time", 0) / 1000.0)
            for dev, c in (ps.disk_io_counters(perdisk=True) or {}).items()
        }
        snap.interfaces = {
            nic: (c.bytes_recv, c.bytes_sent, c.packets_recv, c.packets_sent,
                  c.errin, c.errout, c.dropin, c.dropout)
            for nic, c in (ps.net_io_counters(pernic=True) or {}).items()
            if not any(fnmatch.fnmatchcase(nic, pat) for pat in self._exclude_if)
        }
        snap.processes, snap.threads = self._process_counts()
        snap.open_fds = self._open_fds()
        snap.boot_time = float(ps.boot_time())
        snap.users = len(ps.users())
        return snap

    def _filesystems(self) -> dict[str, tuple[str, int, int, float]]:
        out: dict[str, tuple[str, int, int, float]] = {}
        for part in self._ps.disk_partitions(all=False):
            if part.fstype in self._exclude_fs:
                continue
            device = os.path.basename(part.device) or part.device
            if device in out:  # bind mounts of the same device
                continue
            try:
                usage = self._ps.disk_usage(part.mountpoint)
            except OSError:
                continue
            ratio = usage.used / (usage.used + usage.free) if usage.used + usage.free else 0.0
            out[device] = (part.fstype, int(usage.total), int(usage.free), ratio)
        return out

    def _process_counts(self) -> tuple[int, int]:
        """Processes and threads from /proc/loadavg's "running/total" and the pid dirs."""
        try:
            fields = (self._proc / "loadavg").read_text().split()
            threads = int(fields[3].split("/")[1])
        except (OSError, IndexError, ValueError):
            threads = 0
        try:
            processes = sum(1 for entry in os.scandir(self._proc) if entry.name.isdigit())
        except OSError:
            processes = len(self._ps.pids())
        return processes, threads

    def _open_fds(self) -> int:
        try:
            return int((self._proc / "sys/fs/file-nr").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return 0

    # ------------------------------------------------------------------ the event

    def _event(self, snap: HostSnapshot, previous: HostSnapshot) -> Event:
        fs_max = max((fs[3] for fs in snap.filesystems.values()), default=0.0)
        fields: dict[str, Any] = {
            "event.kind": "metric",
            "event.dataset": "vedette.host_metrics",
            "host.name": self._host_name,
            "host.cpu.usage": round(snap.cpu_usage, 4),
            "host.cpu.count": snap.cpu_count,
            "system.load.1": snap.load[0],
            "system.load.5": snap.load[1],
            "system.load.15": snap.load[2],
            "system.memory.total": snap.memory_total,
            "system.memory.used.pct": _ratio(
                snap.memory_total - snap.memory_available, snap.memory_total
            ),
            "system.swap.used.pct": _ratio(snap.swap_used, snap.swap_total),
            "system.filesystem.max_used.pct": round(fs_max, 4),
            "system.process.count": snap.processes,
            "system.thread.count": snap.threads,
            "system.fd.open": snap.open_fds,
            "system.users.count": snap.users,
            "host.uptime": int(snap.taken_at - snap.boot_time) if snap.boot_time else 0,
        }
        if previous.taken_at:
            fields["host.network.ingress.bytes"] = _delta(snap.interfaces, previous.interfaces, 0)
            fields["host.network.egress.bytes"] = _delta(snap.interfaces, previous.interfaces, 1)
            fields["host.disk.read.bytes"] = _delta(snap.disks, previous.disks, 0)
            fields["host.disk.write.bytes"] = _delta(snap.disks, previous.disks, 1)
        return Event(snap.taken_at, HOST_METRICS, fields)


def _ratio(part: float, whole: float) -> float:
    return round(part / whole, 4) if whole else 0.0


def _busy_ratio(before: dict[str, float], after: dict[str, float]) -> float:
    """Busy fraction between two cpu_times readings (0 on the first run)."""
    if not before:
        return 0.0
    deltas = {m: max(0.0, after.get(m, 0.0) - before.get(m, 0.0)) for m in after}
    total = sum(deltas.values())
    if total <= 0:
        return 0.0
    idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
    return max(0.0, min(1.0, (total - idle) / total))


def _delta(now: dict[str, Any], before: dict[str, Any], index: int) -> int:
    """Sum over devices of a counter's increase (a reset counts as the new value)."""
    total = 0
    for key, values in now.items():
        old = before.get(key)
        diff = values[index] - old[index] if old is not None else 0
        total += diff if diff >= 0 else values[index]
    return int(total)


class _HostPrometheus(Collector):
    """Renders the last snapshot at scrape time."""

    def __init__(self, source: HostMetricsCollector) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        s = self._source.snapshot
        if not s.taken_at:
            return
        cpu = CounterMetricFamily(
            "vedette_host_cpu_seconds", "CPU time by mode.", labels=["mode"]
        )
        for mode, value in s.cpu_seconds.items():
            cpu.add_metric([mode], value)
        yield cpu
        for name, doc, value in (
            ("vedette_host_cpu_usage_ratio", "Busy CPU fraction over the last collection interval (0-1).", s.cpu_usage),
            ("vedette_host_cpus", "Logical CPUs.", s.cpu_count),
            ("vedette_host_load1", "1-minute load average.", s.load[0]),
            ("vedette_host_load5", "5-minute load average.", s.load[1]),
            ("vedette_host_load15", "15-minute load average.", s.load[2]),
            ("vedette_host_memory_total_bytes", "Total physical memory.", s.memory_total),
            ("vedette_host_memory_available_bytes", "Memory available without swapping.", s.memory_available),
            ("vedette_host_memory_used_bytes", "Memory in use (total - available).", s.memory_total - s.memory_available),
            ("vedette_host_swap_total_bytes", "Total swap.", s.swap_total),
            ("vedette_host_swap_used_bytes", "Swap in use.", s.swap_used),
            ("vedette_host_processes", "Processes on the host.", s.processes),
            ("vedette_host_threads", "Threads on the host.", s.threads),
            ("vedette_host_open_fds", "File descriptors allocated system-wide.", s.open_fds),
            ("vedette_host_boot_time_seconds", "Boot time, seconds since the epoch.", s.boot_time),
            ("vedette_host_uptime_seconds", "Seconds since boot.", s.taken_at - s.boot_time),
            ("vedette_host_users_logged_in", "Login sessions (utmp).", s.users),
            ("vedette_host_collect_timestamp_seconds", "When host telemetry was last collected.", s.taken_at),
        ):
            yield GaugeMetricFamily(name, doc, value=value)
        fs_metrics = [
            GaugeMetricFamily("vedette_host_filesystem_size_bytes", "Filesystem size.", labels=["device", "fstype"]),
            GaugeMetricFamily("vedette_host_filesystem_free_bytes", "Filesystem space available to unprivileged users.", labels=["device", "fstype"]),
            GaugeMetricFamily("vedette_host_filesystem_used_ratio", "Filesystem used fraction (0-1).", labels=["device", "fstype"]),
        ]
        for device, (fstype, size, free, ratio) in s.filesystems.items():
            for metric, value in zip(fs_metrics, (size, free, ratio), strict=True):
                metric.add_metric([device, fstype], value)
        yield from fs_metrics
        yield from _per_key(s.disks, "device", (
            ("vedette_host_disk_read_bytes", "Bytes read from a block device."),
            ("vedette_host_disk_written_bytes", "Bytes written to a block device."),
            ("vedette_host_disk_reads_completed", "Reads completed."),
            ("vedette_host_disk_writes_completed", "Writes completed."),
            ("vedette_host_disk_io_time_seconds", "Time spent doing I/O."),
        ))
        yield from _per_key(s.interfaces, "interface", (
            ("vedette_host_network_receive_bytes", "Bytes received."),
            ("vedette_host_network_transmit_bytes", "Bytes sent."),
            ("vedette_host_network_receive_packets", "Packets received."),
            ("vedette_host_network_transmit_packets", "Packets sent."),
            ("vedette_host_network_receive_errors", "Receive errors."),
            ("vedette_host_network_transmit_errors", "Transmit errors."),
            ("vedette_host_network_receive_drop", "Inbound packets dropped."),
            ("vedette_host_network_transmit_drop", "Outbound packets dropped."),
        ))


def _per_key(
    table: dict[str, tuple[Any, ...]], label: str, specs: tuple[tuple[str, str], ...]
) -> Iterator[Metric]:
    for i, (name, doc) in enumerate(specs):
        family = CounterMetricFamily(name, doc, labels=[label])
        for key, values in table.items():
            family.add_metric([key], values[i])
        yield family


def build(ctx: CollectorContext) -> list[AnyCollector]:
    """The ``host_metrics`` section's collector."""
    section = ctx.config.host_metrics
    if not section.enabled:
        return []
    return [
        HostMetricsCollector(
            interval_seconds=section.interval_seconds,
            exclude_interfaces=section.exclude_interfaces,
            exclude_fstypes=section.exclude_fstypes,
            host_name=ctx.identity.host_name,
        )
    ]
