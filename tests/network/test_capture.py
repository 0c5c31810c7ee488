"""Capture plumbing: BPF compile/parse, interface discovery, the privilege check, a real ring."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.capture import bpf, builder
from agent.capture.collector import PacketCaptureCollector
from agent.capture.interfaces import discover
from agent.capture.ring import block_columns
from agent.config import Config
from agent.errors import CollectorError
from agent.events import Event
from agent.metrics import AgentMetrics


def test_parse_dd_and_accept_all() -> None:
    text = "{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n{ 0x6, 0, 0, 0x00000200 },\n"
    assert bpf.parse_dd(text) == [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 512)]
    assert bpf.accept_all(300) == [(6, 0, 0, 300)]
    with pytest.raises(CollectorError):
        bpf.parse_dd("garbage")
    assert bpf.compile_filter("  ", 96) == [(6, 0, 0, 96)]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_compile_with_tcpdump_and_errors_are_clear() -> None:
    program = bpf.compile_filter("tcp or udp port 53", 256)
    assert program[-1] == (6, 0, 0, 0) or any(ins[3] == 256 for ins in program)
    with pytest.raises(CollectorError, match="does not compile"):
        bpf.compile_filter("tcp and and", 256)


def _iface(root: Path, name: str, flags: int, arphrd: int) -> None:
    (root / name).mkdir()
    (root / name / "flags").write_text(hex(flags) + "\n")
    (root / name / "type").write_text(f"{arphrd}\n")


def test_discover_filters_loopback_down_excluded_and_unsupported(tmp_path: Path) -> None:
    _iface(tmp_path, "lo", 0x9, 772)
    _iface(tmp_path, "eth0", 0x1003, 1)
    _iface(tmp_path, "eth1", 0x1002, 1)  # down
    _iface(tmp_path, "tun0", 0x1091, 65534)
    _iface(tmp_path, "veth9", 0x1003, 1)
    _iface(tmp_path, "ip6tnl0", 0x81, 769)
    found, unsupported = discover([], ["veth*"], tmp_path)
    assert [(i.name, i.linktype) for i in found] == [("eth0", 1), ("tun0", 101)]
    assert unsupported == ["ip6tnl0"]
    only, _ = discover(["tun0"], [], tmp_path)
    assert [i.name for i in only] == ["tun0"]


def test_builder_without_cap_net_raw_raises_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def denied() -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(builder, "open_packet_socket", denied)
    with pytest.raises(CollectorError, match="CAP_NET_RAW"):
        builder.check_capture_privilege()


@pytest.mark.skipif(os.geteuid() == 0, reason="needs an unprivileged user")
def test_builder_really_unprivileged() -> None:
    with pytest.raises(CollectorError, match="CAP_NET_RAW"):
        builder.check_capture_privilege()


def _root_with_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.skipif(not _root_with_netns(), reason="needs root and iproute2")
def test_ring_captures_in_a_namespace_with_health_events() -> None:
    ns, peer = f"vdring{os.getpid()}", f"vdpeer{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "add", peer], check=True)
    try:
        def ipn(name: str, *args: str) -> None:
            subprocess.run(["ip", "-n", name, *args], check=True)

        ipn(ns, "link", "add", "vra", "type", "veth", "peer", "name", "vrb", "netns", peer)
        ipn(ns, "addr", "add", "198.18.9.1/24", "dev", "vra")
        ipn(peer, "addr", "add", "198.18.9.2/24", "dev", "vrb")
        ipn(ns, "link", "set", "vra", "up")
        ipn(peer, "link", "set", "vrb", "up")
        code = """
import threading, time, json
from prometheus_client import CollectorRegistry
from agent.metrics import AgentMetrics
from agent.config import Config
from agent.capture.collector import PacketCaptureCollector
from agent.capture.ring import block_columns
cfg = Config.model_validate({"capture": {"health_interval_seconds": 0.5,
                             "ring_blocks": 4, "ring_block_bytes": 65536}})
m = AgentMetrics(CollectorRegistry())
c = PacketCaptureCollector(cfg.capture, cfg.network, m)
got = []
stop = threading.Event()
t = threading.Thread(target=c.run, args=(lambda e: got.extend(e) or 0, stop)); t.start()
for _ in range(300):  # until the ring is open (slow on a loaded machine)
    if c.rings:
        break
    time.sleep(0.05)
