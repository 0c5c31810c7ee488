"""The rarer protocols of :class:`~agent.netevents.processor.PacketProcessor`: ICMP, DNS, ARP.

Each function does what one such packet does to the processor's tables and budgets (the
packet's flow is already counted) and appends the event it produced, if any.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from agent.events import Event
from agent.netdecode import dns as dnsparse
from agent.netdecode.layers import PROTO_ICMP, PROTO_TCP
from agent.netdecode.layers import quoted_transport as _quoted
from agent.netevents import records
from agent.netevents.arp import parse_arp
from agent.netevents.summaries import DNS_RCODE_LABEL

if TYPE_CHECKING:
    from agent.netevents.processor import PacketProcessor

# ICMP types that are probes (echo, timestamp, address mask; ICMPv6 echo).
ICMP4_PROBES: Final = frozenset((8, 13, 17))
MAX_DNS_PER_SEGMENT: Final = 64
"""Pipelined DNS messages read from one TCP segment at most (the smallest fit ~100 in 1500 B)."""
ICMP6_PROBES: Final = frozenset((128,))


def icmp(
    proc: PacketProcessor, out: list[Event], ts: float, family: int, src: bytes, dst: bytes,
    proto: int, icmp_type: int, code: int, data: bytes, l4: int, end: int, wire: int,
    interface: str | None,
) -> None:
    """An ICMP/ICMPv6 message: its aggregate; an event for probes and unreachables."""
    akey = (dst, 0, proto)
    a = proc._agg.get(akey) or proc._new_aggregate(akey)
    probe = icmp_type in (ICMP4_PROBES if proto == PROTO_ICMP else ICMP6_PROBES)
    if a is not None:
        a[0] += 1
        a[1] += wire
        if probe:
            a[5] += 1
            bitmap = a[6] or proc._bitmap(a)
            bitmap[hash(src) & 4095] = 1
    unreachable = icmp_type == (3 if proto == PROTO_ICMP else 1)
    if not (probe or unreachable) or not proc._admit(src, dst, -icmp_type - 1):
        return
    quoted = _quoted(data, l4 + 4, end, family) if unreachable else None
    proc.stats.events["packet"] += 1
    out.append(records.icmp_packet(
        ts, family, src, dst, proto, icmp_type, code, quoted,
        proc.direction.of(src, dst), wire, interface,
    ))

def dns(
    proc: PacketProcessor, out: list[Event], ts: float, family: int, src: bytes, dst: bytes,
    sport: int, dport: int, data: bytes, l4: int, end: int, wire: int, interface: str | None,
) -> None:
    """A datagram on a DNS port: counted, and an event for it within the client's budget."""
    if end - l4 >= 12:
        if data[l4 + 2] & 0x80:
            proc.stats.dns_responses[DNS_RCODE_LABEL[data[l4 + 3] & 0x0F]] += 1
        else:
            proc.stats.dns_queries += 1
    client = dst if sport in proc._dns_ports else src
    if not proc._admit_aux(b"dns" + client, proc.settings.max_dns_events_per_client):
        return
    msg = dnsparse.parse(data, l4, end)
    if isinstance(msg, str):
        proc.stats.errors[msg] += 1
        return
    proc.stats.events["dns"] += 1
    out.append(records.dns_event(
        ts, family, src, dst, sport, dport, msg, proc.direction.of(src, dst), wire, interface
    ))

def dns_tcp(
    proc: PacketProcessor, out: list[Event], ts: float, family: int, src: bytes, dst: bytes,
    sport: int, dport: int, flags: int, data: bytes, l4: int, end: int, wire: int,
    interface: str | None,
) -> None:
    """A TCP segment on a DNS port whose payload starts with DNS messages (RFC 7766: each a
    2-byte length, then the message; pipelined queries share a segment): each is counted, and
    an event within the client's budget, as for a datagram. The stream is not reassembled: a
    segment in the middle of a long message (a zone transfer's answer) does not parse and is
    passed over without an error; the question, all rules read, is at a message's start."""
    if flags & 0x02:  # SYN: TCP Fast Open data is not read
        return
    client = dst if sport in proc._dns_ports else src
    start = l4
    for _ in range(MAX_DNS_PER_SEGMENT):
        if end - start < 14:
            return
        length = (data[start] << 8) | data[start + 1]
        if length < 12:
            return
        msg = dnsparse.parse(data, start + 2, min(end, start + 2 + length))
        if isinstance(msg, str) or msg.question_count != 1 or msg.opcode > 6:
            return
        if msg.is_response:
            proc.stats.dns_responses[DNS_RCODE_LABEL[msg.rcode & 0x0F]] += 1
        else:
            proc.stats.dns_queries += 1
        if proc._admit_aux(b"dns" + client, proc.settings.max_dns_events_per_client):
            proc.stats.events["dns"] += 1
            out.append(records.dns_event(
                ts, family, src, dst, sport, dport, msg, proc.direction.of(src, dst), wire,
                interface, PROTO_TCP,
            ))
        start += 2 + length


def arp(
    proc: PacketProcessor, out: list[Event], ts: float, data: bytes, eth_src: bytes, eth_dst: bytes,
    off: int, wire: int, interface: str | None,
) -> None:
    """An ARP packet: the binding table, and an event within the sender's budget."""
    proc.stats.add_traffic("arp", "none", 1, wire)
    pkt = parse_arp(data, off)
    if pkt is None:
        proc.stats.errors["arp_unsupported"] += 1
        return
    previous = proc.arp.observe(pkt.sender_ip, pkt.sender_mac)
    limit = proc.settings.max_arp_events_per_mac
    if not proc._admit_aux(b"arp" + pkt.sender_mac, limit if previous is None else limit * 2):
        return
    proc.stats.events["arp"] += 1
    out.append(records.arp_event(
        ts, eth_src, eth_dst, pkt.opcode, pkt.sender_mac, pkt.sender_ip, pkt.target_mac,
        pkt.target_ip, previous, pkt.sender_ip in proc.arp.gateways, interface,
    ))
