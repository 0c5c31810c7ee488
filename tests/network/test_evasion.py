"""Scan variants that used to slip past the packet path reach the analyzers as what they are.

Each variant is crafted with scapy into a pcap and fed through ``pcap_events`` (the replay
path) and the detection engine with ``rules/network``: ACK, Window and Maimon scans (probes
of connections never seen), a SYN scan in 8-byte IPv4 fragments (``nmap -f``) and an IPv6 SYN
scan whose probes carry a chain of Destination Options headers. Reassembly stays bounded under
fragment floods; overlapping fragments are dropped and reported.
"""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import IP, TCP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from agent.config import Config, NetworkSection
from agent.detection.engine import Engine
from agent.detection.loader import load_rules
from agent.events import Event
from agent.netdecode.defrag import Reassembler
from agent.netdecode.pcapfile import RawPacket
from agent.netevents.processor import PacketProcessor
from agent.offline.clock import run
from agent.offline.pcap import pcap_events
from tests.network import craft as c
from tests.network.craft import ATTACKER, SERVER, T0

REPO = Path(__file__).resolve().parents[2]
V6_ATTACKER, V6_SERVER = "2001:db8::66", "2001:db8::10"


def _replay(tmp_path: Path, pkts: list[Packet]) -> tuple[list[Event], set[str]]:
    path = tmp_path / "capture.pcap"
    wrpcap(str(path), pkts)
    events = list(pcap_events(path, Config()))
    engine = Engine(load_rules([REPO / "rules" / "network"]).ruleset)
    result = run(engine, iter(events), 1000.0)
    return events, {a.rule.title for a in result.alerts.values()}


def _at(pkts: list[Packet], t0: float, step: float) -> list[Packet]:
    for i, p in enumerate(pkts):
        p.time = t0 + i * step
    return pkts


def _packets(events: list[Event]) -> list[dict[str, object]]:
    return [e.fields for e in events if e.logsource.category == "network_packet"]


def test_ack_window_and_maimon_probes_are_untracked_segments(tmp_path: Path) -> None:
    for flags, answered in (("A", True), ("A", False), ("FA", False)):  # -sA/-sW, -sM
        pkts: list[Packet] = []
        for port in range(1, 101):
            pkts.append(c.eth() / IP(src=ATTACKER, dst=SERVER)
                        / TCP(sport=55555, dport=port, flags=flags, ack=12345))
            if answered:  # the target answers unsolicited ACKs with a bare RST
                pkts.append(c.eth() / IP(src=SERVER, dst=ATTACKER)
                            / TCP(sport=port, dport=55555, flags="R", seq=12345))
        events, _ = _replay(tmp_path, _at(pkts, T0, 0.002))
        probes = [f for f in _packets(events) if f.get("tcp.connection_state") == "untracked"]
        assert len(probes) == 100, flags
        assert {f["destination.port"] for f in probes} == set(range(1, 101))
        assert all(f["source.ip"] == ATTACKER and f["tcp.flags.ack"] is True for f in probes)
        assert all(f["tcp.flags.fin"] is (flags == "FA") for f in probes)
        resets = [f for f in _packets(events) if f["tcp.flags.rst"] is True]
        assert len(resets) == (100 if answered else 0)


def test_ordinary_connections_are_not_untracked(tmp_path: Path) -> None:
    pkts: list[Packet] = []
    for i in range(30):
        pkts += c.handshake(T0 + i * 0.05, c.CLIENT, SERVER, 30000 + i, 443, data=3)
    events, _ = _replay(tmp_path, sorted(pkts, key=lambda p: float(p.time)))
    assert not [f for f in _packets(events) if "tcp.connection_state" in f]


def test_syn_scan_in_8_byte_fragments_reaches_tcp_as_syns(tmp_path: Path) -> None:
    pkts: list[Packet] = []
    for port in range(1, 101):
        probe = IP(src=ATTACKER, dst=SERVER, id=port) / TCP(
            sport=40000, dport=port, flags="S", options=[("MSS", 1460)])
        pkts += [c.eth() / f for f in fragment(probe, fragsize=8)]
    events, alerts = _replay(tmp_path, _at(pkts, T0, 0.001))
    syns = [f for f in _packets(events) if f.get("tcp.flags.syn") is True]
    assert len(syns) == 100
    assert {f["destination.port"] for f in syns} == set(range(1, 101))
    assert all(f["network.fragments"] == 3 for f in syns)  # 24-byte TCP header / 8
    tiny = [f for f in _packets(events) if f.get("event.action") == "tiny_fragment"]
    assert len(tiny) == 100
    assert "Vertical TCP port scan" in alerts


def test_ipv6_syn_scan_behind_destination_options_reaches_tcp(tmp_path: Path) -> None:
    pkts: list[Packet] = []
    for port in range(1, 101):
        chain = IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
        pkts.append(Ether() / IPv6(src=V6_ATTACKER, dst=V6_SERVER) / chain
                    / TCP(sport=40000, dport=port, flags="S"))
    events, alerts = _replay(tmp_path, _at(pkts, T0, 0.001))
    syns = [f for f in _packets(events) if f.get("tcp.flags.syn") is True]
    assert len(syns) == 100
    assert all(f["ipv6.extension_headers"] == 3 for f in syns)
    assert syns[0]["ipv6.extension_chain"] == ["dstopts", "dstopts", "dstopts"]
    assert all(f["ipv6.unusual_extension_chain"] is True for f in syns)
    assert "Vertical TCP port scan" in alerts


