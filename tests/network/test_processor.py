"""Packet processor: budgets bound a flood, aggregates keep its size, probes pass one by one."""

from __future__ import annotations

import random
from collections import Counter

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.packet import Packet

from agent.config import NetworkSection
from agent.events import Event
from agent.netdecode.pcapfile import RawPacket
from agent.netevents.processor import PacketProcessor
from agent.threatintel.feeds import IntelSet
from agent.threatintel.prefixes import table_of
from tests.network import craft as c
from tests.network.craft import ATTACKER, SERVER, T0


def raw(pkts: list[Packet]) -> list[RawPacket]:
    return [RawPacket(float(p.time), 1, bytes(p), getattr(p, "wirelen", None) or len(bytes(p)))
            for p in sorted(pkts, key=lambda p: float(p.time))]


def run(pkts: list[Packet], settings: NetworkSection | None = None,
        processor: PacketProcessor | None = None) -> tuple[PacketProcessor, list[Event]]:
    proc = processor or PacketProcessor(settings or NetworkSection())
    events = proc.process(raw(pkts))
    events += proc.flush()
    return proc, events


def kinds(events: list[Event]) -> Counter[str]:
    return Counter(str(e.logsource.category) for e in events)


def test_each_scan_probe_becomes_an_event_with_flags() -> None:
    pkts = [c.tcp(T0 + i * 0.001, ATTACKER, SERVER, 40000, port, "S") for port in range(1, 51)
            for i in (port,)]
    pkts.append(c.tcp(T0 + 0.5, ATTACKER, SERVER, 40000, 99, "FPU"))
    _, events = run(pkts)
    packets = [e for e in events if e.logsource.category == "network_packet"]
    assert len(packets) == 51
    first = packets[0].fields
    assert first["tcp.flags.syn"] is True and first["tcp.flags.ack"] is False
    assert first["network.direction"] == "inbound"
    assert first["destination.port"] == 1 and first["source.ip"] == ATTACKER
    xmas = packets[-1].fields
    assert (xmas["tcp.flags.fin"], xmas["tcp.flags.psh"], xmas["tcp.flags.urg"]) == (
        True, True, True)


def test_ordinary_segments_make_no_packet_events() -> None:
    _, events = run(c.handshake(T0, "10.1.0.20", SERVER, 30000, 443, data=5))
    syns = [e for e in events if e.logsource.category == "network_packet"]
    assert len(syns) == 2  # SYN and SYN-ACK; ACK/PSH/FIN-ACK segments are not control packets
    flows = [e for e in events if e.logsource.category == "network_flow"]
    assert {f.fields["network.direction"] for f in flows} == {"internal"}


def frames(pairs: list[tuple[float, bytes]]) -> list[RawPacket]:
    return [RawPacket(ts, 1, data, len(data)) for ts, data in pairs]


def test_flood_is_budgeted_but_counted_in_aggregates() -> None:
    proc = PacketProcessor(NetworkSection())
    events = proc.process(frames(c.syn_frames(4000, ATTACKER, SERVER, 80, T0, 0.0002)))
    events += proc.flush()
    counts = kinds(events)
    assert counts["network_packet"] == 100  # max_events_per_destination per second
    assert proc.stats.suppressed == 3900
    traffic = [e.fields for e in events if e.logsource.category == "network_traffic"]
    assert sum(t["traffic.syn"] for t in traffic) == 4000
    assert all(t["traffic.syn_ratio"] == 1.0 for t in traffic)
    assert traffic[0]["destination.port"] == 80 and traffic[0]["network.direction"] == "inbound"


def test_spoofed_sources_are_estimated() -> None:
    proc = PacketProcessor(NetworkSection())
    pairs = c.syn_frames(2000, ATTACKER, SERVER, 80, T0, 0.0004, random.Random(5))
    events = proc.process(frames(pairs)) + proc.flush()
    traffic = [e.fields for e in events if e.logsource.category == "network_traffic"]
    assert len(traffic) == 1
    assert 1800 <= traffic[0]["traffic.source_count"] <= 2200


def test_global_and_source_budgets() -> None:
    settings = NetworkSection(max_events_per_source=10, max_events_per_second=1000)
    pkts = [c.tcp(T0 + i * 0.001, ATTACKER, SERVER, 40000, i + 1, "S") for i in range(50)]
    proc, events = run(pkts, settings)
    assert kinds(events)["network_packet"] == 10
    assert proc.stats.suppressed == 40


