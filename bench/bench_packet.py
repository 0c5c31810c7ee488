"""Packet path benchmark: replay speed and peak RSS on a realistic mix and on spoofed floods.

Three generated capture files, each replayed (``pcap_events`` + the detection engine with
``rules/network``: the ``vedette replay`` path) in a fresh single-core process, five times;
the median, minimum and maximum packets/s and peak RSS are reported (never best-of-N):

* **mix** — 1 M packets at 100 k packets/s of capture time: 85 % segments of 400 established
  TCP connections (client data with payload, server ACKs), 5 % DNS (queries and answers of 50
  clients, 1000 names), 10 % new connections (SYN, SYN-ACK, the handshake's ACK, FIN/ACK and a
  few RSTs, from 2000 client addresses);
* **flood** — 2 M SYNs toward one service (198.18.0.10:80), every one from a distinct spoofed
  source address and a random source port, at 100 k packets/s;
* **flood_random_ports** — 1 M spoofed SYNs at 50 k packets/s toward random ports of one host,
  with a vertical scan (one source, 1000 ports, 100 probes/s) inside it.

Files are written with numpy (the flood) or from byte templates (the mix), not with scapy per
packet. Peak RSS is the replay process's own ``VmHWM`` (``ru_maxrss`` would carry the
benchmark parent's high-water mark across the exec: Linux keeps it, so the first runs of this
file reported ~270 MB for the flood that is really ~110 MB; the baseline's parent generated
nothing, so its figures were not inflated). ``bench/results/packet_baseline.json`` holds the
same measurements of the packet path as it was before the analyzer restructuring (commit
59973db), measured with this file.

``python -m bench packet``; five to fifteen minutes depending on the machine's load.
"""

from __future__ import annotations

import json
import random
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import BenchResult

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RUNS = 5
T0 = 1767225600.0
_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def _eth_ip_tcp(src: bytes, dst: bytes, sport: int, dport: int, flags: int,
                payload: bytes = b"") -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000 if flags & 0x10 else 0, 0x50,
                      flags, 65535, 0, 0)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def _eth_ip_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0, src, dst)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + udp + payload


