"""Decoy scans (agent/netevents/decoys.py) and the MACs of packet events (agent/netevents/link.py).

The real ``nmap -sS -D 5 decoys,ME`` capture (tests/fixtures/pcap/tools/nmap_decoys.pcap) gives
one decoy-scan alert naming the scanner's MAC; many routed clients behind one gateway MAC that
complete their handshakes give none; hostile SYN streams keep the state within its bounds and
only ever name addresses that really sent a copy of another address's probe.

With real hosts as decoys (nmap_decoys_real_hosts.pcap: each decoy its own namespace and MAC,
answering the target's ARP) the probes under the decoys' addresses are marked likely spoofed:
the per-address scan alerts name only the real scanner, ``tcp_decoy_source`` names it, and
``port_scan_spoofed`` names the MAC. Forged ARP cannot move an innocent's binding to the
forger in time (property test); a gateway's MAC is never judged.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether

from agent.config import NetworkSection
from agent.detection.engine import Engine
from agent.detection.fixtures import horizon
from agent.detection.loader import load_rules
from agent.events import Event
from agent.netdecode.pcapfile import RawPacket
from agent.netevents.analyzers.base import Packet
from agent.netevents.arp import SETTLE, ArpTracker
from agent.netevents.decoys import (
    MAX_MACS,
    MAX_PROBES,
    MAX_SOURCES,
    ROUTER_SOURCES,
    DecoyTracker,
)
from agent.netevents.link import macs
from agent.netevents.processor import PacketProcessor
from agent.offline.clock import run
from agent.offline.pcap import fixture_config, pcap_events
from tests.network.toolrun import NAMES

REPO = Path(__file__).resolve().parents[2]
DECOYS = REPO / "tests" / "fixtures" / "pcap" / "tools" / "nmap_decoys.pcap"
REAL = REPO / "tests" / "fixtures" / "pcap" / "tools" / "nmap_decoys_real_hosts.pcap"
SCANNER_MAC = "3E-D0-62-E8-45-96"
REAL_DECOYS = {f"198.18.0.{n}" for n in range(61, 66)}
ADDRESSES = {"198.18.0.20", *(f"198.18.0.{n}" for n in range(51, 56))}
T0 = 1767225600.0
GW, SRV = "02:00:5e:00:53:01", "02:00:5e:00:53:10"


def decoy_events(events: list[Event]) -> list[dict[str, Any]]:
    return [e.fields for e in events if e.fields.get("event.action") == "decoy_probe"]


def alerts_of(path: Path, names: bool = False) -> list[tuple[str, dict[str, Any]]]:
    report = load_rules([REPO / "rules" / "network"])
    assert not report.errors
    engine = Engine(report.ruleset)
    result = run(engine, pcap_events(path, fixture_config(path)), horizon(report, 5.0))
    return [(NAMES[a.rule.id] if names else a.rule.title, a.group)
            for a in result.alerts.values()]


def test_nmap_decoy_capture_gives_one_decoy_scan_alert_naming_the_mac() -> None:
    events = list(pcap_events(DECOYS, fixture_config(DECOYS)))
    found = decoy_events(events)
    assert {f["source.ip"] for f in found} == ADDRESSES
    assert {f["source.mac"] for f in found} == {SCANNER_MAC}
    assert {f["destination.ip"] for f in found} == {"198.18.0.10"}
    syns = [e.fields for e in events if e.fields.get("tcp.flags.syn") is True
            and e.fields.get("tcp.flags.ack") is False]
    assert syns and {f["source.mac"] for f in syns} == {SCANNER_MAC}
    decoy_alerts = [group for title, group in alerts_of(DECOYS) if title.startswith("Decoy scan")]
    assert decoy_alerts == [{"source.mac": SCANNER_MAC}]


def _frames(pkts: list[Any]) -> list[RawPacket]:
    return [RawPacket(float(p.time), 1, bytes(p), len(bytes(p))) for p in pkts]


def routed_clients(n: int = 100) -> list[Any]:
    """``n`` internet clients behind one gateway MAC, each connecting to three services (SYN,
    SYN-ACK, ACK, a request) with the random sequence numbers of real stacks."""
    rnd = random.Random(16)
    out: list[Any] = []
    t = T0
    for i in range(n):
        client = f"203.0.113.{i + 1}"
        for port in (22, 80, 443):
            sport, seq, sseq = rnd.randint(32768, 60999), rnd.getrandbits(32), rnd.getrandbits(32)
            for src_mac, dst_mac, ip, tcp in (
                    (GW, SRV, IP(src=client, dst="198.18.0.10"),
                     TCP(sport=sport, dport=port, flags="S", seq=seq)),
                    (SRV, GW, IP(src="198.18.0.10", dst=client),
                     TCP(sport=port, dport=sport, flags="SA", seq=sseq, ack=seq + 1)),
                    (GW, SRV, IP(src=client, dst="198.18.0.10"),
                     TCP(sport=sport, dport=port, flags="A", seq=seq + 1, ack=sseq + 1)),
                    (GW, SRV, IP(src=client, dst="198.18.0.10"),
                     TCP(sport=sport, dport=port, flags="PA", seq=seq + 1, ack=sseq + 1)
                     / b"GET / HTTP/1.1\r\n\r\n")):
                pkt = Ether(src=src_mac, dst=dst_mac) / ip / tcp
                pkt.time = t
                t += 0.0005
                out.append(pkt)
    return out


def test_many_routed_clients_behind_one_gateway_mac_are_not_a_decoy_scan() -> None:
    events = PacketProcessor(NetworkSection()).process(_frames(routed_clients()))
    syn_macs = {e.fields.get("source.mac") for e in events if e.fields.get("tcp.flags.syn")
                and not e.fields.get("tcp.flags.ack")}
    assert syn_macs == {GW.replace(":", "-").upper()}
    assert decoy_events(events) == []


def test_nmap_style_copies_behind_one_mac_are_a_decoy_set() -> None:
    """The same probe (ports, sequence number) under 4 addresses from one MAC: 4 events."""
    pkts = []
    for k, port in enumerate((21, 22, 23)):
        for j, src in enumerate(("198.18.0.51", "198.18.0.52", "198.18.0.20", "198.18.0.53")):
            pkt = Ether(src=GW, dst=SRV) / IP(src=src, dst="198.18.0.10") / TCP(
                sport=50517, dport=port, flags="S", seq=628023858)
            pkt.time = T0 + k * 0.01 + j * 0.0001
            pkts.append(pkt)
    found = decoy_events(PacketProcessor(NetworkSection()).process(_frames(pkts)))
    assert sorted(f["source.ip"] for f in found) == sorted(
        ("198.18.0.51", "198.18.0.52", "198.18.0.20", "198.18.0.53"))
    assert [f["vedette.decoy_set_size"] for f in found] == [1, 2, 3, 4]


def _syn(ts: float, mac: bytes, src: bytes, dport: int, seq: int) -> Packet:
    frame = bytes(Ether(src=mac.hex(":"), dst=SRV) / IP(src=".".join(map(str, src)),
                                                        dst="198.18.0.10")
                  / TCP(sport=40000, dport=dport, flags="S", seq=seq))
    return Packet(ts, 4, src, bytes((198, 18, 0, 10)), 6, 40000, dport, 0x02, frame,
                  54, len(frame), len(frame), None)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 3),
                          st.integers(0, 2)), min_size=1, max_size=300))
def test_hostile_syn_streams_name_only_real_copies(
        stream: list[tuple[int, int, int, int]]) -> None:
    """Whatever MACs, addresses and sequence numbers an attacker mixes, an address is named
    only after it sent a SYN whose fingerprint another address sent from the same MAC
    within the window, and always under the MAC that sent it."""
    tracker = DecoyTracker()
    sent: dict[tuple[bytes, int, int], set[bytes]] = {}
    named: set[tuple[bytes, bytes]] = set()
    for i, (m, a, port, seq) in enumerate(stream):
        mac, src = bytes((2, 0, 0, 0, 0, m + 1)), bytes((198, 18, 1, a))
        out: list[Event] = []
        tracker.syn(out, _syn(T0 + i * 0.001, mac, src, 20 + port, seq + 1), "inbound")
        sent.setdefault((mac, port, seq), set()).add(src)
        for f in decoy_events(out):
            named.add((bytes.fromhex(f["source.mac"].replace("-", "")),
                       bytes(map(int, f["source.ip"].split(".")))))
    for mac, src in named:
        assert any(mac == k[0] and src in v and len(v) >= 2 for k, v in sent.items())
    probes, sets, largest = tracker.sizes()
    assert probes <= MAX_PROBES and sets <= MAX_MACS and largest <= MAX_SOURCES


def test_state_stays_bounded_under_a_spoofed_stream() -> None:
    tracker = DecoyTracker()
    out: list[Event] = []
    for i in range(3 * MAX_PROBES):
        src = (i % 200 + 1).to_bytes(1, "big")
        mac = bytes((2, 0, 0, 0, (i // 7) % 256, (i // 7) // 256 % 256))
        tracker.syn(out, _syn(T0, mac, bytes((198, 18, 2)) + src, 1 + i % 3, 7), "inbound")
    probes, sets, largest = tracker.sizes()
    assert probes <= MAX_PROBES and sets <= MAX_MACS and largest <= MAX_SOURCES


def test_macs_of_vlan_frames_and_none_for_reassembled_datagrams() -> None:
    frame = bytes(Ether(src=GW, dst=SRV) / Dot1Q(vlan=7) / IP(src="198.18.0.20",
                                                              dst="198.18.0.10")
                  / TCP(sport=1, dport=2, flags="S", seq=5))
    src, dst = bytes((198, 18, 0, 20)), bytes((198, 18, 0, 10))
    pkt = Packet(T0, 4, src, dst, 6, 1, 2, 2, frame, 58, len(frame), len(frame), None)
    assert macs(pkt) == (bytes.fromhex(GW.replace(":", "")), bytes.fromhex(SRV.replace(":", "")))
    datagram = frame[18:]
    whole = Packet(T0, 4, src, dst, 6, 1, 2, 2, datagram, 40, len(datagram), len(datagram),
                   None, fragments=3)
    assert macs(whole) is None
    sll2 = b"\x08\x00\x00\x00" + b"\x00\x00\x00\x02" + b"\x00\x01" + b"\x00\x06" + bytes.fromhex(
        GW.replace(":", "")) + b"\x00\x00" + frame[18:]
    cooked = Packet(T0, 4, src, dst, 6, 1, 2, 2, sll2, 60, len(sll2), len(sll2), None)
    assert macs(cooked) == (bytes.fromhex(GW.replace(":", "")), None)


def _mac_text(frame_mac: bytes) -> str:
    return frame_mac.hex("-").upper()


def test_real_decoy_hosts_capture_names_only_the_real_scanner() -> None:
    """nmap -D with real hosts as decoys: every per-address alert names the scanner, none a
    decoy; the decoy-source alert names the scanner, the spoofed-scan alert its MAC."""
    events = [e.fields for e in pcap_events(REAL, fixture_config(REAL))]
    syns = [f for f in events if f.get("tcp.flags.syn") is True and f.get("tcp.flags.ack") is False]
    scanner = {f["source.mac"] for f in syns}
    assert len(scanner) == 1
    marked = [f for f in syns if f.get("vedette.likely_spoofed")]
    assert {f["source.ip"] for f in marked} == REAL_DECOYS
    assert all(not f.get("vedette.likely_spoofed") for f in syns if f["source.ip"] == ATTACKER)
    # each decoy's first probe arrives before the target has resolved the decoy's address
    for decoy in REAL_DECOYS:
        unmarked = [f for f in syns if f["source.ip"] == decoy
                    and not f.get("vedette.likely_spoofed")]
        assert 1 <= len(unmarked) <= 3, (decoy, len(unmarked))
    alerts = alerts_of(REAL, names=True)
    named = {(name, group.get("source.ip")) for name, group in alerts if "source.ip" in group}
    assert {ip for _, ip in named} == {ATTACKER}, named
    assert {("port_scan_vertical", ATTACKER), ("tcp_decoy_source", ATTACKER),
            ("tcp_closed_port_resets", ATTACKER)} <= named
    [mac] = scanner
    assert ("tcp_decoy_scan", {"source.mac": mac}) in alerts
    assert ("port_scan_spoofed", {"source.mac": mac, "destination.ip": "198.18.0.10"}) in alerts


def test_decoys_that_are_the_scanners_own_addresses_are_not_marked() -> None:
    """nmap_decoys.pcap: the scanner's kernel answers ARP for all six addresses, so ARP binds
    them all to its MAC: nothing is marked, the alerts are today's (one per address)."""
    events = [e.fields for e in pcap_events(DECOYS, fixture_config(DECOYS))]
    assert not any(f.get("vedette.likely_spoofed") or f.get("vedette.answers_spoofed")
                   for f in events)
    names = {name for name, _ in alerts_of(DECOYS, names=True)}
    assert "tcp_decoy_source" not in names and "port_scan_spoofed" not in names


