"""Test doubles shared by the foundation unit tests: identity, alerts, sinks, a fake psutil."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

from agent.alerts import Alert, RuleRef, Status, alert_id
from agent.identity import Identity
from agent.metrics import AgentMetrics

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "foundation"

IDENTITY = Identity(
    host_name="web-1",
    host_id="0123456789abcdef0123456789abcdef",
    agent_id="2f1c0d8e-5d7a-4e55-9d8a-1c2b3a4d5e6f",
    agent_name="web-1-agent",
    ephemeral_id="e3b0c442-98fc-4c14-9afb-f4c8996fb924",
    version="0.1.0",
    os_kernel="6.1.0-test",
    host_ips=("192.0.2.10", "2001:db8::10"),
    labels={"env": "test", "team": "blue"},
)


def fresh_metrics() -> AgentMetrics:
    return AgentMetrics(CollectorRegistry())


def value(metrics: AgentMetrics, name: str, **labels: str) -> float:
    """A sample's value, 0.0 when the series does not exist yet."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def make_alert(
    rule_id: str = "vedette.ssh_bruteforce",
    level: str = "high",
    group: dict[str, Any] | None = None,
    first_seen: float = 1_700_000_000.0,
    status: Status = Status.OPEN,
    revision: int = 0,
    **kwargs: Any,
) -> Alert:
    group = {"source.ip": "203.0.113.5"} if group is None else group
    rule = RuleRef(id=rule_id, title=f"Rule {rule_id}", level=level)
    return Alert(
        id=alert_id(rule_id, group, first_seen),
        rule=rule,
        group=group,
        first_seen=first_seen,
        last_seen=first_seen + 30,
        status=status,
        revision=revision,
        **kwargs,
    )


class RecordingSink:
    """A sink that records what it gets; ``failing`` makes ``emit`` (and flush) raise."""

    def __init__(self, name: str = "recording", failing: bool = False) -> None:
        self.name = name
        self.failing = failing
        self.fail_flush = False
        self.emitted: list[Alert] = []
        self.flushes = 0
        self.flushed_count: list[int] = []  # len(emitted) at each flush
        self.closed = False
        self.emit_attempts = 0
        self._lock = threading.Lock()

    def emit(self, alert: Alert) -> None:
        with self._lock:
            self.emit_attempts += 1
            if self.failing:
                raise OSError(f"{self.name} is down")
            self.emitted.append(alert)

    def flush(self) -> None:
        with self._lock:
            if self.fail_flush:
                raise OSError(f"{self.name} cannot flush")
            self.flushes += 1
            self.flushed_count.append(len(self.emitted))

    def close(self) -> None:
        self.closed = True


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------------------- fake psutil


def _cpu(**modes: float) -> SimpleNamespace:
    base = dict.fromkeys(
        ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"), 0.0
    )
    base.update(modes)
    return SimpleNamespace(**base)


def _disk(read_bytes: int, write_bytes: int, reads: int, writes: int, busy_ms: int) -> Any:
    return SimpleNamespace(
        read_bytes=read_bytes, write_bytes=write_bytes, read_count=reads,
        write_count=writes, busy_time=busy_ms,
    )


def _nic(rx: int, tx: int, rxp: int, txp: int, errs: int = 0, drops: int = 0) -> Any:
    return SimpleNamespace(
        bytes_recv=rx, bytes_sent=tx, packets_recv=rxp, packets_sent=txp,
        errin=errs, errout=errs, dropin=drops, dropout=drops,
    )


class FakePsutil:
    """Quacks like the psutil module for HostMetricsCollector; readings are plain attributes."""

    def __init__(self) -> None:
        self.times = _cpu(user=100.0, system=50.0, idle=800.0, iowait=50.0)
        self.partitions = [
            SimpleNamespace(device="/dev/sda1", mountpoint="/", fstype="ext4"),
            SimpleNamespace(device="/dev/sda1", mountpoint="/srv/bind", fstype="ext4"),
            SimpleNamespace(device="/dev/sdb1", mountpoint="/data", fstype="xfs"),
            SimpleNamespace(device="tmpfs", mountpoint="/run", fstype="tmpfs"),
            SimpleNamespace(device="/dev/sdc1", mountpoint="/gone", fstype="ext4"),
        ]
        self.usage = {
            "/": SimpleNamespace(total=100_000, used=60_000, free=30_000),
            "/srv/bind": SimpleNamespace(total=100_000, used=60_000, free=30_000),
            "/data": SimpleNamespace(total=1_000_000, used=250_000, free=750_000),
            "/run": SimpleNamespace(total=10, used=5, free=5),
        }
        self.disks: dict[str, Any] | None = {"sda": _disk(4096, 8192, 10, 20, 1500)}
        self.nics: dict[str, Any] | None = {
            "eth0": _nic(1000, 2000, 10, 20, errs=1, drops=2),
            "lo": _nic(50, 50, 1, 1),
            "veth1a2b": _nic(999, 999, 9, 9),
        }
        self.boot = 1_699_990_000.0
        self.logged_in = ["alice", "bob"]
        self.pid_list = [1, 2, 3]
        self.calls: list[str] = []

    def cpu_times(self) -> Any:
        return self.times

    def cpu_count(self) -> int:
        return 4

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.75, 1.25)

    def virtual_memory(self) -> Any:
        return SimpleNamespace(total=8_000_000, available=6_000_000)

    def swap_memory(self) -> Any:
        return SimpleNamespace(total=2_000_000, used=500_000)

    def disk_partitions(self, all: bool = False) -> list[Any]:
        return list(self.partitions)

    def disk_usage(self, mountpoint: str) -> Any:
        self.calls.append(f"disk_usage:{mountpoint}")
        if mountpoint not in self.usage:
            raise PermissionError(13, "Permission denied", mountpoint)
        return self.usage[mountpoint]

    def disk_io_counters(self, perdisk: bool = False) -> dict[str, Any] | None:
        return self.disks

    def net_io_counters(self, pernic: bool = False) -> dict[str, Any] | None:
        return self.nics

    def boot_time(self) -> float:
        return self.boot

    def users(self) -> list[str]:
        return list(self.logged_in)

    def pids(self) -> list[int]:
        return list(self.pid_list)


cpu_times = _cpu
disk_counters = _disk
nic_counters = _nic