def test_a_long_ipv6_chain_is_walked_to_its_bound_and_counted() -> None:
    proc = PacketProcessor(NetworkSection())
    chain = IPv6ExtHdrDestOpt()
    for _ in range(39):
        chain = chain / IPv6ExtHdrDestOpt()
    long = Ether() / IPv6(src=V6_ATTACKER, dst=V6_SERVER) / chain / TCP(flags="S")
    proc.process([RawPacket(T0, 1, bytes(long), len(long))])
    assert proc.stats.errors["ipv6_chain_too_long"] == 1
    assert proc.stats.evasion["ipv6_chain_too_long"] == 1


def test_ipv6_fragmented_syn_is_reassembled() -> None:
    syn = TCP(sport=40000, dport=22, flags="S", options=[("MSS", 1440)] * 4)
    body = bytes(syn)
    first = (Ether() / IPv6(src=V6_ATTACKER, dst=V6_SERVER)
             / IPv6ExtHdrFragment(nh=6, id=7, m=1, offset=0) / Raw(body[:8]))
    rest = (Ether() / IPv6(src=V6_ATTACKER, dst=V6_SERVER)
            / IPv6ExtHdrFragment(nh=6, id=7, m=0, offset=1) / Raw(body[8:]))
    proc = PacketProcessor(NetworkSection())
    events = proc.process([RawPacket(T0, 1, bytes(rest), len(rest)),
                           RawPacket(T0 + 0.001, 1, bytes(first), len(first))])
    syns = [e.fields for e in events if e.fields.get("tcp.flags.syn") is True]
    assert len(syns) == 1 and syns[0]["destination.port"] == 22
    assert syns[0]["network.fragments"] == 2
    assert syns[0]["ipv6.extension_chain"] == ["fragment"]


def test_overlapping_fragments_drop_the_datagram_and_are_reported() -> None:
    body = bytes(TCP(sport=40000, dport=80, flags="S")) + b"A" * 16
    a = c.eth() / IP(src=ATTACKER, dst=SERVER, id=9, flags="MF", frag=0, proto=6) / Raw(body[:24])
    # Offset 16 overlaps bytes 16..23 of the first with different data (a rewrite attempt).
    b = c.eth() / IP(src=ATTACKER, dst=SERVER, id=9, frag=2, proto=6) / Raw(b"B" * 20)
    dup = c.eth() / IP(src=ATTACKER, dst=SERVER, id=10, flags="MF", frag=0, proto=6) / Raw(
        body[:24])
    proc = PacketProcessor(NetworkSection())
    events = proc.process([RawPacket(T0, 1, bytes(p), len(p)) for p in (a, b, dup, dup)])
    assert [e.fields["event.action"] for e in events] == ["fragment_overlap"]
    assert events[0].fields["source.ip"] == ATTACKER
    assert proc.stats.evasion["fragment_overlap"] == 1
    assert proc.stats.fragments["fragment_duplicate"] == 1  # an exact copy is ignored
    assert not [e for e in events if e.fields.get("tcp.flags.syn")]


def test_fragment_flood_keeps_reassembly_bounded() -> None:
    proc = PacketProcessor(NetworkSection())
    limit = proc.defrag.max_datagrams
    frames = []
    for i in range(limit * 3):  # first fragments that never complete, each its own datagram
        p = (c.eth() / IP(src=f"198.18.{i >> 8 & 255}.{i & 255}", dst=SERVER, id=i & 0xFFFF,
                          flags="MF", proto=17) / Raw(b"z" * 1000))
        frames.append(RawPacket(T0 + i * 1e-5, 1, bytes(p), len(p)))
    proc.process(frames)
    assert len(proc.defrag) <= limit
    assert proc.defrag.buffered_bytes <= proc.defrag.max_bytes
    # the oldest datagrams are pushed out (the table neither refuses nor grows)
    assert proc.stats.fragments["fragment_evicted"] >= limit * 2
    assert proc.stats.table_overflows["fragments"] == proc.stats.fragments["fragment_evicted"]
    # Packet time passes the timeout: every held datagram expires and the table empties.
    late = c.eth() / IP(src=ATTACKER, dst=SERVER, id=1, flags="MF", proto=17) / Raw(b"z" * 8)
    proc.process([RawPacket(T0 + 31, 1, bytes(late), len(late))])
    assert len(proc.defrag) == 1
    assert proc.stats.fragments["fragment_timeout"] >= 1


def test_reassembler_bounds_fragments_per_datagram_and_size() -> None:
    r = Reassembler(max_fragments=4)
    key = (b"\x01" * 4, b"\x02" * 4, 17, 1)
    for i in range(4):
        assert r.add(T0, key, i * 8, True, b"", b"x" * 8, 8) is None
    assert r.add(T0, key, 32, True, b"", b"x" * 8, 8) == "fragment_too_many"
    assert len(r) == 0 and r.buffered_bytes == 0
    assert r.add(T0, key, 65530, False, b"", b"x" * 8, 8) == "fragment_too_large"