def test_budgets_reset_every_second() -> None:
    settings = NetworkSection(max_events_per_destination=5)
    pkts = [c.tcp(T0 + i * 0.1, ATTACKER, SERVER, 1000 + i, 80, "S") for i in range(30)]
    _, events = run(pkts, settings)
    assert kinds(events)["network_packet"] == 15  # 5 per second, three seconds


def test_dns_events_and_budget() -> None:
    pkts = [c.dns_query(T0 + i * 0.001, SERVER, f"h{i}.example.com", "A", sport=40000 + i)
            for i in range(300)]
    _, events = run(pkts)
    dns = [e.fields for e in events if e.logsource.category == "dns"]
    assert len(dns) == 200
    assert dns[0]["dns.question.registered_domain"] == "example.com"
    assert dns[0]["dns.question.subdomain"] == "h0"
    assert dns[0]["dns.type"] == "query"


def test_tcp_control_and_dns_are_counted_past_every_budget() -> None:
    """The counters behind the SYN/RST and DNS panels count every packet, events or not."""
    pkts: list[Packet] = []
    for i in range(400):  # one flooded service: far past max_events_per_destination
        pkts.append(c.tcp(T0 + i * 1e-4, ATTACKER, SERVER, 1000 + i, 80, "S"))
    pkts += [c.tcp(T0 + 0.1, SERVER, ATTACKER, 80, 1000, "SA"),
             c.tcp(T0 + 0.1, SERVER, ATTACKER, 80, 1001, "RA"),
             c.tcp(T0 + 0.1, ATTACKER, SERVER, 1002, 81, "F"),
             c.tcp(T0 + 0.1, ATTACKER, SERVER, 1003, 82, ""),
             c.tcp(T0 + 0.1, ATTACKER, SERVER, 1003, 80, "A"),
             c.tcp(T0 + 0.1, ATTACKER, SERVER, 1003, 80, "FA")]
    pkts += [c.dns_query(T0 + 0.2 + i * 1e-4, SERVER, f"x{i}.example.com", sport=30000 + i)
             for i in range(300)]
    for i, rcode in enumerate((0, 3, 3, 2, 5, 9)):
        answer = (c.eth() / IP(src="10.1.0.53", dst=SERVER) / UDP(sport=53, dport=30000 + i)
                  / DNS(id=i, qr=1, rcode=rcode, qd=DNSQR(qname="x.example.com")))
        pkts.append(c.at(answer, T0 + 0.3))
    truncated = c.at(c.eth() / IP(src=SERVER, dst="10.1.0.53") / UDP(sport=5, dport=53)
                     / b"\x00\x01", T0 + 0.3)
    proc, _ = run([*pkts, truncated])
    assert dict(proc.stats.tcp_control) == {"syn": 400, "syn_ack": 1, "rst": 1, "no_ack": 2,
                                            "untracked": 1}  # the lone ACK of port 1003
    assert proc.stats.dns_queries == 300  # past max_dns_events_per_client (200 events)
    assert dict(proc.stats.dns_responses) == {
        "noerror": 1, "nxdomain": 2, "servfail": 1, "refused": 1, "other": 1}


def test_dns_over_tcp_questions_and_answers_become_dns_events() -> None:
    """RFC 7766 framing: a zone-transfer request, its answer, and the answer's continuation
    segment (no message start: passed over without an error)."""
    axfr = DNS(id=7, rd=0, qd=DNSQR(qname="example.org", qtype="AXFR"))
    answer = DNS(id=7, qr=1, aa=1, qd=DNSQR(qname="example.org", qtype="AXFR"))
    pkts = [
        c.dns_tcp(T0, ATTACKER, SERVER, 40000, 53, axfr),
        c.dns_tcp(T0 + 0.01, SERVER, ATTACKER, 53, 40000, answer),
        c.dns_tcp(T0 + 0.02, SERVER, ATTACKER, 53, 40000, bytes(range(200)), seq=5000),
        c.tcp(T0 + 0.03, ATTACKER, SERVER, 40001, 53, "S"),
    ]
    proc, events = run(pkts)
    dns = [e.fields for e in events if e.logsource.category == "dns"]
    assert [(d["dns.type"], d["network.transport"], d["dns.question.type"]) for d in dns] == [
        ("query", "tcp", "AXFR"), ("answer", "tcp", "AXFR")]
    assert dns[0]["source.ip"] == ATTACKER and dns[0]["destination.port"] == 53
    assert dns[1]["dns.response_code"] == "NOERROR"
    assert proc.stats.dns_queries == 1 and dict(proc.stats.dns_responses) == {"noerror": 1}
    assert not proc.stats.errors  # the continuation segment is not a decode error
    # The segments still count as TCP traffic of their flows.
    assert sum(p for (proto, _), (p, _) in proc.stats.traffic.items() if proto == "tcp") == 4


