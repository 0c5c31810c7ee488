"""Real ``nmap -n -Pn -sS -D d1,d2,ME,d3,d4,d5`` between lab namespaces, the decoys being real
hosts on the same bridge (their own namespaces and MACs, answering the target's ARP): the live
agent (capturing in the target namespace) and a replay of the target's capture raise the same
alerts — the per-address scan alerts and ``tcp_decoy_source`` name the real scanner only, none
names a decoy; ``tcp_decoy_scan`` and ``port_scan_spoofed`` name the scanner's MAC; T1046.

(Decoys that are the scanner's own secondary addresses — the scanner's kernel answers ARP for
all of them — are told apart by nothing on the wire: tests/network/test_decoys.py replays that
capture, tests/fixtures/pcap/tools/nmap_decoys.pcap, and checks nothing is marked.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.network.toolrun import ATK, NAMES, TGT, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)

DECOYS = [f"198.18.0.{i}" for i in range(61, 66)]
PER_ADDRESS = {"port_scan_vertical", "port_scan_slow", "port_scan_very_slow",
                    "port_scan_paced", "tcp_closed_port_resets", "tcp_decoy_source"}


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("decoys"))
    try:
        tl.up([])
        for i, address in enumerate(DECOYS):
            tl.lab.add_host(f"d{i + 1}", address)
        yield tl
    finally:
        tl.down()


Seen = set[tuple[str, str, str, str, tuple[str, ...]]]


def alerts(docs: list[dict[str, Any]]) -> Seen:
    """``(rule, source.ip, source.mac, destination.ip, ATT&CK techniques)`` of every alert."""
    return {(NAMES.get(doc["rule"]["id"], doc["rule"]["id"]),
             doc.get("source", {}).get("ip", ""), doc.get("source", {}).get("mac", ""),
             doc.get("destination", {}).get("ip", ""),
             tuple(sorted(doc.get("threat", {}).get("technique", {}).get("id", []))))
            for doc in docs}


def test_nmap_decoy_scan_live_and_replayed(tl: ToolLab) -> None:
    order = [*DECOYS[:2], "ME", *DECOYS[2:]]
    run = tl.record(TGT, "nmap", "-n", "-Pn", "-sS", "-D", ",".join(order), "-e", "e0",
                    "-p", "1-100", TGT)
    replayed = alerts(run.replay())
    scanner_mac = tl.lab.run("atk", "cat", "/sys/class/net/e0/address", check=True).stdout
    mac = scanner_mac.strip().replace(":", "-").upper()
    names = {(rule, ip) for rule, ip, _, _, _ in replayed}
    assert {ip for _, ip in names if ip} == {ATK}, replayed
    assert not {ip for _, ip, _, dst, _ in replayed} & set(DECOYS)
    assert {("port_scan_vertical", ATK), ("tcp_decoy_source", ATK)} <= names
    assert ("tcp_decoy_scan", "", mac, "", ("T1046",)) in replayed
    assert ("port_scan_spoofed", "", mac, TGT, ("T1046",)) in replayed
    assert ("tcp_decoy_source", ATK, mac, TGT, ("T1046",)) in replayed
    assert all(rule not in PER_ADDRESS or ip == ATK for rule, ip, _, _, _ in replayed)
    deadline = time.monotonic() + 10
    live = alerts(tl.agent.alerts())
    while live != replayed and time.monotonic() < deadline:
        time.sleep(0.2)
        live = alerts(tl.agent.alerts())
    assert live == replayed