print("ready", flush=True)
import sys
sys.stdin.readline()
time.sleep(1.5); stop.set(); t.join()
print(json.dumps([[e.logsource.category, e.fields] for e in got]))
print(m.registry.get_sample_value("vedette_capture_interfaces"))
"""
        probe = """
import socket
import struct
for port in range(1, 31):
    s = socket.socket(); s.settimeout(0.2)
    try: s.connect(("198.18.9.1", port))
    except OSError: pass
    s.close()
"""
        repo = Path(__file__).resolve().parents[2]
        python = str(repo / ".venv/bin/python")
        capture = subprocess.Popen(["ip", "netns", "exec", ns, python, "-c", code], cwd=repo,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert capture.stdout is not None and capture.stdin is not None
        assert capture.stdout.readline().strip() == "ready"
        subprocess.run(["ip", "netns", "exec", peer, python, "-c", probe], check=True,
                       timeout=30)
        capture.stdin.write("\n")
        capture.stdin.flush()
        out, err = capture.communicate(timeout=60)
        assert capture.returncode == 0, err
        lines = out.splitlines()
        events = json.loads(lines[0])
        syns = [f for cat, f in events if cat == "network_packet" and f.get("tcp.flags.syn")]
        assert {f["destination.port"] for f in syns} >= set(range(1, 31))
        assert all(f["observer.ingress.interface.name"] == "vra" for f in syns)
        resets = [f for cat, f in events if cat == "network_packet" and f.get("tcp.flags.rst")]
        assert resets, "outgoing packets (the RST answers) are captured too"
        health = [f for cat, f in events if cat == "capture_health"]
        assert health and health[0]["capture.drops"] == 0
        assert float(lines[1]) == 1.0
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", peer], check=False)


def test_collector_health_without_rings_is_empty() -> None:
    cfg = Config()
    collector = PacketCaptureCollector(cfg.capture, cfg.network, AgentMetrics(CollectorRegistry()))
    assert collector.health() == []
    stop = threading.Event()
    stop.set()
    published: list[Event] = []
    t0 = time.monotonic()
    collector.run(lambda e: published.extend(e) or 0, stop)
    assert time.monotonic() - t0 < 2


class _FakeRing:
    interface = "eth9"

    def __init__(self, packets: int, drops: int) -> None:
        self.stats = (packets, drops, 0)

    def statistics(self) -> tuple[int, int, int]:
        return self.stats

    def close(self) -> None:
        pass


def test_drops_become_metrics_and_a_health_event_the_degraded_rule_reads() -> None:
    cfg = Config()
    metrics = AgentMetrics(CollectorRegistry())
    collector = PacketCaptureCollector(cfg.capture, cfg.network, metrics, host_name="web-1")
    collector.rings["eth9"] = _FakeRing(100_000, 5_000)  # type: ignore[assignment]
    collector.processor.stats.errors["truncated"] = 7
    collector.processor.stats.suppressed = 42
    collector.processor.stats.over_global_budget = 40
    collector.processor.stats.add_traffic("tcp", "inbound", 10, 1000)
    collector.processor.stats.tcp_control.update({"syn": 30, "rst": 4})
    collector.processor.stats.dns_queries = 12
    collector.processor.stats.dns_responses["nxdomain"] = 9
    (event,) = collector.health()
    assert event.logsource.category == "capture_health"
    assert event.fields["capture.drops"] == 5000
    assert event.fields["capture.drop_ratio"] == 0.05
    assert event.fields["host.name"] == "web-1"
    value = metrics.registry.get_sample_value
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 5000
    assert value("vedette_capture_degraded", {"interface": "eth9"}) == 1
    assert value("vedette_input_errors_total", {"source": "capture", "reason": "truncated"}) == 7
    assert value("vedette_capture_events_over_budget_total", {"budget": "global"}) == 40
    assert value("vedette_capture_events_over_budget_total", {"budget": "per_key"}) == 2
    assert event.fields["capture.events_over_global_budget"] == 40
    assert value("vedette_capture_packets_total",
                 {"protocol": "tcp", "direction": "inbound"}) == 10
    assert value("vedette_capture_tcp_control_total", {"kind": "syn"}) == 30
    assert value("vedette_capture_tcp_control_total", {"kind": "rst"}) == 4
    assert value("vedette_capture_dns_queries_total") == 12
    assert value("vedette_capture_dns_responses_total", {"rcode": "nxdomain"}) == 9
    collector.processor.stats.dns_queries += 3
    collector.health()  # deltas: counters do not double
    assert value("vedette_capture_dns_queries_total") == 15
    assert value("vedette_capture_tcp_control_total", {"kind": "syn"}) == 30
    assert value("vedette_input_errors_total", {"source": "capture", "reason": "truncated"}) == 7
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 10000


def test_ring_counters_reach_the_metrics_every_export_and_at_shutdown() -> None:
    """Kernel drops are metrics within a second (not only at the health interval), the health
    event still reports the whole interval, and what was counted last is read before the
    rings close."""
    cfg = Config.model_validate({"capture": {"health_interval_seconds": 60}})
    metrics = AgentMetrics(CollectorRegistry())
    clock = [1000.0]
    collector = PacketCaptureCollector(cfg.capture, cfg.network, metrics,
                                       clock=lambda: clock[0])
    ring = _FakeRing(1000, 10)
    collector.rings["eth9"] = ring  # type: ignore[assignment]
    value = metrics.registry.get_sample_value
    collector.export_ring_stats()  # what run() does every EXPORT_SECONDS
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 10
    assert value("vedette_capture_ring_packets_total", {"interface": "eth9"}) == 1000
    ring.stats = (500, 5, 0)
    (event,) = collector.health()  # the interval: both reads
    assert event.fields["capture.packets"] == 1500
    assert event.fields["capture.drops"] == 15
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 15
    ring.stats = (200, 2, 0)
    collector.rescan = lambda: None  # type: ignore[method-assign]
    stop = threading.Event()
    stop.set()  # run() stops at once: only its shutdown path runs
    collector.run(lambda e: 0, stop)
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 17
    assert value("vedette_capture_ring_packets_total", {"interface": "eth9"}) == 1700
    assert not collector.rings


def test_an_interface_without_drops_has_a_drop_series_at_zero() -> None:
    """"No drops" must read as 0, not as no data (the dashboard's drops panel, absent())."""
    cfg = Config.model_validate({})
    metrics = AgentMetrics(CollectorRegistry())
    collector = PacketCaptureCollector(cfg.capture, cfg.network, metrics)
    collector.rings["eth9"] = _FakeRing(0, 0)  # type: ignore[assignment]
    collector.export_ring_stats()
    value = metrics.registry.get_sample_value
    assert value("vedette_capture_ring_drops_total", {"interface": "eth9"}) == 0
    assert value("vedette_capture_ring_packets_total", {"interface": "eth9"}) == 0


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.skipif(not _root_with_netns(), reason="needs root and iproute2")
def test_a_vanished_interface_is_closed_without_spinning() -> None:
    ns = f"vdgone{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vga", "type", "veth", "peer", "name",
                        "vgb"], check=True)
        for dev in ("vga", "vgb"):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        code = """
import subprocess, threading, time
from prometheus_client import CollectorRegistry
from agent.metrics import AgentMetrics
from agent.config import Config
from agent.capture.collector import PacketCaptureCollector
from agent.capture.ring import block_columns
cfg = Config.model_validate({"capture": {"interfaces": ["vga"], "rescan_seconds": 600,
                             "ring_blocks": 2, "ring_block_bytes": 65536}})
c = PacketCaptureCollector(cfg.capture, cfg.network, AgentMetrics(CollectorRegistry()))
stop = threading.Event()
t = threading.Thread(target=c.run, args=(lambda e: 0, stop)); t.start()
time.sleep(1.0)
before = len(c.rings)
subprocess.run(["ip", "link", "del", "vga"], check=True)
cpu = time.process_time()
time.sleep(1.5)
spent = time.process_time() - cpu
alive = t.is_alive()
stop.set(); t.join()
print(before, len(c.rings), round(spent, 3), alive)
"""
        repo = Path(__file__).resolve().parents[2]
        proc = subprocess.run(["ip", "netns", "exec", ns, str(repo / ".venv/bin/python"), "-c",
                               code], cwd=repo, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        before, after, spent, alive = proc.stdout.split()
        assert (before, after, alive) == ("1", "0", "True")
        assert float(spent) < 0.5
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _tpacket_block(frames: list[bytes], first: int = 48) -> bytes:
    """A TPACKET_V3 block as the kernel fills it: block header, then linked packet headers."""
    body = bytearray(first)
    struct.pack_into("=IIIII", body, 8, 1, len(frames), first, 0, 0)
    for i, frame in enumerate(frames):
        mac = 32 + 2  # tpacket3_hdr (32 bytes with padding) + alignment
        size = (mac + len(frame) + 15) & ~15
        header = bytearray(size)
        following = 0 if i == len(frames) - 1 else size
        struct.pack_into("=IIIIIIHH", header, 0, following, 1700000000 + i, 250_000_000,
                         len(frame), len(frame) + 10, 1, mac, mac + 14)
        header[mac:mac + len(frame)] = frame
        body += header
    struct.pack_into("=I", body, 20, len(body))
    return bytes(body)


def test_block_columns_read_the_packets_of_a_tpacket_block() -> None:
    frames = [bytes(range(60)), b"\xaa" * 54, b"\x01" * 300]
    cols = block_columns(_tpacket_block(frames), 48, len(frames), 1)
    assert [(ts, link, data, wire) for ts, link, data, wire in cols.frames()] == [
        (1700000000 + i + 0.25, 1, frame, len(frame) + 10) for i, frame in enumerate(frames)]
    assert cols.head[2].tobytes() == b"\x01" * 48


def test_block_columns_never_read_past_the_block() -> None:
    block = _tpacket_block([b"\x02" * 100, b"\x03" * 100])
    cut = block[:len(block) - 60]  # 10 bytes of padding and 50 of the last frame cut off
    cols = block_columns(cut, 48, 2, 1)
    assert [len(f[2]) for f in cols.frames()] == [100, 50]
    assert len(block_columns(block, len(block) + 8, 5, 1)) == 0  # a chain outside the block


def test_counters_are_exported_within_seconds_and_at_shutdown() -> None:
    """A health interval of a minute: the processor's counters still reach the metrics every
    second while running (before any health event) and once more when the collector stops."""
    ns, peer = f"vdexp{os.getpid()}", f"vdexq{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "netns", "add", peer], check=True)
    try:
        def ipn(name: str, *args: str) -> None:
            subprocess.run(["ip", "-n", name, *args], check=True)

        ipn(ns, "link", "add", "vea", "type", "veth", "peer", "name", "veb", "netns", peer)
        ipn(ns, "addr", "add", "198.18.10.1/24", "dev", "vea")
        ipn(peer, "addr", "add", "198.18.10.2/24", "dev", "veb")
        ipn(ns, "link", "set", "vea", "up")
        ipn(peer, "link", "set", "veb", "up")
        code = """
import threading, time, sys
from prometheus_client import CollectorRegistry
from agent.metrics import AgentMetrics
from agent.config import Config
from agent.capture.collector import PacketCaptureCollector
cfg = Config.model_validate({"capture": {"health_interval_seconds": 60,
                             "ring_blocks": 4, "ring_block_bytes": 65536}})
m = AgentMetrics(CollectorRegistry())
c = PacketCaptureCollector(cfg.capture, cfg.network, m)
stop = threading.Event()
t = threading.Thread(target=c.run, args=(lambda e: 0, stop)); t.start()
for _ in range(300):  # until the ring is open (slow on a loaded machine)
    if c.rings:
        break
    time.sleep(0.05)
print("ready", flush=True)
sys.stdin.readline()
time.sleep(2.0)
syn = lambda: m.registry.get_sample_value("vedette_capture_tcp_control_total", {"kind": "syn"})
print(syn() or 0, flush=True)
stop.set(); t.join()
print(syn() or 0, flush=True)
"""
        probe = """
import socket
for port in range(1, 21):
    s = socket.socket(); s.settimeout(0.2)
    try: s.connect(("198.18.10.1", port))
    except OSError: pass
    s.close()
"""
        repo = Path(__file__).resolve().parents[2]
        python = str(repo / ".venv/bin/python")
        capture = subprocess.Popen(["ip", "netns", "exec", ns, python, "-c", code], cwd=repo,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        assert capture.stdout is not None and capture.stdin is not None
        assert capture.stdout.readline().strip() == "ready"
        subprocess.run(["ip", "netns", "exec", peer, python, "-c", probe], check=True,
                       timeout=30)
        capture.stdin.write("\n")
        capture.stdin.flush()
        out, err = capture.communicate(timeout=60)
        assert capture.returncode == 0, err
        running, stopped = (float(x) for x in out.split())
        assert running >= 20  # exported within ~a second, long before the health interval
        assert stopped >= running
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", peer], check=False)