def test_pipelined_dns_queries_in_one_segment_are_each_read() -> None:
    """RFC 7766 pipelining: three length-prefixed queries in one segment, then a cut fourth."""
    framed = b""
    for i, name in enumerate(("a.example.org", "b.example.org", "c.example.org")):
        body = bytes(DNS(id=i, rd=1, qd=DNSQR(qname=name)))
        framed += len(body).to_bytes(2, "big") + body
    cut = bytes(DNS(id=9, qd=DNSQR(qname="d.example.org")))
    framed += len(cut).to_bytes(2, "big") + cut[:8]
    proc, events = run([c.dns_tcp(T0, SERVER, "10.1.0.53", 40000, 53, framed)])
    names = [e.fields["dns.question.name"] for e in events if e.logsource.category == "dns"]
    assert names == ["a.example.org", "b.example.org", "c.example.org"]
    assert proc.stats.dns_queries == 3 and not proc.stats.errors


def test_arp_binding_change_and_gateway_flag() -> None:
    settings = NetworkSection(gateways=["10.1.0.1"])
    pkts = [
        c.arp(T0, 2, c.MAC_GATEWAY, "10.1.0.1", SERVER),
        c.arp(T0 + 1, 2, c.MAC_GATEWAY, "10.1.0.1", SERVER),
        c.arp(T0 + 2, 2, c.MAC_ATTACKER, "10.1.0.1", SERVER),
        c.arp(T0 + 3, 1, "02:00:00:00:00:77", "0.0.0.0", "10.1.0.77"),
    ]
    proc, events = run(pkts, settings)
    arp = [e.fields for e in events if e.logsource.category == "arp"]
    assert [a.get("arp.sender_mac_previous") for a in arp] == [
        None, None, "02-00-00-00-00-01", None]
    assert arp[2]["arp.sender_is_gateway"] is True and arp[3]["arp.sender_is_gateway"] is False
    assert len(proc.arp) == 1  # the probe from 0.0.0.0 claims nothing


def test_threat_intel_match_on_new_flows() -> None:
    intel = IntelSet(table=table_of(["192.0.2.0/24"], "feedA"))
    proc = PacketProcessor(NetworkSection(), intel=lambda: intel)
    pkts = c.handshake(T0, SERVER, "192.0.2.9", 5000, 443) + c.handshake(
        T0 + 1, SERVER, "192.0.3.9", 5001, 443)
    _, events = run(pkts, processor=proc)
    hits = [e.fields for e in events if e.fields.get("event.action") == "threat_intel_match"]
    assert len(hits) == 2  # one per direction of the listed conversation
    assert {h["threat.indicator.matched_side"] for h in hits} == {"source", "destination"}
    assert {h["threat.feed.name"] for h in hits} == {"feedA"}


def test_flows_are_bounded_and_overflow_counted() -> None:
    settings = NetworkSection(max_flows=100)
    pkts = [c.udp(T0 + i * 0.001, f"10.9.{i // 250}.{i % 250 + 1}", SERVER, 1, 2)
            for i in range(300)]
    proc, events = run(pkts, settings)
    assert kinds(events)["network_flow"] == 100
    assert proc.stats.table_overflows["flows"] == 200
    assert proc.stats.traffic[("udp", "unknown")][0] == 200


def test_advance_flushes_a_quiet_second() -> None:
    proc = PacketProcessor(NetworkSection(aggregate_min_packets=1))
    events = proc.process(raw([c.echo(T0 + 0.5, ATTACKER, SERVER)]))
    assert kinds(events)["network_packet"] == 1
    assert proc.advance(T0 + 0.9) == []
    later = proc.advance(T0 + 1.2)
    assert kinds(later)["network_traffic"] == 1
    assert later[0].timestamp < T0 + 1


