"""Every TCP scan type with real nmap (and scapy for IPv6 extension-header chains), live and by
replay: the daemon capturing in the target namespace and ``vedette replay`` of the target-side
pcap must raise the same alerts, naming the scanner as source, with ATT&CK T1046.

Each scan runs twice where it matters: against a target that answers (closed ports reset, ACK
probes reset) and against one whose nftables drops the scanner (only the probes are on the
wire). Every run uses its own source address, so every alert is its own group.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.network.toolrun import ATK6, PYTHON, TGT, TGT6, ToolLab, missing_tools

pytestmark = [pytest.mark.netns, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("the network lab needs root (namespaces, raw sockets)", allow_module_level=True)
if missing_tools():
    pytest.skip(f"lab tools missing: {', '.join(missing_tools())}", allow_module_level=True)

# (nmap arguments, rule that must fire, firewalled?) — the source is 198.18.0.(60 + index)
SCANS: list[tuple[tuple[str, ...], str, bool]] = [
    (("-sS",), "port_scan_vertical", False),
    (("-sS",), "port_scan_vertical", True),
    (("-sF",), "tcp_stealth_scan", False),
    (("-sN",), "tcp_stealth_scan", True),
    (("-sX",), "tcp_stealth_scan", True),
    (("-sA",), "tcp_untracked_scan", False),
    (("-sA",), "tcp_untracked_scan", True),
    (("-sW",), "tcp_untracked_scan", False),
    (("-sM",), "tcp_untracked_scan", False),
    (("-sM",), "tcp_untracked_scan", True),
    (("-sS", "--scanflags", "SYNFIN"), "tcp_invalid_flags_scan", True),
    (("-sS", "--scanflags", "URGPSH"), "tcp_stealth_scan", True),
    (("-sS", "-f"), "port_scan_vertical", True),
    (("-sS", "-f"), "port_scan_vertical", False),
]
SOURCES = [f"198.18.0.{60 + i}" for i in range(len(SCANS))] + ["198.18.0.90"]


@pytest.fixture(scope="module")
def tl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolLab]:
    tl = ToolLab(tmp_path_factory.mktemp("scans"))
    try:
        yield tl.up(SOURCES)
    finally:
        tl.down()


def _check(run_live: tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]],
           rule: str, scanner: str, target: str) -> None:
    live, replayed = run_live
    assert (rule, scanner, target) in replayed, replayed
    assert live == replayed


@pytest.mark.parametrize(("args", "rule", "firewalled"), SCANS,
                         ids=[f"{' '.join(a)}{' dropped' if f else ''}" for a, _, f in SCANS])
def test_nmap_scan_live_and_replayed(tl: ToolLab, args: tuple[str, ...], rule: str,
                                     firewalled: bool) -> None:
    source = SOURCES[SCANS.index((args, rule, firewalled))]
    if firewalled:
        tl.firewall(source)
    run = tl.record(source, "nmap", "-n", "-Pn", "-T4", "--max-retries", "0", *args,
                    "-S", source, "-e", "e0", "-p", "1-150", TGT)
    _check(run.compare(), rule, source, TGT)
    assert run.techniques(rule) == {"T1046"}
    if not firewalled and rule != "tcp_invalid_flags_scan":
        # the answers tell the same story, attributed to the scanner too
        live, _ = run.compare(timeout=0)
        if args[0] in ("-sS", "-sF"):
            assert ("tcp_closed_port_resets", source, TGT) in live, live


def test_connect_scan_live_and_replayed(tl: ToolLab) -> None:
    source = SOURCES[-1]
    run = tl.record(source, "nmap", "-n", "-Pn", "-T4", "-sT", "-S", source, "-e", "e0",
                    "-p", "1-150", TGT)
    _check(run.compare(), "port_scan_vertical", source, TGT)
    assert run.techniques("port_scan_vertical") == {"T1046"}


SCAPY_V6 = """
import time
from scapy.all import IPv6, IPv6ExtHdrDestOpt, PadN, TCP, send, conf
conf.verb = 0
pkts = [IPv6(src={src!r}, dst={dst!r}) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\\0" * 4)])
        / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\\0" * 4)]) / TCP(sport=47001, dport=p,
        flags="S") for p in range(1, 61)]
for p in pkts:
    send(p)
    time.sleep(0.005)
"""


def test_ipv6_syn_scan_with_destination_options_chain(tl: ToolLab) -> None:
    """SYNs behind two Destination Options headers (the Linux target answers them)."""
    run = tl.record(ATK6, PYTHON, "-c", SCAPY_V6.format(src=ATK6, dst=TGT6))
    _check(run.compare(), "port_scan_vertical", ATK6, TGT6)
    assert run.techniques("port_scan_vertical") == {"T1046"}


def test_nmap_ipv6_syn_scan(tl: ToolLab) -> None:
    run = tl.record(ATK6, "nmap", "-6", "-n", "-Pn", "-T4", "--max-retries", "0", "-sS",
                    "-e", "e0", "-p", "200-350", TGT6)
    _check(run.compare(), "port_scan_vertical", ATK6, TGT6)


def test_scan_delay_5s_over_12_ports(tl: ToolLab) -> None:
    """nmap -sS --scan-delay 5s over 12 ports: about a minute, under the vertical rule."""
    source = "198.18.0.59"
    tl.lab.run("atk", "ip", "addr", "add", f"{source}/24", "dev", "e0", check=True)
    run = tl.record(source, "nmap", "-n", "-Pn", "-sS", "--scan-delay", "5s", "--max-retries",
                    "0", "-S", source, "-e", "e0", "-p", "21-23,25,53,80,110,139,143,443,445,3389",
                    TGT, timeout=120)
    live, replayed = run.compare()
    assert ("port_scan_paced", source, TGT) in replayed
    assert live == replayed
    assert run.techniques("port_scan_paced") == {"T1046"}
    assert not {r for r in replayed if r[0] == "port_scan_vertical"}


SCAPY_DISTRIBUTED = """
import time
from scapy.all import IP, TCP, send, conf
conf.verb = 0
for s in range(100):
    pkts = [IP(src=f"198.18.0.{{100 + s}}", dst={dst!r})
            / TCP(sport=48000 + s, dport=1 + s * 10 + j, flags="S") for j in range(10)]
    send(pkts, inter=0.002)
    time.sleep(0.3)
"""


def test_distributed_scan_100_sources_x_10_ports(tl: ToolLab) -> None:
    """100 (spoofed) sources, each 10 ports of its own, within about 35 s: the destination-centric
    rule names the target; no per-source rule above low severity fires."""
    target = "198.18.0.11"
    tl.lab.run("tgt", "ip", "addr", "add", f"{target}/24", "dev", "e0", check=True)
    run = tl.record(target, PYTHON, "-c", SCAPY_DISTRIBUTED.format(dst=target), timeout=80)
    live, replayed = run.compare()
    assert ("port_scan_distributed", "", target) in replayed, replayed
    assert run.techniques("port_scan_distributed") == {"T1046"}
    # Each source sends exactly the low paced rule's 10 ports, so whether a given source's
    # paced alert opens depends on the per-source event budgets of that second, which live
    # capture (its block boundaries) and replay may spend differently: compare everything else.
    def above_low(alerts: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        return {a for a in alerts if a[0] != "port_scan_paced"}

    assert above_low(live) == above_low(replayed)
    assert {r[0] for r in replayed | live} <= {"port_scan_distributed", "port_scan_paced"}