ATTACKER = "198.18.0.20"
M_ATK, M_X, M_GW = bytes.fromhex("020000000a01"), bytes.fromhex("020000000a02"), bytes.fromhex(
    "020000000a03")
IP_ATK, IP_X, IP_GW = bytes((198, 18, 0, 20)), bytes((198, 18, 0, 77)), bytes((198, 18, 0, 1))


def _syn_from(ts: float, mac: bytes, src: bytes, dport: int, seq: int = 77) -> Packet:
    return _syn(ts, mac, src, dport, seq)


def _feed(tracker: DecoyTracker, pkt: Packet) -> tuple[dict[str, Any], list[Event]]:
    fields: dict[str, Any] = {}
    out: list[Event] = []
    tracker.packet(out, pkt, "inbound", fields)
    return fields, out


def test_a_changed_binding_is_believed_only_after_it_held() -> None:
    arp = ArpTracker()
    assert arp.binding(IP_X, T0) is None
    arp.observe(IP_X, M_X, T0)
    assert arp.binding(IP_X, T0) == M_X  # first seen: believed at once
    arp.observe(IP_X, M_ATK, T0 + 10)  # a flip
    assert arp.binding(IP_X, T0 + 10 + SETTLE - 1) == M_X
    arp.observe(IP_X, M_X, T0 + 20)  # the owner answers again: the flip is undone
    arp.observe(IP_X, M_ATK, T0 + 30)
    assert arp.binding(IP_X, T0 + 30 + SETTLE - 1) == M_X
    assert arp.binding(IP_X, T0 + 30 + SETTLE) == M_ATK  # held 5 minutes: a moved host


