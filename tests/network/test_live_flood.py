"""The real daemon capturing live in the lab under a flood from several senders (no timing).

The speed figures of the same scenario are in ``make bench`` (bench/live_flood.py, which this
test drives with a small flood); here only correctness: the concurrent nmap scan is alerted
with the scanner's address as the source, and every packet the target's veth saw is counted
by the kernel ring (delivered or dropped) in the daemon's metrics; capture counters reach
/metrics within seconds, and the totals after the last scrape reach the shutdown log.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from bench.live_flood import FloodLab

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if not all(shutil.which(t) for t in ("ip", "tcpreplay", "nmap")):
    pytest.skip("needs ip, tcpreplay and nmap", allow_module_level=True)


def test_scan_during_a_multi_sender_flood_is_alerted_and_every_packet_counted(
    tmp_path: Path,
) -> None:
    with FloodLab(tmp_path, ("cli", "gw", "cli", "gw"), packets=200_000) as flood:
        run = flood.run_once(0)
        log = flood.log()
    assert run["offered"] == 200_000, run["tcpreplay"]
    assert run["scan_alerted"], (run, log[-3000:])
    # the kernel ring saw (delivered + dropped) exactly what crossed the target's veth
    # (read a moment apart: a stray ARP or ND packet may fall between the two reads)
    assert abs(run["ring_packets"] - run["veth_rx"] - run["veth_tx"]) <= 10, run
    assert run["ring_packets"] >= run["offered"]
    # Not asserted: decoded == ring packets - drops at this moment. Live, a few thousand
    # packets of a flood reach vedette_capture_packets_total only with later traffic (the bench
    # runs show the gap of one run made up in the next); see docs/network.md "Benchmark".


def test_scan_inside_a_50k_pps_spoofed_random_port_flood_is_alerted_live(tmp_path: Path) -> None:
    """The issue's row, live: 6 s of a 50 k packets/s SYN flood (4 paced senders) from spoofed
    sources to random ports of the target, and an nmap SYN scan half a second in. The daemon
    must alert the scan (source = the scanner), report the flood, and say that detection was
    degraded (the new-sources budget was spent) — nothing silent."""
    with FloodLab(tmp_path, ("cli", "gw", "cli", "gw"), packets=300_000, random_ports=True,
                  pps=50_000) as flood:
        run = flood.run_once(0)
        deadline = time.monotonic() + 15
        names: set[str] = set()
        while time.monotonic() < deadline:
            names = {doc["rule"]["name"] for doc in flood.alert_docs()}
            if {"Flood from spoofed or very many sources",
                    "Network detection degraded - per-second event budget exhausted"} <= names:
                break
            time.sleep(0.5)
        log = flood.log()
    assert run["offered"] == 300_000, run["tcpreplay"]
    # the senders really offered the rate the row names (paced; they reach ~90 k at topspeed)
    assert run["offered_pps"] >= 40_000, run
    assert run["scan_alerted"], (run, log[-3000:])
    assert "Flood from spoofed or very many sources" in names, names
    assert "Network detection degraded - per-second event budget exhausted" in names, names


def _line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "capture stopped" in ln and "interface=e0" in ln]
    assert lines, log[-3000:]
    return lines[-1]


def _field(line: str, key: str) -> int:
    match = re.search(rf"\b{key}=(\d+)", line)
    assert match, line
    return int(match.group(1))


def test_capture_counters_are_exported_within_seconds_and_the_final_totals_logged_at_shutdown(
    tmp_path: Path,
) -> None:
    with FloodLab(tmp_path, ("cli",), packets=300) as flood:
        ((role, pcap),) = flood.files

        def send() -> None:
            flood.lab.run(role, "tcpreplay", "-i", "e0", str(pcap), timeout=60, check=True)

        started = time.monotonic()
        send()
        while True:
            seen = flood.scrape()
            if (seen["vedette_capture_ring_packets"] >= 300
                    and seen["vedette_capture_packets"] >= 300):
                break
            assert time.monotonic() - started < 10, seen
            time.sleep(0.2)
        send()  # after the last scrape: only the shutdown path can count these
        assert flood.agent is not None
        flood.lab.stop(flood.agent)
        assert flood.agent.returncode == 0, flood.log()[-3000:]
        line = _line(flood.log())
    assert _field(line, "ring_packets") >= seen["vedette_capture_ring_packets"] + 300, line
    assert _field(line, "ring_drops") == 0, line
    assert _field(line, "decoded") >= seen["vedette_capture_packets"], line
