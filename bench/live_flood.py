"""Live capture under a flood: the real ``vedette run`` daemon, several senders, a concurrent scan.

The lab of ``tests/network/lab.py`` (namespaces on one bridge, 198.18.0.0/24, no route out):
the daemon runs in ``tgt`` capturing ``e0`` with the network rules and a JSONL alert sink; its
metrics are scraped over HTTP inside ``tgt``. Each run:

* several ``tcpreplay --topspeed`` senders (one per sender namespace, each its own veth into
  the bridge) replay their slice of a spoofed SYN flood — 2 M packets from 2 M distinct random
  sources in all, addressed to the target's MAC and IP;
* half a second in, ``nmap -n -Pn -sS -p 1-200`` from a fresh address of ``atk`` scans the
  target;
* offered packets are counted three ways: the senders' own "Successful packets", the target
  veth's ``ip -s link`` counters (RX + TX, the ring also sees outgoing packets), and the
  kernel's PACKET_STATISTICS as the daemon exports them (``vedette_capture_ring_packets_total``
  = delivered + dropped, ``vedette_capture_ring_drops_total``); the daemon's decoded packets
  (``vedette_capture_packets_total``) must equal ring packets - ring drops, and the ring's
  packets the veth's, so every packet is either decoded or counted as a drop;
* the daemon's CPU (utime + stime from /proc) and the 1-minute load average are recorded;
* the run passes its scan check when a ``port_scan_vertical`` alert with ``source.ip`` = the
  nmap address is in the sink.

The daemon and the lab are shared by all runs (a fresh scanner address per run, so each alert
is a new group). Every wait is bounded; the lab is torn down even after a failure.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import BenchResult
from tests.network.lab import ADDRESSES, Lab

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
FLOOD_PACKETS = 2_000_000
SENDERS = ("cli", "gw")
"""Sender namespaces: each runs one tcpreplay on its own veth into the bridge (more senders
than the two cores here only add contention: measured, see docs/network.md)."""


def _scan_rule_id() -> str:
    for doc in yaml.safe_load_all((REPO / "rules" / "network" / "port_scan_vertical.yml")
                                  .read_text()):
        if doc["name"] == "port_scan_vertical":
            return str(doc["id"])
    raise RuntimeError("port_scan_vertical rule not found")
SCAN_PORTS = "1-200"
_CLK = os.sysconf("SC_CLK_TCK")


def available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "tcpreplay", "nmap"))


def _mac(lab: Lab, role: str) -> bytes:
    out = lab.run(role, "ip", "-j", "link", "show", "e0", check=True).stdout
    return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def flood_pcap(path: Path, count: int, src_mac: bytes, dst_mac: bytes, dst_ip: str,
               seed: int, random_ports: bool = False) -> Path:
    """``count`` SYNs to ``dst_ip``:80 (or, with ``random_ports``, each to a random destination
    port), each from a distinct random source address and port (valid IP checksum; the TCP
    checksum is not computed — the capture path does not check it, the target's stack drops
    them)."""
    rng = random.Random(seed)
    eth = dst_mac + src_mac + b"\x08\x00"
    dst = bytes(int(x) for x in dst_ip.split("."))
    tcp_rest = b"\x00\x00\x00\x01" + b"\x00\x00\x00\x00" + b"\x50\x02\xfa\xf0" + b"\x00\x00\x00\x00"
    rec = struct.Struct("<IIII")
    seen: set[int] = set()
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        i = 0
        while i < count:
            src_n = rng.getrandbits(32)
            if src_n in seen:
                continue
            seen.add(src_n)
            src = src_n.to_bytes(4, "big")
            ip = bytearray(b"\x45\x00\x00\x28\x00\x01\x00\x00\x40\x06\x00\x00" + src + dst)
            ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
            dport = rng.randrange(1, 65536) if random_ports else 80
            frame = eth + ip + rng.getrandbits(16).to_bytes(2, "big") \
                + dport.to_bytes(2, "big") + tcp_rest
            ts = 1767225600 + i * 1e-5
            sec = int(ts)
            fh.write(rec.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
            i += 1
    return path


def _scrape(lab: Lab, port: int) -> dict[str, float]:
    """Sum of every sample of the capture families we need, by family name."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out = lab.run("tgt", PYTHON, "-c",
                  f"import urllib.request,sys;sys.stdout.write(urllib.request.urlopen("
                  f"'http://127.0.0.1:{port}/metrics',timeout=5).read().decode())",
                  timeout=20, check=True).stdout
    wanted = {"vedette_capture_ring_packets", "vedette_capture_ring_drops",
              "vedette_capture_packets"}
    sums = dict.fromkeys(wanted, 0.0)
    sums["over_budget_global"] = sums["over_budget_per_key"] = 0.0
    sums["capture_input_errors"] = 0.0
    for family in text_string_to_metric_families(out):
        if family.name in wanted:
            sums[family.name] = sum(s.value for s in family.samples
                                    if s.name.endswith("_total"))
        elif family.name == "vedette_input_errors":
            sums["capture_input_errors"] = sum(
                s.value for s in family.samples
                if s.name.endswith("_total") and s.labels.get("source") == "capture")
        elif family.name == "vedette_capture_events_over_budget":
            for s in family.samples:
                if s.name.endswith("_total"):
                    sums[f"over_budget_{s.labels['budget']}"] += s.value
    return sums