def _dns(name: str, response: bool, ident: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    flags = 0x8180 if response else 0x0100
    header = struct.pack("!HHHHHH", ident, flags, 1, 1 if response else 0, 0, 0)
    body = qname + b"\x00\x01\x00\x01"
    if response:
        body += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc6\x12\x00\x01"
    return header + body


def _write(path: Path, frames: list[bytes], rate: float) -> Path:
    rec = struct.Struct("<IIII")
    with path.open("wb") as fh:
        fh.write(_PCAP_HEADER)
        for i, frame in enumerate(frames):
            ts = T0 + i / rate
            sec = int(ts)
            fh.write(rec.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
    return path


def generate_mix(path: Path, count: int = 1_000_000) -> Path:
    """The realistic mix (see the module docstring), 100 k packets/s."""
    rng = random.Random(11)
    server = bytes([198, 18, 0, 10])
    resolver = bytes([198, 18, 0, 53])
    conns = [(bytes([198, 18, 1 + i // 200, i % 200 + 1]), 20000 + i) for i in range(400)]
    data = [_eth_ip_tcp(c, server, p, 443, 0x18, b"x" * 300) for c, p in conns]
    acks = [_eth_ip_tcp(server, c, 443, p, 0x10) for c, p in conns]
    names = [f"host{i}.service{i % 40}.example.com" for i in range(1000)]
    frames: list[bytes] = []
    new_port = 30000
    while len(frames) < count:
        r = rng.random()
        if r < 0.85:
            k = rng.randrange(400)
            frames.append(data[k] if rng.random() < 0.6 else acks[k])
        elif r < 0.90:
            client = bytes([198, 18, 2, rng.randrange(50) + 1])
            name = names[rng.randrange(1000)]
            ident = rng.getrandbits(16)
            frames.append(_eth_ip_udp(client, resolver, 40000 + ident % 20000, 53,
                                      _dns(name, False, ident)))
            frames.append(_eth_ip_udp(resolver, client, 53, 40000 + ident % 20000,
                                      _dns(name, True, ident)))
        else:
            client = bytes([198, 18, 8 + rng.randrange(8), rng.randrange(250) + 1])
            new_port = new_port + 1 if new_port < 60000 else 30000
            frames.append(_eth_ip_tcp(client, server, new_port, 443, 0x02))
            frames.append(_eth_ip_tcp(server, client, 443, new_port, 0x12))
            frames.append(_eth_ip_tcp(client, server, new_port, 443, 0x10))
            frames.append(_eth_ip_tcp(client, server, new_port, 443,
                                      0x04 if rng.random() < 0.1 else 0x11))
    return _write(path, frames[:count], 100_000.0)


def generate_flood(path: Path, count: int = 2_000_000, rate: float = 100_000.0,
                   random_ports: bool = False, scan: bool = False) -> Path:
    """Spoofed SYNs, each from a distinct source (a bijection of the index), written with numpy."""
    template = np.frombuffer(
        _eth_ip_tcp(b"\x00" * 4, bytes([198, 18, 0, 10]), 0, 80, 0x02), dtype=np.uint8)
    size = 16 + len(template)
    rows = np.zeros((count, size), dtype=np.uint8)
    ts = T0 + np.arange(count, dtype=np.float64) / rate
    sec = np.floor(ts)
    header = np.zeros((count, 4), dtype="<u4")
    header[:, 0] = sec.astype(np.uint32)
    header[:, 1] = ((ts - sec) * 1e6).astype(np.uint32)
    header[:, 2] = header[:, 3] = len(template)
    rows[:, :16] = header.view(np.uint8).reshape(count, 16)
    rows[:, 16:] = template
    idx = np.arange(count, dtype=np.uint64)
    src = ((idx * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)).astype(">u4")
    src |= np.uint32(0x01000000)  # never 0.0.0.0/8
    rows[:, 16 + 26:16 + 30] = src.view(np.uint8).reshape(count, 4)
    gen = np.random.default_rng(5)
    rows[:, 16 + 34:16 + 36] = gen.integers(0, 256, (count, 2), dtype=np.uint8)
    if random_ports:
        rows[:, 16 + 36:16 + 38] = gen.integers(0, 256, (count, 2), dtype=np.uint8)
    if scan:
        # One probe every 10 ms from one scanner, ports 1..1000, starting after 2 s of flood.
        every = int(rate / 100)
        probes = np.arange(2 * int(rate), count, every)[:1000]
        rows[probes, 16 + 26:16 + 30] = [203, 0, 113, 66]
        ports = (np.arange(len(probes)) + 1).astype(">u2")
        rows[probes, 16 + 36:16 + 38] = ports.view(np.uint8).reshape(-1, 2)
    with path.open("wb") as fh:
        fh.write(_PCAP_HEADER)
        rows.tofile(fh)
    return path


_REPLAY = """
import json, sys, time
from pathlib import Path
from agent.config import Config
from agent.detection.engine import Engine
from agent.detection.loader import load_rules
from agent.offline.pcap import pcap_events
from agent.offline.clock import run
engine = Engine(load_rules([Path(sys.argv[2])]).ruleset)
t0 = time.perf_counter()
result = run(engine, pcap_events(Path(sys.argv[1]), Config()), 1000.0)
elapsed = time.perf_counter() - t0
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(json.dumps({"seconds": elapsed, "events": result.events,
                  "alerts": sorted({a.rule.title for a in result.alerts.values()}),
                  "rss_mb": int(hwm[0].split()[1]) / 1024}))
"""


def replay_once(pcap: Path) -> dict[str, object]:
    """Decode + detection in a fresh process on one core (its own peak RSS)."""
    proc = subprocess.run(
        ["taskset", "-c", "0", PYTHON, "-c", _REPLAY, str(pcap),
         str(REPO / "rules" / "network")],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def measure(result: BenchResult, name: str, pcap: Path, packets: int, target_rate: str = "",
            target_rss: str = "", runs: int = RUNS) -> None:
    samples = [replay_once(pcap) for _ in range(runs)]
    rates = [packets / float(str(s["seconds"])) for s in samples]
    rss = [float(str(s["rss_mb"])) for s in samples]
    spread = (f"median of {runs}; min {min(rates):,.0f}, max {max(rates):,.0f}; "
              f"{samples[0]['events']} events, alerts {samples[0]['alerts']}")
    result.add(f"{name}_replay_packets_per_second", statistics.median(rates), "packets/s",
               target_rate, spread)
    result.add(f"{name}_peak_rss_mb", statistics.median(rss), "MB", target_rss,
               f"median of {runs}; min {min(rss):.0f}, max {max(rss):.0f}")
    result.context[name] = {"rates": rates, "rss_mb": rss, "events": samples[0]["events"],
                            "alerts": samples[0]["alerts"]}


def run() -> BenchResult:
    result = BenchResult("packet")
    with tempfile.TemporaryDirectory(prefix="vedette-bench-packet-") as tmp:
        measure(result, "mix", generate_mix(Path(tmp) / "mix.pcap"), 1_000_000)
        measure(result, "flood", generate_flood(Path(tmp) / "flood.pcap"), 2_000_000,
                ">= 500000", "<= 300")
        measure(result, "flood_random_ports",
                generate_flood(Path(tmp) / "random.pcap", 1_000_000, 50_000.0, True, True),
                1_000_000)
    return result


if __name__ == "__main__":
    from bench.common import table, write

    res = run()
    write(res)
    print(table([res]))