def test_probes_under_a_bound_address_from_another_mac_are_marked_and_answered() -> None:
    arp = ArpTracker()
    arp.observe(IP_X, M_X, T0)
    arp.observe(IP_ATK, M_ATK, T0)
    tracker = DecoyTracker(arp)
    fields, _ = _feed(tracker, _syn_from(T0 + 1, M_ATK, IP_X, 22))
    assert fields == {"vedette.likely_spoofed": True}
    fields, _ = _feed(tracker, _syn_from(T0 + 1, M_ATK, IP_ATK, 22))
    assert fields == {}
    frame = bytes(Ether(src=SRV, dst=M_X.hex(":")) / IP(src="198.18.0.10", dst="198.18.0.77")
                  / TCP(sport=22, dport=40000, flags="RA"))
    rst = Packet(T0 + 1.001, 4, bytes((198, 18, 0, 10)), IP_X, 6, 22, 40000, 0x14, frame, 54,
                 len(frame), len(frame), None)
    fields, _ = _feed(tracker, rst)
    assert fields == {"vedette.answers_spoofed": True}
    late = Packet(T0 + 30, 4, bytes((198, 18, 0, 10)), IP_X, 6, 22, 40000, 0x14, frame, 54,
                  len(frame), len(frame), None)
    assert _feed(tracker, late)[0] == {}