def _veth(lab: Lab) -> dict[str, int]:
    out = lab.run("tgt", "ip", "-j", "-s", "link", "show", "e0", check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return {"rx": stats["rx"]["packets"], "tx": stats["tx"]["packets"],
            "rx_dropped": stats["rx"]["dropped"]}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


def _successful(tcpreplay_out: str) -> int:
    for line in tcpreplay_out.splitlines():
        if "Successful packets:" in line:
            return int(line.split(":")[1])
    return 0


class FloodLab:
    def __init__(self, workdir: Path, senders: tuple[str, ...] = SENDERS,
                 packets: int = FLOOD_PACKETS, random_ports: bool = False,
                 pps: int = 0) -> None:
        """``pps`` > 0: every sender paces at ``pps / len(senders)`` packets/s instead of
        ``--topspeed``; ``random_ports``: the flood's SYNs go to random destination ports."""
        self.workdir = workdir
        self.packets = packets
        self.random_ports = random_ports
        self.pps = pps
        self.senders = senders
        self.scan_rule = _scan_rule_id()
        self.lab = Lab(workdir)
        self.port = 9787
        self.alerts = workdir / "alerts.jsonl"
        self.files: list[tuple[str, Path]] = []
        self.agent: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FloodLab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.lab.down()
            raise
        return self

    def _start(self) -> None:
        lab = self.lab.up()
        for i in range(41, 61):
            lab.run("atk", "ip", "addr", "add", f"198.18.0.{i}/24", "dev", "e0", check=True)
        target_mac = _mac(lab, "tgt")
        per = self.packets // len(self.senders)
        for k, role in enumerate(self.senders):
            path = flood_pcap(self.workdir / f"flood-{k}.pcap", per, _mac(lab, role),
                              target_mac, ADDRESSES["tgt"], 11 + k, self.random_ports)
            self.files.append((role, path))
        config = {
            "agent": {"state_dir": str(self.workdir / "state"), "log_level": "info"},
            "metrics": {"port": self.port},
            "host_metrics": {"enabled": False}, "process": {"enabled": False},
            "sockets": {"enabled": False}, "auth_logs": {"enabled": False},
            "web_logs": {"enabled": False}, "fim": {"enabled": False},
            "kernel_modules": {"enabled": False}, "auditd": {"enabled": False},
            "sinks": {"jsonl": {"path": str(self.alerts), "fsync": "always"}},
            "detection": {"shipped_rules": False,
                          "rule_paths": [str(REPO / "rules" / "network")],
                          "watch_rules": False},
            "capture": {"rescan_seconds": 1.0},
            "network": {"local_networks": ["198.18.0.0/24"]},
        }
        (self.workdir / "vedette.yaml").write_text(yaml.safe_dump(config))
        self.agent = lab.spawn("tgt", PYTHON, "-m", "agent.cli", "run", "--config",
                               str(self.workdir / "vedette.yaml"), log="agent.log")
        deadline = time.monotonic() + 60
        while "capturing interface=e0" not in self.log():
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent not capturing:\n{self.log()[-3000:]}")
            time.sleep(0.2)
        time.sleep(1.5)

    def __exit__(self, *exc: object) -> None:
        self.lab.down()

    def log(self) -> str:
        path = self.workdir / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alert_docs(self) -> list[dict[str, Any]]:
        """Every complete alert line of the daemon's JSONL sink so far."""
        if not self.alerts.exists():
            return []
        text = self.alerts.read_text()
        return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]

    def scan_alerted(self, source: str) -> bool:
        return any(doc.get("rule", {}).get("id") == self.scan_rule
                   and doc.get("source", {}).get("ip") == source
                   for doc in self.alert_docs())

    def scrape(self) -> dict[str, float]:
        return _scrape(self.lab, self.port)

    def _settled(self) -> dict[str, float]:
        """Scrape until the ring counters stop moving (exports run every second)."""
        last = _scrape(self.lab, self.port)
        for _ in range(20):
            time.sleep(1.2)
            now = _scrape(self.lab, self.port)
            if now == last:
                return now
            last = now
        return last

    def run_once(self, index: int) -> dict[str, Any]:
        assert self.agent is not None
        scanner = f"198.18.0.{41 + index}"
        before, veth0 = self._settled(), _veth(self.lab)
        cpu0, load = _cpu_seconds(self.agent.pid), os.getloadavg()[0]
        t0 = time.monotonic()
        rate = (f"--pps={self.pps // len(self.senders)}" if self.pps > 0 else "--topspeed")
        senders = [subprocess.Popen(self.lab.cmd(role, "tcpreplay", rate, "-i", "e0", str(path)),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for role, path in self.files]
        time.sleep(0.5)
        nmap = subprocess.Popen(self.lab.cmd("atk", "nmap", "-n", "-Pn", "-sS", "--max-retries",
                                             "1", "-S", scanner, "-e", "e0", "-p", SCAN_PORTS,
                                             ADDRESSES["tgt"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outputs = [p.communicate(timeout=180)[0] for p in senders]
        send_seconds = time.monotonic() - t0
        nmap_out = nmap.communicate(timeout=120)[0]
        cpu1 = _cpu_seconds(self.agent.pid)
        wall = time.monotonic() - t0
        deadline = time.monotonic() + 10
        while not self.scan_alerted(scanner) and time.monotonic() < deadline:
            time.sleep(0.2)
        after, veth1 = self._settled(), _veth(self.lab)
        delta = {k: after[k] - before[k] for k in after}
        offered = sum(_successful(o) for o in outputs)
        return {
            "scanner": scanner,
            "offered": offered,
            "send_seconds": send_seconds,
            "offered_pps": offered / send_seconds,
            "veth_rx": veth1["rx"] - veth0["rx"], "veth_tx": veth1["tx"] - veth0["tx"],
            "veth_rx_dropped": veth1["rx_dropped"] - veth0["rx_dropped"],
            "ring_packets": delta["vedette_capture_ring_packets"],
            "ring_drops": delta["vedette_capture_ring_drops"],
            "decoded": delta["vedette_capture_packets"],
            "capture_input_errors": delta["capture_input_errors"],
            "events_over_budget_global": delta["over_budget_global"],
            "events_over_budget_per_key": delta["over_budget_per_key"],
            "agent_cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "load_1min_before": load, "load_1min_after": os.getloadavg()[0],
            "scan_alerted": self.scan_alerted(scanner),
            "nmap": nmap_out.strip().splitlines()[-3:],
            "tcpreplay": [o.strip().splitlines()[-6:] for o in outputs],
        }


def run(workdir: Path, runs: int = 5,
        senders: tuple[str, ...] = SENDERS) -> list[dict[str, Any]]:
    with FloodLab(workdir, senders) as flood:
        results = [flood.run_once(i) for i in range(runs)]
        tail = flood.log()[-2000:]
    for r in results:
        r["agent_log_tail"] = None
    if results:
        results[-1]["agent_log_tail"] = tail
    return results


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vedette-live-flood-") as tmp:
        keep = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp)
        roles = tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else SENDERS
        for row in run(keep, int(sys.argv[1]) if len(sys.argv) > 1 else 1, roles):
            row.pop("agent_log_tail")
            print(json.dumps(row))


def add_rows(result: BenchResult, rows: list[dict[str, Any]], senders: int) -> None:
    """Median of the runs, min and max in the note; the load average of every run."""
    n = len(rows)
    loads = [r["load_1min_before"] for r in rows] + [r["load_1min_after"] for r in rows]
    where = (f"median of {n} runs; {senders} tcpreplay --topspeed senders, 2 M spoofed sources;"
             f" load avg {min(loads):.1f}-{max(loads):.1f}")

    def add(metric: str, key: str, unit: str, target: str = "") -> None:
        values = [float(r[key]) for r in rows]
        result.add(metric, statistics.median(values), unit, target,
                   f"{where}; min {min(values):.6g}, max {max(values):.6g}")

    add("live_flood_offered_packets_per_second", "offered_pps", "packets/s")
    add("live_flood_ring_drops", "ring_drops", "packets", "<= 0")
    add("live_flood_agent_cpu_percent", "agent_cpu_percent", "% of one core")
    for r in rows:
        r["veth_minus_ring"] = r["veth_rx"] + r["veth_tx"] - r["ring_packets"]
        r["ring_minus_drops_minus_decoded"] = (r["ring_packets"] - r["ring_drops"] - r["decoded"]
                                               - r["capture_input_errors"])
    worst = max(abs(r["veth_minus_ring"]) for r in rows)
    result.add("live_flood_veth_vs_ring_packets_max_difference", worst, "packets", "<= 10",
               "|ip -s link RX+TX delta - vedette_capture_ring_packets_total delta| (kernel "
               f"PACKET_STATISTICS, delivered + dropped), worst of {n} runs; the two are read "
               "a moment apart, so a stray ARP/ND packet can fall between them")
    worst = max(abs(r["ring_minus_drops_minus_decoded"]) for r in rows)
    result.add("live_flood_ring_vs_decoded_max_difference", worst, "packets", "",
               "|ring packets - ring drops - vedette_capture_packets_total - capture input "
               f"errors|, worst of {n} runs")
    caught = sum(1 for r in rows if r["scan_alerted"])
    result.add("live_flood_concurrent_scan_caught", caught / n, "fraction of runs", ">= 1",
               f"nmap -n -sS -p {SCAN_PORTS} from a fresh address during the flood: "
               f"port_scan_vertical alert with that source.ip in {caught} of {n} runs")
