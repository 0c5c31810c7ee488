"""Network benchmark: decode + detection throughput, live capture drops, memory under a flood.

1. A generated 1 M-packet mixed pcap (TCP sessions, DNS, ICMP, ARP, a port scan, a spoofed SYN
   flood, a DNS tunnel) goes through ``pcap_events`` + the detection engine with the network
   rules — the ``vedette replay`` path — on one core. Side by side on the same file:
   ``tcpdump -r FILE -w /dev/null`` and a naive scapy ``PcapReader`` loop (on a sample,
   extrapolated).
2. Live capture: the capture collector on one end of a veth pair inside a namespace, fed by
   ``tcpreplay --topspeed`` from the other end; kernel ring drops and the rate received.
3. Live capture under attack (bench/live_flood.py): the real ``vedette run`` daemon in a lab
   namespace, several ``tcpreplay --topspeed`` senders of a 2 M-source spoofed SYN flood, a
   concurrent ``nmap -sS``; offered rate, ring drops checked against the veth's counters, the
   daemon's CPU, scan caught or not; median of 5 runs.
4. Peak RSS of the replay path over a flood from 1 M distinct spoofed sources.

``python -m bench network``; the whole run stays within a few minutes.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import live_flood
from bench.common import BenchResult

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PACKETS = 1_000_000
T0 = 1767225600.0


# --------------------------------------------------------------------------- generation


def _templates() -> dict[str, bytes]:
    from scapy.layers.dns import DNS, DNSQR  # noqa: PLC0415 - only to build templates
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # noqa: PLC0415
    from scapy.layers.l2 import ARP, Ether  # noqa: PLC0415

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    client, server = IP(src="10.1.0.20", dst="10.1.0.10"), IP(src="10.1.0.10", dst="10.1.0.20")
    return {
        "data": bytes(eth / client / TCP(sport=40000, dport=443, flags="PA") / (b"x" * 400)),
        "ack": bytes(eth / server / TCP(sport=443, dport=40000, flags="A")),
        "syn": bytes(eth / client / TCP(sport=40000, dport=443, flags="S")),
        "dns": bytes(eth / IP(src="10.1.0.10", dst="10.1.0.53") / UDP(sport=40000, dport=53)
                     / DNS(rd=1, qd=DNSQR(qname="www.example.com"))),
        "icmp": bytes(eth / IP(src="10.1.0.5", dst="10.1.0.10") / ICMP(type=8)),
        "arp": bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="10.1.0.1",
                           pdst="10.1.0.10")),
        "tunnel": bytes(eth / IP(src="10.1.0.10", dst="10.1.0.53") / UDP(sport=41000, dport=53)
                        / DNS(rd=1, qd=DNSQR(qname="a" * 52 + ".t.tunnel-example.com",
                                             qtype="NULL"))),
    }


def generate(path: Path, count: int = PACKETS, spoofed_only: bool = False) -> Path:
    """Write a pcap of ``count`` packets (about 100 k packets per second of capture time)."""
    rng = random.Random(7)
    tpl = _templates()
    alphabet = b"abcdefghijklmnopqrstuvwxyz234567"
    rec = struct.Struct("<IIII")
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            ts = T0 + i * 1e-5
            r = i % 100
            if spoofed_only or 40 <= r < 50:  # spoofed-source SYN flood (10 %)
                frame = bytearray(tpl["syn"])
                frame[26:30] = rng.getrandbits(32).to_bytes(4, "big")
                frame[34:36] = rng.getrandbits(16).to_bytes(2, "big")
                frame[36:38] = b"\x00\x50"
            elif r < 35:
                frame = bytearray(tpl["data"])
                frame[35] = i % 200  # 200 client ports
            elif r < 40:
                frame = bytearray(tpl["ack"])
            elif r < 55:
                frame = bytearray(tpl["ack"])
                frame[37] = i % 250
            elif r < 90:
                frame = bytearray(tpl["data"])
                frame[29] = 20 + i % 30  # 30 clients
            elif r < 94:
                frame = bytearray(tpl["dns"])
            elif r < 95:
                frame = bytearray(tpl["tunnel"])
                frame[55:107] = bytes(rng.choice(alphabet) for _ in range(52))
            elif r < 97:
                frame = bytearray(tpl["icmp"])
            elif r < 98:
                frame = bytearray(tpl["arp"])
            else:  # a vertical scan: one SYN per port
                frame = bytearray(tpl["syn"])
                frame[26:30] = bytes([203, 0, 113, 66])
                frame[36:38] = (1 + (i // 100) % 65000).to_bytes(2, "big")
            sec = int(ts)
            fh.write(rec.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
    return path


# --------------------------------------------------------------------------- measurements

_REPLAY = """
import json, sys, time
def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from pathlib import Path
from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.loader import load_rules
from agent.netdecode.pcapfile import CaptureReader
from agent.offline.pcap import pcap_events
from agent.offline.clock import run
report = load_rules([Path(sys.argv[2])])
engine = Engine(report.ruleset)
decode_only = reader_only = None
if len(sys.argv) > 3:
    t0 = time.perf_counter()
    for _ in pcap_events(Path(sys.argv[1]), Config()):
        pass
    decode_only = time.perf_counter() - t0
    t0 = time.perf_counter()
    with CaptureReader(sys.argv[1]) as reader:
        for _ in reader.columns():
            pass
    reader_only = time.perf_counter() - t0
