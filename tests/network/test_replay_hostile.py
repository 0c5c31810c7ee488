"""Replay under attack: hostile capture files, and a scan hidden in a spoofed flood.

* a pcapng whose ``if_tsresol`` says one tick per second (timestamps ~2^58 s) is read, the
  implausible records skipped and counted, the engine never sees them;
* a corrupt record (a 2 GB length) after good ones ends the read with a clear error (exit 1)
  while the alerts of the good part are printed;
* a vertical scan inside a 50 k packets/s spoofed SYN flood to random ports is still alerted,
  the flood is reported, and replay says detection was degraded — in its summary and, in
  ``--json``, as an internal alert document.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from agent.config import Config
from agent.offline.pcap import pcap_events
from bench.bench_packet import generate_flood
from tests.network import craft as c
from tests.network.make_rule_fixtures import vertical_scan

REPO = Path(__file__).resolve().parents[2]


def vedette(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def test_pcapng_with_a_seconds_resolution_and_huge_ticks_is_skipped_and_counted(
        tmp_path: Path) -> None:
    frame = bytes(Ether() / IP(src="203.0.113.66", dst="10.1.0.10") / TCP(flags="S"))
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    seconds = struct.pack("<HHB3x", 9, 1, 0) + struct.pack("<HH", 0, 0)  # 10^0 s per tick
    idb = _block(1, struct.pack("<HHI", 1, 0, 65535) + seconds)
    good_idb = _block(1, struct.pack("<HHI", 1, 0, 65535))  # default: microseconds
    ticks = 1 << 58
    bad = _block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame),
                                len(frame)) + frame)
    us = 1767225600_000000
    good = _block(6, struct.pack("<IIIII", 1, us >> 32, us & 0xFFFFFFFF, len(frame),
                                 len(frame)) + frame)
    path = tmp_path / "hostile.pcapng"
    path.write_bytes(shb + idb + good_idb + bad * 3 + good)
    events = pcap_events(path, Config())
    got = list(events)
    assert events.stats.bad_timestamps == 3
    assert [e.timestamp for e in got if e.logsource.category == "network_packet"] == [
        1767225600.0]
    proc = vedette("replay", str(path), "--rules", str(REPO / "rules" / "network"))
    assert proc.returncode == 0, proc.stderr
    assert "3 record(s) skipped for an implausible timestamp" in proc.stdout


def test_a_corrupt_record_after_good_ones_keeps_their_alerts(tmp_path: Path) -> None:
    path = c.write(tmp_path / "scan.pcap", vertical_scan())
    data = path.read_bytes()
    corrupt = struct.pack("<IIII", 1767225700, 0, 2_000_000_000, 2_000_000_000) + b"\0" * 64
    path.write_bytes(data + corrupt)
    proc = vedette("replay", str(path), "--rules", str(REPO / "rules" / "network"))
    assert proc.returncode == 1
    assert "record length 2000000000 exceeds" in proc.stderr
    assert "are kept" in proc.stderr
    assert "Vertical TCP port scan" in proc.stdout
    json_run = vedette("replay", str(path), "--rules", str(REPO / "rules" / "network"),
                       "--json")
    assert json_run.returncode == 1
    titles = {json.loads(line)["rule"]["name"] for line in json_run.stdout.splitlines()}
    assert "Vertical TCP port scan" in titles


def test_scan_inside_a_spoofed_random_port_flood_is_seen_and_degradation_reported(
        tmp_path: Path) -> None:
    # 6 s of a 50 k packets/s SYN flood from spoofed sources to random ports of one host, with
    # one scanner probing ports 1.. at 100 probes/s from the 2nd second (400 probes).
    pcap = generate_flood(tmp_path / "flood.pcap", 300_000, 50_000.0, True, True)
    proc = vedette("replay", str(pcap), "--rules", str(REPO / "rules" / "network"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Vertical TCP port scan" in out
    assert "source.ip=203.0.113.66, destination.ip=198.18.0.10" in out
    assert "Flood from spoofed or very many sources" in out
    assert "detection degraded:" in out and "new_sources" in out
    assert "Network detection degraded" in out  # capture_budget_exhausted, from health events
    json_run = vedette("replay", str(pcap), "--rules", str(REPO / "rules" / "network"),
                       "--json")
    docs = [json.loads(line) for line in json_run.stdout.splitlines()]
    by_name = {d["rule"]["name"]: d for d in docs}
    assert "Vertical TCP port scan" in by_name
    degraded = [d for d in docs if d["rule"]["name"].startswith("Network detection degraded")]
    assert degraded, sorted(by_name)
    # Only a scan's own rules count 400 probes: the flood spent the new-sources pool only.
    scan = by_name["Vertical TCP port scan"]
    assert scan["source"]["ip"] == "203.0.113.66"


def test_replay_reports_degradation_without_the_budget_rule(tmp_path: Path) -> None:
    pcap = generate_flood(tmp_path / "flood.pcap", 120_000, 50_000.0, True, False)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "port_scan_vertical.yml").write_text(
        (REPO / "rules" / "network" / "port_scan_vertical.yml").read_text())
    json_run = vedette("replay", str(pcap), "--rules", str(rules), "--json")
    assert json_run.returncode == 0, json_run.stderr
    docs = [json.loads(line) for line in json_run.stdout.splitlines()]
    internal = [d for d in docs if d["rule"]["id"] == "vedette-internal-replay-degraded"]
    assert len(internal) == 1
    assert "new_sources" in internal[0]["message"]