def test_undecodable_frames_are_counted() -> None:
    proc = PacketProcessor(NetworkSection())
    events = proc.process([RawPacket(T0, 1, b"\x00" * 10, 10), RawPacket(T0, 77, b"x", 1),
                           RawPacket(T0, 1, bytes(c.udp(T0, SERVER, ATTACKER, 1, 53))[:44], 60)])
    assert events == []
    assert proc.stats.errors == Counter(
        {"truncated": 1, "unsupported_linktype": 1, "dns_truncated": 1})


def test_fast_path_agrees_with_the_general_decoder() -> None:
    """The inlined Ethernet/IPv4/TCP path and decode() must produce identical events."""
    pkts = [c.tcp(T0 + i * 0.01, ATTACKER, SERVER, 40000 + i, 20 + i, "S") for i in range(20)]
    fast = PacketProcessor(NetworkSection()).process(raw(pkts))
    # The same frames as Linux cooked captures take the general path.
    cooked = [(float(p.time), 113, b"\x00\x00\x00\x01\x00\x06" + bytes(p)[6:12] + b"\x00\x00"
               + bytes(p)[12:], len(bytes(p))) for p in pkts]
    slow = PacketProcessor(NetworkSection()).process(cooked)
    # SLL carries the sender's MAC only: the cooked events lack destination.mac, nothing else.
    assert all("destination.mac" in e.fields and "destination.mac" not in s.fields
               for e, s in zip(fast, slow, strict=True))
    assert [{k: v for k, v in e.fields.items() if k != "destination.mac"} for e in fast] == [
        e.fields for e in slow]
    assert {e.fields["source.mac"] for e in slow} == {bytes(pkts[0])[6:12].hex("-").upper()}
    assert len(fast) == 20


def test_ordinary_segments_are_folded_into_flows_and_aggregates() -> None:
    """Data segments take the per-connection counter and still land in flows and aggregates."""
    pkts = []
    for i in range(60):
        pkts.append(c.tcp(T0 + i * 0.01, "10.1.0.20", SERVER, 30000, 443, "PA", b"x" * 100))
    pkts.append(c.tcp(T0 + 0.9, "10.1.0.20", SERVER, 30000, 443, "S"))
    proc = PacketProcessor(NetworkSection(aggregate_min_packets=10))
    events = proc.process(raw(pkts)) + proc.flush()
    traffic = [e.fields for e in events if e.logsource.category == "network_traffic"]
    assert len(traffic) == 1
    assert traffic[0]["traffic.packets"] == 61 and traffic[0]["traffic.syn"] == 1
    assert traffic[0]["traffic.syn_ratio"] == round(1 / 61, 3)
    flows = [e.fields for e in events if e.logsource.category == "network_flow"]
    assert [(f["network.packets"], f["network.bytes"]) for f in flows] == [
        (61, 60 * len(bytes(pkts[0])) + len(bytes(pkts[-1])))]


def test_spoofed_flood_does_not_fill_the_flow_table() -> None:
    proc = PacketProcessor(NetworkSection(max_new_flows_per_destination=500))
    pairs = c.syn_frames(3000, ATTACKER, SERVER, 80, T0, 0.0002, random.Random(9))
    events = proc.process(frames(pairs)) + proc.flush()
    flows = [e for e in events if e.logsource.category == "network_flow"]
    assert len(flows) == 500
    assert proc.stats.table_overflows["flows_per_destination"] == 2500
    traffic = [e.fields for e in events if e.logsource.category == "network_traffic"]
    assert traffic[0]["traffic.syn"] == 3000  # the flood is still measured in full


def test_global_budget_exhaustion_is_counted_apart() -> None:
    settings = NetworkSection(max_events_per_second=5)
    pkts = [c.tcp(T0 + i * 0.01, ATTACKER, f"10.1.0.{i + 1}", 40000, 80, "S") for i in range(20)]
    proc, _ = run(pkts, settings)
    # A quarter of the 5 (at least 1) for a new source's first event, the rest for known ones.
    assert proc.stats.events["packet"] == 5
    assert proc.stats.suppressed == 15 and proc.stats.over_global_budget == 15
    assert proc.stats.over_budget_pools == {"known_sources": 15}