t0 = time.perf_counter()
events = pcap_events(Path(sys.argv[1]), Config())
result = run(engine, events, 1000.0)
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "decode_only_seconds": decode_only,
                  "reader_only_seconds": reader_only,
                  "packets": events.stats.processor.packets,
                  "events": result.events, "alerts": len(result.alerts),
                  "rss_mb": hwm_mb()}))
"""
"""Peak RSS is the replay process's own ``VmHWM``: ``ru_maxrss`` of a child also carries the
parent's high-water mark at the fork (this benchmark's parent has generated the captures by
then), so the row reported the parent's memory, not the replay's."""


def replay_path(pcap: Path, decode_only: bool = False) -> dict[str, float]:
    """Decode + detection in a fresh single-threaded process (its own peak RSS)."""
    extra = ["decode-only-first"] if decode_only else []
    proc = subprocess.run(
        ["taskset", "-c", "0", PYTHON, "-c", _REPLAY, str(pcap), str(REPO / "rules" / "network"),
         *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def tcpdump_rate(pcap: Path, count: int) -> float | None:
    if shutil.which("tcpdump") is None:
        return None
    t0 = time.perf_counter()
    subprocess.run(["tcpdump", "-r", str(pcap), "-w", "/dev/null"], capture_output=True,
                   timeout=300, check=True)
    return count / (time.perf_counter() - t0)


def scapy_rate(pcap: Path, sample: int = 20000) -> float:
    from scapy.utils import PcapReader  # noqa: PLC0415

    n = 0
    t0 = time.perf_counter()
    with PcapReader(str(pcap)) as reader:
        for _ in reader:
            n += 1
            if n >= sample:
                break
    return n / (time.perf_counter() - t0)


_LIVE = """
import json, threading, time
from prometheus_client import CollectorRegistry
from agent.metrics import AgentMetrics
from agent.config import Config
from agent.capture.collector import PacketCaptureCollector
cfg = Config.model_validate({"capture": {"interfaces": ["vbx"], "health_interval_seconds": 60}})
m = AgentMetrics(CollectorRegistry())
c = PacketCaptureCollector(cfg.capture, cfg.network, m)
events = [0]
def publish(evs):
    n = sum(1 for _ in evs); events[0] += n; return n
stop = threading.Event()
t = threading.Thread(target=c.run, args=(publish, stop)); t.start()
time.sleep(1.5)
print("ready", flush=True)
import sys
sys.stdin.readline()
time.sleep(1.0)
# the collector reads (and so resets) the kernel's PACKET_STATISTICS every second: the totals
# are the metrics it exported, final export at shutdown included
stop.set(); t.join()
value = m.registry.get_sample_value
totals = [value("vedette_capture_ring_packets_total", {"interface": "vbx"}) or 0,
          value("vedette_capture_ring_drops_total", {"interface": "vbx"}) or 0]
print(json.dumps({"kernel_packets": totals[0], "drops": totals[1],
                  "decoded": c.processor.stats.packets, "events": events[0]}), flush=True)