def test_a_routers_mac_is_never_judged() -> None:
    """Routed traffic carries the gateway's MAC under every remote address: a configured
    gateway's MAC, or a MAC behind many addresses ARP never bound, is not judged even for an
    address that does have a binding (asymmetric routing of a local host)."""
    arp = ArpTracker(gateways=["198.18.0.1"])
    arp.observe(IP_GW, M_GW, T0)
    arp.observe(IP_X, M_X, T0)
    tracker = DecoyTracker(arp)
    assert _feed(tracker, _syn_from(T0 + 1, M_GW, IP_X, 22))[0] == {}
    arp2 = ArpTracker()
    arp2.observe(IP_X, M_X, T0)
    learnt = DecoyTracker(arp2)
    for i in range(ROUTER_SOURCES):
        assert _feed(learnt, _syn_from(T0 + 1, M_ATK, bytes((203, 0, 113, i + 1)), 443,
                                       seq=1000 + i))[0] == {}
    assert _feed(learnt, _syn_from(T0 + 2, M_ATK, IP_X, 22))[0] == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("arp", "syn")), st.integers(0, 2),
                          st.integers(0, 3), st.integers(0, 5)), max_size=200))
def test_forged_arp_and_probes_cannot_name_an_innocent(
        stream: list[tuple[str, int, int, int]]) -> None:
    """X's binding was seen first. Whatever the forger (sending from cards other than X's:
    a forger using X's own MAC is a stated limit) then mixes — gratuitous ARP claiming X,
    the forger's own or other addresses for any MAC, decoy copies under X, its own and other
    addresses — within less than the settle time, X is never named the real scanner and every
    SYN under X from a card other than X's is marked likely spoofed."""
    arp = ArpTracker()
    arp.observe(IP_X, M_X, T0)
    tracker = DecoyTracker(arp)
    macs = (M_ATK, bytes.fromhex("020000000b01"), bytes.fromhex("020000000b02"))
    ips = (IP_X, IP_ATK, bytes((198, 18, 0, 90)), bytes((198, 18, 0, 91)))
    for i, (kind, m, a, port) in enumerate(stream):
        ts = T0 + 1 + i * 0.01
        if kind == "arp":
            arp.observe(ips[a], macs[m], ts)
            continue
        for src in (ips[a], IP_X, ips[(a + 1) % 4]):  # decoy copies of one probe
            fields, out = _feed(tracker, _syn_from(ts, macs[m], src, 20 + port, seq=5 + port))
            if src == IP_X:
                assert fields.get("vedette.likely_spoofed") is True
            assert all(ev.fields["source.ip"] != "198.18.0.77" for ev in out
                       if ev.fields["event.action"] == "decoy_source")


