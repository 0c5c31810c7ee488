"""Host telemetry with a fake psutil and a fake /proc: exact samples, catalogue, event fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from foundation_helpers import FIXTURES, FakePsutil, cpu_times, disk_counters, nic_counters
from prometheus_client import CollectorRegistry

from agent.collectors.base import PollingCollector
from agent.collectors.host.resources import HostMetricsCollector
from agent.events import HOST_METRICS
from agent.metrics import catalog

PROC = FIXTURES / "proc"
T0 = 1_700_000_000.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def build(ps: FakePsutil, clock: Clock, proc: Path = PROC) -> HostMetricsCollector:
    return HostMetricsCollector(
        interval_seconds=10,
        exclude_interfaces=["veth*"],
        exclude_fstypes=["tmpfs"],
        psutil=ps,  # type: ignore[arg-type]
        proc_root=proc,
        host_name="web-1",
        clock=clock,
    )


def scrape(collector: HostMetricsCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector.prometheus_collector())
    out: Samples = {}
    for family in registry.collect():
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def expected_first_cycle() -> Samples:
    def one(name: str, value: float, **labels: str) -> tuple[Any, float]:
        return (name, tuple(sorted(labels.items()))), value

    rows = [
        one("vedette_host_cpu_seconds_total", 100.0, mode="user"),
        one("vedette_host_cpu_seconds_total", 0.0, mode="nice"),
        one("vedette_host_cpu_seconds_total", 50.0, mode="system"),
        one("vedette_host_cpu_seconds_total", 800.0, mode="idle"),
        one("vedette_host_cpu_seconds_total", 50.0, mode="iowait"),
        one("vedette_host_cpu_seconds_total", 0.0, mode="irq"),
        one("vedette_host_cpu_seconds_total", 0.0, mode="softirq"),
        one("vedette_host_cpu_seconds_total", 0.0, mode="steal"),
        one("vedette_host_cpu_usage_ratio", 0.0),
        one("vedette_host_cpus", 4),
        one("vedette_host_load1", 0.5),
        one("vedette_host_load5", 0.75),
        one("vedette_host_load15", 1.25),
        one("vedette_host_memory_total_bytes", 8_000_000),
        one("vedette_host_memory_available_bytes", 6_000_000),
        one("vedette_host_memory_used_bytes", 2_000_000),
        one("vedette_host_swap_total_bytes", 2_000_000),
        one("vedette_host_swap_used_bytes", 500_000),
        one("vedette_host_processes", 3),
        one("vedette_host_threads", 345),
        one("vedette_host_open_fds", 1984),
        one("vedette_host_boot_time_seconds", 1_699_990_000.0),
        one("vedette_host_uptime_seconds", 10_000.0),
        one("vedette_host_users_logged_in", 2),
        one("vedette_host_collect_timestamp_seconds", T0),
        # /dev/sda1 once although it is mounted twice (bind mount); tmpfs excluded;
        # /dev/sdc1 left out because disk_usage raised.
        one("vedette_host_filesystem_size_bytes", 100_000, device="sda1", fstype="ext4"),
        one("vedette_host_filesystem_free_bytes", 30_000, device="sda1", fstype="ext4"),
        one("vedette_host_filesystem_used_ratio", 60_000 / 90_000, device="sda1", fstype="ext4"),
        one("vedette_host_filesystem_size_bytes", 1_000_000, device="sdb1", fstype="xfs"),
        one("vedette_host_filesystem_free_bytes", 750_000, device="sdb1", fstype="xfs"),
        one("vedette_host_filesystem_used_ratio", 0.25, device="sdb1", fstype="xfs"),
        one("vedette_host_disk_read_bytes_total", 4096, device="sda"),
        one("vedette_host_disk_written_bytes_total", 8192, device="sda"),
        one("vedette_host_disk_reads_completed_total", 10, device="sda"),
        one("vedette_host_disk_writes_completed_total", 20, device="sda"),
        one("vedette_host_disk_io_time_seconds_total", 1.5, device="sda"),
    ]
    for nic, (rx, tx, rxp, txp, err, drop) in {
        "eth0": (1000, 2000, 10, 20, 1, 2), "lo": (50, 50, 1, 1, 0, 0)
    }.items():
        rows += [
            one("vedette_host_network_receive_bytes_total", rx, interface=nic),
            one("vedette_host_network_transmit_bytes_total", tx, interface=nic),
            one("vedette_host_network_receive_packets_total", rxp, interface=nic),
            one("vedette_host_network_transmit_packets_total", txp, interface=nic),
            one("vedette_host_network_receive_errors_total", err, interface=nic),
            one("vedette_host_network_transmit_errors_total", err, interface=nic),
            one("vedette_host_network_receive_drop_total", drop, interface=nic),
            one("vedette_host_network_transmit_drop_total", drop, interface=nic),
        ]
    return dict(rows)


def test_is_a_polling_collector() -> None:
    assert isinstance(build(FakePsutil(), Clock(T0)), PollingCollector)


def test_nothing_exposed_before_the_first_run() -> None:
    assert scrape(build(FakePsutil(), Clock(T0))) == {}


def test_first_cycle_exposes_exactly_the_expected_samples() -> None:
    collector = build(FakePsutil(), Clock(T0))
    collector.collect()
    samples = scrape(collector)
    assert samples == pytest.approx(expected_first_cycle())
    known = catalog()
    assert {name for name, _ in samples} <= set(known)
    for name, _ in samples:
        assert name.startswith("vedette_host_")


def test_scrape_does_not_call_psutil_again() -> None:
    ps = FakePsutil()
    collector = build(ps, Clock(T0))
    collector.collect()
    ps.calls.clear()
    scrape(collector)
    scrape(collector)
    assert ps.calls == []


def test_first_event_carries_threshold_fields() -> None:
    (event,) = build(FakePsutil(), Clock(T0)).collect()
    assert event.logsource == HOST_METRICS
    assert event.timestamp == T0
    f = event.fields
    assert f["event.kind"] == "metric"
    assert f["event.dataset"] == "vedette.host_metrics"
    assert f["host.name"] == "web-1"
    assert f["host.cpu.usage"] == 0.0  # no previous reading yet
    assert f["host.cpu.count"] == 4
    assert (f["system.load.1"], f["system.load.5"], f["system.load.15"]) == (0.5, 0.75, 1.25)
    assert f["system.memory.used.pct"] == 0.25
    assert f["system.swap.used.pct"] == 0.25
    assert f["system.filesystem.max_used.pct"] == round(60_000 / 90_000, 4)
    assert f["system.process.count"] == 3
    assert f["system.thread.count"] == 345
    assert f["system.fd.open"] == 1984
    assert f["system.users.count"] == 2
    assert f["host.uptime"] == 10_000
    assert "host.network.ingress.bytes" not in f  # rates need two readings


def test_cpu_usage_ratio_from_two_readings() -> None:
    ps, clock = FakePsutil(), Clock(T0)
    collector = build(ps, clock)
    collector.collect()
    # +30 user, +10 system, +50 idle, +10 iowait over the interval: busy = 40 / 100
    ps.times = cpu_times(user=130.0, system=60.0, idle=850.0, iowait=60.0)
    clock.now = T0 + 10
    (event,) = collector.collect()
    assert event.fields["host.cpu.usage"] == 0.4
    assert scrape(collector)[("vedette_host_cpu_usage_ratio", ())] == pytest.approx(0.4)


def test_cpu_usage_is_zero_when_the_counters_did_not_move() -> None:
    ps = FakePsutil()
    collector = build(ps, Clock(T0))
    collector.collect()
    (event,) = collector.collect()
    assert event.fields["host.cpu.usage"] == 0.0


def test_cpu_counter_going_backwards_never_gives_a_ratio_outside_0_1() -> None:
    ps = FakePsutil()
    collector = build(ps, Clock(T0))
    collector.collect()
    ps.times = cpu_times(user=10.0, system=200.0, idle=100.0, iowait=0.0)  # user/idle reset
    (event,) = collector.collect()
    assert 0.0 <= event.fields["host.cpu.usage"] <= 1.0
    assert event.fields["host.cpu.usage"] == 1.0  # only system moved (+150)


def test_network_and_disk_deltas_with_counter_reset() -> None:
    ps, clock = FakePsutil(), Clock(T0)
    collector = build(ps, clock)
    collector.collect()
    ps.nics = {
        "eth0": nic_counters(1500, 2600, 15, 26),  # +500 / +600
        "lo": nic_counters(20, 30, 2, 2),  # reset (driver reload): the new value counts
        "eth1": nic_counters(7000, 7000, 7, 7),  # new interface: no delta yet
        "veth9": nic_counters(10**9, 10**9, 1, 1),  # excluded
    }
    ps.disks = {"sda": disk_counters(5096, 8000, 11, 21, 1600)}  # +1000 read, write reset
    clock.now = T0 + 10
    (event,) = collector.collect()
    assert event.fields["host.network.ingress.bytes"] == 500 + 20
    assert event.fields["host.network.egress.bytes"] == 600 + 30
    assert event.fields["host.disk.read.bytes"] == 1000
    assert event.fields["host.disk.write.bytes"] == 8000
    samples = scrape(collector)
    interfaces = {
        dict(labels)["interface"]
        for name, labels in samples
        if name == "vedette_host_network_receive_bytes_total"
    }
    assert interfaces == {"eth0", "lo", "eth1"}


def test_excluded_interfaces_and_fstypes_follow_config(tmp_path: Path) -> None:
    ps = FakePsutil()
    collector = HostMetricsCollector(
        exclude_interfaces=["lo", "eth*"],
        exclude_fstypes=["ext4"],
        psutil=ps,  # type: ignore[arg-type]
        proc_root=PROC,
        clock=Clock(T0),
    )
    collector.collect()
    samples = scrape(collector)
    nics = {dict(lb).get("interface") for n, lb in samples if "network" in n}
    fs = {dict(lb).get("device") for n, lb in samples if "filesystem" in n}
    assert nics == {"veth1a2b"}
    assert fs == {"sdb1", "tmpfs"}  # tmpfs is not excluded here; /dev/sdc1 raised
    assert "disk_usage:/srv/bind" not in ps.calls  # ext4 skipped before any statfs


def test_missing_counters_and_proc_files_degrade_to_zero(tmp_path: Path) -> None:
    ps = FakePsutil()
    ps.disks = None  # psutil returns None when /proc/diskstats is unreadable
    ps.nics = None
    collector = build(ps, Clock(T0), proc=tmp_path / "no-proc")
    (event,) = collector.collect()
    assert event.fields["system.process.count"] == 3  # falls back to psutil.pids()
    assert event.fields["system.thread.count"] == 0
    assert event.fields["system.fd.open"] == 0
    samples = scrape(collector)
    assert not any("disk_read" in n or "network" in n for n, _ in samples)


def test_malformed_proc_files_degrade_to_zero(tmp_path: Path) -> None:
    (tmp_path / "sys" / "fs").mkdir(parents=True)
    (tmp_path / "loadavg").write_text("garbage\n")
    (tmp_path / "sys" / "fs" / "file-nr").write_text("")
    (event,) = build(FakePsutil(), Clock(T0), proc=tmp_path).collect()
    assert event.fields["system.thread.count"] == 0
    assert event.fields["system.fd.open"] == 0
    assert event.fields["system.process.count"] == 0


def test_real_psutil_one_cycle_smoke() -> None:
    """The fake must not hide a psutil API mismatch: one real cycle on this machine."""
    collector = HostMetricsCollector(exclude_fstypes=["tmpfs", "overlay"])
    (event,) = collector.collect()
    samples = scrape(collector)
    assert {name for name, _ in samples} <= set(catalog())
    assert samples[("vedette_host_cpus", ())] >= 1
    assert samples[("vedette_host_memory_total_bytes", ())] > 0
    assert samples[("vedette_host_processes", ())] >= 1
    assert event.fields["host.cpu.count"] >= 1
    assert 0.0 <= event.fields["system.memory.used.pct"] <= 1.0