"""


def live_capture(pcap: Path) -> dict[str, float] | None:
    """Collector in namespace A, ``tcpreplay --topspeed`` into the veth from namespace B."""
    if os.geteuid() != 0 or not shutil.which("tcpreplay") or not shutil.which("ip"):
        return None
    a, b = f"vdbenchA{os.getpid()}", f"vdbenchB{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", a], check=True)
        subprocess.run(["ip", "netns", "add", b], check=True)
        subprocess.run(["ip", "-n", a, "link", "add", "vbx", "type", "veth", "peer", "name",
                        "vby", "netns", b], check=True)
        subprocess.run(["ip", "-n", a, "link", "set", "vbx", "up"], check=True)
        subprocess.run(["ip", "-n", b, "link", "set", "vby", "up"], check=True)
        collector = subprocess.Popen(["ip", "netns", "exec", a, PYTHON, "-c", _LIVE], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert collector.stdout is not None and collector.stdin is not None
        assert collector.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        replay = subprocess.run(["ip", "netns", "exec", b, "tcpreplay", "--topspeed", "-i", "vby",
                                 str(pcap)], capture_output=True, text=True, timeout=300)
        sent_seconds = time.perf_counter() - t0
        collector.stdin.write("\n")
        collector.stdin.flush()
        out = json.loads(collector.stdout.readline())
        collector.wait(30)
        out["send_seconds"] = sent_seconds
        out["tcpreplay"] = replay.stdout.strip().splitlines()[-6:] if replay.stdout else []
        return out
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


def run() -> BenchResult:
    result = BenchResult("network")
    with tempfile.TemporaryDirectory(prefix="vedette-bench-net-") as tmp:
        mixed = generate(Path(tmp) / "mixed.pcap")
        replay = replay_path(mixed, decode_only=True)
        rate = replay["packets"] / replay["seconds"]
        result.add("decode_detection_packets_per_second", rate, "packets/s", ">= 1000000",
                   f"{replay['events']:.0f} events, {replay['alerts']:.0f} alerts, one core")
        result.add("decode_events_only_packets_per_second",
                   replay["packets"] / replay["decode_only_seconds"], "packets/s",
                   note="pcap reader + packet processor, no rule evaluation")
        result.add("pcap_reader_packets_per_second",
                   replay["packets"] / replay["reader_only_seconds"], "packets/s",
                   note="record walk + header columns only")
        td = tcpdump_rate(mixed, PACKETS)
        if td is not None:
            result.add("tcpdump_read_write_packets_per_second", td, "packets/s")
            result.add("decode_detection_vs_tcpdump", rate / td, "ratio",
                       note="same run, same file: less sensitive to machine load")
        result.add("scapy_pcapreader_packets_per_second", scapy_rate(mixed), "packets/s",
                   note="20k-packet sample, extrapolated")
        live = live_capture(mixed)
        if live is not None:
            sent = live["kernel_packets"]
            result.add("live_ring_drops", live["drops"], "packets", "<= 0",
                       f"of {sent:.0f} offered by tcpreplay --topspeed")
            result.add("live_offered_packets_per_second", sent / live["send_seconds"],
                       "packets/s")
            result.add("live_decoded_packets", live["decoded"], "packets")
            result.context["tcpreplay"] = live["tcpreplay"]
        if live_flood.available():
            senders = live_flood.SENDERS * 2
            rows = live_flood.run(Path(tmp) / "flood-lab", 5, senders)
            live_flood.add_rows(result, rows, len(senders))
            result.context["live_flood_runs"] = rows
        spoofed = generate(Path(tmp) / "spoofed.pcap", PACKETS, spoofed_only=True)
        flood = replay_path(spoofed)
        result.add("peak_rss_spoofed_flood_mb", flood["rss_mb"], "MB", "<= 200",
                   "1 M SYNs from distinct random sources, decode + detection")
        result.context.update({"mixed": replay, "spoofed": flood,
                               "rusage_children_maxrss_mb":
                               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})
    return result


if __name__ == "__main__":
    from bench.common import table, write

    res = run()
    write(res)
    print(table([res]))