def _arp_reply(ts: float, mac: str, ip: str) -> Any:
    pkt = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=mac, psrc=ip,
                                                      hwdst="ff:ff:ff:ff:ff:ff", pdst=ip)
    pkt.time = ts
    return pkt


def test_routed_traffic_through_a_gateway_mac_is_never_marked() -> None:
    """ARP binds the gateway and a local host; 100 routed clients arrive with the gateway's
    MAC, then the local host's own connections arrive routed too (asymmetric routing): with
    the gateway configured, and with it only learnt (many unbound addresses behind its MAC),
    no event is marked and no alert is raised."""
    cli = "02:00:5e:00:53:30"
    arp = [_arp_reply(T0 - 5, GW, "198.18.0.1"), _arp_reply(T0 - 4, cli, "198.18.0.30")]
    local = []
    for pkt in routed_clients(4)[:12]:
        pkt = pkt.copy()
        if pkt[IP].src.startswith("203.0.113."):
            pkt[IP].src = "198.18.0.30"
        else:
            pkt[IP].dst = "198.18.0.30"
        pkt.time = float(pkt.time) + 3600
        local.append(pkt)
    frames = _frames([*arp, *routed_clients(), *local])
    for network in (NetworkSection(gateways=["198.18.0.1"]), NetworkSection()):
        events = PacketProcessor(network).process(frames)
        local_syns = [e.fields for e in events if e.fields.get("source.ip") == "198.18.0.30"
                      and e.fields.get("tcp.flags.syn")]
        assert local_syns and {f["source.mac"] for f in local_syns} == {
            GW.replace(":", "-").upper()}
        assert not [e for e in events if e.fields.get("vedette.likely_spoofed")
                    or e.fields.get("vedette.answers_spoofed")]
        assert decoy_events(events) == []


def test_ipv6_decoys_bound_by_neighbour_discovery_are_marked() -> None:
    """The IPv6 analogue: the scanner's solicitation binds its address to its MAC, each decoy's
    advertisement binds the decoy's address to the decoy's MAC; the copies under the decoys'
    addresses from the scanner's MAC are marked and the scanner is named."""
    tgt, atk = "2001:db8:16::10", "2001:db8:16::20"
    decoys = [f"2001:db8:16::6{i}" for i in range(1, 4)]
    m_atk = "02:00:5e:00:53:20"
    frames: list[Any] = []
    ns = (Ether(src=m_atk, dst="33:33:ff:00:00:10") / IPv6(src=atk, dst="ff02::1:ff00:10",
                                                          hlim=255)
          / ICMPv6ND_NS(tgt=tgt) / ICMPv6NDOptSrcLLAddr(lladdr=m_atk))
    ns.time = T0
    frames.append(ns)
    for i, decoy in enumerate(decoys):
        mac = f"02:00:5e:00:53:6{i + 1}"
        na = (Ether(src=mac, dst=SRV) / IPv6(src=decoy, dst=tgt, hlim=255)
              / ICMPv6ND_NA(tgt=decoy, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
        na.time = T0 + 0.001 * (i + 1)
        frames.append(na)
    for k, port in enumerate(range(1, 31)):
        for j, src in enumerate([decoys[0], atk, *decoys[1:]]):
            syn = Ether(src=m_atk, dst=SRV) / IPv6(src=src, dst=tgt) / TCP(
                sport=50517, dport=port, flags="S", seq=628023858)
            syn.time = T0 + 0.1 + k * 0.01 + j * 0.0001
            frames.append(syn)
    events = [e.fields for e in PacketProcessor(NetworkSection()).process(_frames(frames))]
    syns = [f for f in events if f.get("tcp.flags.syn") is True]
    assert {f["source.ip"] for f in syns if f.get("vedette.likely_spoofed")} == set(decoys)
    assert not [f for f in syns if f["source.ip"] == atk and f.get("vedette.likely_spoofed")]
    named = [f for f in events if f.get("event.action") == "decoy_source"]
    assert [(f["source.ip"], f["vedette.decoy_spoofed_count"]) for f in named] == [(atk, 3)]
